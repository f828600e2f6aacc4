package service

import (
	"fmt"
	"testing"
	"time"
)

func TestRenderCache(t *testing.T) {
	r := newRenderCache()
	now := time.Now()
	r.put(1, "h", "k1", []byte("body"), now)
	if b, ok := r.get(1, "h", "k1", now.Add(renderTTL/2)); !ok || string(b.Body) != "body" || b.ETag != newNarInfoText([]byte("body")).ETag {
		t.Fatalf("fresh entry: %q %s %v", b.Body, b.ETag, ok)
	}
	if _, ok := r.get(1, "h", "k2", now); ok {
		t.Fatal("an entry signed with another key served")
	}
	if _, ok := r.get(2, "h", "k1", now); ok {
		t.Fatal("an entry of another cache served")
	}
	if _, ok := r.get(1, "h", "k1", now.Add(renderTTL+time.Millisecond)); ok {
		t.Fatal("an entry older than renderTTL served")
	}
	r.forget(1, "h")
	if _, ok := r.get(1, "h", "k1", now); ok {
		t.Fatal("a forgotten entry served")
	}
	r.put(1, "a", "k1", []byte("a"), now)
	r.put(2, "b", "k1", []byte("b"), now)
	r.dropCache(1)
	if _, ok := r.get(1, "a", "k1", now); ok {
		t.Fatal("an entry of a dropped cache served")
	}
	if _, ok := r.get(2, "b", "k1", now); !ok {
		t.Fatal("dropping a cache dropped another's entry")
	}
	// It holds at most two generations of renderMax.
	for i := range 5 * renderMax {
		r.put(3, fmt.Sprint(i), "k", nil, now)
	}
	if n := len(r.cur) + len(r.old); n > 2*renderMax {
		t.Fatalf("%d entries kept, more than %d", n, 2*renderMax)
	}
	if _, ok := r.get(3, fmt.Sprint(5*renderMax-1), "k", now); !ok {
		t.Fatal("the newest entry was dropped")
	}
}
