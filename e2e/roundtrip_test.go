package e2e

import (
	"reflect"
	"strings"
	"testing"
)

// narExt is the extension Nix gives NAR files of each compression.
var narExt = map[string]string{"xz": ".nar.xz", "zstd": ".nar.zst", "none": ".nar"}

// TestRoundTrip pushes a closure with each compression through a netrc
// token, reads it back through the cache (path-info, verify with the cache's
// key and with a wrong one), deletes it from the local store and substitutes
// it back with nix-store -r and with nix copy --from, trusting only the
// cache's key, and checks that the paths are byte for byte the originals.
func TestRoundTrip(t *testing.T) {
	for _, comp := range []string{"xz", "zstd", "none"} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			testRoundTrip(t, comp)
		})
	}
}

func testRoundTrip(t *testing.T, comp string) {
	// The compression asked for is served as long as files stay whole;
	// TestChunkedVersions pushes files that are chunked.
	srv := startServer(t, "--chunking=false")
	n := needNix(t)
	seed := "rt-" + comp + "-" + randomHex(4)
	c := n.buildClosure(seed)
	origHashes := n.narHashes("", c.Paths)
	origFiles := snapshot(t, c.Paths)
	origInfo := n.pathInfos("", c.Top)
	key := srv.pubkey(t, "main")
	keyName, _, _ := strings.Cut(key, ":")
	url := srv.cacheURL("main")

	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	pusher.run("nix", "copy", "--to", url+"?compression="+comp, c.Top)

	// Every narinfo is served with the compression asked for and the
	// cache's signature.
	for _, p := range c.Paths {
		code, body := httpDo(t, "GET", url+"/"+hashPart(p)+".narinfo", "", nil)
		if code != 200 {
			t.Fatalf("GET narinfo of %s: %d %s", p, code, body)
		}
		f := narInfoFields(body)
		if got := f["StorePath"]; len(got) != 1 || got[0] != p {
			t.Errorf("narinfo of %s has StorePath %v", p, got)
		}
		if got := f["Compression"]; len(got) != 1 || got[0] != comp {
			t.Errorf("narinfo of %s has Compression %v, want %s", p, got, comp)
		}
		if got := f["URL"]; len(got) != 1 || !strings.HasSuffix(got[0], narExt[comp]) {
			t.Errorf("narinfo of %s has URL %v, want one ending in %s", p, got, narExt[comp])
		}
		if got := f["Sig"]; len(got) != 1 || !strings.HasPrefix(got[0], keyName+":") {
			t.Errorf("narinfo of %s has Sig %v, want one signature by %s", p, got, keyName)
		}
	}

	reader := needNix(t)
	listed := lines(reader.run("nix", "path-info", "--store", url, "-r", c.Top))
	if !sameSet(listed, c.Paths) {
		t.Errorf("nix path-info -r lists %v, want %v", listed, c.Paths)
	}
	for p, got := range reader.pathInfos(url, c.Top) {
		if want := origInfo[p]; !reflect.DeepEqual(got, want) {
			t.Errorf("the cache describes %s as %+v, the local store as %+v", p, got, want)
		}
	}
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", key, "-r", c.Top)
	_, otherKey := reader.genKey("other-" + seed)
	errOut := reader.fails("nix", "store", "verify", "--store", url, "--trusted-public-keys", otherKey, "-r", c.Top)
	if !strings.Contains(errOut, "untrusted") {
		t.Errorf("verify with another key failed, but not for want of a trusted signature:\n%s", errOut)
	}

	// Delete the closure (with the derivations that refer to its tree) and
	// substitute it back, trusting only the cache's key.
	n.deleteLocal(append(append([]string{}, c.Paths...), c.Drvs...)...)
	subst := needNix(t)
	substArgs := func(k string) []string {
		return []string{"nix-store", "-r", c.Top, "--option", "substituters", url, "--option", "trusted-public-keys", k}
	}
	if errOut := subst.fails(substArgs(otherKey)...); !strings.Contains(errOut, "is not signed by any of the keys") {
		t.Errorf("substituting with another key failed, but not for want of a trusted signature:\n%s", errOut)
	}
	if _, _, err := subst.try("nix-store", "--check-validity", c.Top); err == nil {
		t.Fatalf("%s was substituted although no trusted key signed it", c.Top)
	}
	subst.forget()
	out := lines(subst.run(substArgs(key)...))
	if len(out) != 1 || out[0] != c.Top {
		t.Errorf("nix-store -r printed %v, want %s", out, c.Top)
	}
	checkRestored(t, subst, "nix-store -r", c, origHashes, origFiles)

	// Once more with nix copy --from.
	subst.deleteLocal(c.Paths...)
	copier := needNix(t)
	copier.run("nix", "copy", "--from", url, "--trusted-public-keys", key, c.Top)
	checkRestored(t, copier, "nix copy --from", c, origHashes, origFiles)
}

// checkRestored checks that a closure is back in the local store exactly as
// it was: same paths, NAR hashes, references and files, and the NAR hashes
// hold for the bytes on disk.
func checkRestored(t *testing.T, n *nix, how string, c closure, hashes, files map[string]string) {
	t.Helper()
	if got := lines(n.run("nix-store", "--query", "--requisites", c.Top)); !sameSet(got, c.Paths) {
		t.Errorf("after %s the closure is %v, want %v", how, got, c.Paths)
	}
	for p, h := range n.narHashes("", c.Paths) {
		if h != hashes[p] {
			t.Errorf("after %s %s has NAR hash %s, want %s", how, p, h, hashes[p])
		}
	}
	n.run(append([]string{"nix-store", "--verify-path"}, c.Paths...)...)
	sameSnapshot(t, "after "+how, files, snapshot(t, c.Paths))
}
