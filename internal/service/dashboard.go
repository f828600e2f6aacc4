package service

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/larder-cache/larder/internal/nixkey"
	"github.com/larder-cache/larder/internal/store"
	"github.com/nix-community/go-nix/pkg/storepath"
)

// What the dashboard shows of a cache, each part bounded so that no page
// costs more than its size whatever the cache holds.
const (
	// MaxRecent is how many of the latest pushes a page shows at most.
	MaxRecent = 100
	// MaxFound is how many paths a search returns at most.
	MaxFound = 50
	// MaxQuery is the longest search accepted, in bytes.
	MaxQuery = 256
	// maxReferrers is how many referrers of a path are shown.
	maxReferrers = 100
	// maxListingBytes is the largest NAR listing shown; maxListed is how
	// many of its entries are.
	maxListingBytes = 4 << 20
	maxListed       = 500
)

// PublicKey returns the cache's public signing key, "<name>:<base64>".
func (c Cache) PublicKey() string { return c.entry.PublicKey }

// Priority returns the cache's priority, as in nix-cache-info.
func (c Cache) Priority() int { return c.entry.Priority }

// Policy returns what garbage collection keeps of the cache.
func (c Cache) Policy() store.Policy { return c.entry.Policy }

// LastGC returns when a collection of the cache last finished (zero:
// never), as of the service's last look at the store.
func (c Cache) LastGC() time.Time { return c.entry.LastGC }

// Overview is what a cache's page says first.
type Overview struct {
	Paths, Bytes   int64 // narinfos, and the bytes of their NAR files
	Requests, Hits int64 // narinfo lookups over the last day, and those that found one
}

// Overview returns the size of the cache and its lookups over the last day.
func (s *Service) Overview(ctx context.Context, c Cache) (Overview, error) {
	var o Overview
	var err error
	if o.Paths, o.Bytes, err = s.meta.Usage(ctx, c.entry.ID); err != nil {
		return o, internal(err, "usage of cache %s", c.entry.Name)
	}
	day, err := s.meta.Samples(ctx, c.entry.ID, time.Now().Add(-24*time.Hour), maxSamples)
	if err != nil {
		return o, internal(err, "history of cache %s", c.entry.Name)
	}
	for _, sm := range day {
		o.Requests, o.Hits = o.Requests+sm.Requests, o.Hits+sm.Hits
	}
	return o, nil
}

// RecentPushes returns the n narinfos of the cache pushed last (at most
// MaxRecent), newest first.
func (s *Service) RecentPushes(ctx context.Context, c Cache, n int) ([]store.NarInfo, error) {
	l, err := s.meta.RecentNarInfos(ctx, c.entry.ID, min(n, MaxRecent))
	if err != nil {
		return nil, internal(err, "recent pushes of cache %s", c.entry.Name)
	}
	return l, nil
}

// FindPaths returns up to MaxFound paths of the cache whose hash or name
// starts with query (case ignored), ordered by name. A whole store path,
// or its base name, finds that path.
func (s *Service) FindPaths(ctx context.Context, c Cache, query string) ([]store.NarInfo, error) {
	q, err := CheckQuery(query)
	if err != nil {
		return nil, err
	}
	l, err := s.meta.FindNarInfos(ctx, c.entry.ID, q, MaxFound)
	if err != nil {
		return nil, internal(err, "search cache %s", c.entry.Name)
	}
	return l[:min(len(l), MaxFound)], nil
}

// CheckQuery returns what FindPaths looks for when asked for query, or
// the error it returns.
func CheckQuery(query string) (string, error) {
	q := strings.TrimSpace(query)
	switch {
	case len(q) > MaxQuery:
		return "", errorf(CodeInvalid, "the search is longer than %d bytes", MaxQuery)
	case strings.ContainsFunc(q, func(r rune) bool { return !unicode.IsPrint(r) }):
		return "", errorf(CodeInvalid, "the search has characters that are not printable")
	}
	q = strings.TrimPrefix(q, storepath.StoreDir+"/")
	if hash, _, ok := strings.Cut(q, "-"); ok && len(hash) == 32 && isNix32(hash) {
		q = hash // a store path's base name: its hash finds it
	}
	if q == "" {
		return "", errorf(CodeInvalid, "type the start of a name or hash to search for")
	}
	return q, nil
}

// isNix32 reports whether s is made of the characters of Nix's base 32.
func isNix32(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return !strings.ContainsRune("0123456789abcdfghijklmnpqrsvwxyz", r)
	})
}

// narInfoFields splits a rendered narinfo into its fields.
func narInfoFields(body []byte) [][2]string {
	var fields [][2]string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, len(body)+1)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
			fields = append(fields, [2]string{k, v})
		}
	}
	return fields
}

// upstreamFields returns what the cache knows of an upstream-only path:
// the fields its upstream signed, and the upstream that holds it.
func upstreamFields(rec store.NarInfo) [][2]string {
	f := [][2]string{{"StorePath", rec.StorePath}, {"NarHash", "sha256:" + rec.NarHash},
		{"NarSize", strconv.FormatInt(rec.NarSize, 10)}, {"References", strings.Join(rec.References, " ")}}
	if rec.Deriver != "" {
		f = append(f, [2]string{"Deriver", rec.Deriver})
	}
	for _, sig := range rec.Sigs {
		f = append(f, [2]string{"Sig", sig})
	}
	if rec.CA != "" {
		f = append(f, [2]string{"CA", rec.CA})
	}
	return append(f, [2]string{"Upstream", rec.Upstream})
}

