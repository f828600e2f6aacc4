package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/larder-cache/larder/internal/store"
)

// SQLSTATE codes the store tells apart.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeSerialization       = "40001"
	codeDeadlock            = "40P01"
)

// translate turns pgx's errors into those of package store: no rows into
// store.ErrNotFound, a violated uniqueness into store.ErrExists, a missing
// referenced row into store.ErrNotFound, and the errors of a server that
// cannot serve for the moment, or did not answer before the context's
// deadline, into ones wrapping store.ErrUnavailable. Other errors, among
// them those of a cancelled context, are returned unchanged.
func translate(err error) error {
	var pe *pgconn.PgError
	switch {
	case err == nil || errors.Is(err, store.ErrUnavailable):
		return err
	case errors.Is(err, context.Canceled):
		return err
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrNotFound
	case errors.As(err, &pe) && pe.Code == codeUniqueViolation:
		return fmt.Errorf("%w: %w", store.ErrExists, err)
	case errors.As(err, &pe) && pe.Code == codeForeignKeyViolation:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	case unavailable(err):
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// unavailable reports whether err says that the server could not be
// reached or could not serve for the moment, so that trying again later
// may succeed.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return transientCode(pe.Code)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// transientCode reports whether the SQLSTATE code says the server failed
// for the moment rather than refused the request.
func transientCode(code string) bool {
	switch code {
	case "57P01", // admin_shutdown
		"57P02",           // crash_shutdown
		"57P03",           // cannot_connect_now
		"57014",           // query_canceled, by statement_timeout
		"55P03",           // lock_not_available, by lock_timeout
		"25006",           // read_only_sql_transaction: a standby after a failover
		codeSerialization, // once retries are spent
		codeDeadlock:
		return true
	}
	// Classes 08 (connection exception), 53 (insufficient resources, such
	// as too_many_connections) and 58 (system error).
	return strings.HasPrefix(code, "08") || strings.HasPrefix(code, "53") || strings.HasPrefix(code, "58")
}

// retryable reports whether the call that failed with err may run again at
// once: nothing reached the server, or the server rolled the transaction
// back to resolve a conflict with another.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == codeSerialization || pe.Code == codeDeadlock
	}
	return pgconn.SafeToRetry(err)
}
