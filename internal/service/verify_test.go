package service_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/larder-cache/larder/internal/service"
)

// narBlobPath returns the file of the only NAR blob of the environment.
func (e *raceEnv) narBlobPath() string {
	e.t.Helper()
	var found []string
	_ = filepath.WalkDir(filepath.Join(e.blobs, "nar"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		e.t.Fatalf("%d NAR blobs, want 1", len(found))
	}
	return found[0]
}

func (e *raceEnv) verify(opts service.VerifyOptions) (service.VerifyReport, []service.VerifyProblem) {
	e.t.Helper()
	var probs []service.VerifyProblem
	opts.Problem = func(p service.VerifyProblem) { probs = append(probs, p) }
	r, err := e.svc.Verify(e.t.Context(), opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return r, probs
}

// TestVerifyFindsDamage: larder verify finds a NAR file whose blob was
// damaged (with --full, which reads it back) or lost, reports it, and
// marks it missing, so that neither it nor its narinfo is served and the
// next upload replaces it; a dry run changes nothing, and a file marked
// missing whose blob is whole again is unmarked.
func TestVerifyFindsDamage(t *testing.T) {
	t.Parallel()
	e := newRaceEnv(t)
	if err := e.putNar(e.main, bytes.NewReader(e.nar)); err != nil {
		t.Fatal(err)
	}
	if err := e.putNarInfo(e.main); err != nil {
		t.Fatal(err)
	}
	if r, probs := e.verify(service.VerifyOptions{Full: true}); r.Files != 1 || r.Problems() != 0 || len(probs) != 0 {
		t.Fatalf("verify of a sound cache: %+v %+v", r, probs)
	}
	blob := e.narBlobPath()
	damaged := bytes.Clone(e.nar)
	damaged[len(damaged)/2] ^= 1
	if err := os.WriteFile(blob, damaged, 0o640); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.verify(service.VerifyOptions{}); r.Problems() != 0 {
		t.Errorf("verify without --full read the blob: %+v", r)
	}
	r, probs := e.verify(service.VerifyOptions{Full: true, DryRun: true})
	if r.Damaged != 1 || len(probs) != 1 || probs[0].Repaired {
		t.Fatalf("dry run of verify --full on a damaged blob: %+v %+v", r, probs)
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); err != nil {
		t.Fatalf("a dry run withdrew the narinfo: %v", err)
	}
	r, probs = e.verify(service.VerifyOptions{Full: true})
	if r.Damaged != 1 || len(probs) != 1 || !probs[0].Repaired || probs[0].Key != e.narKey {
		t.Fatalf("verify --full on a damaged blob: %+v %+v", r, probs)
	}
	if e.served(e.main) {
		t.Error("a NAR file verify found damaged is still served")
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); service.CodeOf(err) != service.CodeNotFound {
		t.Errorf("the narinfo of a damaged NAR file: %v, want not found", err)
	}
	// The blob is put back whole: verify unmarks the file.
	if err := os.WriteFile(blob, e.nar, 0o640); err != nil {
		t.Fatal(err)
	}
	r, probs = e.verify(service.VerifyOptions{Full: true})
	if r.Restored != 1 || r.Problems() != 0 || len(probs) != 1 || !probs[0].Back {
		t.Fatalf("verify of a file found back: %+v %+v", r, probs)
	}
	if !e.served(e.main) {
		t.Fatal("a NAR file found back is not served")
	}
	if _, err := e.svc.NarInfo(t.Context(), e.main, e.hash); err != nil {
		t.Errorf("the narinfo of a NAR file found back: %v", err)
	}
	// Lost: found without --full; an upload of the file brings it back.
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.verify(service.VerifyOptions{Cache: "main"}); r.Missing != 1 {
		t.Fatalf("verify of a lost blob: %+v", r)
	}
	if err := e.putNar(e.main, bytes.NewReader(e.nar)); err != nil {
		t.Fatal(err)
	}
	if !e.served(e.main) {
		t.Fatal("the NAR file uploaded again is not served")
	}
	if r, _ := e.verify(service.VerifyOptions{Full: true}); r.Problems() != 0 {
		t.Errorf("verify after the new upload: %+v", r)
	}
	if _, err := e.svc.Verify(t.Context(), service.VerifyOptions{Cache: "nope"}); service.CodeOf(err) != service.CodeNotFound {
		t.Errorf("verify of an unknown cache: %v", err)
	}
}
