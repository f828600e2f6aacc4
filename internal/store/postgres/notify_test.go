package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
)

// wantWake fails t unless ch receives a value within d.
func wantWake(t *testing.T, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
	case <-time.After(d):
		t.Fatalf("%s: no change reported within %v", what, d)
	}
}

// wantQuiet fails t if ch receives a value within d.
func wantQuiet(t *testing.T, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("%s: change reported", what)
	case <-time.After(d):
	}
}

// wantClosed fails t unless ch is closed within d.
func wantClosed(t *testing.T, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("%s: channel not closed within %v", what, d)
		}
	}
}

func TestChangesAcrossStores(t *testing.T) {
	dsn := testserver.Postgres(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	ctx := t.Context()
	ch, err := b.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := createCache(t, a, "main")
	wantWake(t, "cache created through another store", ch, time.Second)
	n := addNar(t, a, c.ID, "n")
	wantQuiet(t, "nar added", ch, 100*time.Millisecond)
	ni := putNarInfo(t, a, c.ID, "p", n.FileHash)
	wantWake(t, "narinfo put through another store", ch, time.Second)
	if _, err := a.CreateToken(ctx, store.Token{Hash: "h", Scope: "*", Perm: store.PermRead}); err != nil {
		t.Fatal(err)
	}
	wantWake(t, "token created through another store", ch, time.Second)
	if err := a.DeleteNarInfo(ctx, c.ID, ni.Hash); err != nil {
		t.Fatal(err)
	}
	wantWake(t, "narinfo deleted through another store", ch, time.Second)

	// Changes through b itself do not wake b; they wake a.
	ach, err := a.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	putNarInfo(t, b, c.ID, "q", n.FileHash)
	wantWake(t, "narinfo put through b, seen by a", ach, time.Second)
	wantQuiet(t, "narinfo put through b, seen by b", ch, 200*time.Millisecond)

	// Many changes coalesce into at most one waiting value.
	for _, seed := range []string{"r", "s", "t"} {
		putNarInfo(t, a, c.ID, seed, n.FileHash)
	}
	wantWake(t, "several narinfos", ch, time.Second)
	time.Sleep(100 * time.Millisecond)
	select {
	case <-ch:
		wantQuiet(t, "after draining", ch, 100*time.Millisecond)
	default:
	}
}

func TestChangesClosed(t *testing.T) {
	dsn := testserver.Postgres(t)
	s, err := Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	byCtx, err := s.Changes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byClose, err := s.Changes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	wantClosed(t, "channel of an ended context", byCtx, 5*time.Second)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, "channel of a closed store", byClose, time.Second)
	if _, err := s.Changes(t.Context()); err == nil {
		t.Fatal("changes of a closed store: no error")
	}
}

// TestChangesAfterRestart checks that a listener whose connection drops
// with a restart of the server reconnects, says so, and still reports
// changes.
func TestChangesAfterRestart(t *testing.T) {
	srv := testserver.NewPostgresServer(t)
	dsn := srv.NewDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	ch, err := b.Changes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	c := createCache(t, a, "main")
	wantWake(t, "before the restart", ch, time.Second)
	srv.Restart(t)
	wantWake(t, "reconnected after the restart", ch, 10*time.Second)
	// a's pooled connection may have been dropped by the restart too.
	var err2 error
	for range 3 {
		if _, err2 = a.CreateCache(t.Context(), store.Cache{Name: "after"}); !errors.Is(err2, store.ErrUnavailable) {
			break
		}
	}
	if err2 != nil {
		t.Fatalf("create cache after the restart: %v", err2)
	}
	wantWake(t, "cache created after the restart", ch, time.Second)
	n := addNar(t, a, c.ID, "n")
	putNarInfo(t, a, c.ID, "p", n.FileHash)
	wantWake(t, "narinfo put after the restart", ch, time.Second)
}
