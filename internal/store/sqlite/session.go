package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// CreateSession records the session and drops the oldest of its token's
// beyond keep, in one transaction.
func (s *Store) CreateSession(ctx context.Context, sess store.Session, keep int) error {
	created := orNow(sess.CreatedAt)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, token_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			sess.ID, sess.TokenID, sess.CSRF, created.Unix(), sess.ExpiresAt.Unix())
		if err != nil || keep < 1 {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE token_id = ?1 AND id <> ?2 AND id NOT IN (
			SELECT id FROM sessions WHERE token_id = ?1 AND id <> ?2 ORDER BY created_at DESC, id DESC LIMIT ?3)`,
			sess.TokenID, sess.ID, keep-1)
		return err
	})
	if err != nil {
		return fmt.Errorf("create session: %w", translate(err))
	}
	return nil
}

// GetSession returns the session with the given ID and its token.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, store.Token, error) {
	sess := store.Session{ID: id}
	var created, expires int64
	row := s.r.QueryRowContext(ctx, `SELECT s.token_id, s.csrf, s.created_at, s.expires_at,
		t.id, coalesce(t.hash, ''), coalesce(t.access_key_id, ''), t.secret, t.scope, t.perm, t.description, t.created_at, t.expires_at
		FROM sessions s JOIN tokens t ON t.id = s.token_id WHERE s.id = ?`, id)
	var t store.Token
	var tokCreated int64
	var tokExpires sql.NullInt64
	err := row.Scan(&sess.TokenID, &sess.CSRF, &created, &expires,
		&t.ID, &t.Hash, &t.AccessKeyID, &t.Secret, &t.Scope, &t.Perm, &t.Description, &tokCreated, &tokExpires)
	if err != nil {
		return store.Session{}, store.Token{}, fmt.Errorf("get session: %w", translate(err))
	}
	sess.CreatedAt, sess.ExpiresAt = fromUnix(created), fromUnix(expires)
	t.CreatedAt = fromUnix(tokCreated)
	if tokExpires.Valid {
		t.ExpiresAt = fromUnix(tokExpires.Int64)
	}
	return sess, t, nil
}

// DeleteSession removes the session with the given ID, if there is one.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// ExpireSessions removes the sessions that expire before before, on the
// index of expires_at.
func (s *Store) ExpireSessions(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, before.Unix())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("expire sessions: %w", err)
	}
	return n, nil
}
