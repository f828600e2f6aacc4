package e2e

// The CLI part of the hostile-input catalogue; the list of where the whole
// catalogue lives is at the top of internal/nixhttp/catalogue_test.go.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cliHostileCase is a command line that must fail: with exit status exit,
// saying says on standard error, printing nothing on standard output, and
// changing nothing.
type cliHostileCase struct {
	name   string
	args   []string
	config string   // if set, written to a file passed as --config
	env    []string // KEY=VALUE for the command
	exit   int
	says   string
}

// exitStatus is the exit status of a finished command, -1 if it did not
// run.
func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

// cliState is what the commands could change: the caches with their
// policies and sizes, the tokens, the pins of main, the files under blobs
// and whether the pushed path is served.
func (s *server) cliState(t *testing.T, storePath string) string {
	t.Helper()
	code, caches := httpDo(t, "GET", s.URL+"/_larder/api/caches", s.AdminToken, nil)
	if code != 200 {
		t.Fatalf("GET /_larder/api/caches: %d %s", code, caches)
	}
	code, pins := httpDo(t, "GET", s.URL+"/_larder/api/caches/main/pins", s.AdminToken, nil)
	if code != 200 {
		t.Fatalf("GET pins of main: %d %s", code, pins)
	}
	return fmt.Sprintf("caches %s\npins %s\ntokens\n%s\nblobs %d\nnarinfo %d\n", caches, pins,
		s.cli(t, "token", "list"), s.countFiles(t, "blobs"), s.narInfoStatus(t, "main", storePath))
}

