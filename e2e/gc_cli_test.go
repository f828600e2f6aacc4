package e2e

import (
	"strings"
	"testing"
)

// TestGCCLIRefuses: the collection commands refuse bad input with a
// message that says what was wrong, and change nothing.
func TestGCCLIRefuses(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--gc-interval", "0s")
	gp := newGoPath("kept", 1000)
	srv.pushGo(t, "main", srv.AdminToken, gp)
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"cache", "update", "main", "--retention", "soon"}, "retention"},
		{[]string{"cache", "update", "main", "--retention", "-3d"}, "retention"},
		{[]string{"cache", "update", "main", "--max-size", "-5"}, "max-size"},
		{[]string{"cache", "update", "main", "--max-size", "12XB"}, "max-size"},
		{[]string{"cache", "update", "nope", "--retention", "1d"}, "nope"},
		{[]string{"cache", "update", "main"}, "nothing to change"},
		{[]string{"pin", "add", "main", "/etc/passwd"}, "not a store path"},
		{[]string{"pin", "add", "main", "/nix/store/" + strings.Repeat("1", 32) + "-absent"}, "push it first"},
		{[]string{"pin", "add", "main", gp.StorePath, "--keep-revisions", "-1"}, "negative"},
		{[]string{"pin", "add", "main", gp.StorePath, "--name", "../x"}, "pin name"},
		{[]string{"pin", "add", "main", gp.StorePath, "--keep-revisions", "2", "--keep-days", "3"}, "keep-revisions"},
		{[]string{"pin", "add", "nope", gp.StorePath}, "nope"},
		{[]string{"pin", "remove", "main", "never-pinned"}, "never-pinned"},
		{[]string{"gc", "--cache", "nope"}, "nope"},
		{[]string{"gc", "extra"}, "no arguments"},
	} {
		out, errOut, err := srv.tryCLI(c.args...)
		if err == nil {
			t.Errorf("larder %s succeeded:\n%s", strings.Join(c.args, " "), out)
			continue
		}
		if !strings.Contains(errOut, c.says) {
			t.Errorf("larder %s said %q, which does not mention %q", strings.Join(c.args, " "), strings.TrimSpace(errOut), c.says)
		}
	}
	row := srv.cacheList(t)["main"]
	if row.Retention != "forever" || row.MaxSize != "-" {
		t.Errorf("refused updates changed the policy: retention %s, max size %s", row.Retention, row.MaxSize)
	}
	if got := lines(srv.cli(t, "pin", "list", "main")); len(got) > 1 {
		t.Errorf("refused commands made pins:\n%s", strings.Join(got, "\n"))
	}
	if code := srv.narInfoStatus(t, "main", gp.StorePath); code != 200 {
		t.Errorf("the cache lost %s: %d", gp.StorePath, code)
	}
}
