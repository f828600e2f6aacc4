package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/larder-cache/larder/internal/store"
)

// CreateSession records the session and drops the oldest of its token's
// beyond keep, in one transaction.
func (s *Store) CreateSession(ctx context.Context, sess store.Session, keep int) error {
	created := orNow(sess.CreatedAt)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sessions (id, token_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
			sess.ID, sess.TokenID, sess.CSRF, created, time.Unix(sess.ExpiresAt.Unix(), 0).UTC())
		if err != nil || keep < 1 {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM sessions WHERE token_id = $1 AND id <> $2 AND id NOT IN (
			SELECT id FROM sessions WHERE token_id = $1 AND id <> $2 ORDER BY created_at DESC, id DESC LIMIT $3)`,
			sess.TokenID, sess.ID, keep-1)
		return err
	})
	if err != nil {
		return fmt.Errorf("create session: %w", translate(err))
	}
	return nil
}

// sessionRow is a session with its token, as GetSession reads them.
type sessionRow struct {
	s store.Session
	t store.Token
}

// GetSession returns the session with the given ID and its token.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, store.Token, error) {
	r, err := one(ctx, s, func(row pgx.CollectableRow) (sessionRow, error) {
		var r sessionRow
		var perm string
		var expires *time.Time
		err := row.Scan(&r.s.ID, &r.s.TokenID, &r.s.CSRF, &r.s.CreatedAt, &r.s.ExpiresAt,
			&r.t.ID, &r.t.Hash, &r.t.AccessKeyID, &r.t.Secret, &r.t.Scope, &perm, &r.t.Description, &r.t.CreatedAt, &expires)
		r.s.CreatedAt, r.s.ExpiresAt, r.t.CreatedAt = r.s.CreatedAt.UTC(), r.s.ExpiresAt.UTC(), r.t.CreatedAt.UTC()
		r.t.Perm = store.Perm(perm)
		if expires != nil {
			r.t.ExpiresAt = expires.UTC()
		}
		return r, err
	}, `SELECT s.id, s.token_id, s.csrf, s.created_at, s.expires_at,
		t.id, coalesce(t.hash, ''), coalesce(t.access_key_id, ''), t.secret, t.scope, t.perm, t.description, t.created_at, t.expires_at
		FROM sessions s JOIN tokens t ON t.id = s.token_id WHERE s.id = $1`, id)
	if err != nil {
		return store.Session{}, store.Token{}, fmt.Errorf("get session: %w", translate(err))
	}
	return r.s, r.t, nil
}

// DeleteSession removes the session with the given ID, if there is one.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.exec(ctx, `DELETE FROM sessions WHERE id = $1`, id); err != nil {
		return fmt.Errorf("delete session: %w", translate(err))
	}
	return nil
}

// ExpireSessions removes the sessions that expire before before, on the
// index of expires_at.
func (s *Store) ExpireSessions(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.exec(ctx, `DELETE FROM sessions WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("expire sessions: %w", translate(err))
	}
	return n, nil
}
