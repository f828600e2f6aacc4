package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-cache/larder/internal/store"
	"github.com/larder-cache/larder/internal/testserver"
)

// TestSeqCommitOrder checks that a reader paging through ListNarInfoKeys
// with after, while narinfos are added concurrently through two Stores,
// sees every narinfo exactly once and Seqs only growing.
func TestSeqCommitOrder(t *testing.T) {
	dsn := testserver.Postgres(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	ctx := t.Context()
	c := createCache(t, a, "main")
	n := addNar(t, a, c.ID, "n")
	const writers, perWriter = 8, 60
	var done atomic.Bool
	var wg sync.WaitGroup
	for w := range writers {
		s := []*Store{a, b}[w%2]
		wg.Go(func() {
			for i := range perWriter {
				ni := testNarInfo(c.ID, fmt.Sprint("w", w, "-", i), n.FileHash)
				// A pause between taking a Seq and committing lets
				// commits overtake one another, unless the store
				// prevents it.
				pause := time.Duration(rand.IntN(1000)) * time.Microsecond
				_, err := s.PutNarInfo(ctx, ni, func(*store.NarInfo) (store.NarInfo, error) {
					time.Sleep(pause)
					return ni, nil
				})
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		})
	}
	go func() {
		wg.Wait()
		done.Store(true)
	}()

	seen := map[string]int64{}
	var after int64
	for {
		// Read the flag first: after it is set, one more read sees all.
		last := done.Load()
		page := readPage(t, b, after)
		for _, k := range page {
			if k.Seq <= after {
				t.Fatalf("seq %d after %d", k.Seq, after)
			}
			if seq, ok := seen[k.Hash]; ok {
				t.Fatalf("narinfo %s seen twice, with seqs %d and %d", k.Hash, seq, k.Seq)
			}
			seen[k.Hash], after = k.Seq, k.Seq
		}
		if last && len(page) == 0 {
			break
		}
	}
	if len(seen) != writers*perWriter {
		t.Fatalf("reader saw %d narinfos, want %d", len(seen), writers*perWriter)
	}
	all, err := a.ListNarInfoKeys(ctx, 0, 2*writers*perWriter)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range all {
		if seen[k.Hash] != k.Seq {
			t.Fatalf("narinfo %s has seq %d, the reader saw %d", k.Hash, k.Seq, seen[k.Hash])
		}
	}
}

// readPage reads a page of narinfo keys after after, pausing briefly when
// there is none, and fails t on error.
func readPage(t *testing.T, s *Store, after int64) []store.NarInfoKey {
	t.Helper()
	page, err := s.ListNarInfoKeys(t.Context(), after, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) == 0 {
		time.Sleep(time.Millisecond)
	}
	return page
}

// TestSeqWaitsForCommit checks that a narinfo added while another's
// transaction, which took a lower Seq, is still open gets a higher Seq and
// becomes visible only after it: a reader never sees a Seq while a lower
// one may still appear.
func TestSeqWaitsForCommit(t *testing.T) {
	dsn := testserver.Postgres(t)
	s := openStore(t, dsn)
	ctx := t.Context()
	c := createCache(t, s, "main")
	n := addNar(t, s, c.ID, "n")
	inMerge, release := make(chan struct{}), make(chan struct{})
	slow := testNarInfo(c.ID, "slow", n.FileHash)
	var slowSeq int64
	var wg sync.WaitGroup
	wg.Go(func() {
		got, err := s.PutNarInfo(ctx, slow, func(*store.NarInfo) (store.NarInfo, error) {
			// Runs once the Seq is taken, before the commit.
			close(inMerge)
			<-release
			return slow, nil
		})
		if err != nil {
			t.Error(err)
		}
		slowSeq = got.Seq
	})
	<-inMerge
	fast := make(chan store.NarInfo, 1)
	wg.Go(func() {
		ni := testNarInfo(c.ID, "fast", n.FileHash)
		got, err := s.PutNarInfo(context.Background(), ni, replace(ni))
		if err != nil {
			t.Error(err)
		}
		fast <- got
	})
	select {
	case got := <-fast:
		t.Fatalf("narinfo added with seq %d while an earlier one was not committed", got.Seq)
	case <-time.After(200 * time.Millisecond):
	}
	if keys, err := s.ListNarInfoKeys(ctx, 0, 10); err != nil || len(keys) != 0 {
		t.Fatalf("keys before any commit: %+v, %v", keys, err)
	}
	close(release)
	wg.Wait()
	if got := <-fast; got.Seq <= slowSeq {
		t.Fatalf("narinfo committed second has seq %d, the first %d", got.Seq, slowSeq)
	}
}
