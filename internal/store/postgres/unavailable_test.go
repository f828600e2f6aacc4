package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
)

// TestUnavailable checks that calls fail with store.ErrUnavailable while
// the server is down, and succeed on the same Store once it is back.
func TestUnavailable(t *testing.T) {
	srv := testserver.NewPostgresServer(t)
	dsn := srv.NewDatabase(t)
	s := openStore(t, dsn)
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, "n")
	ni := putNarInfo(t, s, c.ID, "p", n.FileHash)

	srv.Stop(t)
	calls := map[string]func() error{
		"get cache": func() error { _, err := s.GetCache(ctx, "main"); return err },
		"get narinfo": func() error {
			_, _, err := s.GetNarInfo(ctx, c.ID, ni.Hash)
			return err
		},
		"create cache": func() error { _, err := s.CreateCache(ctx, store.Cache{Name: "other"}); return err },
		"put narinfo":  func() error { _, err := s.PutNarInfo(ctx, ni, replace(ni)); return err },
		"changes":      func() error { _, err := s.Changes(ctx); return err },
		"open":         func() error { _, err := Open(ctx, dsn); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the server stopped: %v, want store.ErrUnavailable", name, err)
		}
	}

	srv.Start(t)
	for name, call := range calls {
		if name == "open" || name == "changes" {
			continue
		}
		if err := call(); err != nil {
			t.Errorf("%s with the server back: %v", name, err)
		}
	}
}

// TestRecoverAfterRestart checks that connections dropped by a restart of
// the server fail at most one call between them.
func TestRecoverAfterRestart(t *testing.T) {
	srv := testserver.NewPostgresServer(t)
	s := openStore(t, srv.NewDatabase(t)+"&pool_max_conns=4")
	ctx := t.Context()
	c := createCache(t, s, "main")
	// Fill the pool with connections, all used just now.
	errs := make(chan error, 4)
	for range 4 {
		go func() { errs <- s.do(ctx, func(conn *pgx.Conn) error { return conn.Ping(ctx) }) }()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	srv.Restart(t)
	failed := 0
	for i := range 4 {
		_, err := s.GetCache(ctx, c.Name)
		switch {
		case err == nil:
		case errors.Is(err, store.ErrUnavailable):
			failed++
		default:
			t.Fatalf("call %d after a restart: %v", i, err)
		}
	}
	if failed > 1 {
		t.Fatalf("%d calls failed after a restart, want at most 1", failed)
	}
}

// TestUnavailableTimeout checks that a call whose context ends by its
// deadline fails with store.ErrUnavailable, and one whose context is
// cancelled, before or during the call, does not.
func TestUnavailableTimeout(t *testing.T) {
	s := openStore(t, testserver.Postgres(t))
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err := s.do(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT pg_sleep(10)`)
		return err
	})
	if err = translate(err); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("query past its deadline: %v, want store.ErrUnavailable", err)
	}
	ctx, cancel = context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	err = s.do(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `SELECT pg_sleep(10)`)
		return err
	})
	if err = translate(err); errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("query cancelled: %v, want context.Canceled only", err)
	}
	if _, err := s.GetCache(ctx, "main"); errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("call with a cancelled context: %v, want context.Canceled only", err)
	}
}

func TestTranslate(t *testing.T) {
	pgErr := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code}) }
	cases := []struct {
		err  error
		want error // nil: none of the store's errors
	}{
		{pgx.ErrNoRows, store.ErrNotFound},
		{pgErr("23505"), store.ErrExists},
		{pgErr("23503"), store.ErrNotFound},
		{pgErr("57P01"), store.ErrUnavailable},
		{pgErr("57P03"), store.ErrUnavailable},
		{pgErr("53300"), store.ErrUnavailable},
		{pgErr("08006"), store.ErrUnavailable},
		{pgErr("40P01"), store.ErrUnavailable},
		{pgErr("42601"), nil},
		{pgErr("22021"), nil},
		{&pgconn.ConnectError{}, store.ErrUnavailable},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, store.ErrUnavailable},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), store.ErrUnavailable},
		{context.DeadlineExceeded, store.ErrUnavailable},
		{context.Canceled, nil},
		{fmt.Errorf("%w: %w", context.Canceled, &pgconn.PgError{Code: "57014"}), nil},
		{&net.OpError{Op: "dial", Err: context.Canceled}, nil},
		{errors.New("other"), nil},
	}
	for _, c := range cases {
		got := translate(c.err)
		for _, e := range []error{store.ErrNotFound, store.ErrExists, store.ErrUnavailable} {
			if errors.Is(got, e) != (e == c.want) {
				t.Errorf("translate(%v) = %v: wraps %v is %v", c.err, got, e, !(e == c.want))
			}
		}
		if c.err != pgx.ErrNoRows && !errors.Is(got, c.err) {
			t.Errorf("translate(%v) = %v, which does not wrap it", c.err, got)
		}
	}
}
