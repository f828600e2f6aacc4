# A NixOS VM test of the module, run by the flake's checks.nixos with
# pkgs.testers.runNixOSTest: a server runs larder from services.larder, a
# client reaches it through the opened firewall.
{ module }:
{
  name = "larder";

  nodes.server = {
    imports = [ module ];
    services.larder = {
      enable = true;
      openFirewall = true;
      settings = {
        listen = "0.0.0.0:8080";
        public_url = "http://server:8080";
        gc_interval = "6h";
      };
      # In the store only because this is a test: a real one is a secret.
      environmentFile = "/etc/larder-test.env";
    };
    environment.etc."larder-test.env".text = ''
      LARDER_LOG_LEVEL=debug
    '';
  };

  nodes.client =
    { pkgs, ... }:
    {
      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    start_all()

    server.wait_for_unit("larder.service")
    server.wait_for_open_port(8080)

    with subtest("the cache answers over the network"):
        client.wait_for_unit("multi-user.target")
        info = client.succeed("curl -sf http://server:8080/main/nix-cache-info")
        assert "StoreDir: /nix/store" in info, info

    with subtest("the service is the one the module describes"):
        show = server.succeed("systemctl show larder.service -p Type -p NotifyAccess -p WatchdogUSec -p DynamicUser -p User")
        for line in ["Type=notify", "NotifyAccess=main", "WatchdogUSec=30s", "DynamicUser=yes", "User=larder"]:
            assert line in show.splitlines(), show
        server.succeed("test -d /var/lib/private/larder && test -f /var/lib/larder/admin-token")
        # Exposure 2.0 at most (the threshold is in tenths); systemd 252 rates
        # this unit 1.2, newer ones weigh more settings.
        server.succeed("systemd-analyze security larder.service --threshold=20 --no-pager")

    with subtest("larder-admin runs commands with the service's settings and environment"):
        out = server.succeed("larder-admin check-config")
        assert "log_level = debug" in out, out
        assert "listen = 0.0.0.0:8080" in out, out
        server.succeed("larder-admin cache pubkey main | grep -q '^main\\.'")
        server.succeed("larder-admin token create --cache main --perm write --description vm-test")

    with subtest("the service sends its watchdog pings"):
        # Longer than WatchdogSec: a service that stopped pinging is killed
        # and restarted by now.
        server.sleep(40)
        server.succeed("test \"$(systemctl show larder.service -p NRestarts --value)\" = 0")
        server.succeed("systemctl is-active larder.service")

    with subtest("it stops cleanly"):
        server.succeed("systemctl stop larder.service")
        server.fail("systemctl is-failed larder.service")
  '';
}
