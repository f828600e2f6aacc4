package service

import (
	"context"
	"encoding/hex"
	"errors"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// A session is a login to the dashboard: the browser pastes an HTTP token
// once, and holds from then on a secret that names a session in the
// metadata store (so that every replica knows it), of which the store
// keeps only the hash. A session allows what its token allows, for as long
// as both last: revoking the token ends its sessions.

// SessionTTL is how long a session lasts, at most: never past its token.
const SessionTTL = 12 * time.Hour

// sessionsPerToken is how many sessions a token keeps open; a new one ends
// the oldest beyond it.
const sessionsPerToken = 16

// sessionPrefix starts every session secret.
const sessionPrefix = "lrs_"

// Session is a login to the dashboard.
type Session struct {
	Principal *Principal // whom the session stands for
	CSRF      string     // the token the session's forms carry
	ExpiresAt time.Time
}

// Login opens a session for the holder of an HTTP token, checked as
// Authenticate checks it, and returns the session's secret, which is not
// shown again.
func (s *Service) Login(ctx context.Context, token string) (string, Session, error) {
	if token == "" {
		return "", Session{}, errorf(CodeUnauthenticated, "paste a token to log in")
	}
	p, err := s.Authenticate(ctx, token)
	if err != nil {
		return "", Session{}, err
	}
	secret := sessionPrefix + tokenEncoding.EncodeToString(random(32))
	sess := Session{Principal: p, CSRF: hex.EncodeToString(random(24)),
		ExpiresAt: time.Now().Add(SessionTTL).UTC().Truncate(time.Second)}
	if exp := p.token.ExpiresAt; !exp.IsZero() && exp.Before(sess.ExpiresAt) {
		sess.ExpiresAt = exp
	}
	err = s.meta.CreateSession(ctx, store.Session{ID: hashToken(secret), TokenID: p.token.ID, CSRF: sess.CSRF,
		ExpiresAt: sess.ExpiresAt}, sessionsPerToken)
	if errors.Is(err, store.ErrNotFound) {
		return "", Session{}, errorf(CodeUnauthenticated, "the token is not valid (unknown or revoked)")
	}
	if err != nil {
		return "", Session{}, internal(err, "open a session")
	}
	return secret, sess, nil
}

// errNoSession is the refusal of a session secret that names no session
// now.
var errNoSession = &Error{Code: CodeUnauthenticated, Msg: "the session has ended; log in again"}

// SessionOf returns the session a secret names, if it has not ended and
// its token is still valid.
func (s *Service) SessionOf(ctx context.Context, secret string) (Session, error) {
	if len(secret) != len(sessionPrefix)+52 || secret[:len(sessionPrefix)] != sessionPrefix {
		return Session{}, errNoSession
	}
	rec, tok, err := s.meta.GetSession(ctx, hashToken(secret))
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, errNoSession
	}
	if err != nil {
		return Session{}, internal(err, "look up a session")
	}
	if !time.Now().Before(rec.ExpiresAt) {
		return Session{}, errNoSession
	}
	p, err := checkExpiry(tok)
	if err != nil {
		return Session{}, err
	}
	return Session{Principal: p, CSRF: rec.CSRF, ExpiresAt: rec.ExpiresAt}, nil
}

// Logout ends the session a secret names, if there is one.
func (s *Service) Logout(ctx context.Context, secret string) error {
	if err := s.meta.DeleteSession(ctx, hashToken(secret)); err != nil {
		return internal(err, "end a session")
	}
	return nil
}

// expireSessions forgets the sessions that have ended.
func (s *Service) expireSessions(ctx context.Context) {
	n, err := s.meta.ExpireSessions(ctx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("forget ended sessions", "err", err)
		}
		return
	}
	if n > 0 {
		s.log.Debug("forgot ended sessions", "count", n)
	}
}
