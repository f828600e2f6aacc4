// Package storetest owns the conformance suites for the store interfaces:
// TestBlobStore and TestMetaStore check every clause of the contracts written
// in package store. Each implementation of store.BlobStore and
// store.MetaStore runs them from its own tests, so all implementations keep
// the contracts the same way.
//
// Where package store leaves a detail open, the suites pin the convention
// every implementation follows:
//
//   - Times read back are in UTC and kept to at least the second; a
//     policy's Retention and a pin rule's KeepFor are kept to the second.
//   - A Nar, NarInfo, Object, HeldNarInfo, Upload or Part handed over with a
//     zero CreatedAt is stored with the time of the call; a non-zero one is
//     kept. Caches and tokens always get the time of the call, and a new
//     cache a zero LastGC.
//   - Empty and nil slices (References, Sigs, Body) are the same thing, and
//     so are empty and nil maps (Metadata).
//   - Lists whose order the contract leaves open are compared as sets.
package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
)

// errBoom is the error the suites' failing readers and merges return.
var errBoom = errors.New("boom")

// mustNotFound fails t unless err is, or wraps, store.ErrNotFound.
func mustNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("%s: got error %v, want one wrapping store.ErrNotFound", what, err)
	}
}

// mustExists fails t unless err is, or wraps, store.ErrExists.
func mustExists(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("%s: got error %v, want one wrapping store.ErrExists", what, err)
	}
}

// mustOK fails t if err is not nil.
func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// mustRecent fails t unless tm is in UTC and within a minute of the interval
// [before, now], allowing for clocks of a remote store.
func mustRecent(t *testing.T, what string, tm, before time.Time) {
	t.Helper()
	if tm.IsZero() {
		t.Fatalf("%s: time is zero, want it assigned", what)
	}
	if tm.Location() != time.UTC {
		t.Errorf("%s: time %v is in %v, want UTC", what, tm, tm.Location())
	}
	lo, hi := before.Add(-time.Minute), time.Now().Add(time.Minute)
	if tm.Before(lo) || tm.After(hi) {
		t.Errorf("%s: time %v is not close to now (%v)", what, tm, time.Now())
	}
}

// sec normalises tm for comparisons: the zero time stays zero, any other is
// cut to whole seconds in UTC.
func sec(tm time.Time) time.Time {
	if tm.IsZero() {
		return time.Time{}
	}
	return time.Unix(tm.Unix(), 0).UTC()
}

// mustUTC fails t unless tm is zero or in UTC.
func mustUTC(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if !tm.IsZero() && tm.Location() != time.UTC {
		t.Errorf("%s: time %v is in %v, want UTC", what, tm, tm.Location())
	}
}
