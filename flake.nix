{
  description = "larder, a self-hosted Nix binary cache server";

  # No flake.lock is committed yet: it could not be made without fetching
  # nixpkgs. The first `nix flake lock` (or any nix build of the flake)
  # writes one; commit it.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # No release has been tagged: the version names the commit.
      date = self.lastModifiedDate or "19700101";
      version = "0-unstable-${builtins.substring 0 4 date}-${builtins.substring 4 2 date}-${builtins.substring 6 2 date}+${self.shortRev or self.dirtyShortRev or "dirty"}";
      larderFor = pkgs: (pkgs.callPackage ./nix/package.nix { }).overrideAttrs { inherit version; };

      # A NixOS system with larder enabled, to check the module with.
      nixosWith =
        system: larder:
        lib.nixosSystem {
          modules = [
            self.nixosModules.default
            {
              nixpkgs.hostPlatform = system;
              system.stateVersion = "26.05";
              boot.loader.grub.enable = false;
              fileSystems."/".device = "none";
              services.larder = {
                enable = true;
                settings = larder;
              };
            }
          ];
        };
    in
    {
      packages = forAllSystems (pkgs: {
        default = larderFor pkgs;
        larder = larderFor pkgs;
      });

      overlays.default = final: _prev: { larder = larderFor final; };

      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          # The flake's own build, made with the nixpkgs it pins, where it
          # has one for the system.
          services.larder.package = lib.mkDefault (
            self.packages.${pkgs.stdenv.hostPlatform.system}.default or (larderFor pkgs)
          );
        };

      checks = forAllSystems (
        pkgs:
        let
          inherit (pkgs.stdenv.hostPlatform) system;
        in
        {
          package = self.packages.${system}.default;
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          # larder check-config on the file the module writes.
          check-config =
            (nixosWith system {
              listen = "0.0.0.0:8080";
              public_url = "https://cache.example.org";
              meta = "postgres://larder@db.internal/larder?sslmode=require";
              max_nar_size = "64GiB";
              gc_interval = "6h";
            }).config.system.build.larderConfigCheck;
          # ... and that a bad setting fails the build, saying which.
          check-config-refuses =
            let
              bad = nixosWith system { max_signatures = 0; };
            in
            pkgs.runCommand "larder-check-config-refuses"
              { failed = pkgs.testers.testBuildFailure bad.config.system.build.larderConfigCheck; }
              ''
                grep -F "max_signatures: must be at least 1" "$failed/testBuildFailure.log"
                touch "$out"
              '';
          nixos = pkgs.testers.runNixOSTest (import ./nix/vm-test.nix { module = self.nixosModules.default; });
        }
      );

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [
            go_1_26
            gopls
            gotools
            postgresql
            minio
            minio-client
            awscli2
            s3cmd
            rclone
            curl
            bzip2
            xz
            zstd
          ];
          env.CGO_ENABLED = 0;
        };
      });
    };
}