// PathRef is a reference of a path, and whether the cache holds it.
type PathRef struct {
	Name    string // the store path's base name, "<hash>-<name>"
	Hash    string
	InCache bool
}

// ListingEntry is one file of a NAR listing.
type ListingEntry struct {
	Path       string // relative to the store path; "" for the root
	Type       string // regular, directory or symlink
	Size       int64
	Executable bool
	Target     string // of a symlink
}

// Listing is what a path's NAR listing shows.
type Listing struct {
	Entries   []ListingEntry // at most maxListed, depth first
	Truncated bool           // there are more
	TooLarge  bool           // the listing is larger than is shown; Entries is empty
}

// PathDetails is what the dashboard shows of one path.
type PathDetails struct {
	NarInfo       store.NarInfo
	Nar           store.Nar
	Fields        [][2]string // the narinfo as the cache serves it, field by field
	References    []PathRef
	Referrers     []store.NarInfo // at most maxReferrers
	MoreReferrers bool
	Closure       store.ClosureSize
	LastRead      time.Time // zero: never, as of the last recorded reads
	Listing       *Listing  // nil: the cache has no listing of it
}

// Path returns what the dashboard shows of the path with the given hash.
func (s *Service) Path(ctx context.Context, c Cache, hash string) (PathDetails, error) {
	var d PathDetails
	if len(hash) != 32 || !isNix32(hash) {
		return d, errorf(CodeInvalid, "%q is not a store path hash", hash)
	}
	body, rec, nar, err := s.narInfo(ctx, c, hash)
	switch {
	case err == nil:
		d.Fields = narInfoFields(body)
	case rec.Upstream != "":
		d.Fields = upstreamFields(rec) // no file of the cache's: its record
	default:
		return d, err
	}
	d.NarInfo, d.Nar = rec, nar
	if d.References, err = s.references(ctx, c, rec); err != nil {
		return d, err
	}
	refs, err := s.meta.Referrers(ctx, c.entry.ID, hash, maxReferrers+1)
	if err != nil {
		return d, internal(err, "referrers of %s", hash)
	}
	d.Referrers, d.MoreReferrers = refs[:min(len(refs), maxReferrers)], len(refs) > maxReferrers
	if d.Closure, err = s.meta.Closure(ctx, c.entry.ID, []string{hash}); err != nil {
		return d, internal(err, "closure of %s", hash)
	}
	if d.LastRead, err = s.meta.LastRead(ctx, c.entry.ID, hash); err != nil && !errors.Is(err, store.ErrNotFound) {
		return d, internal(err, "last read of %s", hash)
	}
	if d.Listing, err = s.listing(ctx, c, hash); err != nil {
		return d, err
	}
	return d, nil
}

// references returns the references of rec, sorted, each saying whether
// the cache holds it.
func (s *Service) references(ctx context.Context, c Cache, rec store.NarInfo) ([]PathRef, error) {
	var hashes []string
	refs := make([]PathRef, 0, len(rec.References))
	for _, r := range rec.References {
		h, _, _ := strings.Cut(r, "-")
		refs = append(refs, PathRef{Name: r, Hash: h})
		hashes = append(hashes, h)
	}
	present, _, err := s.meta.PresentNarInfos(ctx, c.entry.ID, hashes)
	if err != nil {
		return nil, internal(err, "references of %s", rec.Hash)
	}
	for i := range refs {
		refs[i].InCache = slices.Contains(present, refs[i].Hash)
	}
	slices.SortFunc(refs, func(a, b PathRef) int { return cmp.Compare(a.Name, b.Name) })
	return refs, nil
}

// listing reads the NAR listing of the path, if the cache has one.
func (s *Service) listing(ctx context.Context, c Cache, hash string) (*Listing, error) {
	f, err := s.File(ctx, c, nixkey.Key{Kind: nixkey.Listing, Hash: hash})
	if CodeOf(err) == CodeNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if f.Size > maxListingBytes {
		return &Listing{TooLarge: true}, nil
	}
	r, err := s.ReadFile(ctx, f)
	if CodeOf(err) == CodeNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	body, err := io.ReadAll(io.LimitReader(r, maxListingBytes+1))
	if err != nil {
		return nil, internal(err, "read the listing of %s", hash)
	}
	var ls struct {
		Root listingNode `json:"root"`
	}
	if err := json.Unmarshal(body, &ls); err != nil {
		s.log.Warn("a stored NAR listing does not parse", "cache", c.entry.Name, "hash", hash, "err", err)
		return nil, nil
	}
	l := &Listing{}
	ls.Root.walk("", l)
	return l, nil
}

// listingNode is one node of a NAR listing.
type listingNode struct {
	Type       string                 `json:"type"`
	Size       int64                  `json:"size"`
	Executable bool                   `json:"executable"`
	Target     string                 `json:"target"`
	Entries    map[string]listingNode `json:"entries"`
}

// walk adds the node at path and what it holds, in name order, to l, up
// to maxListed entries.
func (n listingNode) walk(path string, l *Listing) {
	if len(l.Entries) == maxListed {
		l.Truncated = true
		return
	}
	l.Entries = append(l.Entries, ListingEntry{Path: path, Type: n.Type, Size: n.Size, Executable: n.Executable, Target: n.Target})
	for _, name := range slices.Sorted(maps.Keys(n.Entries)) {
		child := name
		if path != "" {
			child = path + "/" + name
		}
		n.Entries[name].walk(child, l)
		if l.Truncated {
			return
		}
	}
}
