// Package postgres owns the PostgreSQL store.MetaStore: caches, tokens, NAR
// records, narinfos, object records, held narinfos and multipart uploads in
// one PostgreSQL database, shared by every larder process pointed at it,
// read and written through pgx. It also implements store.ChangeNotifier
// with LISTEN/NOTIFY, so that each process learns soon of the narinfos,
// caches and tokens the others commit.
//
// Open brings the schema up to date (see Migrate) and keeps a pool of
// connections; Changes holds one more connection per listener. The tables
// live in the first schema of the connection's search_path, so several
// larder deployments can share a database under different schemas. LISTEN
// needs a server connection of its own for as long as it listens: through
// a pooler such as PgBouncer, Changes needs the pool mode that gives each
// client one server connection for as long as it is connected.
//
// Every error caused by the server being unreachable, shutting down, out of
// connections or otherwise failing for the moment wraps
// store.ErrUnavailable. A connection lost under a call makes that call fail
// (a write may or may not have been committed); the pool replaces the
// connection, so later calls succeed once the server is back, without
// reopening the Store.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/larder-cache/larder/internal/store"
)

const (
	// poolSizeParam is the DSN parameter that sets how many connections a
	// Store opens at most, as in pgxpool.
	poolSizeParam = "pool_max_conns"
	// defaultConnectTimeout bounds the opening of a connection when the DSN
	// sets no connect_timeout.
	defaultConnectTimeout = 10 * time.Second
	// applicationName is reported to the server unless the DSN names another.
	applicationName = "larder"
)

// Store is a store.MetaStore on a PostgreSQL database. It is safe for
// concurrent use, also by several processes on the same database.
type Store struct {
	cfg  *pgx.ConnConfig // for connections of its own (LISTEN)
	pool *pgxpool.Pool
	id   string // the payload of this Store's notifications, to skip its own

	// closing ends the goroutines of Changes, counted by wg, when Close is
	// called; mu orders the start of one with Close.
	closing context.Context
	close   context.CancelFunc
	mu      sync.Mutex
	wg      sync.WaitGroup

	// collectBatch is how many narinfos or NAR links Collect removes in
	// one transaction; collectHook, if set, is called once the kept set is
	// known, before anything is removed. Tests change them.
	collectBatch int
	collectHook  func()
}

var (
	_ store.MetaStore      = (*Store)(nil)
	_ store.ChangeNotifier = (*Store)(nil)
)

// Open connects to the database named by dsn, a PostgreSQL URL or
// key=value string as libpq takes it, and brings its schema up to date.
// The DSN may also set pool_max_conns, the number of connections kept at
// most (by default the larger of 4 and GOMAXPROCS).
func Open(ctx context.Context, dsn string) (*Store, error) {
	s, err := open(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open metadata database: %w", translate(err))
	}
	return s, nil
}

// open does the work of Open.
func open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	id := make([]byte, 8)
	rand.Read(id)
	s := &Store{cfg: cfg.ConnConfig, pool: p, id: hex.EncodeToString(id), collectBatch: defaultCollectBatch}
	s.closing, s.close = context.WithCancel(context.Background())
	if err := s.do(ctx, func(conn *pgx.Conn) error { return migrate(ctx, conn) }); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// parseDSN returns the pool settings of dsn: pgxpool's own (pool_max_conns
// and the like), with larder's defaults where the DSN sets none.
func parseDSN(dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	if !strings.Contains(dsn, poolSizeParam) {
		cfg.MaxConns = int32(max(4, runtime.GOMAXPROCS(0)))
	}
	cfg.MinConns = 0
	cc := cfg.ConnConfig
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = applicationName
	}
	// pgxpool pings a connection idle for a second or more before handing
	// it out, so that one dropped by a server restart is replaced.
	return cfg, nil
}

