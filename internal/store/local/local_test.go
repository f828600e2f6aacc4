package local

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.TestBlobStore(t, func(t *testing.T) store.BlobStore {
		s, err := Open(filepath.Join(t.TempDir(), "blobs"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { mustNoTempFiles(t, s) })
		return s
	})
}

// mustNoTempFiles fails t if s has temporary files: every Put, finished or
// failed, removes its own.
func mustNoTempFiles(t *testing.T, s *Store) {
	t.Helper()
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("temporary file %s left behind", e.Name())
	}
}

// openTemp opens a store in a new directory and returns it with the
// directory that holds its root.
func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	parent := t.TempDir()
	s, err := Open(filepath.Join(parent, "root"))
	if err != nil {
		t.Fatal(err)
	}
	return s, parent
}

func TestOpenReclaimsStaleTempFiles(t *testing.T) {
	s, _ := openTemp(t)
	if s.Reclaimed() != 0 {
		t.Fatalf("fresh store reclaimed %d files", s.Reclaimed())
	}
	old := time.Now().Add(-2 * StaleAfter)
	for _, name := range []string{"put-1", "put-2", "put-3"} {
		p := filepath.Join(s.tmp, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	live := filepath.Join(s.tmp, "put-live")
	if err := os.WriteFile(live, []byte("being written"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(s.root)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Reclaimed() != 3 {
		t.Fatalf("reopen reclaimed %d files, want 3", s2.Reclaimed())
	}
	if _, err := os.Stat(live); err != nil {
		t.Fatalf("a recent temporary file was removed: %v", err)
	}
	n, err := s2.Reclaim(0)
	if err != nil || n != 1 {
		t.Fatalf("reclaim(0) = %d, %v; want 1, nil", n, err)
	}
}

func TestInvalidKeysStayInRoot(t *testing.T) {
	s, parent := openTemp(t)
	ctx := t.Context()
	keys := []string{"../x", "../../x", "a/../../x", "/abs", "..", "../root2/x",
		"a/../b", "./x", "x/./y", "a//b", "a/", "A", "a\x00b", "..\\x", ""}
	for _, k := range keys {
		err := s.Put(ctx, k, strings.NewReader("x"), 1)
		if !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("put %q: got %v, want ErrInvalidKey", k, err)
		}
	}
	err := s.List(ctx, "../", func(store.BlobInfo) error { return nil })
	if !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("list ../: got %v, want ErrInvalidKey", err)
	}
	var found []string
	err = filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != parent {
			rel, _ := filepath.Rel(parent, p)
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"root", "root/tmp~"}; !slices.Equal(found, want) {
		t.Fatalf("files under the parent of the root: %q, want %q", found, want)
	}
}

func TestKeyLimits(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	seg := strings.Repeat("s", 200)
	var long []string
	for len(strings.Join(long, "/")) < store.MaxKeyLen-len(seg) {
		long = append(long, seg)
	}
	ok := strings.Join(long, "/")
	ok += "/" + strings.Repeat("e", store.MaxKeyLen-len(ok)-1)
	cases := []struct {
		key   string
		valid bool
	}{
		{ok, true},
		{ok + "x", false},
		{strings.Repeat("n", store.MaxSegmentLen), true},
		{strings.Repeat("n", store.MaxSegmentLen+1), false},
	}
	for _, c := range cases {
		err := s.Put(ctx, c.key, strings.NewReader("x"), 1)
		if c.valid && err != nil {
			t.Errorf("put key of %d bytes: %v", len(c.key), err)
		}
		if !c.valid && !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("put key of %d bytes: got %v, want ErrInvalidKey", len(c.key), err)
		}
	}
}

func TestLayoutAndPermissions(t *testing.T) {
	s, _ := openTemp(t)
	data := []byte("nar bytes")
	if err := s.Put(t.Context(), "nar/ab/cd.nar", bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.root, "nar", "ab", "cd.nar")
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob file %s: %q, %v", p, got, err)
	}
	if runtime.GOOS == "windows" {
		return // Windows has no mode bits: its ACLs are inherited from the directory
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != filePerm {
		t.Errorf("blob file mode %v, want %v", perm, filePerm)
	}
	di, err := os.Stat(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&^dirPerm != 0 {
		t.Errorf("blob directory mode %v, want at most %v", perm, dirPerm)
	}
}

func TestListSkipsForeignFiles(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.Put(t.Context(), "nar/a", strings.NewReader("a"), 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"nar/UPPER", "nar/with space", "tmp~/put-x"} {
		if err := os.WriteFile(filepath.Join(s.root, p), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(s.root, "nar", "a"), filepath.Join(s.root, "nar", "link")); err != nil && runtime.GOOS != "windows" {
		t.Fatal(err) // Windows lets only privileged users make symbolic links
	}
	var keys []string
	err := s.List(t.Context(), "", func(b store.BlobInfo) error {
		keys = append(keys, b.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"nar/a"}; !slices.Equal(keys, want) {
		t.Fatalf("list: %q, want %q", keys, want)
	}
}

func TestListCallbackSkipAllIsAnError(t *testing.T) {
	s, _ := openTemp(t)
	for _, k := range []string{"a", "b"} {
		if err := s.Put(t.Context(), k, strings.NewReader(k), 1); err != nil {
			t.Fatal(err)
		}
	}
	err := s.List(t.Context(), "", func(store.BlobInfo) error { return fs.SkipAll })
	if !errors.Is(err, fs.SkipAll) {
		t.Fatalf("list with a callback returning SkipAll: got %v", err)
	}
}

func TestGetReturnsFileForWholeBlob(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.Put(t.Context(), "k", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, ok := rc.(*os.File); !ok {
		t.Fatalf("get of a whole blob returned %T, want *os.File", rc)
	}
}

// TestDeleteAndReplaceWhileOpen: a blob being read can be deleted or
// replaced meanwhile, and its reader goes on reading what it opened. On
// Unix this is how files work; on Windows the store opens blobs to allow
// it.
func TestDeleteAndReplaceWhileOpen(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	for _, k := range []string{"gone", "replaced"} {
		if err := s.Put(ctx, k, strings.NewReader("old "+k), -1); err != nil {
			t.Fatal(err)
		}
	}
	var readers []io.ReadCloser
	for _, k := range []string{"gone", "replaced"} {
		rc, err := s.Get(ctx, k, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		readers = append(readers, rc)
	}
	if err := s.Delete(ctx, "gone"); err != nil {
		t.Fatalf("delete of a blob open for reading: %v", err)
	}
	if _, err := s.Stat(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat of a deleted blob: %v, want ErrNotFound", err)
	}
	if err := s.Put(ctx, "replaced", strings.NewReader("new"), -1); err != nil {
		t.Fatalf("put over a blob open for reading: %v", err)
	}
	for i, k := range []string{"gone", "replaced"} {
		b, err := io.ReadAll(readers[i])
		if err != nil || string(b) != "old "+k {
			t.Errorf("reader of %s opened before the change: %q, %v", k, b, err)
		}
	}
	rc, err := s.Get(ctx, "replaced", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if b, _ := io.ReadAll(rc); string(b) != "new" {
		t.Errorf("replaced blob reads %q", b)
	}
}

// TestDeviceAndDotNames: keys whose segments Win32 would take for devices
// or strip of trailing dots are blobs like any other.
func TestDeviceAndDotNames(t *testing.T) {
	s, _ := openTemp(t)
	ctx := t.Context()
	keys := []string{"con", "nul.tar", "aux/com1", "lpt1.x/prn", "a.", "a", "dir./b"}
	for _, k := range keys {
		if err := s.Put(ctx, k, strings.NewReader(k), -1); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	var listed []string
	if err := s.List(ctx, "", func(b store.BlobInfo) error {
		listed = append(listed, b.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(listed)
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(listed, want) {
		t.Errorf("list: %q, want %q", listed, want)
	}
	for _, k := range keys {
		rc, err := s.Get(ctx, k, 0, -1)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != k {
			t.Errorf("get %s: %q", k, b)
		}
	}
}
