package retry

import (
	"context"

	"github.com/larder-cache/larder/internal/store"
)

// Meta wraps a MetaStore: its read methods, the ones on the request paths,
// are retried; writes are not. It passes ChangeNotifier through.
func Meta(m store.MetaStore, p Policy) store.MetaStore { return &meta{MetaStore: m, p: p} }

type meta struct {
	store.MetaStore
	p Policy
}

// Changes forwards to the wrapped store if it notifies; otherwise it
// returns a nil channel, which never delivers.
func (m *meta) Changes(ctx context.Context) (<-chan struct{}, error) {
	if n, ok := m.MetaStore.(store.ChangeNotifier); ok {
		return n.Changes(ctx)
	}
	return nil, nil
}

func (m *meta) GetCache(ctx context.Context, name string) (store.Cache, error) {
	return do(ctx, m.p, func() (store.Cache, error) { return m.MetaStore.GetCache(ctx, name) })
}

func (m *meta) ListCaches(ctx context.Context) ([]store.Cache, error) {
	return do(ctx, m.p, func() ([]store.Cache, error) { return m.MetaStore.ListCaches(ctx) })
}

func (m *meta) LookupToken(ctx context.Context, hash string) (store.Token, error) {
	return do(ctx, m.p, func() (store.Token, error) { return m.MetaStore.LookupToken(ctx, hash) })
}

func (m *meta) LookupAccessKey(ctx context.Context, id string) (store.Token, error) {
	return do(ctx, m.p, func() (store.Token, error) { return m.MetaStore.LookupAccessKey(ctx, id) })
}

func (m *meta) GetNar(ctx context.Context, fileHash string) (store.Nar, error) {
	return do(ctx, m.p, func() (store.Nar, error) { return m.MetaStore.GetNar(ctx, fileHash) })
}

func (m *meta) CacheNar(ctx context.Context, cacheID int64, fileHash string) (store.Nar, error) {
	return do(ctx, m.p, func() (store.Nar, error) { return m.MetaStore.CacheNar(ctx, cacheID, fileHash) })
}

type narInfoAndNar struct {
	ni store.NarInfo
	n  store.Nar
}

func (m *meta) GetNarInfo(ctx context.Context, cacheID int64, hash string) (store.NarInfo, store.Nar, error) {
	r, err := do(ctx, m.p, func() (narInfoAndNar, error) {
		ni, n, err := m.MetaStore.GetNarInfo(ctx, cacheID, hash)
		return narInfoAndNar{ni, n}, err
	})
	return r.ni, r.n, err
}

func (m *meta) ListNarInfoKeys(ctx context.Context, after int64, limit int) ([]store.NarInfoKey, error) {
	return do(ctx, m.p, func() ([]store.NarInfoKey, error) { return m.MetaStore.ListNarInfoKeys(ctx, after, limit) })
}

func (m *meta) GetObject(ctx context.Context, cacheID int64, key string) (store.Object, error) {
	return do(ctx, m.p, func() (store.Object, error) { return m.MetaStore.GetObject(ctx, cacheID, key) })
}

func (m *meta) ListKeys(ctx context.Context, cacheID int64, prefix, after string, limit int) ([]store.Entry, error) {
	return do(ctx, m.p, func() ([]store.Entry, error) {
		return m.MetaStore.ListKeys(ctx, cacheID, prefix, after, limit)
	})
}

type sessionAndToken struct {
	s store.Session
	t store.Token
}

// GetSession is read on every request of the dashboard by someone logged in.
func (m *meta) GetSession(ctx context.Context, id string) (store.Session, store.Token, error) {
	r, err := do(ctx, m.p, func() (sessionAndToken, error) {
		s, t, err := m.MetaStore.GetSession(ctx, id)
		return sessionAndToken{s, t}, err
	})
	return r.s, r.t, err
}
