# The NixOS module of larder: services.larder.
#
# It writes the settings to a TOML file in the store (linked to
# /etc/larder/larder.toml), checks that file with `larder check-config` when
# the system is built, and runs `larder serve --config FILE` as a hardened
# systemd service with a dynamic user and its data in /var/lib/larder. The
# [Service] settings come from service.nix.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.larder;
  inherit (lib) mkOption types;

  settingsFormat = pkgs.formats.toml { };

  # Typed settings left unset (null) are not written, so that larder's own
  # defaults apply to them.
  settings = lib.filterAttrs (_: value: value != null) cfg.settings;
  configFile = settingsFormat.generate "larder.toml" settings;

  service = import ./service.nix {
    larder = cfg.package;
    inherit configFile settings;
    inherit (cfg) environmentFile;
  };

  # A bad setting fails the build of the system, not the start of the
  # service. check-config only reads and validates: it opens no store and
  # connects to nothing, so it needs neither the data directory nor the
  # secrets of environmentFile, which the build cannot see (settings those
  # set are checked when the service starts). Nothing from the builder's
  # environment reaches it: the sandbox has no LARDER_* variables.
  configCheck = pkgs.runCommand "larder-check-config" { nativeBuildInputs = [ cfg.package ]; } ''
    larder check-config --config ${configFile} > "$out"
  '';

  # larder's commands (cache create, token create, gc, …) run as the
  # service's user on its data, with its settings and environmentFile, so
  # that the files they write stay the service's.
  admin = pkgs.writeShellScriptBin "larder-admin" ''
    exec ${config.systemd.package}/bin/systemd-run --quiet --pipe --wait --collect \
      --property=DynamicUser=yes --property=User=larder --property=Group=larder \
      --property=StateDirectory=larder --property=WorkingDirectory=/var/lib/larder \
      ${
        lib.concatMapStringsSep " " (path: "--property=ReadWritePaths=${lib.escapeShellArg path}") service.readWritePaths
      } \
      ${lib.optionalString (cfg.environmentFile != null) "--property=EnvironmentFile=${lib.escapeShellArg cfg.environmentFile}"} \
      --setenv=LARDER_CONFIG=${configFile} \
      ${cfg.package}/bin/larder "$@"
  '';
in
{
  options.services.larder = {
    enable = lib.mkEnableOption "larder, a Nix binary cache server";

    package = mkOption {
      type = types.package;
      default = pkgs.larder or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.larder or (pkgs.callPackage ./package.nix { })";
      description = "The larder package to run.";
    };

    settings = mkOption {
      description = ''
        larder's settings, written to a TOML file passed with `--config`: any
        key of the configuration table in larder's README. The file is in the
        Nix store, readable by every user: put secrets (passwords in `meta`,
        S3 keys) in {option}`services.larder.environmentFile` instead.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          listen = "0.0.0.0:8080";
          public_url = "https://cache.example.org";
          max_nar_size = "64GiB";
          gc_interval = "6h";
        }
      '';
      type = types.submodule {
        freeformType = settingsFormat.type;
        options = {
          listen = mkOption {
            type = types.str;
            default = "127.0.0.1:8080";
            description = "Address to listen on (host:port).";
          };
          data = mkOption {
            type = types.str;
            default = "/var/lib/larder";
            description = ''
              Data directory: the SQLite database, blobs and the admin-token
              of the first start. Under /var/lib/larder it is the service's
              state directory; anywhere else it must exist and belong to a
              static `users.users.larder`, and it is added to ReadWritePaths.
            '';
          };
          public_url = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "https://cache.example.org";
            description = "URL clients reach larder at (default: http://LISTEN).";
          };
          blobs = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "s3://nix-cache/larder?endpoint=https://garage.internal:3900&region=garage";
            description = "Where blobs go (default: file://DATA/blobs). S3 credentials come from `AWS_*` in environmentFile.";
          };
          meta = mkOption {
            type = types.nullOr types.str;
            default = null;
            example = "postgres://larder@db.internal/larder?sslmode=require";
            description = "Where metadata goes (default: sqlite://DATA/larder.db). Give the password as `PGPASSWORD` in environmentFile.";
          };
          log_level = mkOption {
            type = types.nullOr (
              types.enum [
                "debug"
                "info"
                "warn"
                "error"
              ]
            );
            default = null;
            description = "Log level (default: info).";
          };
          log_format = mkOption {
            type = types.nullOr (
              types.enum [
                "text"
                "json"
              ]
            );
            default = null;
            description = "Log format (default: text).";
          };
        };
      };
    };

    environmentFile = mkOption {
      # A string, never a Nix path: a path such as ./larder.env would be
      # copied into the world-readable store as soon as it is used.
      type = types.nullOr (types.externalPath or (types.strMatching "/.*"));
      default = null;
      example = "/run/secrets/larder.env";
      description = ''
        A file of `VAR=value` lines that systemd reads when the service
        starts, for secrets: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
        `PGPASSWORD`, or any `LARDER_*` setting. It is not copied into the
        store; give it as a string, e.g. from sops-nix or agenix.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Whether to open the TCP port of `settings.listen` in the firewall.";
    };

    checkConfig = mkOption {
      type = types.bool;
      default = pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform;
      defaultText = lib.literalExpression "pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform";
      description = ''
        Whether to run `larder check-config` on the settings when the system
        is built. It runs the service's larder, so a cross-built system
        cannot.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.settings.data;
        message = "services.larder.settings.data must be an absolute path, not ${cfg.settings.data}";
      }
      {
        assertion = cfg.openFirewall -> service.port != null;
        message = "services.larder.openFirewall needs a port number in settings.listen, not ${cfg.settings.listen}";
      }
    ];

    environment.etc."larder/larder.toml".source = configFile;
    environment.systemPackages = [ admin ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ service.port ];

    systemd.services.larder = {
      description = "larder Nix binary cache";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      inherit (service) serviceConfig;
    };

    system.checks = lib.optional cfg.checkConfig configCheck;
    # The check alone, to build it without the whole system.
    system.build.larderConfigCheck = configCheck;
  };
}
