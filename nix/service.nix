# The [Service] settings of larder.service under NixOS, from plain values.
#
# module.nix passes its options here; ./test.sh evaluates this file with
# nix-instantiate alone (nix/nix_test.go), which is why it uses builtins only
# and no nixpkgs. The settings every larder unit shares, the hardening among
# them, come from contrib/service.json, which contrib/larder.service is
# generated from too.
{
  # The package, or its store path: ExecStart runs its bin/larder.
  larder,
  # The TOML configuration file, passed with --config.
  configFile,
  # The settings written to configFile (listen, data, blobs, meta are read).
  settings,
  # A file of VAR=value lines systemd reads at start (secrets), or null.
  environmentFile ? null,
}:

let
  common = builtins.fromJSON (builtins.readFile ../contrib/service.json);

  # systemd's StateDirectory=larder.
  stateDir = "/var/lib/larder";

  within = dir: path: path == dir || builtins.substring 0 (builtins.stringLength dir + 1) path == dir + "/";

  # The port of a host:port, as a number; null when it is a service name.
  # Leading zeros are dropped, as Go's net.Listen drops them.
  portOf =
    hostPort:
    let
      m = builtins.match ".*:0*([0-9]+)" hostPort;
    in
    if m == null then null else builtins.fromJSON (builtins.head m);

  port = portOf (settings.listen or "127.0.0.1:8080");
  privileged = port != null && port > 0 && port < 1024;

  # What larder writes to besides the state directory: the data directory,
  # a blobs directory (file:///DIR) and the directory of a SQLite database
  # (sqlite:///FILE), wherever they are not under it. ProtectSystem=strict
  # makes everything else read-only.
  after = prefix: url: if builtins.substring 0 (builtins.stringLength prefix) url == prefix then builtins.substring (builtins.stringLength prefix) (-1) url else null;
  withoutQuery = s: builtins.head (builtins.split "\\?" s);
  blobsDir = after "file://" (withoutQuery (settings.blobs or ""));
  metaFile = after "sqlite://" (withoutQuery (settings.meta or ""));
  written =
    [ settings.data ]
    ++ (if blobsDir != null then [ blobsDir ] else [ ])
    ++ (if metaFile != null then [ (dirOf metaFile) ] else [ ]);
  elsewhere = builtins.filter (path: !(within stateDir path)) written;
  readWritePaths = builtins.foldl' (acc: path: if builtins.elem path acc then acc else acc ++ [ path ]) [ ] elsewhere;
in
{
  inherit port privileged readWritePaths;

  serviceConfig =
    common
    // {
      ExecStart = "${larder}/bin/larder serve --config ${configFile}";
      # A user made for the service while it runs, unless users.users.larder
      # declares one (systemd then uses that one).
      DynamicUser = true;
      User = "larder";
      Group = "larder";
      StateDirectory = "larder";
      StateDirectoryMode = "0700";
      # Relative paths in the settings are under the state directory.
      WorkingDirectory = stateDir;
    }
    // (if environmentFile != null then { EnvironmentFile = environmentFile; } else { })
    // (if readWritePaths != [ ] then { ReadWritePaths = readWritePaths; } else { })
    // (
      # Only a port below 1024 needs a capability, and then only this one.
      if privileged then
        {
          AmbientCapabilities = "CAP_NET_BIND_SERVICE";
          CapabilityBoundingSet = "CAP_NET_BIND_SERVICE";
        }
      else
        { }
    );
}
