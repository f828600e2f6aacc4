package testserver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgConnect connects to the database at dsn, closing the connection when t
// ends.
func pgConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgresDatabases(t *testing.T) {
	// This package has no TestMain of its own to stop the shared server.
	t.Cleanup(StopPostgres)
	ctx := t.Context()
	a := pgConnect(t, Postgres(t))
	if _, err := a.Exec(ctx, `CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')`); err != nil {
		t.Fatal(err)
	}
	b := pgConnect(t, Postgres(t))
	var n int
	err := b.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("second database: %d tables, error %v; want an empty database", n, err)
	}
	var enc string
	if err := b.QueryRow(ctx, `SHOW server_encoding`).Scan(&enc); err != nil || enc != "UTF8" {
		t.Fatalf("server encoding %q, error %v; want UTF8", enc, err)
	}
	if PostgresServer(t) != PostgresServer(t) {
		t.Fatal("PostgresServer returned two servers")
	}
}

func TestPostgresDatabaseDropped(t *testing.T) {
	srv := NewPostgresServer(t)
	var dsn string
	t.Run("use", func(t *testing.T) {
		dsn = srv.NewDatabase(t)
		pgConnect(t, dsn) // still open when the database is dropped
	})
	_, err := pgx.Connect(t.Context(), dsn)
	if err == nil {
		t.Fatal("database still there after its test ended")
	}
}

func TestPostgresRestart(t *testing.T) {
	srv := NewPostgresServer(t)
	ctx := t.Context()
	dsn := srv.NewDatabase(t)
	before := pgConnect(t, dsn)
	if _, err := before.Exec(ctx, `CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')`); err != nil {
		t.Fatal(err)
	}
	port := srv.Port
	srv.Restart(t)
	if srv.Port != port {
		t.Fatalf("port %d after restart, want %d", srv.Port, port)
	}
	if _, err := before.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a connection from before the restart still works")
	}
	var v string
	if err := pgConnect(t, dsn).QueryRow(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != "kept" {
		t.Fatalf("after restart: %q, error %v; want the data kept", v, err)
	}

	srv.Stop(t)
	short, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(short, dsn); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	srv.Start(t)
	pgConnect(t, dsn)
}

func TestPostgresServerRemoved(t *testing.T) {
	var dir string
	t.Run("server", func(t *testing.T) {
		srv := NewPostgresServer(t)
		dir = srv.dir
		if _, err := os.Stat(filepath.Join(dir, "data", "PG_VERSION")); err != nil {
			t.Fatal(err)
		}
	})
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("server directory %s after its test: %v, want it removed", dir, err)
	}
}
