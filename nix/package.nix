# larder, built with nixpkgs' buildGoModule. default.nix and flake.nix call
# this file; the NixOS module (module.nix) builds it unless told otherwise.
{
  lib,
  buildGo126Module,
}:

let
  # The files the build reads, and nothing else: nix/source.json lists them,
  # so that editing the README or the tests rebuilds nothing. nix/nix_test.go
  # vendors exactly these files to check vendorHash.
  root = ../.;
  sourcePaths = builtins.fromJSON (builtins.readFile ./source.json);
in
# Go 1.26, the version go.mod asks for (nix/nix_test.go checks they agree):
# buildGoModule sets GOTOOLCHAIN=local, so an older default Go would refuse
# to build.
buildGo126Module (finalAttrs: {
  pname = "larder";
  # No release has been tagged. flake.nix sets a version that names the
  # commit with overrideAttrs, which ldflags follows.
  version = "0-unstable";

  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions (map (path: root + "/${path}") sourcePaths);
  };

  # The NAR hash of `go mod vendor` run on the files above. nix/nix_test.go
  # recomputes it, and prints the new value when go.mod, go.sum or the
  # packages larder imports change.
  vendorHash = "sha256-wHP93JUvAwu+zlZS0trsIMENN5V4YyKIw3CAB0CyPsw=";

  subPackages = [ "cmd/larder" ];

  # Pure Go, as every release of larder is built.
  env.CGO_ENABLED = 0;

  ldflags = [
    "-s"
    "-w"
    "-X github.com/larder-cache/larder/internal/buildinfo.version=${finalAttrs.version}"
  ];

  # The unit tests of the leaf packages: parsers, decompressors, NAR
  # verification and configuration. They need no network, no service and no
  # Nix, so they run in the build sandbox, and they are where a compiler or
  # architecture difference would show (./test.sh runs everything, on
  # x86_64-linux only). The store, server and end-to-end tests need
  # PostgreSQL, MinIO and a Nix daemon: ./test.sh runs them.
  checkPhase = ''
    runHook preCheck
    # buildGoModule adds -trimpath for the build; the tests read testdata.
    export GOFLAGS=''${GOFLAGS//-trimpath/}
    go test -vet=off -p "$NIX_BUILD_CORES" \
      ./internal/config ./internal/nixkey ./internal/narinfo \
      ./internal/compression ./internal/narverify ./internal/presence
    runHook postCheck
  '';

  meta = {
    description = "Self-hosted Nix binary cache server with an S3 API";
    homepage = "https://github.com/larder-cache/larder";
    mainProgram = "larder";
    # The repository has no licence file yet; add meta.license with it.
  };
})
