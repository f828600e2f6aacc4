package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// pingTimeout bounds a ping of a listening connection.
	pingTimeout = 5 * time.Second
	// closeTimeout bounds the goodbye sent when closing a connection.
	closeTimeout = time.Second
)

// errClosed is returned by a Store after Close.
var errClosed = errors.New("store is closed")

// closeConn closes a connection of its own (not the pool's).
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	conn.Close(ctx)
}
