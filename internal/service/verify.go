package service

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// VerifyOptions choose what Verify checks.
type VerifyOptions struct {
	Cache  string // "" checks the NAR files of every cache
	Full   bool   // read every NAR file back and check its hashes, not only that its blob is there
	DryRun bool   // report, change nothing
	// Problem, if set, is given each NAR file found missing or damaged,
	// and each found back, as it is found.
	Problem func(VerifyProblem)
	// Progress, if set, is given the NAR files and bytes checked so far,
	// after each batch.
	Progress func(files int, bytes int64)
}

// VerifyProblem is a NAR file whose blob is missing or damaged, or one
// marked missing that is back.
type VerifyProblem struct {
	Nar      store.Nar
	Key      string // its key in the Nix layout, nar/<file hash>.nar<ext>
	What     string // what is wrong, or "back" for one found back
	Back     bool   // the file was marked missing and is whole again
	Repaired bool   // it was marked (or, if Back, unmarked) accordingly
}

// VerifyReport says what Verify found.
type VerifyReport struct {
	Files    int   // NAR files checked
	Bytes    int64 // their bytes
	Missing  int   // files whose blob is missing
	Damaged  int   // files whose blob is not the file
	Restored int   // files marked missing found back
}

// Problems counts the files found missing or damaged.
func (r VerifyReport) Problems() int { return r.Missing + r.Damaged }

// Verify checks that every NAR file a cache links has its blob, of the
// right size and, with Full, the right bytes. A file that is missing or
// damaged is marked Missing (unless a dry run): it and the narinfos that
// point at it are then answered as missing in every cache, and the next
// upload of the file replaces it, which is what nix copy does once the
// narinfo is missing. A file marked missing whose blob is whole again is
// unmarked.
func (s *Service) Verify(ctx context.Context, opts VerifyOptions) (VerifyReport, error) {
	var cacheID int64
	if opts.Cache != "" {
		c, err := s.GetCache(ctx, opts.Cache)
		if err != nil {
			return VerifyReport{}, err
		}
		cacheID = c.ID
	}
	var rep VerifyReport
	after := ""
	for {
		nars, err := s.meta.ListNars(ctx, cacheID, after, 1000)
		if err != nil {
			return rep, internal(err, "list NAR files")
		}
		for _, n := range nars {
			if err := s.verifyOne(ctx, n, opts, &rep); err != nil {
				return rep, err
			}
		}
		if opts.Progress != nil {
			opts.Progress(rep.Files, rep.Bytes)
		}
		if len(nars) < 1000 {
			return rep, nil
		}
		after = nars[len(nars)-1].FileHash
	}
}

// verifyOne checks one NAR file and records what it found in rep.
func (s *Service) verifyOne(ctx context.Context, n store.Nar, opts VerifyOptions, rep *VerifyReport) error {
	rep.Files++
	rep.Bytes += n.FileSize
	what, err := s.checkBlob(ctx, n, opts.Full)
	if err != nil {
		return err
	}
	p := VerifyProblem{Nar: n, Key: "nar/" + n.FileHash + ".nar" + narExt(n.Compression), What: what}
	switch {
	case what == "" && !n.Missing:
		return nil
	case what == "":
		p.What, p.Back = "back", true
		rep.Restored++
	case what == "missing":
		rep.Missing++
	default:
		rep.Damaged++
	}
	if !opts.DryRun && (p.Back || !n.Missing) {
		err := s.meta.SetNarMissing(ctx, n.FileHash, n.BlobKey, !p.Back)
		switch {
		case err == nil:
			p.Repaired = true
			s.rendered.dropAll()
		case !errors.Is(err, store.ErrNotFound): // replaced meanwhile: nothing to do
			return internal(err, "mark %s", p.Key)
		}
	}
	if opts.Problem != nil {
		opts.Problem(p)
	}
	return nil
}

