package storetest

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// pinTests check the pin part of the GCStore contract.
var pinTests = []metaTest{
	{"PinAddList", testPinAddList},
	{"PinReplace", testPinReplace},
	{"PinCreatedAtAssigned", testPinCreatedAtAssigned},
	{"PinUnknownCache", testPinUnknownCache},
	{"PinDelete", testPinDelete},
	{"PinDeleteMissing", testPinDeleteMissing},
}

// newPin returns a revision of the pin called name of the path named by
// seed in the cache, pinned at the given hour of a fixed day.
func newPin(cacheID int64, name, seed string, hour int) store.Pin {
	return store.Pin{CacheID: cacheID, Name: name, Hash: storeHash(seed), StorePath: "/nix/store/" + ref(seed),
		CreatedAt: time.Date(2024, 6, 7, hour, 0, 0, 0, time.UTC)}
}

// addPin records p with rule and fails t on error.
func addPin(t *testing.T, s store.MetaStore, p store.Pin, rule store.PinRule) {
	t.Helper()
	mustOK(t, "add pin "+p.Name, s.AddPin(t.Context(), p, rule))
}

// mustPins fails t unless ListPins of the cache returns want, in order,
// and rules.
func mustPins(t *testing.T, s store.MetaStore, cacheID int64, rules map[string]store.PinRule, want ...store.Pin) {
	t.Helper()
	got, gotRules, err := s.ListPins(t.Context(), cacheID)
	mustOK(t, "list pins", err)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		mustUTC(t, "list pins", got[i].CreatedAt)
		g, w := got[i], want[i]
		g.CreatedAt, w.CreatedAt = sec(g.CreatedAt), sec(w.CreatedAt)
		ok = g == w
	}
	if !ok {
		t.Fatalf("list pins of cache %d: got %+v, want %+v", cacheID, got, want)
	}
	if !maps.Equal(gotRules, rules) {
		t.Fatalf("list pins of cache %d: rules %+v, want %+v", cacheID, gotRules, rules)
	}
}

func testPinAddList(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	mustPins(t, s, c.ID, nil)
	appRule := store.PinRule{KeepRevisions: 3, KeepFor: 30 * 24 * time.Hour}
	libRule := store.PinRule{KeepFor: time.Hour}
	app1, app2, app3 := newPin(c.ID, "app", "app-1", 1), newPin(c.ID, "app", "app-2", 3), newPin(c.ID, "app", "app-3", 2)
	lib := newPin(c.ID, "lib", "lib", 5)
	unnamed := newPin(c.ID, "", "tool", 4)
	for _, p := range []store.Pin{app1, lib, app2, unnamed, app3} {
		rule := appRule
		switch p.Name {
		case "lib":
			rule = libRule
		case "":
			rule = store.PinRule{}
		}
		addPin(t, s, p, rule)
	}
	addPin(t, s, newPin(other.ID, "app", "app-9", 9), store.PinRule{KeepRevisions: 1})
	unnamed.Name = unnamed.Hash
	mustPins(t, s, c.ID, map[string]store.PinRule{"app": appRule, "lib": libRule, unnamed.Name: {}},
		unnamed, app2, app3, app1, lib)
	mustPins(t, s, other.ID, map[string]store.PinRule{"app": {KeepRevisions: 1}}, newPin(other.ID, "app", "app-9", 9))
	mustPins(t, s, 424242, nil)
}

func testPinReplace(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	p := newPin(c.ID, "app", "app-1", 1)
	addPin(t, s, p, store.PinRule{KeepRevisions: 2})
	p.StorePath, p.CreatedAt = p.StorePath+"-moved", p.CreatedAt.Add(time.Hour)
	rule := store.PinRule{KeepRevisions: 5, KeepFor: time.Minute}
	addPin(t, s, p, rule)
	mustPins(t, s, c.ID, map[string]store.PinRule{"app": rule}, p)
	// Another revision sets the rule of the name too.
	p2 := newPin(c.ID, "app", "app-2", 0)
	addPin(t, s, p2, store.PinRule{})
	mustPins(t, s, c.ID, map[string]store.PinRule{"app": {}}, p, p2)
}

func testPinCreatedAtAssigned(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "main")
	p := newPin(c.ID, "app", "app-1", 1)
	p.CreatedAt = time.Time{}
	before := time.Now()
	addPin(t, s, p, store.PinRule{})
	got, _, err := s.ListPins(t.Context(), c.ID)
	mustOK(t, "list pins", err)
	if len(got) != 1 {
		t.Fatalf("list pins: %+v", got)
	}
	mustRecent(t, "pin with zero CreatedAt", got[0].CreatedAt, before)
}

func testPinUnknownCache(t *testing.T, s store.MetaStore) {
	c := createCache(t, s, "gone")
	mustOK(t, "delete cache", s.DeleteCache(t.Context(), "gone"))
	err := s.AddPin(t.Context(), newPin(c.ID, "app", "app-1", 1), store.PinRule{})
	mustNotFound(t, "add pin to a deleted cache", err)
	mustPins(t, s, c.ID, nil)
}

func testPinDelete(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	rule := store.PinRule{KeepRevisions: 2}
	var app []store.Pin
	for i := range 3 {
		app = append(app, newPin(c.ID, "app", fmt.Sprint("app-", i), i))
		addPin(t, s, app[i], rule)
	}
	lib := newPin(c.ID, "lib", "lib", 1)
	addPin(t, s, lib, store.PinRule{})
	mustOK(t, "delete one revision", s.DeletePins(ctx, c.ID, "app", app[1].Hash))
	mustPins(t, s, c.ID, map[string]store.PinRule{"app": rule, "lib": {}}, app[2], app[0], lib)
	mustOK(t, "delete all revisions", s.DeletePins(ctx, c.ID, "app", ""))
	mustPins(t, s, c.ID, map[string]store.PinRule{"lib": {}}, lib)
	mustOK(t, "delete the last revision by hash", s.DeletePins(ctx, c.ID, "lib", lib.Hash))
	mustPins(t, s, c.ID, nil)
	// A name pinned again starts with the rule it is given.
	addPin(t, s, app[0], store.PinRule{KeepFor: time.Hour})
	mustPins(t, s, c.ID, map[string]store.PinRule{"app": {KeepFor: time.Hour}}, app[0])
}

func testPinDeleteMissing(t *testing.T, s store.MetaStore) {
	ctx := t.Context()
	c := createCache(t, s, "main")
	other := createCache(t, s, "other")
	p := newPin(c.ID, "app", "app-1", 1)
	addPin(t, s, p, store.PinRule{})
	mustNotFound(t, "delete an unknown pin", s.DeletePins(ctx, c.ID, "lib", ""))
	mustNotFound(t, "delete an unknown revision", s.DeletePins(ctx, c.ID, "app", storeHash("app-2")))
	mustNotFound(t, "delete a pin of another cache", s.DeletePins(ctx, other.ID, "app", ""))
	mustNotFound(t, "delete a revision by its hash as a name", s.DeletePins(ctx, c.ID, p.Hash, ""))
	mustPins(t, s, c.ID, map[string]store.PinRule{"app": {}}, p)
}
