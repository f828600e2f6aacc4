package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCachePubkey checks that `larder cache pubkey main` prints exactly one
// line, a Nix public key, and that it is the key the server printed when it
// started.
func TestCachePubkey(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	out := srv.cli(t, "cache", "pubkey", "main")
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("cache pubkey printed %q, want exactly one line", out)
	}
	key := strings.TrimSuffix(out, "\n")
	name, b64, ok := strings.Cut(key, ":")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if !ok || name == "" || err != nil || len(raw) != 32 {
		t.Fatalf("cache pubkey printed %q, want keyname:<base64 of 32 bytes>", key)
	}
	if !strings.HasPrefix(name, "main.") {
		t.Errorf("key name %q does not name the cache main", name)
	}
	printed := regexp.MustCompile(`(?m)^cache main \(public\): \S+\n\s+public key: (\S+)$`).FindStringSubmatch(srv.log.String())
	if printed == nil {
		t.Fatalf("the server did not print the key of cache main at start:\n%s", srv.log.String())
	}
	if printed[1] != key {
		t.Errorf("the server printed key %s at start, cache pubkey prints %s", printed[1], key)
	}
	if _, errOut, err := srv.tryCLI("cache", "pubkey", "nosuchcache"); err == nil || !strings.Contains(errOut, "no cache named") {
		t.Errorf("cache pubkey of a missing cache: err %v, stderr %q", err, errOut)
	}
}

// TestCLITokenAndCacheNames checks token create's output and cache name
// validation.
func TestCLITokenAndCacheNames(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	tok := srv.token(t, "main", "read") // checks the one-line output
	if code, _ := httpDo(t, "GET", srv.cacheURL("main")+"/nix-cache-info", tok, nil); code != 200 {
		t.Errorf("the new token cannot read main: %d", code)
	}
	for _, bad := range []string{"Bad_Name", "ab", "dash-", "192.168.1.1"} {
		out, errOut, err := srv.tryCLI("cache", "create", bad)
		if err == nil {
			t.Errorf("cache create %s succeeded:\n%s", bad, out)
			continue
		}
		if !strings.Contains(errOut, "is not valid") {
			t.Errorf("cache create %s failed without saying why the name is not valid:\n%s", bad, errOut)
		}
	}
	if list := srv.cli(t, "cache", "list"); strings.Contains(strings.ToLower(list), "bad_name") {
		t.Errorf("cache list shows a refused cache:\n%s", list)
	}
	if _, errOut, err := srv.tryCLI("token", "create", "--cache", "main", "--perm", "superuser"); err == nil || !strings.Contains(errOut, "superuser") {
		t.Errorf("token create with a bad permission: err %v, stderr %q", err, errOut)
	}
	if out := srv.cli(t, "cache", "create", "good-name.2"); !strings.Contains(out, "created cache good-name.2") {
		t.Errorf("cache create good-name.2 printed %q", out)
	}
}

// settingValue returns the value check-config prints for a setting.
func settingValue(t *testing.T, out, name string) string {
	t.Helper()
	for _, l := range lines(out) {
		if k, v, ok := strings.Cut(l, " = "); ok && k == name {
			return v
		}
	}
	t.Fatalf("check-config did not print %s:\n%s", name, out)
	return ""
}

