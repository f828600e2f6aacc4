package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// changesChannel is the channel of the notifications a Store sends when it
// commits a change of narinfos, caches or tokens. The payload is the ID of
// the Store that sent it.
const changesChannel = "larder_changes"

const (
	// listenPing is how long a listening connection may stay silent before
	// it is pinged, so that one dropped without a word (by a firewall or a
	// lost peer) is noticed and replaced.
	listenPing = 30 * time.Second
	// Reconnecting waits from minBackoff, doubling after each failure up to
	// maxBackoff.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// notify queues the notification of a change in tx, to be sent if tx
// commits. Notifications are sent in commit order; a commit that sends one
// waits for the others that do, which suits the short transactions that
// change narinfos, caches and tokens.
func (s *Store) notify(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, changesChannel, s.id)
	return err
}

// Changes returns a channel that receives a value soon after another
// process, or another Store, commits a narinfo or changes caches or tokens:
// changes made through this Store do not wake it. Values coalesce: one
// waiting value stands for any number of changes. It also receives one
// each time the listening connection has been re-established after it
// dropped, since changes may have been missed meanwhile. The channel is
// closed when ctx ends or the Store is closed.
//
// Changes returns once it listens, so that every change committed after
// it returns is reported. It holds a connection of its own, apart from
// the pool, for as long as the channel is open.
func (s *Store) Changes(ctx context.Context) (<-chan struct{}, error) {
	if s.closing.Err() != nil {
		return nil, fmt.Errorf("listen for changes: %w", errClosed)
	}
	conn, err := s.listen(ctx)
	if err != nil {
		return nil, fmt.Errorf("listen for changes: %w", translate(err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Err() != nil {
		closeConn(conn)
		return nil, fmt.Errorf("listen for changes: %w", errClosed)
	}
	ch := make(chan struct{}, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.relay(ctx, conn, ch)
	}()
	return ch, nil
}

// listen opens a connection that listens on changesChannel. Its context
// watcher only sets a deadline when a context ends, without asking the
// server to cancel anything, so that a wait for notifications that times
// out leaves the connection usable.
func (s *Store) listen(ctx context.Context) (*pgx.Conn, error) {
	cfg := s.cfg.Copy()
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: pc.Conn()}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+changesChannel); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// relay sends on ch for each notification conn receives from another
// Store, re-establishing the connection whenever it drops, until ctx ends
// or the Store is closed; then it closes conn and ch.
func (s *Store) relay(ctx context.Context, conn *pgx.Conn, ch chan<- struct{}) {
	defer close(ch)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closing, cancel)
	defer stop()
	for conn != nil {
		s.forward(ctx, conn, ch)
		closeConn(conn)
		if conn = s.relisten(ctx); conn != nil {
			wake(ch)
		}
	}
}

// forward sends on ch for each notification conn receives from another
// Store, pinging conn after each silence of listenPing, and returns when
// conn fails or ctx ends.
func (s *Store) forward(ctx context.Context, conn *pgx.Conn, ch chan<- struct{}) {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if n.Payload != s.id {
				wake(ch)
			}
			continue
		case ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
			return
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// relisten opens a new listening connection, trying again with growing
// pauses, and returns nil if ctx ends first.
func (s *Store) relisten(ctx context.Context) *pgx.Conn {
	backoff := minBackoff
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		if conn, err := s.listen(ctx); err == nil {
			return conn
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// wake sends on ch unless a value already waits there.
func wake(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