// TestCLIHostile runs larder's commands with bad flags, names, paths,
// settings and configuration files, against a running server's data
// directory: each fails with a message naming what was wrong, and the
// caches, tokens, pins and files stay as they were. (TestGCCLIRefuses and
// TestCLITokenAndCacheNames have more.)
func TestCLIHostile(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-interval", "0s")
	srv.cli(t, "cache", "create", "other")
	srv.token(t, "main", "write", "--description", "ci")
	gp := newGoPath("kept", 1000)
	srv.pushGo(t, "main", srv.AdminToken, gp)
	srv.cli(t, "pin", "add", "main", gp.StorePath, "--name", "release")
	absent := "/nix/store/" + strings.Repeat("0", 32) + "-absent"

	cases := []cliHostileCase{
		// Tokens.
		{name: "token create without --perm", args: []string{"token", "create", "--cache", "main"}, exit: 2, says: "usage: larder token create"},
		{name: "token expiry not a duration", args: []string{"token", "create", "--cache", "main", "--perm", "read", "--expires", "soon"}, exit: 1, says: `expiry "soon" is not a positive duration`},
		{name: "token expiry negative", args: []string{"token", "create", "--cache", "main", "--perm", "read", "--expires", "-5d"}, exit: 1, says: `expiry "-5d" is not a positive duration`},
		{name: "token scope with traversal", args: []string{"token", "create", "--cache", "../etc", "--perm", "read"}, exit: 1, says: `scope "../etc" is not a cache name`},
		{name: "S3 key scope an unclosed glob", args: []string{"token", "create", "--cache", "ci-[", "--perm", "write", "--s3"}, exit: 1, says: `scope "ci-[" is not a cache name`},
		{name: "token for a missing cache", args: []string{"token", "create", "--cache", "nosuch", "--perm", "read"}, exit: 1, says: `no cache named "nosuch"`},
		{name: "token create unknown flag", args: []string{"token", "create", "--cache", "main", "--perm", "read", "--forever"}, exit: 2, says: "unknown flag --forever"},
		{name: "token revoke not a number", args: []string{"token", "revoke", "1;DROP TABLE tokens"}, exit: 2, says: "is not a number"},
		{name: "token revoke unknown ID", args: []string{"token", "revoke", "999999"}, exit: 1, says: "there is no token with ID 999999"},
		{name: "token unknown subcommand", args: []string{"token", "steal"}, exit: 2, says: "unknown command: token steal"},
		{name: "token list with a flag of token create", args: []string{"token", "list", "--perm", "admin"}, exit: 2, says: "unknown flag --perm (a flag of larder token create"},
		{name: "token revoke with a flag of token create", args: []string{"token", "revoke", "1", "--s3"}, exit: 2, says: "unknown flag --s3"},
		// Caches.
		{name: "cache name with traversal", args: []string{"cache", "create", "../evil"}, exit: 1, says: `cache name "../evil" is not valid`},
		{name: "cache name with a reserved prefix", args: []string{"cache", "create", "xn--evil"}, exit: 1, says: "reserved"},
		{name: "cache that exists", args: []string{"cache", "create", "main"}, exit: 1, says: `cache "main" already exists`},
		{name: "cache priority out of range", args: []string{"cache", "create", "prio", "--priority", "5000"}, exit: 1, says: "priority 5000 is out of range"},
		{name: "cache max size NaN", args: []string{"cache", "create", "nan-size", "--max-size", "NaN"}, exit: 1, says: `--max-size: "NaN" is not a size`},
		{name: "cache retention not a duration", args: []string{"cache", "create", "keep", "--retention", "forever-ish"}, exit: 1, says: "--retention"},
		{name: "cache update max size NaN", args: []string{"cache", "update", "main", "--max-size", "NaN"}, exit: 1, says: `--max-size: "NaN" is not a size`},
		{name: "cache delete a missing cache", args: []string{"cache", "delete", "nosuch"}, exit: 1, says: `no cache named "nosuch"`},
		{name: "cache unknown subcommand", args: []string{"cache", "shred", "main"}, exit: 2, says: "unknown command: cache shred"},
		{name: "cache list with flags of cache create", args: []string{"cache", "list", "--private", "--retention", "5d"}, exit: 2, says: "unknown flag --private (a flag of larder cache create"},
		{name: "cache delete with a policy flag", args: []string{"cache", "delete", "other", "--max-size", "1GiB"}, exit: 2, says: "unknown flag --max-size"},
		{name: "cache update with a flag of cache create", args: []string{"cache", "update", "main", "--retention", "1d", "--private"}, exit: 2, says: "unknown flag --private"},
		{name: "cache create with two names", args: []string{"cache", "create", "one", "two"}, exit: 2, says: "takes 1 argument(s), got 2"},
		// Pins.
		{name: "pin a store path with traversal", args: []string{"pin", "add", "main", "/nix/store/../../etc/passwd"}, exit: 1, says: "is not a store path"},
		{name: "pin add without a path", args: []string{"pin", "add", "main"}, exit: 2, says: "usage: larder pin add"},
		{name: "pin remove with a flag of pin add", args: []string{"pin", "remove", "main", "release", "--keep-days", "1"}, exit: 2, says: "unknown flag --keep-days (a flag of larder pin add"},
		{name: "gc with a flag of cache update", args: []string{"gc", "--retention", "1s"}, exit: 2, says: "unknown flag --retention"},
		{name: "pin list of a missing cache", args: []string{"pin", "list", "nosuch"}, exit: 1, says: `no cache named "nosuch"`},
		{name: "pin a path of another cache", args: []string{"pin", "add", "other", gp.StorePath}, exit: 1, says: "push it first"},
		{name: "unpin a path that is not pinned", args: []string{"pin", "remove", "main", "release", "--path", absent}, exit: 1, says: "release"},
		// Settings and configuration files.
		{name: "config max_decompression_ratio nan", args: []string{"check-config"}, config: "max_decompression_ratio = nan\n", exit: 1, says: "max_decompression_ratio"},
		{name: "config body_timeout not a duration", args: []string{"check-config"}, config: "body_timeout = \"soon\"\n", exit: 1, says: `"soon" is not a duration`},
		{name: "config listen of the wrong type", args: []string{"check-config"}, config: "listen = 8080\n", exit: 1, says: "incompatible types"},
		{name: "config not TOML", args: []string{"check-config"}, config: "listen = \"127.0.0.1:8080\n", exit: 1, says: "read config file"},
		{name: "config blobs of another scheme", args: []string{"check-config"}, config: "blobs = \"ftp://example.org/blobs\"\n", exit: 1, says: `blobs: "ftp://example.org/blobs" is not`},
		{name: "config file missing", args: []string{"check-config", "--config", "/nonexistent/larder.toml"}, exit: 1, says: "/nonexistent/larder.toml"},
		{name: "environment setting not a size", args: []string{"check-config"}, env: []string{"LARDER_MAX_UPLOAD_SIZE=lots"}, exit: 1, says: `LARDER_MAX_UPLOAD_SIZE: "lots" is not a size`},
		{name: "unknown command", args: []string{"frobnicate"}, exit: 2, says: `unknown command "frobnicate"`},
	}
	before := srv.cliState(t, gp.StorePath)
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name] {
			t.Fatalf("two cases named %q", c.name)
		}
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			args := c.args
			if c.config != "" {
				file := filepath.Join(t.TempDir(), "larder.toml")
				must(t, os.WriteFile(file, []byte(c.config), 0o644))
				args = append(args, "--config", file)
			}
			args = append(append(args, "--data", srv.Data), srv.extra...)
			out, errOut, err := runLarder(c.env, args...)
			if got := exitStatus(err); got != c.exit {
				t.Fatalf("larder %s: exit status %d (%v), want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), got, err, c.exit, out, errOut)
			}
			if !strings.Contains(errOut, c.says) {
				t.Errorf("stderr %q does not say %q", tail(errOut, 5), c.says)
			}
			if out != "" {
				t.Errorf("a failed command printed on stdout: %q", out)
			}
			if got := srv.cliState(t, gp.StorePath); got != before {
				t.Fatalf("the command changed the server's state:\nbefore:\n%s\nafter:\n%s", before, got)
			}
		})
	}
}

// TestCLIServeBadConfig starts the server with a configuration file that
// has a bad value: it exits at once, naming the setting, without creating
// its data directory or listening.
func TestCLIServeBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file, data, addr := filepath.Join(dir, "larder.toml"), filepath.Join(dir, "data"), freeAddr(t)
	must(t, os.WriteFile(file, []byte("max_upload_size = \"-1GiB\"\n"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, larderBin, "serve", "--config", file, "--data", data, "--listen", addr)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LARDER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("larder serve with a bad configuration did not exit:\n%s", out)
	}
	if got := exitStatus(err); got != 1 || !strings.Contains(string(out), `"max_upload_size"): "-1GiB" is not a size`) {
		t.Fatalf("larder serve with max_upload_size -1GiB: exit %d, output:\n%s", got, out)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("the refused start created its data directory (%v)", err)
	}
	if code, err := httpGetQuick("http://" + addr + "/_larder/health"); err == nil {
		t.Errorf("something answers %d on %s", code, addr)
	}
}