// TestCheckConfig checks that check-config accepts a valid configuration,
// refuses a bad one, and applies the layers in order: file, then LARDER_*
// environment, then flags.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")

	out, errOut, err := runLarder(nil, "check-config", "--data", data)
	if err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("check-config of the defaults: %v\n%s%s", err, out, errOut)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("check-config created the data directory (%v)", err)
	}
	for _, bad := range [][]string{
		{"--listen", "not-an-address"},
		{"--log-level", "loud"},
		{"--max-upload-size", "lots"},
	} {
		out, errOut, err := runLarder(nil, append([]string{"check-config", "--data", data}, bad...)...)
		if err == nil {
			t.Errorf("check-config %v succeeded:\n%s", bad, out)
		} else if flag := strings.TrimPrefix(bad[0], "--"); !strings.Contains(errOut, strings.ReplaceAll(flag, "-", "_")) && !strings.Contains(errOut, flag) {
			t.Errorf("check-config %v failed without naming the setting:\n%s", bad, errOut)
		}
	}

	file := filepath.Join(dir, "larder.toml")
	must(t, os.WriteFile(file, []byte("listen = \"127.0.0.1:1111\"\nlog_level = \"warn\"\ndata = \""+data+"\"\n"), 0o644))
	env := []string{"LARDER_LISTEN=127.0.0.1:2222"}
	for _, tc := range []struct {
		name, listen string
		env, args    []string
	}{
		{"file", "127.0.0.1:1111", nil, []string{"--config", file}},
		{"file via LARDER_CONFIG", "127.0.0.1:1111", []string{"LARDER_CONFIG=" + file}, nil},
		{"environment over file", "127.0.0.1:2222", env, []string{"--config", file}},
		{"flag over environment", "127.0.0.1:3333", env, []string{"--config", file, "--listen", "127.0.0.1:3333"}},
		{"flag before --config", "127.0.0.1:3333", env, []string{"--listen=127.0.0.1:3333", "--config=" + file}},
	} {
		out, errOut, err := runLarder(tc.env, append([]string{"check-config"}, tc.args...)...)
		if err != nil {
			t.Errorf("%s: check-config: %v\n%s", tc.name, err, errOut)
			continue
		}
		if got := settingValue(t, out, "listen"); got != tc.listen {
			t.Errorf("%s: listen = %s, want %s", tc.name, got, tc.listen)
		}
		if got := settingValue(t, out, "log_level"); got != "warn" {
			t.Errorf("%s: log_level = %s, want warn from the file", tc.name, got)
		}
		if got := settingValue(t, out, "data"); got != data {
			t.Errorf("%s: data = %s, want %s from the file", tc.name, got, data)
		}
	}

	must(t, os.WriteFile(file, []byte("listen = \"127.0.0.1:1111\"\nlisten_port = 4\n"), 0o644))
	if _, errOut, err := runLarder(nil, "check-config", "--config", file); err == nil || !strings.Contains(errOut, "listen_port") {
		t.Errorf("check-config with an unknown setting in the file: err %v, stderr %q", err, errOut)
	}
}

// TestCheckConfigHidesSecrets: check-config prints every setting, from the
// file, the environment and flags, with the passwords and keys in them
// replaced; a refused URL is named without its password; and the server
// neither logs nor serves the password of its public URL.
func TestCheckConfigHidesSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "larder.toml")
	must(t, os.WriteFile(file, []byte(fmt.Sprintf("data = %q\nmeta = %q\n", filepath.Join(dir, "data"),
		"postgres://larder:pg-s3cr3t@db.internal:5432/larder?sslmode=require&sslpassword=ssl-s3cr3t")), 0o600))
	env := []string{"LARDER_BLOBS=s3://nix-cache/larder?endpoint=https://garage.internal:3900&access_key=AKIAHIDDENKEY&secret_key=blobs-s3cr3t"}
	secrets := []string{"pg-s3cr3t", "ssl-s3cr3t", "AKIAHIDDENKEY", "blobs-s3cr3t", "url-s3cr3t"}
	noSecrets := func(what, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s shows the secret %q:\n%s", what, s, text)
			}
		}
	}

	out, errOut, err := runLarder(env, "check-config", "--config", file, "--public-url", "https://ci:url-s3cr3t@cache.example.org")
	if err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("check-config: %v\n%s%s", err, out, errOut)
	}
	noSecrets("check-config", out+errOut)
	for name, want := range map[string]string{
		"meta":       "postgres://larder:xxxxx@db.internal:5432/larder?sslmode=require&sslpassword=xxxxx",
		"blobs":      "s3://nix-cache/larder?endpoint=https://garage.internal:3900&access_key=xxxxx&secret_key=xxxxx",
		"public_url": "https://xxxxx@cache.example.org",
	} {
		if got := settingValue(t, out, name); got != want {
			t.Errorf("check-config prints %s = %s, want %s", name, got, want)
		}
	}

	_, errOut, err = runLarder(nil, "check-config", "--data", filepath.Join(dir, "data"), "--meta", "mysql://larder:pg-s3cr3t@db/larder")
	if err == nil || !strings.Contains(errOut, "meta:") {
		t.Errorf("check-config of a mysql:// meta: err %v, stderr %q", err, errOut)
	}
	noSecrets("check-config's refusal", errOut)

	srv := startServer(t, "--public-url", "https://ci:url-s3cr3t@cache.example.org")
	code, index := httpDo(t, "GET", srv.URL+"/", "", nil)
	if code != 200 || !strings.Contains(index, "https://xxxxx@cache.example.org/main") {
		t.Errorf("GET /: %d\n%s", code, index)
	}
	noSecrets("the index page", index)
	srv.waitLog(t, "msg=serving")
	noSecrets("the server's output", srv.log.String())
}

