package service

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/larder-cache/larder/internal/presence"
	"github.com/larder-cache/larder/internal/store"
)

// A server restarts from a snapshot of its presence index rather than read
// every narinfo key again (ten million take some ten seconds): it loads the
// snapshot, then every key committed after it.
//
// The invariant: the index must never lack a key the database has, since a
// false negative makes a path look missing. A snapshot written at lastSeq
// N, plus every key with Seq > N, keeps it, because ListNarInfoKeys makes
// Seqs visible in commit order: no key committed after the snapshot can
// have a Seq at or below N. False positives are allowed (they cost a
// database lookup), so keys removed since are harmless.

// maxSnapshotAge is how long after the last full load of the index a
// snapshot is trusted. Keys another process removed (a CLI collection,
// another replica) stay in a snapshot, and in each one written from it, as
// false positives: harmless, a database lookup each, but a full load at
// least weekly drops them.
const maxSnapshotAge = 7 * 24 * time.Hour

// snapshotEvery is how often Run writes the snapshot if the index changed,
// so that a crash does not leave an old one to catch up from.
const snapshotEvery = time.Hour

// maxSnapshotHeader bounds the header line a snapshot starts with.
const maxSnapshotHeader = 4096

// snapshotHeader is the first line of a snapshot file, in JSON: where in
// the database the index stands, and when it was last loaded in full.
type snapshotHeader struct {
	Seq     int64     `json:"seq"`      // the lastSeq of the index
	CacheID int64     `json:"cache_id"` // the key with that Seq
	Hash    string    `json:"hash"`
	Base    time.Time `json:"base"` // the last full load
}

// writeSnapshot writes the presence index, and where it stands, to the
// snapshot file atomically, if the service has one. It first reads the
// keys committed since the last Sync (this process's own uploads are in
// the index but not counted by lastSeq), so that the next start has few to
// catch up on. It holds syncMu so that no Sync moves lastSeq between
// reading it and writing the index.
func (s *Service) writeSnapshot(ctx context.Context) error {
	if s.snapPath == "" {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	began := time.Now()
	if err := s.syncKeys(ctx, false); err != nil {
		// lastSeq still agrees with the index: an older snapshot, but sound.
		s.log.Warn("read the latest narinfos before writing the presence snapshot", "err", err)
	}
	h := snapshotHeader{Seq: s.lastSeq, CacheID: s.lastKey.CacheID, Hash: s.lastKey.Hash, Base: s.base}
	// Read before writing: a change made while the index is written is
	// then written again at the next chance, never missed.
	changes := s.index.Changes()
	n, err := writeSnapshotFile(s.snapPath, h, s.index)
	if err != nil {
		return fmt.Errorf("write presence snapshot %s: %w", s.snapPath, err)
	}
	s.snapSeq, s.snapChanges = h.Seq, changes
	s.log.Info("wrote presence snapshot", "path", s.snapPath, "bytes", n, "seq", h.Seq,
		"took", time.Since(began).Round(time.Millisecond))
	return nil
}

// writeSnapshotFile writes the header and the index to a temporary file
// beside path, readable by its owner only, and renames it over path, so
// that a reader sees the old snapshot or the new one, whole.
func writeSnapshotFile(path string, h snapshotHeader, x *presence.Index) (int64, error) {
	line, err := json.Marshal(h)
	if err != nil {
		return 0, err
	}
	removeStaleTemps(filepath.Dir(path))
	tmp, err := os.CreateTemp(filepath.Dir(path), snapshotTemp)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // fails once renamed
	n := int64(0)
	if err = tmp.Chmod(0o600); err == nil {
		_, err = tmp.Write(append(line, '\n'))
	}
	if err == nil {
		n, err = x.WriteTo(tmp)
		n += int64(len(line) + 1)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return n, err
}

// snapshotTemp names the temporary files snapshots are written to.
const snapshotTemp = ".presence-*"

// removeStaleTemps removes the temporary files of snapshots whose writer
// was killed: older than an hour, as no write takes that long, so that
// one another process is writing stays.
func removeStaleTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, snapshotTemp))
	for _, name := range names {
		if fi, err := os.Stat(name); err == nil && time.Since(fi.ModTime()) > time.Hour {
			_ = os.Remove(name)
		}
	}
}

