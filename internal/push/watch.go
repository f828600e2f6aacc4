package push

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/larder-cache/larder/internal/client"

	_ "modernc.org/sqlite" // the driver of the Nix database, read only
)

// DefaultNixDB is where Nix keeps the database of valid store paths.
const DefaultNixDB = "/nix/var/nix/db/db.sqlite"

// WatchOptions choose how Watch follows the store.
type WatchOptions struct {
	Options
	DB       string        // the Nix database; "": DefaultNixDB
	Poll     time.Duration // how often the database is read; 0: 1 s
	Debounce time.Duration // how long no new path must appear before a batch goes; 0: 2 s
	Logger   *slog.Logger
	// Pushed, if set, is called after each batch with its result.
	Pushed func(Result, error)
}

// Watch pushes, with their closures, the store paths that become valid in
// the local Nix store from now on, in batches once the store has been
// quiet for a moment, until ctx ends. Derivations (.drv files) are left
// out, as nix copy of a build's outputs leaves them. A path that is gone
// again by the time its batch goes is skipped; a batch that fails (the
// server is restarting, say) is tried again later with the paths that
// arrived since.
func Watch(ctx context.Context, c *client.Client, st Store, opts WatchOptions) error {
	if opts.DB == "" {
		opts.DB = DefaultNixDB
	}
	if opts.Poll <= 0 {
		opts.Poll = time.Second
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: opts.DB}).EscapedPath()+
		"?mode=ro&_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		return fmt.Errorf("open the Nix database %s: %w", opts.DB, err)
	}
	defer db.Close()
	var last int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM ValidPaths`).Scan(&last); err != nil {
		return fmt.Errorf("read the Nix database %s: %w", opts.DB, err)
	}
	log.Info("watching the Nix store for new paths", "db", opts.DB, "after_id", last)
	var pending []string
	var lastNew, retryAt time.Time
	backoff := opts.Debounce
	t := time.NewTicker(opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fresh, top, err := newPaths(ctx, db, last)
		if err != nil {
			log.Warn("read the Nix database", "err", err)
			continue
		}
		if len(fresh) > 0 || top > last {
			last = top
			pending = append(pending, fresh...)
			lastNew = time.Now()
		}
		if len(pending) == 0 || time.Since(lastNew) < opts.Debounce || time.Now().Before(retryAt) {
			continue
		}
		res, err := pushBatch(ctx, c, st, pending, opts.Options, log)
		if opts.Pushed != nil {
			opts.Pushed(res, err)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("push new paths; trying again", "paths", len(pending), "in", backoff, "err", err)
			retryAt = time.Now().Add(backoff)
			backoff = min(2*backoff, time.Minute)
			continue
		}
		pending, backoff = nil, opts.Debounce
	}
}

// newPaths returns the valid paths after the database row last, but
// derivations, and the highest row read.
func newPaths(ctx context.Context, db *sql.DB, last int64) ([]string, int64, error) {
	rows, err := db.QueryContext(ctx, `SELECT id, path FROM ValidPaths WHERE id > ? ORDER BY id LIMIT 10000`, last)
	if err != nil {
		return nil, last, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&last, &p); err != nil {
			return nil, last, err
		}
		if !strings.HasSuffix(p, ".drv") {
			out = append(out, p)
		}
	}
	return out, last, rows.Err()
}

// pushBatch pushes the closures of paths, skipping those no longer valid.
func pushBatch(ctx context.Context, c *client.Client, st Store, paths []string, opts Options, log *slog.Logger) (Result, error) {
	infos, err := st.PathInfo(ctx, paths, true)
	if err != nil {
		// Some path is gone (collected, or a failed build's): ask for
		// each on its own and leave out those Nix no longer has.
		var valid []string
		for _, p := range paths {
			if _, perr := st.PathInfo(ctx, []string{p}, false); perr == nil {
				valid = append(valid, p)
			} else {
				log.Warn("skipping a path that is no longer valid", "path", p, "err", perr)
			}
		}
		if len(valid) == 0 {
			return Result{}, nil
		}
		if infos, err = st.PathInfo(ctx, valid, true); err != nil {
			return Result{}, err
		}
	}
	res, err := Push(ctx, c, st, infos, opts)
	if errors.Is(err, context.Canceled) {
		return res, nil
	}
	return res, err
}