// TestServerLifecycle checks the first start (cache main, an admin token
// readable by its owner only) and that SIGTERM stops the server cleanly.
func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	info, err := os.Stat(filepath.Join(srv.Data, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("admin-token has mode %o, want 600", perm)
	}
	if !strings.HasPrefix(srv.AdminToken, "lrd_") || strings.ContainsAny(srv.AdminToken, " \n") {
		t.Errorf("admin-token holds %q, want one token", srv.AdminToken)
	}
	if !strings.Contains(srv.log.String(), "First start") {
		t.Errorf("the first start did not say so:\n%s", srv.log.String())
	}
	if code, body := httpDo(t, "GET", srv.cacheURL("main")+"/nix-cache-info", "", nil); code != 200 || !strings.Contains(body, "StoreDir: /nix/store") {
		t.Errorf("GET main/nix-cache-info: %d %q", code, body)
	}
	// The admin token is valid for every cache, so it may write to main.
	if code, body := httpDo(t, "PUT", srv.cacheURL("main")+"/nix-cache-info", srv.AdminToken,
		strings.NewReader("StoreDir: /nix/store\n")); code >= 300 {
		t.Errorf("PUT nix-cache-info with the admin token: %d %s", code, body)
	}

	if err := srv.terminate(t); err != nil {
		t.Fatalf("after SIGTERM larder exited with %v, want exit code 0:\n%s", err, srv.log.String())
	}
	srv.waitLog(t, "msg=stopped")
	if code, err := httpGetQuick(srv.URL + "/_larder/health"); err == nil {
		t.Errorf("the server still answers (%d) after it exited", code)
	}
}

// TestDataFilePermissions starts larder on a data directory that other
// users can enter, as a directory made by hand or by a package usually is,
// and checks that no file larder writes there is readable by them: the
// database holds every cache's secret signing key and the token hashes, the
// blobs the NARs of private caches.
func TestDataFilePermissions(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	must(t, os.Chmod(data, 0o755))
	srv := startServerOn(t, data, freeAddr(t))
	srv.cli(t, "cache", "create", "secret", "--private")
	n := needNix(t)
	c := n.buildPair("perm-" + randomHex(4))
	n.withNetrc(srv.Host, srv.AdminToken).run("nix", "copy", "--to", srv.cacheURL("secret"), c.Top)

	var checked []string
	err := filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == data {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		checked = append(checked, rel)
		if perm := info.Mode().Perm(); perm&0o007 != 0 {
			t.Errorf("%s has mode %04o: other users of the host have access to it", rel, perm)
		}
		return nil
	})
	must(t, err)
	for _, want := range []string{"admin-token", "larder.db"} {
		if !slices.Contains(checked, want) {
			t.Errorf("the data directory has no %s (it has %v)", want, checked)
		}
	}
}
