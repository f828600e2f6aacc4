# larder for those who do not use flakes: nix-build, or
# `pkgs.callPackage ./nix/package.nix { }` from a configuration.
{
  pkgs ? import <nixpkgs> { },
}:
pkgs.callPackage ./nix/package.nix { }
