package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestPushRefused pushes without credentials, with a read token and with a
// write token of another cache: each push fails and stores nothing.
func TestPushRefused(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.cli(t, "cache", "create", "second")
	n := needNix(t)
	c := n.buildPair("refused-" + randomHex(4))
	url := srv.cacheURL("main")
	readTok := srv.token(t, "main", "read")
	otherTok := srv.token(t, "second", "write")

	cases := []struct {
		name   string
		runner *nix
		args   []string
		status string
	}{
		{"no credentials", needNix(t), nil, "401"},
		{"read token", needNix(t).withNetrc(srv.Host, readTok), nil, "403"},
		{"other cache's write token", needNix(t), []string{"--netrc-file", n.netrcFile(srv.Host, otherTok)}, "403"},
	}
	for _, tc := range cases {
		args := append(append([]string{"nix", "copy", "--to", url}, tc.args...), c.Top)
		errOut := tc.runner.fails(args...)
		if !strings.Contains(errOut, "HTTP error "+tc.status) {
			t.Errorf("%s: nix copy failed, but not with HTTP %s:\n%s", tc.name, tc.status, errOut)
		}
		if got := srv.countFiles(t, "blobs"); got != 0 {
			t.Errorf("%s: the refused push left %d blobs", tc.name, got)
		}
		for _, p := range c.Paths {
			if code := srv.narInfoStatus(t, "main", p); code != 404 {
				t.Errorf("%s: narinfo of %s: %d after a refused push, want 404", tc.name, p, code)
			}
		}
	}
	// The same closure goes through with a write token (given with
	// --netrc-file this time), so the refusals above were about the
	// credentials.
	writer := needNix(t)
	writer.run("nix", "copy", "--netrc-file", writer.netrcFile(srv.Host, srv.token(t, "main", "write")), "--to", url, c.Top)
	for _, p := range c.Paths {
		if code := srv.narInfoStatus(t, "main", p); code != 200 {
			t.Errorf("narinfo of %s: %d after an allowed push, want 200", p, code)
		}
	}
}

// TestPrivateCache checks that a private cache cannot be read without a
// token (path-info and substitution fail, and the server logs why) and can
// with a read token sent through a netrc file.
func TestPrivateCache(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.cli(t, "cache", "create", "secret", "--private")
	url := srv.cacheURL("secret")
	key := srv.pubkey(t, "secret")
	n := needNix(t)
	c := n.buildPair("private-" + randomHex(4))
	hashes := n.narHashes("", c.Paths)
	files := snapshot(t, c.Paths)
	n.withNetrc(srv.Host, srv.AdminToken).run("nix", "copy", "--to", url, c.Top)
	n.deleteLocal(append(append([]string{}, c.Paths...), c.Drvs...)...)
	substArgs := []string{"nix-store", "-r", c.Top, "--option", "substituters", url, "--option", "trusted-public-keys", key}

	anon := needNix(t)
	anon.fails("nix", "path-info", "--store", url, c.Top)
	srv.waitLog(t, "read denied")
	anon.fails(substArgs...)
	if _, _, err := anon.try("nix-store", "--check-validity", c.Top); err == nil {
		t.Fatalf("%s was substituted from a private cache without a token", c.Top)
	}
	if code, _ := httpDo(t, "GET", url+"/"+hashPart(c.Top)+".narinfo", "", nil); code != 401 {
		t.Errorf("GET narinfo without a token: %d, want 401", code)
	}
	wrongTok := srv.token(t, "main", "read")
	if code, _ := httpDo(t, "GET", url+"/"+hashPart(c.Top)+".narinfo", wrongTok, nil); code != 403 {
		t.Errorf("GET narinfo with another cache's read token: %d, want 403", code)
	}

	reader := needNix(t).withNetrc(srv.Host, srv.token(t, "secret", "read"))
	listed := lines(reader.run("nix", "path-info", "--store", url, "-r", c.Top))
	if !sameSet(listed, c.Paths) {
		t.Errorf("path-info with a read token lists %v, want %v", listed, c.Paths)
	}
	reader.run(substArgs...)
	checkRestored(t, reader, "substituting from the private cache", c, hashes, files)
}

// TestTokenRevoked revokes a write token and a read token on a running
// server: each stops working at once.
func TestTokenRevoked(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.cli(t, "cache", "create", "secret", "--private")
	n := needNix(t)
	seed := randomHex(4)
	first := n.buildPair("revoke-a-" + seed)
	second := n.buildPair("revoke-b-" + seed)
	url := srv.cacheURL("secret")

	writeDesc, readDesc := "writer "+seed, "reader "+seed
	writer := needNix(t).withNetrc(srv.Host, srv.token(t, "secret", "write", "--description", writeDesc))
	reader := needNix(t).withNetrc(srv.Host, srv.token(t, "secret", "read", "--description", readDesc))
	writer.run("nix", "copy", "--to", url, first.Top)
	reader.run("nix", "path-info", "--store", url, first.Top)

	srv.cli(t, "token", "revoke", srv.tokenID(t, writeDesc))
	errOut := writer.fails("nix", "copy", "--to", url, second.Top)
	if !strings.Contains(errOut, "HTTP error 401") {
		t.Errorf("push with a revoked token failed, but not with 401:\n%s", errOut)
	}
	for _, p := range second.Paths {
		if code := srv.narInfoStatus(t, "secret", p); code != 404 {
			t.Errorf("narinfo of %s: %d after a push with a revoked token, want 404", p, code)
		}
	}

	srv.cli(t, "token", "revoke", srv.tokenID(t, readDesc))
	reader.forget()
	reader.fails("nix", "path-info", "--store", url, first.Top)
	srv.waitLog(t, "the token is not valid (unknown or revoked)")
}

// TestTokenExpires gives a reader a token that expires in a few seconds:
// it reads the private cache through netrc until then, and is refused after.
func TestTokenExpires(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	srv.cli(t, "cache", "create", "secret", "--private")
	n := needNix(t)
	c := n.buildPair("expires-" + randomHex(4))
	url := srv.cacheURL("secret")
	n.withNetrc(srv.Host, srv.AdminToken).run("nix", "copy", "--to", url, c.Top)

	created := time.Now()
	reader := needNix(t).withNetrc(srv.Host, srv.token(t, "secret", "read", "--expires", "3s"))
	// The token is valid for at least two seconds; check it works if this
	// machine was quick enough to ask within that time.
	_, errOut, err := reader.try("nix", "path-info", "--store", url, c.Top)
	if time.Since(created) < 1500*time.Millisecond && err != nil {
		t.Fatalf("a fresh token with 3s to live was refused: %v\n%s", err, errOut)
	}
	deadline := created.Add(15 * time.Second)
	for {
		reader.forget()
		if _, _, err := reader.try("nix", "path-info", "--store", url, c.Top); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a token that expired after 3s still reads the cache after %v", time.Since(created))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if d := time.Since(created); d < 2*time.Second {
		t.Errorf("a token with 3s to live stopped working after %v", d)
	}
	srv.waitLog(t, "expired at")
	if list := srv.cli(t, "token", "list"); !strings.Contains(list, "(expired)") {
		t.Errorf("token list does not show the expired token as such:\n%s", list)
	}
}
