package e2e

import (
	"strings"
	"testing"
)

// TestRestart stops the server and starts it again on the same data
// directory: the cache keeps its key and serves what was pushed before, so
// the presence index was rebuilt from the database.
func TestRestart(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	c := n.buildPair("restart-" + randomHex(4))
	url := srv.cacheURL("main")
	key := srv.pubkey(t, "main")
	token := srv.token(t, "main", "write")
	n.withNetrc(srv.Host, token).run("nix", "copy", "--to", url+"?compression=zstd", c.Top)
	before := map[string]string{}
	for _, p := range c.Paths {
		code, body := httpDo(t, "GET", url+"/"+hashPart(p)+".narinfo", "", nil)
		if code != 200 {
			t.Fatalf("GET narinfo of %s: %d", p, code)
		}
		before[p] = body
	}

	srv = srv.restart(t)
	if got := srv.pubkey(t, "main"); got != key {
		t.Fatalf("after a restart the key of main is %s, want %s", got, key)
	}
	if !strings.Contains(srv.log.String(), "public key: "+key) {
		t.Errorf("after a restart the server printed another key:\n%s", srv.log.String())
	}
	if strings.Contains(srv.log.String(), "First start") {
		t.Errorf("the restarted server set up the data directory again:\n%s", srv.log.String())
	}
	for _, p := range c.Paths {
		code, body := httpDo(t, "GET", url+"/"+hashPart(p)+".narinfo", "", nil)
		if code != 200 || body != before[p] {
			t.Errorf("after a restart the narinfo of %s is %d %q, want 200 %q", p, code, body, before[p])
		}
	}
	reader := needNix(t)
	listed := lines(reader.run("nix", "path-info", "--store", url, "-r", c.Top))
	if !sameSet(listed, c.Paths) {
		t.Errorf("after a restart path-info lists %v, want %v", listed, c.Paths)
	}
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", key, "-r", c.Top)

	// Tokens survive too: the old token still pushes.
	more := n.buildPair("restart-more-" + randomHex(4))
	needNix(t).withNetrc(srv.Host, token).run("nix", "copy", "--to", url, more.Top)
	if code := srv.narInfoStatus(t, "main", more.Top); code != 200 {
		t.Errorf("narinfo pushed after the restart: %d, want 200", code)
	}
}