// Close stops the listeners of Changes, closing their channels, and closes
// the idle connections. Calls in progress go on; their connections are
// closed as they end. Later calls fail.
func (s *Store) Close() error {
	s.mu.Lock()
	s.close()
	s.mu.Unlock()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// maxAttempts is how many times do runs a function whose failure is safe
// to retry: one that sent nothing to the server, or whose transaction the
// server rolled back as a serialization failure or deadlock.
const maxAttempts = 3

// do runs fn on a connection of the pool. When the connection is lost
// under fn, the error wraps store.ErrUnavailable, and the idle connections
// are dropped too: what ended one, such as a restart of the server, has
// likely ended them all.
func (s *Store) do(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	for attempt := 1; ; attempt++ {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return withContext(ctx, err)
		}
		lost, err := s.run(ctx, conn, fn)
		switch {
		case err == nil:
			return nil
		case attempt < maxAttempts && ctx.Err() == nil && retryable(err):
			continue
		case lost && !errors.Is(err, store.ErrUnavailable):
			return fmt.Errorf("%w: connection lost: %w", store.ErrUnavailable, err)
		}
		return withContext(ctx, err)
	}
}

// session runs fn on a connection of the pool as do does, but only once:
// fn keeps state on the connection, such as temporary tables, and tries
// its own steps again where that is safe.
func (s *Store) session(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return withContext(ctx, err)
	}
	lost, err := s.run(ctx, conn, fn)
	if lost && !errors.Is(err, store.ErrUnavailable) {
		return fmt.Errorf("%w: connection lost: %w", store.ErrUnavailable, err)
	}
	return withContext(ctx, err)
}

// run runs fn on conn, releases conn and reports whether it was lost
// under fn, in which case it drops the idle connections too.
func (s *Store) run(ctx context.Context, conn *pgxpool.Conn, fn func(conn *pgx.Conn) error) (lost bool, err error) {
	err = fn(conn.Conn())
	lost = err != nil && conn.Conn().IsClosed() && ctx.Err() == nil
	conn.Release()
	if lost {
		// The server went away: drop the other idle connections too,
		// rather than hand each out broken.
		s.pool.Reset()
	}
	return lost, err
}

// withContext returns err, a failure of a call under ctx, saying that ctx
// ended if it did, whatever pgx made of that (such as a dial error or the
// server's cancelled statement), so that translate can tell a cancelled
// call from an unavailable server.
func withContext(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", cerr, err)
	}
	return err
}

// tx runs fn in a transaction on a connection of the pool and commits it if
// fn returns nil. fn may run again, in a new transaction, if a try fails in
// a way safe to retry.
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.do(ctx, func(conn *pgx.Conn) error { return pgx.BeginFunc(ctx, conn, fn) })
}

// exec runs one statement on a connection of the pool and returns how many
// rows it affected.
func (s *Store) exec(ctx context.Context, sql string, args ...any) (int64, error) {
	var n int64
	err := s.do(ctx, func(conn *pgx.Conn) error {
		tag, err := conn.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

// collect runs a query on a connection of the pool and returns its rows,
// each read by scan.
func collect[T any](ctx context.Context, s *Store, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	var list []T
	err := s.do(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		list, err = pgx.CollectRows(rows, scan)
		return err
	})
	return list, err
}

// one runs a query of at most one row on a connection of the pool and
// returns the row read by scan, or pgx.ErrNoRows.
func one[T any](ctx context.Context, s *Store, scan pgx.RowToFunc[T], sql string, args ...any) (T, error) {
	var v T
	err := s.do(ctx, func(conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		v, err = pgx.CollectExactlyOneRow(rows, scan)
		return err
	})
	return v, err
}

// checkRowAffected returns store.ErrNotFound unless n, a number of rows
// affected, is positive.
func checkRowAffected(n int64) error {
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// now returns the current time as the store keeps times: whole seconds in
// UTC.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

// orNow returns t cut to whole seconds in UTC, or now if t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return now()
	}
	return time.Unix(t.Unix(), 0).UTC()
}