// snapshotStale reports whether the index changed since the snapshot was
// last written.
func (s *Service) snapshotStale() bool {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.lastSeq != s.snapSeq || s.index.Changes() != s.snapChanges
}

// writeSnapshotIfChanged is Run's hourly write.
func (s *Service) writeSnapshotIfChanged(ctx context.Context) {
	if s.snapPath == "" || !s.snapshotStale() {
		return
	}
	if err := s.writeSnapshot(ctx); err != nil {
		s.log.Error("write presence snapshot", "err", err)
	}
}

// loadSnapshot installs the index of the snapshot file, if there is one
// the database agrees with, so that the first Sync only adds the keys
// committed since. Anything wrong with it is logged, and the service loads
// every key instead. It runs in New, before anything else uses the index.
func (s *Service) loadSnapshot(ctx context.Context) {
	if s.snapPath == "" {
		return
	}
	began := time.Now()
	h, x, err := readSnapshotFile(s.snapPath)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err == nil {
		err = s.checkSnapshot(ctx, h)
	}
	if err == nil {
		err = dropDeletedCaches(ctx, s.meta, x)
	}
	if err != nil {
		s.log.Warn("not starting from the presence snapshot; loading every narinfo", "path", s.snapPath, "err", err)
		return
	}
	s.index, s.lastSeq, s.base = x, h.Seq, h.Base
	s.lastKey = store.NarInfoKey{Seq: h.Seq, CacheID: h.CacheID, Hash: h.Hash}
	// The count of a read index starts at zero: a cache dropped above, as
	// any key added, makes the next hourly write write the snapshot again.
	s.snapSeq, s.snapChanges = h.Seq, 0
	s.fromSnapshot = true
	s.log.Info("loaded presence snapshot", "path", s.snapPath, "seq", h.Seq, "base", h.Base,
		"took", time.Since(began).Round(time.Millisecond))
}

// readSnapshotFile reads the header and the index of a snapshot.
func readSnapshotFile(path string) (snapshotHeader, *presence.Index, error) {
	var h snapshotHeader
	f, err := os.Open(path)
	if err != nil {
		return h, nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, maxSnapshotHeader)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return h, nil, fmt.Errorf("read header: %w", err)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, nil, fmt.Errorf("parse header: %w", err)
	}
	x, err := presence.Read(br)
	if err != nil {
		return h, nil, err
	}
	return h, x, nil
}

// checkSnapshot checks that a snapshot is recent enough, and that the
// database still holds the key it stands at: the same database, not one
// restored from an older backup, nor a new one.
func (s *Service) checkSnapshot(ctx context.Context, h snapshotHeader) error {
	if age := time.Since(h.Base); age > maxSnapshotAge || age < -time.Hour {
		return fmt.Errorf("last full load at %s, more than %s ago", h.Base.Format(time.RFC3339), maxSnapshotAge)
	}
	if h.Seq <= 0 {
		return errors.New("written with no narinfos")
	}
	keys, err := s.meta.ListNarInfoKeys(ctx, h.Seq-1, 1)
	if err != nil {
		return fmt.Errorf("look up narinfo %d: %w", h.Seq, err)
	}
	if len(keys) != 1 || keys[0].Seq != h.Seq || keys[0].CacheID != h.CacheID || keys[0].Hash != h.Hash {
		return fmt.Errorf("the database no longer has narinfo %d (%s in cache %d)", h.Seq, h.Hash, h.CacheID)
	}
	return nil
}

// dropDeletedCaches drops from a snapshot's index the caches the store no
// longer has: deleted while no server ran, reloadCaches would never drop
// them, as it drops only caches it knew.
func dropDeletedCaches(ctx context.Context, meta store.MetaStore, x *presence.Index) error {
	list, err := meta.ListCaches(ctx)
	if err != nil {
		return fmt.Errorf("list caches: %w", err)
	}
	have := make(map[int64]bool, len(list))
	for _, c := range list {
		have[c.ID] = true
	}
	for _, id := range x.CacheIDs() {
		if !have[id] {
			x.DropCache(id)
		}
	}
	return nil
}
