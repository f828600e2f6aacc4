package limit_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/store/limit"
	"github.com/larder-cache/larder/internal/store/local"
	"github.com/larder-cache/larder/internal/store/retry"
	"github.com/larder-cache/larder/internal/store/storetest"
)

func newLocal(t *testing.T) store.BlobStore {
	s, err := local.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformanceStacked runs the blob store suite on a local store wrapped
// as the server wraps its blob store, so that the wrappers are seen to pass
// every call through, Compose included.
func TestConformanceStacked(t *testing.T) {
	storetest.TestBlobStore(t, func(t *testing.T) store.BlobStore {
		return retry.Blobs(limit.Blobs(newLocal(t), 4), retry.Policy{Attempts: 2})
	})
}

// TestComposeUnsupported: over a store that cannot compose, the wrappers
// say so with errors.ErrUnsupported.
func TestComposeUnsupported(t *testing.T) {
	plain := struct{ store.BlobStore }{newLocal(t)} // hides Compose
	s := retry.Blobs(limit.Blobs(plain, 4), retry.Policy{Attempts: 2})
	err := s.(store.Composer).Compose(t.Context(), "whole", []string{"a"}, 1)
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("Compose over a store without it: %v, want errors.ErrUnsupported", err)
	}
}