// checkBlob says what is wrong with the blob of n: "" if nothing,
// "missing", or how it is damaged.
func (s *Service) checkBlob(ctx context.Context, n store.Nar, full bool) (string, error) {
	if n.PackedHash != "" {
		return s.checkChunks(ctx, n, full)
	}
	info, err := s.blobs.Stat(ctx, n.BlobKey)
	if errors.Is(err, store.ErrNotFound) {
		return "missing", nil
	}
	if err != nil {
		return "", internal(err, "stat the blob of NAR %s", n.FileHash)
	}
	if info.Size != n.FileSize {
		return fmt.Sprintf("damaged: its blob has %d bytes, not %d", info.Size, n.FileSize), nil
	}
	if !full {
		return "", nil
	}
	r, err := s.blobs.Get(ctx, n.BlobKey, 0, -1)
	if errors.Is(err, store.ErrNotFound) {
		return "missing", nil
	}
	if err != nil {
		return "", internal(err, "read the blob of NAR %s", n.FileHash)
	}
	defer r.Close()
	key := nixkey.Key{Kind: nixkey.Nar, Hash: n.FileHash, Ext: narExt(n.Compression)}
	got, err := s.verifyNar(ctx, key, r, n.FileSize, func(r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	switch {
	case CodeOf(err) == CodeInvalid:
		return "damaged: " + Message(err), nil
	case CodeOf(err) == CodeTooLarge:
		// Stored under other limits (a larger max_decoder_window, say):
		// its size is right, and this process may not decode it.
		s.log.Warn("cannot read a NAR file back within this process's limits; checked its size only",
			"file_hash", n.FileHash, "reason", Message(err))
		return "", nil
	case err != nil:
		return "", err
	case got.NarHash != n.NarHash || got.NarSize != n.NarSize:
		return fmt.Sprintf("damaged: it holds a NAR of %d bytes with sha256:%s, not %d bytes with sha256:%s",
			got.NarSize, got.NarHash, n.NarSize, n.NarHash), nil
	}
	return "", nil
}

// checkChunks says what is wrong with the packs of the chunks of n, as
// checkBlob does for a whole blob: "" if nothing, "missing" if a pack is
// gone or shorter than a frame in it needs, or how the NAR read back from
// its chunks is not n's.
func (s *Service) checkChunks(ctx context.Context, n store.Nar, full bool) (string, error) {
	chunks, err := s.meta.NarChunks(ctx, n.FileHash)
	if errors.Is(err, store.ErrNotFound) {
		return "missing", nil
	}
	if err != nil {
		return "", internal(err, "list the chunks of NAR %s", n.FileHash)
	}
	need := map[string]int64{} // the least size of each pack
	for _, c := range chunks {
		need[c.Pack] = max(need[c.Pack], c.Offset+c.Length)
	}
	for pack, size := range need {
		info, err := s.blobs.Stat(ctx, pack)
		if errors.Is(err, store.ErrNotFound) {
			return "missing", nil
		}
		if err != nil {
			return "", internal(err, "stat pack %s of NAR %s", pack, n.FileHash)
		}
		if info.Size < size {
			return fmt.Sprintf("damaged: its pack %s has %d bytes, fewer than the %d its chunks need", pack, info.Size, size), nil
		}
	}
	if !full {
		return "", nil
	}
	fileSum, narSum, narSize, err := hashFrames(ctx, s.blobs, chunks)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "missing", nil
	case err != nil:
		return "damaged: " + err.Error(), nil
	case nixbase32.EncodeToString(fileSum) != n.PackedHash:
		return fmt.Sprintf("damaged: its chunks' frames hash to sha256:%s, not sha256:%s",
			nixbase32.EncodeToString(fileSum), n.PackedHash), nil
	case nixbase32.EncodeToString(narSum) != n.NarHash || narSize != n.NarSize:
		return fmt.Sprintf("damaged: its chunks make a NAR of %d bytes with sha256:%s, not %d bytes with sha256:%s",
			narSize, nixbase32.EncodeToString(narSum), n.NarSize, n.NarHash), nil
	}
	return "", nil
}
