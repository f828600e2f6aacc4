package upstream

import (
	"sync"
	"time"
)

// answerCache remembers what upstreams answered, each answer until its
// expiry, in two generations: when the newer holds answerMax answers, or
// hits whose narinfos add up to answerBytes, the older is dropped. So it
// holds at most twice either, however many paths clients ask about.
type answerCache struct {
	mu       sync.Mutex
	cur, old map[answerKey]remembered
	curBytes int64
}

type remembered struct {
	a     answer
	until time.Time
}

const (
	answerMax   = 65536
	answerBytes = 16 << 20
)

func newAnswerCache() *answerCache {
	return &answerCache{cur: map[answerKey]remembered{}, old: map[answerKey]remembered{}}
}

// get returns the answer remembered for k, if it has not expired.
func (c *answerCache) get(k answerKey, now time.Time) (answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.cur[k]
	if !ok {
		r, ok = c.old[k]
	}
	if !ok || now.After(r.until) {
		return answer{}, false
	}
	return r.a, true
}

// put remembers a until until.
func (c *answerCache) put(k answerKey, a answer, until time.Time) {
	size := int64(len(k.upstream) + len(k.hash) + 64)
	if a.hit != nil {
		size += int64(a.hit.size)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= answerMax || c.curBytes+size > answerBytes {
		c.old, c.cur, c.curBytes = c.cur, make(map[answerKey]remembered), 0
	}
	c.cur[k] = remembered{a: a, until: until}
	c.curBytes += size
}

// len returns how many answers are remembered, expired ones included.
func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cur) + len(c.old)
}
