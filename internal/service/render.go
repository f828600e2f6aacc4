package service

import (
	"sync"
	"time"
)

// renderCache keeps narinfos as served (rendered and signed) for a short
// while, so that a path many clients ask for costs neither a database read
// nor a signature each time. An entry serves only under the signing key it
// was signed with, and at most renderTTL after it was rendered: this
// process forgets an entry as soon as it changes or removes the narinfo,
// and renderTTL bounds how long a change made through another replica
// goes unseen. It holds at most 2×renderMax entries, in two generations:
// when the newer is full, the older is dropped.
type renderCache struct {
	mu       sync.RWMutex
	cur, old map[renderKey]rendered
}

type renderKey struct {
	cacheID int64
	hash    string
}

type rendered struct {
	text   NarInfoText
	secret string // the signing key it was signed with
	until  time.Time
}

const (
	renderTTL = 2 * time.Second
	renderMax = 8192
)

func newRenderCache() *renderCache {
	return &renderCache{cur: map[renderKey]rendered{}, old: map[renderKey]rendered{}}
}

// get returns the narinfo of hash in the cache as rendered and signed with
// secret within renderTTL, if there is one.
func (r *renderCache) get(cacheID int64, hash, secret string, now time.Time) (NarInfoText, bool) {
	k := renderKey{cacheID, hash}
	r.mu.RLock()
	e, ok := r.cur[k]
	if !ok {
		e, ok = r.old[k]
	}
	r.mu.RUnlock()
	if !ok || e.secret != secret || now.After(e.until) {
		return NarInfoText{}, false
	}
	return e.text, true
}

// put keeps a rendering of hash in the cache, body, which its caller must
// not change any more, and returns it tagged.
func (r *renderCache) put(cacheID int64, hash, secret string, body []byte, now time.Time) NarInfoText {
	t := newNarInfoText(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cur) >= renderMax {
		r.old, r.cur = r.cur, make(map[renderKey]rendered, renderMax)
	}
	r.cur[renderKey{cacheID, hash}] = rendered{text: t, secret: secret, until: now.Add(renderTTL)}
	return t
}

// dropCache forgets every rendering of the cache.
func (r *renderCache) dropCache(cacheID int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range []map[renderKey]rendered{r.cur, r.old} {
		for k := range m {
			if k.cacheID == cacheID {
				delete(m, k)
			}
		}
	}
}

// forget drops the rendering of hash in the cache.
func (r *renderCache) forget(cacheID int64, hash string) {
	k := renderKey{cacheID, hash}
	r.mu.Lock()
	delete(r.cur, k)
	delete(r.old, k)
	r.mu.Unlock()
}

// dropAll forgets every rendering, as when a NAR file that narinfos of any
// cache may point at is withdrawn.
func (r *renderCache) dropAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	clear(r.cur)
	clear(r.old)
}
