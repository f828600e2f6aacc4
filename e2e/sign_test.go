package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestSignWithSecondKey adds a signature with a key of the user's own to
// paths already in the cache: the served narinfo then carries the cache's
// signature and the new one, and each key alone verifies the closure.
func TestSignWithSecondKey(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	seed := "sign-" + randomHex(4)
	c := n.buildPair(seed)
	url := srv.cacheURL("main")
	cacheKey := srv.pubkey(t, "main")
	cacheKeyName, _, _ := strings.Cut(cacheKey, ":")
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	pusher.run("nix", "copy", "--to", url+"?compression=zstd", c.Top)

	sk, pk := n.genKey("second-" + seed)
	pkName, _, _ := strings.Cut(pk, ":")
	_, thirdKey := n.genKey("third-" + seed)
	reader := needNix(t)
	reader.fails("nix", "store", "verify", "--store", url, "--trusted-public-keys", pk, "-r", c.Top)

	signArgs := append([]string{"nix", "store", "sign", "--store", url, "-k", sk}, c.Paths...)
	pusher.run(signArgs...)
	// Signing again must not add the signature twice.
	pusher.forget()
	pusher.run(signArgs...)

	for _, p := range c.Paths {
		code, body := httpDo(t, "GET", url+"/"+hashPart(p)+".narinfo", "", nil)
		if code != 200 {
			t.Fatalf("GET narinfo of %s: %d %s", p, code, body)
		}
		sigs := narInfoFields(body)["Sig"]
		var names []string
		for _, s := range sigs {
			name, _, _ := strings.Cut(s, ":")
			names = append(names, name)
		}
		slices.Sort(names)
		want := []string{cacheKeyName, pkName}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			t.Errorf("narinfo of %s is signed by %v, want %v:\n%s", p, names, want, body)
		}
	}

	reader.forget()
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", pk, "-r", c.Top)
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", cacheKey, "-r", c.Top)
	reader.fails("nix", "store", "verify", "--store", url, "--trusted-public-keys", thirdKey, "-r", c.Top)

	// A client that signs as it uploads (secret-key=) keeps its signature
	// next to the cache's.
	signed := n.buildPair("signed-" + seed)
	pusher.run("nix", "copy", "--to", url+"?compression=zstd&secret-key="+sk, signed.Top)
	for _, p := range signed.Paths {
		_, body := httpDo(t, "GET", url+"/"+hashPart(p)+".narinfo", "", nil)
		if sigs := narInfoFields(body)["Sig"]; len(sigs) != 2 {
			t.Errorf("narinfo of %s uploaded signed has signatures %v, want the uploader's and the cache's", p, sigs)
		}
	}
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", pk, "-r", signed.Top)
	reader.run("nix", "store", "verify", "--store", url, "--trusted-public-keys", cacheKey, "-r", signed.Top)
}

// TestDedupAcrossCaches pushes one closure to two caches: the NAR files are
// stored once, and each cache serves the closure signed with its own key.
func TestDedupAcrossCaches(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "--chunking=false") // it counts whole files

	srv.cli(t, "cache", "create", "second")
	n := needNix(t)
	c := n.buildClosure("dedup-" + randomHex(4))
	pusher := n.withNetrc(srv.Host, srv.token(t, "*", "write"))

	if got := srv.countFiles(t, "blobs/nar"); got != 0 {
		t.Fatalf("a new server has %d NAR blobs", got)
	}
	pusher.run("nix", "copy", "--to", srv.cacheURL("main")+"?compression=zstd", c.Top)
	afterFirst := srv.countFiles(t, "blobs/nar")
	if afterFirst != len(c.Paths) {
		t.Errorf("after the first push there are %d NAR blobs, want %d", afterFirst, len(c.Paths))
	}
	pusher.run("nix", "copy", "--to", srv.cacheURL("second")+"?compression=zstd", c.Top)
	if got := srv.countFiles(t, "blobs/nar"); got != afterFirst {
		t.Errorf("the second push changed the NAR blobs from %d to %d", afterFirst, got)
	}

	for _, cache := range []string{"main", "second"} {
		reader := needNix(t)
		listed := lines(reader.run("nix", "path-info", "--store", srv.cacheURL(cache), "-r", c.Top))
		if !sameSet(listed, c.Paths) {
			t.Errorf("cache %s lists %v, want %v", cache, listed, c.Paths)
		}
		reader.run("nix", "store", "verify", "--store", srv.cacheURL(cache),
			"--trusted-public-keys", srv.pubkey(t, cache), "-r", c.Top)
	}
	if srv.pubkey(t, "main") == srv.pubkey(t, "second") {
		t.Errorf("the two caches have the same key")
	}
}
