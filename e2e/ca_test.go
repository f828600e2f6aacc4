package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRealisation pushes the outputs of two content-addressed derivations,
// top depending on dep, which uploads their realisations; checks that they
// are served; deletes the outputs locally and has a fresh client get top
// back through the realisations. Both builders refuse to run once the test
// has removed a gate file, so the outputs can only come from the cache.
func TestRealisation(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	seed := "ca-" + randomHex(4)
	gate := filepath.Join(n.home, "may-build")
	must(t, os.WriteFile(gate, nil, 0o644))
	expr := fmt.Sprintf(`
let
  ca = name: script: derivation {
    inherit name; system = builtins.currentSystem; builder = "/bin/sh";
    __contentAddressed = true; outputHashMode = "recursive"; outputHashAlgo = "sha256";
    args = [ "-c" "test -e %[2]s || { echo not allowed to build; exit 1; }; ${script}" ];
  };
  dep = ca "ca-dep-%[1]s" "echo dep %[1]s > $out";
in ca "ca-top-%[1]s" "echo ${dep} > $out"
`, seed, gate)
	topDrv := strings.TrimSpace(n.run("nix-instantiate", "-E", expr))
	topOut := strings.TrimSpace(n.run("nix-build", "--no-out-link", topDrv))
	paths := lines(n.run("nix-store", "--query", "--requisites", topOut))
	if len(paths) != 2 {
		t.Fatalf("closure of %s is %v, want it and the output of dep", topOut, paths)
	}
	files := snapshot(t, paths)

	type realisation struct {
		ID                    string            `json:"id"`
		OutPath               string            `json:"outPath"`
		DependentRealisations map[string]string `json:"dependentRealisations"`
	}
	var local []realisation
	infoJSON := n.run("nix", "realisation", "info", "--json", topDrv)
	if err := json.Unmarshal([]byte(infoJSON), &local); err != nil || len(local) != 1 {
		t.Fatalf("nix realisation info: %v\n%s", err, infoJSON)
	}
	top := local[0]
	if !strings.HasPrefix(top.ID, "sha256:") || !strings.HasSuffix(top.ID, "!out") || len(top.DependentRealisations) != 1 {
		t.Fatalf("realisation of top is %+v, want id sha256:<hex>!out and one dependent realisation", top)
	}
	if top.OutPath != filepath.Base(topOut) {
		t.Fatalf("realisation of top has outPath %s, want %s", top.OutPath, filepath.Base(topOut))
	}
	var depID, depOut string
	for id, out := range top.DependentRealisations {
		depID, depOut = id, out
	}

	url := srv.cacheURL("main")
	key := srv.pubkey(t, "main")
	doiURL := func(id string) string { return url + "/realisations/" + id + ".doi" }
	if code, _ := httpDo(t, "GET", doiURL(top.ID), "", nil); code != 404 {
		t.Fatalf("GET %s before the push: %d, want 404", doiURL(top.ID), code)
	}
	// Nix 2.8 copies realisations when the installable is the derivation
	// (nix copy DRV copies its outputs); given the output path it does not.
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))
	pusher.run("nix", "copy", "--to", url, topDrv)

	for _, want := range []realisation{top, {ID: depID, OutPath: depOut}} {
		code, hdr, body := httpDoHeader(t, "GET", doiURL(want.ID), "", nil)
		if code != 200 {
			t.Fatalf("GET %s: %d %s", doiURL(want.ID), code, body)
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("realisation has Content-Type %q, want application/json", ct)
		}
		var served realisation
		if err := json.Unmarshal([]byte(body), &served); err != nil {
			t.Fatalf("realisation is not JSON: %v\n%s", err, body)
		}
		if served.ID != want.ID || served.OutPath != want.OutPath ||
			len(served.DependentRealisations) != len(want.DependentRealisations) {
			t.Errorf("realisation %s is served as %+v, want %+v", want.ID, served, want)
		}
		for id, out := range want.DependentRealisations {
			if served.DependentRealisations[id] != out {
				t.Errorf("realisation %s is served with dependent realisations %v, want %v",
					want.ID, served.DependentRealisations, want.DependentRealisations)
			}
		}
	}

	// Delete the outputs (their local realisations go with them, and so must
	// the resolved derivation that refers to dep's output) and let a fresh
	// client substitute them.
	var resolved []string
	for _, r := range lines(n.run("nix-store", "--query", "--referrers", "/nix/store/"+depOut)) {
		if strings.HasSuffix(r, ".drv") {
			resolved = append(resolved, r)
		}
	}
	n.deleteLocal(append(resolved, paths...)...)
	must(t, os.Remove(gate))
	if _, _, err := n.try("nix", "realisation", "info", topDrv); err == nil {
		t.Fatalf("the local store still has a realisation of %s after deleting its output", topDrv)
	}
	before := srv.logSize()
	fresh := needNix(t)
	fresh.run("nix", "build", "--no-link", topDrv, "--option", "substituters", url, "--option", "trusted-public-keys", key)
	sameSnapshot(t, "after substitution", files, snapshot(t, paths))
	fresh.run(append([]string{"nix-store", "--verify-path"}, paths...)...)
	srv.waitLogLine(t, before, "method=GET", "cache=main", "kind=realisation", "status=200")
	again := fresh.run("nix", "realisation", "info", "--json", topDrv)
	if !strings.Contains(again, filepath.Base(topOut)) {
		t.Errorf("after substitution the local realisation is %s, want one with %s", again, filepath.Base(topOut))
	}
}
