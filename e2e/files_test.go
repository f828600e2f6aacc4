package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lsEntry is a node of a NAR listing (<hash>.ls) as Nix writes it.
type lsEntry struct {
	Type       string             `json:"type"`
	Entries    map[string]lsEntry `json:"entries"`
	Size       *int64             `json:"size"`
	Executable bool               `json:"executable"`
	NarOffset  *int64             `json:"narOffset"`
	Target     string             `json:"target"`
}

// TestNarListing pushes a tree with write-nar-listing=1 and checks that its
// .ls is served as JSON that describes every file, down to where each file's
// bytes sit in the NAR; a path pushed without the option has no .ls.
func TestNarListing(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	seed := "ls-" + randomHex(4)
	tree := n.addTree(seed)
	plain := filepath.Join(n.home, "plain-"+seed)
	must(t, os.WriteFile(plain, []byte("no listing "+seed+"\n"), 0o644))
	plainPath := strings.TrimSpace(n.run("nix-store", "--add", plain))
	url := srv.cacheURL("main")
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	pusher.run("nix", "copy", "--to", url+"?write-nar-listing=1&compression=none", tree)
	pusher.run("nix", "copy", "--to", url+"?compression=none", plainPath)

	code, hdr, body := httpDoHeader(t, "GET", url+"/"+hashPart(tree)+".ls", "", nil)
	if code != 200 {
		t.Fatalf("GET %s.ls: %d %s", hashPart(tree), code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf(".ls has Content-Type %q, want application/json", ct)
	}
	var ls struct {
		Version int     `json:"version"`
		Root    lsEntry `json:"root"`
	}
	if err := json.Unmarshal([]byte(body), &ls); err != nil {
		t.Fatalf(".ls is not JSON: %v\n%s", err, body)
	}
	if ls.Version != 1 {
		t.Errorf(".ls has version %d, want 1", ls.Version)
	}

	// The NAR itself, uncompressed, to check the offsets against.
	_, niBody := httpDo(t, "GET", url+"/"+hashPart(tree)+".narinfo", "", nil)
	narURL := narInfoFields(niBody)["URL"]
	if len(narURL) != 1 {
		t.Fatalf("narinfo has URL %v", narURL)
	}
	code, nar := httpDo(t, "GET", url+"/"+narURL[0], "", nil)
	if code != 200 {
		t.Fatalf("GET %s: %d", narURL[0], code)
	}

	text := bytes.Repeat([]byte("larder "+seed+"\n"), 5000)
	script := []byte("#!/bin/sh\necho " + seed + "\n")
	root := ls.Root
	checkFile := func(name string, e lsEntry, content []byte, exec bool) {
		t.Helper()
		switch {
		case e.Type != "regular":
			t.Errorf("%s: type %q, want regular", name, e.Type)
		case e.Size == nil || *e.Size != int64(len(content)):
			t.Errorf("%s: size %v, want %d", name, e.Size, len(content))
		case e.Executable != exec:
			t.Errorf("%s: executable %v, want %v", name, e.Executable, exec)
		case e.NarOffset == nil || *e.NarOffset+int64(len(content)) > int64(len(nar)):
			t.Errorf("%s: narOffset %v is not inside the %d-byte NAR", name, e.NarOffset, len(nar))
		case !bytes.Equal([]byte(nar[*e.NarOffset:*e.NarOffset+int64(len(content))]), content):
			t.Errorf("%s: the NAR does not hold the file's bytes at narOffset %d", name, *e.NarOffset)
		}
	}
	if root.Type != "directory" {
		t.Fatalf("root has type %q, want directory:\n%s", root.Type, body)
	}
	if len(root.Entries) != 4 {
		t.Errorf("root has %d entries, want run.sh, empty, link and sub:\n%s", len(root.Entries), body)
	}
	checkFile("run.sh", root.Entries["run.sh"], script, true)
	checkFile("empty", root.Entries["empty"], nil, false)
	if l := root.Entries["link"]; l.Type != "symlink" || l.Target != "sub/deeper/text" {
		t.Errorf("link is %+v, want a symlink to sub/deeper/text", l)
	}
	sub := root.Entries["sub"]
	deeper := sub.Entries["deeper"]
	if sub.Type != "directory" || deeper.Type != "directory" {
		t.Errorf("sub is %q and sub/deeper %q, want directories", sub.Type, deeper.Type)
	}
	checkFile("sub/deeper/text", deeper.Entries["text"], text, false)

	if code, body := httpDo(t, "GET", url+"/"+hashPart(plainPath)+".ls", "", nil); code != 404 {
		t.Errorf("GET .ls of a path pushed without write-nar-listing: %d %s, want 404", code, body)
	}
}

// TestBuildLog copies a build log to the cache with nix store copy-log and
// reads it back with nix log --store, by derivation and by output.
func TestBuildLog(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	seed := "log-" + randomHex(4)
	c := n.buildClosure(seed)
	var big string
	for _, p := range c.Paths {
		if strings.Contains(p, "-big-") {
			big = p
		}
	}
	drv := strings.TrimSpace(n.run("nix-store", "--query", "--deriver", big))
	want := "building big " + seed
	url := srv.cacheURL("main")
	logURL := url + "/log/" + filepath.Base(drv)
	if code, _ := httpDo(t, "GET", logURL, "", nil); code != 404 {
		t.Fatalf("GET %s before copy-log: %d, want 404", logURL, code)
	}

	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	pusher.run("nix", "store", "copy-log", "--to", url, drv)
	code, hdr, body := httpDoHeader(t, "GET", logURL, "", nil)
	if code != 200 || !strings.Contains(body, want) {
		t.Fatalf("GET %s: %d %q, want 200 with %q", logURL, code, body, want)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("log has Content-Type %q, want text/plain", ct)
	}

	// Nix 2.8 resolves the installable in the cache itself: nix log --store
	// needs the output's narinfo (whose Deriver names the log) or the .drv.
	pusher.run("nix", "copy", "--to", url+"?compression=zstd", big)
	pusher.run("nix", "copy", "--to", url+"?compression=zstd", "--derivation", drv)
	for _, installable := range []string{drv, big} {
		reader := needNix(t)
		out, errOut, err := reader.try("nix", "log", "--store", url, installable)
		if err != nil {
			t.Errorf("nix log --store %s %s: %v\n%s", url, installable, err, errOut)
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("nix log --store %s %s printed %q, want %q", url, installable, out, want)
		}
		if !strings.Contains(errOut, "from '"+url+"'") {
			t.Errorf("nix log did not get the log from the cache:\n%s", errOut)
		}
	}
}
