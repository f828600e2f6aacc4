package nixhttp_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/config"
)

// sigLines returns n well-formed Sig lines of distinct keys named after
// prefix.
func sigLines(prefix string, n int) string {
	var b strings.Builder
	sig := make([]byte, 64)
	for i := range n {
		_, _ = rand.Read(sig)
		fmt.Fprintf(&b, "Sig: %s-%d:%s\n", prefix, i, base64.StdEncoding.EncodeToString(sig))
	}
	return b.String()
}

func countSigs(narinfo string) int { return strings.Count(narinfo, "\nSig: ") }

// TestSignatureMergeBounded: re-uploads of a narinfo merge their
// signatures only up to max_signatures, and never past max_narinfo_size as
// served; a re-upload that would pass either is refused with 413 and
// changes nothing. Before the bound, eight rounds of 9,000 Sig lines made
// a 7.7 MB narinfo that every substituter downloaded.
func TestSignatureMergeBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPath(t, "signed", []byte("signed by many"), "none")
	e.push("main", p)
	key := "/main/" + p.Hash + ".narinfo"
	e.expect(http.StatusOK, "PUT", key, e.admin, []byte(p.NarInfo()+sigLines("builder", 16)))
	_, served := e.expect(http.StatusOK, "GET", key, "", nil)
	if n := countSigs(served); n != 17 {
		t.Fatalf("the narinfo serves %d signatures, want the 16 uploaded and the cache's", n)
	}
	cases := []struct {
		name string
		sigs string
	}{
		{"one signature more", sigLines("late", 1)},
		{"a first upload's worth again", sigLines("other", 16)},
		{"9,000 Sig lines", sigLines("flood", 9000)},
	}
	for _, c := range cases {
		for round := range 2 {
			resp, msg := e.do("PUT", key, e.admin, []byte(p.NarInfo()+c.sigs))
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "max_signatures") {
				t.Errorf("%s, round %d: %d %q, want 413 naming max_signatures", c.name, round, resp.StatusCode, msg)
			}
		}
	}
	if _, now := e.expect(http.StatusOK, "GET", key, "", nil); now != served {
		t.Errorf("refused re-uploads changed the narinfo:\n%s\nwas:\n%s", now, served)
	}
	// A first upload with too many signatures is refused too.
	q := newPath(t, "flooded", []byte("flooded"), "none")
	e.expect(http.StatusCreated, "PUT", "/main/"+q.URL(), e.admin, q.File)
	resp, msg := e.do("PUT", "/main/"+q.Hash+".narinfo", e.admin, []byte(q.NarInfo()+sigLines("flood", 17)))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "17 signatures") {
		t.Errorf("first upload with 17 signatures: %d %q, want 413", resp.StatusCode, msg)
	}
	e.expect(http.StatusNotFound, "GET", "/main/"+q.Hash+".narinfo", "", nil)
}

// TestSignatureMergeSizeBounded: with room for many signatures but a small
// max_narinfo_size, merges stop where the narinfo as served would pass the
// size, with 413 naming max_narinfo_size.
func TestSignatureMergeSizeBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *config.Config) {
		c.MaxSignatures = 1000
		c.MaxNarInfoSize = 4 << 10
	})
	p := newPath(t, "signed", []byte("signed by many"), "none")
	e.push("main", p)
	key := "/main/" + p.Hash + ".narinfo"
	refused := false
	for round := range 40 {
		resp, msg := e.do("PUT", key, e.admin, []byte(p.NarInfo()+sigLines(fmt.Sprint("round", round), 3)))
		if resp.StatusCode == http.StatusRequestEntityTooLarge {
			if !strings.Contains(msg, "max_narinfo_size") {
				t.Errorf("round %d refused with %q, which does not name max_narinfo_size", round, msg)
			}
			refused = true
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("round %d: %d %q", round, resp.StatusCode, msg)
		}
	}
	if !refused {
		t.Fatal("merging 120 signatures into a 4 KiB narinfo was never refused")
	}
	_, served := e.expect(http.StatusOK, "GET", key, "", nil)
	if len(served) > 4<<10 {
		t.Errorf("the narinfo is served with %d bytes, more than max_narinfo_size", len(served))
	}
}
