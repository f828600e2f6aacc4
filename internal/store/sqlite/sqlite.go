// Package sqlite owns the embedded default store.MetaStore: caches, tokens,
// NAR records, narinfos, object records, held narinfos and multipart
// uploads in one SQLite database file, read and written through the pure Go
// modernc.org/sqlite driver.
//
// Several processes may open the same file at once, such as the server and
// a CLI command creating a token; each sees the others' committed changes
// at once. The database runs in WAL mode, so readers never wait for the
// writer nor it for them, and every process waits up to busyTimeout for
// the write lock instead of failing. A Store keeps two pools: one
// connection for writing, whose transactions begin IMMEDIATE so that they
// take the write lock at the start rather than fail to upgrade a read
// halfway, and several read-only connections for the lookups that serve
// clients. WAL shares memory between the processes through a file next to
// the database, so they must run on one host and the file must not be on a
// network file system. Collect has a connection of its own, for the scratch
// tables it keeps in the connection's temporary database; it writes in
// short IMMEDIATE transactions, waiting for the write lock like another
// process.
//
// The database uses synchronous=NORMAL. In WAL mode that cannot corrupt the
// database: a commit is written to the WAL at once but fsynced only at the
// next checkpoint, so a crash of the process loses nothing, while a power
// failure may undo the last transactions. Provided a blob is stored before
// the record that names it, such a loss leaves blobs without records, for
// garbage collection to find, never records without blobs; in exchange a
// write costs no fsync.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/larder-cache/larder/internal/store"
)

// busyTimeout is how long a connection waits for a lock held by another
// connection or process before failing with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Store is a store.MetaStore on one SQLite database file. It is safe for
// concurrent use, also by several processes on the same file.
type Store struct {
	w *sql.DB // one connection; transactions begin IMMEDIATE
	r *sql.DB // read-only connections
	// g is the connection of Collect, which keeps its scratch tables in
	// the connection's temporary database; transactions begin IMMEDIATE.
	g *sql.DB

	// collectBatch is how many narinfos or NAR links Collect removes in
	// one transaction; collectHook, if set, is called once the kept set is
	// known, before anything is removed. Tests change them.
	collectBatch int
	collectHook  func()

	// Prepared statements of the read pool, for the hot paths.
	getNarInfo      *sql.Stmt
	cacheNar        *sql.Stmt
	cachePackedNar  *sql.Stmt
	narChunks       *sql.Stmt
	lookupToken     *sql.Stmt
	lookupAccessKey *sql.Stmt
	getObject       *sql.Stmt
	listKeysFrom    *sql.Stmt // keys at or after a bound
	listKeysAfter   *sql.Stmt // keys after a bound
}

var _ store.MetaStore = (*Store)(nil)

// Open opens the database at path, creating it if needed, and brings its
// schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	s, err := open(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	return s, nil
}

// open does the work of Open.
func open(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	pragmas := []string{
		fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
		"foreign_keys(1)",
		"synchronous(NORMAL)",
	}
	w, err := sql.Open("sqlite", dsn(abs, pragmas, "_txlock=immediate"))
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	if err := setWAL(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn(abs, slices.Concat(pragmas, []string{"query_only(1)"})))
	if err != nil {
		w.Close()
		return nil, err
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	g, err := sql.Open("sqlite", dsn(abs, pragmas, "_txlock=immediate"))
	if err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	g.SetMaxOpenConns(1)
	g.SetMaxIdleConns(1)
	s := &Store{w: w, r: r, g: g, collectBatch: defaultCollectBatch}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// setWAL puts the database of db in WAL mode, which the file keeps.
// Changing the journal mode takes a lock for which SQLite does not wait, so
// that processes opening a new file at once may find it taken: setWAL
// tries again until busyTimeout has passed.
func setWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil && mode != "wal" {
			return fmt.Errorf("set WAL mode: journal mode is %s", mode)
		}
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("set WAL mode: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("set WAL mode: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY, of any extended kind.
func isBusy(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_BUSY
}

// dsn returns the modernc.org/sqlite data source name of the database file
// at the absolute path abs: a URI, so that any character may appear in the
// path, with the pragmas run on every new connection and other parameters.
func dsn(abs string, pragmas []string, params ...string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	q := url.Values{}
	for _, pr := range pragmas {
		q.Add("_pragma", pr)
	}
	raw := q.Encode()
	for _, kv := range params {
		raw += "&" + kv
	}
	u := url.URL{Scheme: "file", Path: p, RawQuery: raw}
	return u.String()
}

// preparedStmt is a statement of the read pool that Open prepares.
type preparedStmt struct {
	dst   **sql.Stmt
	query string
}

// prepared returns the statements that Open prepares.
func (s *Store) prepared() []preparedStmt {
	return []preparedStmt{
		{&s.getNarInfo, getNarInfoSQL},
		{&s.cacheNar, cacheNarSQL},
		{&s.cachePackedNar, cachePackedNarSQL},
		{&s.narChunks, narChunksSQL},
		{&s.lookupToken, lookupTokenSQL},
		{&s.lookupAccessKey, lookupAccessKeySQL},
		{&s.getObject, getObjectSQL},
		{&s.listKeysFrom, listKeysSQL(">=")},
		{&s.listKeysAfter, listKeysSQL(">")},
	}
}

// prepare prepares the statements of the hot paths on the read pool.
func (s *Store) prepare(ctx context.Context) error {
	for _, st := range s.prepared() {
		stmt, err := s.r.PrepareContext(ctx, st.query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", st.query, err)
		}
		*st.dst = stmt
	}
	return nil
}

// Close closes the statements and both pools.
func (s *Store) Close() error {
	var errs []error
	for _, st := range s.prepared() {
		if *st.dst != nil {
			errs = append(errs, (*st.dst).Close())
		}
	}
	errs = append(errs, s.g.Close(), s.r.Close(), s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close metadata database: %w", err)
	}
	return nil
}

// write runs fn in one IMMEDIATE transaction of the write pool and commits
// it if fn returns nil. fn must not call the Store: the write pool has one
// connection, which fn holds.
func (s *Store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // an error after Commit is only sql.ErrTxDone
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// translate turns the driver's errors into those of package store: no rows
// into store.ErrNotFound, a violated uniqueness into store.ErrExists and a
// missing referenced row into store.ErrNotFound.
func translate(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%w: %v", store.ErrExists, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %v", store.ErrNotFound, err)
		}
	}
	return err
}

// checkRowAffected returns store.ErrNotFound unless res affected a row.
func checkRowAffected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
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
	return fromUnix(t.Unix())
}

// fromUnix returns the time of the unix seconds sec in UTC.
func fromUnix(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}
