// Package store defines the two storage seams of larder: BlobStore (bytes by
// key) and MetaStore (caches, tokens, NARs, narinfos, other objects, held
// narinfos, multipart uploads, the history of caches, login sessions and
// the index of chunked NARs).
//
// Implementations live in subpackages named after what they use (local,
// s3blob, sqlite, postgres). They know nothing of Nix: they keep
// records and bytes exactly as the service hands them over, and every check of
// their content belongs to the service. This package must not import any
// implementation, the service or a front end.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned, possibly wrapped, by every store method asked for
// something that does not exist. Implementations translate their provider's
// own "not found" into it at their boundary.
var ErrNotFound = errors.New("not found")

// ErrExists is returned, possibly wrapped, when a create would replace a
// record that must be unique (a cache name, a token hash, a listed key).
var ErrExists = errors.New("already exists")

// ErrUnavailable is wrapped by errors that say the backing service could not
// be reached or answered with a transient failure (a network error, a
// timeout, an S3 5xx or SlowDown, a lost PostgreSQL connection): trying
// again later may succeed. Front ends answer them with 503 and Retry-After.
var ErrUnavailable = errors.New("storage unavailable")

// ChangeNotifier is implemented by metadata stores that several processes
// share (PostgreSQL, with LISTEN/NOTIFY). Changes returns a channel that
// receives a value soon after another process commits a narinfo or changes
// caches or tokens; it is closed when ctx ends. It only wakes a reader up:
// readers still read the changes themselves, and still poll, since a
// notification can be lost while a connection is re-established.
type ChangeNotifier interface {
	Changes(ctx context.Context) (<-chan struct{}, error)
}

// BlobInfo describes one stored blob.
type BlobInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// BlobStore keeps immutable byte objects under string keys.
//
// Keys are made of the characters [a-z0-9._-] separated by single slashes;
// no segment is empty, "." or "..", a segment has at most 255 bytes and a
// key at most 1024. No key is another key followed by "/…" (a file system
// cannot hold both). Implementations reject other keys with an error
// wrapping ErrInvalidKey, checking keys with CheckKey and List prefixes with
// CheckPrefix, and never let a key name a location outside their own root.
type BlobStore interface {
	// Put stores the bytes read from r under key. When size is not negative
	// r must yield exactly size bytes. Put is atomic: if r returns an error,
	// yields a different number of bytes than size, or ctx ends, nothing is
	// stored under key and an earlier object under key is unchanged. A
	// completed Put is durable. Put over an existing key replaces it.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Get opens the blob under key for reading, starting at offset and
	// returning at most length bytes (length < 0 reads to the end). The
	// caller closes the reader. It returns ErrNotFound if key does not exist.
	// An offset at or past the end yields an empty reader.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)

	// Stat returns the blob's size and modification time, or ErrNotFound.
	Stat(ctx context.Context, key string) (BlobInfo, error)

	// Delete removes the blob under key. Deleting a missing key is not an
	// error.
	Delete(ctx context.Context, key string) error

	// List calls fn for every blob whose key starts with prefix, in no
	// particular order. Blobs put or deleted during the walk may or may not be
	// seen. An error from fn stops the walk and is returned.
	List(ctx context.Context, prefix string, fn func(BlobInfo) error) error
}

// Perm is what a token allows on the caches it is scoped to. Each level
// includes the ones below it.
type Perm string

// The permission levels, weakest first.
const (
	PermRead  Perm = "read"
	PermWrite Perm = "write"
	PermAdmin Perm = "admin"
)

// Includes reports whether p grants at least q.
func (p Perm) Includes(q Perm) bool { return p.rank() >= q.rank() && q.rank() > 0 }

// Valid reports whether p is one of the defined levels.
func (p Perm) Valid() bool { return p.rank() > 0 }

func (p Perm) rank() int {
	switch p {
	case PermRead:
		return 1
	case PermWrite:
		return 2
	case PermAdmin:
		return 3
	}
	return 0
}

// Cache is one named binary cache.
type Cache struct {
	ID        int64 // assigned by the store; never reused
	Name      string
	Private   bool
	Priority  int
	SecretKey string // signing key, "<keyname>:<base64 of 64 bytes>"
	PublicKey string // "<keyname>:<base64 of 32 bytes>"
	CreatedAt time.Time
	Policy    Policy    // what garbage collection keeps
	LastGC    time.Time // when a collection of the cache last finished; zero: never
	// Upstream names the other binary caches the cache defers to; the
	// zero value: none.
	Upstream UpstreamConfig
}

// UpstreamConfig says which other binary caches a cache defers to, and
// how. The store keeps it as given; checking the URLs and keys is the
// service's job.
type UpstreamConfig struct {
	Upstreams []Upstream // in the order they were given
	// Skip: a path an upstream holds is recorded as upstream-only (see
	// NarInfo.Upstream) instead of being stored.
	Skip bool
	// PullThrough: readers get through the cache the paths only an
	// upstream holds, and the cache stores them as it serves them.
	PullThrough bool
}

// Upstream is one other binary cache.
type Upstream struct {
	URL  string   // its root, such as https://cache.nixos.org
	Keys []string // the public keys that sign it, "<keyname>:<base64 of 32 bytes>"
}

// Policy says what garbage collection keeps of a cache.
type Policy struct {
	// Retention keeps the paths pushed or fetched within it (with their
	// closures); 0 keeps every path.
	Retention time.Duration
	// MaxSize bounds the bytes of NAR files the kept paths occupy; 0: no
	// bound. Pins are kept even beyond it.
	MaxSize int64
}

// Token is a credential: either an HTTP token, of which only a hash is
// kept, or an S3 access key, whose secret is kept because AWS Signature V4
// needs it to check signatures. Exactly one of Hash and AccessKeyID is set.
type Token struct {
	ID          int64  // assigned by the store
	Hash        string // HTTP token: hex sha256 of the token text; unique
	AccessKeyID string // S3 key: the access key ID; unique
	Secret      string // S3 key: the secret access key
	Scope       string // the caches it is for: a name, a glob of names (path.Match), or "*"
	Perm        Perm
	Description string
	CreatedAt   time.Time
	ExpiresAt   time.Time // zero: never expires
}

// Nar is one stored NAR file, compressed as it was uploaded. It is keyed by
// FileHash, the hash of the stored bytes, so each file is stored once however
// many caches hold it.
type Nar struct {
	FileHash    string // nix32 sha256 of the stored bytes
	FileSize    int64
	Compression string // as in a narinfo: none, xz, zstd, bzip2, gzip, lz4, br
	NarHash     string // nix32 sha256 of the uncompressed NAR
	NarSize     int64
	MD5         string // hex md5 of the stored bytes, the S3 ETag of the file
	BlobKey     string // where the bytes are in the BlobStore
	CreatedAt   time.Time
	// Missing says that its blob was found missing or damaged: the caches
	// that link it must not serve it, and the next upload of the file
	// replaces the record (AddNar).
	Missing bool
	// PackedHash and PackedSize are set once the NAR is stored as chunks
	// (see ChunkStore.PackNar): the nix32 sha256 and the size of the zstd
	// file its chunks' frames make in order, which is what is served of
	// it. BlobKey is then "". AddNar replacing a Missing record clears
	// them.
	PackedHash string
	PackedSize int64
}

// NarInfo is the metadata of one store path in one cache. Its file fields
// (URL, Compression, FileHash, FileSize) come from the Nar named by FileHash;
// NarHash and NarSize are kept here too because they identify the path's
// contents (they are part of its signed fingerprint).
type NarInfo struct {
	Seq        int64  // assigned by the store, increasing with each new record
	CacheID    int64  //
	Hash       string // the 32-character hash part of StorePath
	Key        string // the cache-relative key the narinfo is listed under
	StorePath  string // full store path
	FileHash   string // the Nar this narinfo serves
	NarHash    string // nix32 sha256 of the NAR, equal to the Nar's
	NarSize    int64  // equal to the Nar's
	References []string
	Deriver    string
	System     string
	CA         string
	Sigs       []string // "<keyname>:<base64>" as uploaded, without the cache's own
	CreatedAt  time.Time
	// Upstream is set on an upstream-only narinfo: a path the cache does
	// not store, whose NAR file an upstream holds, recorded so that the
	// path counts as present (for pushes and garbage collection). It is
	// that upstream's URL; FileHash is then "".
	Upstream string
	// CheckedAt is when an upstream last confirmed that it holds the path
	// of an upstream-only narinfo; zero on others.
	CheckedAt time.Time
}

// NarInfoKey names one narinfo; it is what presence indexes are built from.
type NarInfoKey struct {
	Seq     int64
	CacheID int64
	Hash    string
}

// Object is any other file of a cache, its bytes in the BlobStore: a NAR
// listing, a build log, a realisation, a debuginfo link, or an object
// stored through the S3 API under a key outside the Nix layout.
type Object struct {
	CacheID     int64
	Key         string // the cache-relative key, such as "log/<drv>"
	ContentType string
	Size        int64
	SHA256      string            // hex sha256 of the bytes
	MD5         string            // hex md5 of the bytes
	ETag        string            // as S3 clients saw it on upload, unquoted: the MD5, or "<hex>-<parts>" after a multipart upload
	Metadata    map[string]string // S3 user metadata (x-amz-meta-NAME, NAME lower-case)
	BlobKey     string
	CreatedAt   time.Time
}

// EntryKind tells what a listed key is.
type EntryKind int

// The kinds of listed keys.
const (
	EntryNarInfo EntryKind = iota + 1 // a narinfo; render it to know its size
	EntryNar                          // a NAR file linked to the cache
	EntryObject                       // an Object
)

// Entry is one key of a cache in a listing.
type Entry struct {
	Key      string
	Kind     EntryKind
	Hash     string    // EntryNarInfo: the store path hash
	Size     int64     // EntryNar: FileSize; EntryObject: Size; EntryNarInfo: 0
	ETag     string    // EntryNar: its MD5; EntryObject: its ETag
	Modified time.Time // when the key was written
}

// HeldNarInfo is a narinfo that arrived before its NAR file (S3 mirroring
// tools upload in any order). It is kept, invisible, until the NAR arrives.
type HeldNarInfo struct {
	CacheID   int64
	Hash      string // store path hash
	FileHash  string // the NAR file it waits for
	Body      []byte // the narinfo as uploaded
	CreatedAt time.Time
}

// Upload is a multipart upload in progress.
type Upload struct {
	ID          string // assigned by the caller; unique
	CacheID     int64
	Key         string
	ContentType string
	Metadata    map[string]string
	CreatedAt   time.Time
}

// Part is one uploaded part of a multipart upload.
type Part struct {
	UploadID  string
	Number    int
	Size      int64
	MD5       string // hex
	BlobKey   string
	CreatedAt time.Time
}

// MetaStore keeps everything but the bytes. Each method is atomic.
//
// Conventions every implementation keeps: times are read back in UTC with
// second precision; a zero CreatedAt given to a create means "now"; nil and
// empty slices are equal, and so are nil and empty maps; strings are UTF-8.
type MetaStore interface {
	CacheStore
	TokenStore
	NarStore
	ObjectStore
	ListStore
	HoldStore
	UploadStore
	GCStore
	BrowseStore
	HistoryStore
	SessionStore
	ChunkStore
	// Close releases the store's resources.
	Close() error
}

// CacheStore keeps caches.
type CacheStore interface {
	// CreateCache adds c (its ID and CreatedAt are assigned, its LastGC is
	// zero; its Policy and Upstream are kept) and returns it as stored. It returns ErrExists if the name is
	// taken.
	CreateCache(ctx context.Context, c Cache) (Cache, error)
	// GetCache returns the cache called name, or ErrNotFound.
	GetCache(ctx context.Context, name string) (Cache, error)
	// ListCaches returns every cache, ordered by name.
	ListCaches(ctx context.Context) ([]Cache, error)
	// SetUpstream sets the upstream configuration of a cache, or returns
	// ErrNotFound.
	SetUpstream(ctx context.Context, cacheID int64, u UpstreamConfig) error
	// DeleteCache removes the cache called name together with its narinfos,
	// objects, NAR links, held narinfos, multipart uploads and the tokens
	// whose Scope is exactly its name. The Nar records and blobs stay for
	// garbage collection. It returns ErrNotFound if there is no such cache.
	DeleteCache(ctx context.Context, name string) error
}

// TokenStore keeps access tokens.
type TokenStore interface {
	// CreateToken adds t (its ID and CreatedAt are assigned) and returns it
	// as stored. It returns ErrExists if a token with the same Hash or
	// AccessKeyID exists (hashes and access key IDs are checked each among
	// their own kind), and an error, storing nothing, unless exactly one of
	// Hash and AccessKeyID is set. The store does not interpret Scope.
	CreateToken(ctx context.Context, t Token) (Token, error)
	// LookupToken returns the HTTP token whose hash is hash, expired or not,
	// or ErrNotFound.
	LookupToken(ctx context.Context, hash string) (Token, error)
	// LookupAccessKey returns the S3 key with the given access key ID,
	// expired or not, or ErrNotFound.
	LookupAccessKey(ctx context.Context, id string) (Token, error)
	// ListTokens returns every token, ordered by ID.
	ListTokens(ctx context.Context) ([]Token, error)
	// DeleteToken removes the token with the given ID, or returns ErrNotFound.
	DeleteToken(ctx context.Context, id int64) error
}

// NarStore keeps NAR records, their links to caches, and narinfos.
//
// A Nar's blob is written once, under a key no other blob ever had, before
// its record names it; the record's BlobKey changes only when AddNar
// replaces a Missing record. So a record that is not Missing names a blob
// that nothing deletes while the record exists: UnusedNars removes the
// record before its blob is deleted.
type NarStore interface {
	// GetNar returns the Nar whose file hash is fileHash, in whichever cache,
	// or ErrNotFound.
	GetNar(ctx context.Context, fileHash string) (Nar, error)
	// CacheNar returns the Nar whose file hash is fileHash if it is linked to
	// the cache, or ErrNotFound. Its CreatedAt is when it was linked to the
	// cache, so that nothing tells one cache when another got the file.
	CacheNar(ctx context.Context, cacheID int64, fileHash string) (Nar, error)
	// ClaimNar records that an upload of the file is under way: UnusedNars
	// keeps the record for ttl from now, by the store's clock (an earlier
	// claim that lasts longer still holds), whatever its own window. It
	// returns the Nar, or ErrNotFound if there is no such Nar or it is
	// Missing.
	ClaimNar(ctx context.Context, fileHash string, ttl time.Duration) (Nar, error)
	// AddNar is called once n's bytes are stored under n.BlobKey. It
	// records n unless a Nar with its FileHash exists; a Missing one is
	// replaced by n if its BlobKey is not n's (with n's, it returns
	// ErrNotFound: those bytes are gone). It then links the Nar to the
	// cache under the cache-relative key (which listings show), or renews
	// the time of an existing link (CollectPlan.LinkedBefore), keeping its
	// first key. A new record counts as claimed at its CreatedAt. It
	// returns the Nar as stored: if its BlobKey
	// is not n's, the caller's copy of the bytes is not needed. It returns
	// ErrNotFound if the cache does not exist and ErrExists, storing
	// nothing, if another Nar is linked to the cache under key.
	AddNar(ctx context.Context, cacheID int64, n Nar, key string) (Nar, error)
	// LinkNar links the Nar with file hash fileHash to the cache under key
	// as AddNar does, if that Nar exists and is not Missing, and returns
	// it; otherwise it returns ErrNotFound.
	LinkNar(ctx context.Context, cacheID int64, fileHash, key string) (Nar, error)
	// SetNarMissing sets Missing on the Nar with file hash fileHash, if its
	// BlobKey is blobKey, and returns ErrNotFound otherwise.
	SetNarMissing(ctx context.Context, fileHash, blobKey string, missing bool) error
	// ListNars returns up to limit Nars linked to the cache (to any cache
	// if cacheID is 0) whose file hashes sort after after, ordered by file
	// hash.
	ListNars(ctx context.Context, cacheID int64, after string, limit int) ([]Nar, error)
	// UnlinkNar removes the link of the Nar with file hash fileHash to the
	// cache, and with it every narinfo of the cache that serves it, and
	// returns the hashes of those narinfos, in no particular order. The Nar
	// record stays. It returns ErrNotFound if there was no such link.
	UnlinkNar(ctx context.Context, cacheID int64, fileHash string) ([]string, error)

	// GetNarInfo returns the narinfo of hash in the cache and the Nar it
	// serves (the zero Nar for an upstream-only narinfo), or ErrNotFound.
	GetNarInfo(ctx context.Context, cacheID int64, hash string) (NarInfo, Nar, error)
	// PutNarInfo writes a narinfo in one transaction: it reads the current
	// record for (ni.CacheID, ni.Hash), calls merge with it (nil if there is
	// none), and stores what merge returns; an error from merge is returned
	// unchanged and nothing is written. merge runs while the transaction
	// holds locks: it must be quick, pure (it may be called again if the
	// transaction is retried) and must not call the store, and it must keep
	// CacheID and Hash. A new record gets a new Seq; an updated one keeps
	// its Seq. A merged record with Upstream set is upstream-only: it
	// serves no Nar, and its FileHash must be "" (else PutNarInfo returns
	// an error, writing nothing); either kind may replace the other.
	// PutNarInfo returns ErrNotFound, writing nothing, if the cache does
	// not exist or if the merged record is not upstream-only and the Nar
	// named by its FileHash is not linked to the cache, and ErrExists,
	// writing nothing, if another narinfo of the cache has the merged
	// record's Key.
	PutNarInfo(ctx context.Context, ni NarInfo, merge func(old *NarInfo) (NarInfo, error)) (NarInfo, error)
	// PresentNarInfos returns those of hashes that the cache holds, each
	// once and in no particular order: the ones it has an upstream-only
	// narinfo of or a narinfo whose Nar is not Missing; upstream lists
	// those of them whose narinfo is upstream-only. An unknown cache has
	// none. It answers many hashes (tens of thousands) in one call.
	PresentNarInfos(ctx context.Context, cacheID int64, hashes []string) (present, upstream []string, err error)
	// UpstreamNarInfos returns up to limit upstream-only narinfos, of every
	// cache, whose CheckedAt is before before, least recently checked
	// first.
	UpstreamNarInfos(ctx context.Context, before time.Time, limit int) ([]NarInfo, error)
	// DropUpstreamNarInfo removes the narinfo of hash in the cache if it is
	// upstream-only, and returns ErrNotFound otherwise (there is none, or
	// the cache stores the path).
	DropUpstreamNarInfo(ctx context.Context, cacheID int64, hash string) error
	// DeleteNarInfo removes the narinfo of hash in the cache, or returns
	// ErrNotFound.
	DeleteNarInfo(ctx context.Context, cacheID int64, hash string) error
	// ListNarInfoKeys returns up to limit narinfo keys (upstream-only ones
	// included) with Seq greater than after, in Seq order, across all caches. Seqs become visible in commit
	// order, so a reader paging with after never skips a record committed
	// later with a lower Seq. Deleted records are not reported.
	ListNarInfoKeys(ctx context.Context, after int64, limit int) ([]NarInfoKey, error)
}

// ObjectStore keeps the records of the other files of caches.
type ObjectStore interface {
	// PutObject records o, replacing any record with the same cache and key.
	// It returns ErrNotFound if the cache does not exist.
	PutObject(ctx context.Context, o Object) error
	// GetObject returns the record of key in the cache, or ErrNotFound.
	GetObject(ctx context.Context, cacheID int64, key string) (Object, error)
	// DeleteObject removes the record of key in the cache, or returns
	// ErrNotFound. The blob stays for garbage collection.
	DeleteObject(ctx context.Context, cacheID int64, key string) error
}

// ListStore lists the keys of a cache, as the S3 API shows them.
type ListStore interface {
	// ListKeys returns up to limit entries of the cache, ordered by key
	// (byte order), whose keys start with prefix and sort after after: its
	// narinfos but the upstream-only ones (under NarInfo.Key), its NAR links
	// (under the key given to AddNar) and its objects. Held narinfos and uploads in progress are not
	// listed, nor is anything of another cache; an unknown cache has no
	// entries. Keys are unique within each of the three kinds; keeping them
	// apart across kinds is the caller's job.
	ListKeys(ctx context.Context, cacheID int64, prefix, after string, limit int) ([]Entry, error)
}

// HoldStore keeps narinfos that wait for their NAR file.
type HoldStore interface {
	// HoldNarInfo records h, replacing any held narinfo of the same cache
	// and hash. It returns ErrNotFound if the cache does not exist.
	HoldNarInfo(ctx context.Context, h HeldNarInfo) error
	// HeldFor returns the narinfos of the cache that wait for the NAR with
	// file hash fileHash, in no particular order.
	HeldFor(ctx context.Context, cacheID int64, fileHash string) ([]HeldNarInfo, error)
	// ReleaseHeld removes the held narinfo of hash in the cache; releasing
	// one that is not held is not an error.
	ReleaseHeld(ctx context.Context, cacheID int64, hash string) error
	// ExpireHeld removes the narinfos held since before t (their CreatedAt
	// is before t), in every cache, and returns them in no particular order.
	ExpireHeld(ctx context.Context, before time.Time) ([]HeldNarInfo, error)
}

// UploadStore keeps multipart uploads in progress.
type UploadStore interface {
	// CreateUpload records u. It returns ErrExists if its ID is taken and
	// ErrNotFound if the cache does not exist.
	CreateUpload(ctx context.Context, u Upload) error
	// GetUpload returns the upload with the given ID, or ErrNotFound.
	GetUpload(ctx context.Context, id string) (Upload, error)
	// ListUploads returns the uploads of the cache whose keys start with
	// prefix, ordered by key and then CreatedAt.
	ListUploads(ctx context.Context, cacheID int64, prefix string) ([]Upload, error)
	// PutPart records p, replacing a part with the same number, and returns
	// the replaced part, if any, so that its blob can be deleted. It returns
	// ErrNotFound if the upload does not exist.
	PutPart(ctx context.Context, p Part) (*Part, error)
	// ListParts returns the parts of the upload ordered by number, or
	// ErrNotFound if the upload does not exist.
	ListParts(ctx context.Context, uploadID string) ([]Part, error)
	// DeleteUpload removes the upload and its parts and returns the parts,
	// in no particular order, so that their blobs can be deleted. It returns ErrNotFound if the
	// upload does not exist.
	DeleteUpload(ctx context.Context, uploadID string) ([]Part, error)
}

// Pin keeps a store path, with its closure, in a cache. Pins with the same
// Name are revisions of one pin: Keep decides which revisions stay.
type Pin struct {
	CacheID   int64
	Name      string // a pin's name; an unnamed pin is named after its path's hash
	Hash      string // the store path hash of the revision
	StorePath string
	CreatedAt time.Time // when this revision was pinned
}

// PinRule is how many revisions of a named pin stay pinned: the newest
// KeepRevisions (0: all), and of those only the ones younger than KeepFor
// (0: any age).
type PinRule struct {
	KeepRevisions int
	KeepFor       time.Duration
}

// CollectPlan tells Collect what to keep of one cache.
type CollectPlan struct {
	CacheID int64
	// UsedSince: a narinfo created or read at or after it is a root. The
	// zero time makes every narinfo a root.
	UsedSince time.Time
	// Pinned are the hashes of pinned paths: roots that MaxSize never drops.
	Pinned []string
	// MaxSize, if not 0, bounds the NAR bytes of the kept set: roots other
	// than pins are dropped least recently used first (by the later of
	// creation and last read) until the closure of the rest fits.
	MaxSize int64
	// LinkedBefore: NAR links of the cache that no kept narinfo serves are
	// removed only if made before it, so that a NAR uploaded just before its
	// narinfo is not collected in between.
	LinkedBefore time.Time
	// DryRun computes everything and changes nothing.
	DryRun bool
	// Flush, if set, is called before each batch of removals, so that
	// reads recorded since the start reach the store before it decides
	// what the batch removes.
	Flush func(ctx context.Context) error
	// OnRemove, if set, is given the hashes of the narinfos removed (or, in
	// a dry run, that would be), a batch at a time as each commits, and
	// CollectResult.Removed stays empty, so that a collection of any size
	// runs in bounded memory. An error from it stops the collection.
	OnRemove func(ctx context.Context, hashes []string) error
}

// CollectResult says what Collect removed (or, in a dry run, would remove).
type CollectResult struct {
	KeptPaths    int64    // narinfos in the kept set, as planned at the start
	KeptBytes    int64    // NAR bytes of the kept narinfos (each file once)
	RemovedPaths int64    // narinfos removed
	Removed      []string // their hashes, unless the plan had OnRemove
	RemovedBytes int64    // NAR bytes of the files only they served (each once)
	Unlinked     int      // NAR links removed
	DroppedRoots int      // roots dropped to fit MaxSize
	OverQuota    bool     // the pins alone exceed MaxSize
}

// Composer is a BlobStore that can store the concatenation of blobs it
// holds without the bytes passing through the caller (completing an S3
// multipart upload). The wrappers of internal/store forward it and return
// errors.ErrUnsupported when the store they wrap is no Composer.
type Composer interface {
	// Compose stores the concatenation of the blobs under parts under key,
	// atomically and durably like Put; they must add up to size bytes. A
	// missing part is ErrNotFound.
	Compose(ctx context.Context, key string, parts []string, size int64) error
}

// GCStore is what garbage collection needs from the metadata store. The
// closure of a narinfo is followed through its References within the same
// cache; references to paths the cache does not hold are ignored.
// Upstream-only narinfos are narinfos like the others (roots when used
// within the window, kept while a kept narinfo refers to them, removed
// otherwise) that serve no NAR bytes.
type GCStore interface {
	// SetPolicy sets the policy of a cache, or returns ErrNotFound.
	SetPolicy(ctx context.Context, cacheID int64, p Policy) error
	// Touch records that the narinfos of the cache with the given hashes
	// were read at t, keeping the later time; unknown hashes are ignored.
	Touch(ctx context.Context, cacheID int64, hashes []string, t time.Time) error
	// TouchNars records that the NAR files with the given file hashes were
	// read from the cache at t: the narinfos of the cache that serve them
	// are touched as by Touch. Unknown file hashes are ignored.
	TouchNars(ctx context.Context, cacheID int64, fileHashes []string, t time.Time) error
	// Usage returns the number of narinfos of the cache (upstream-only
	// ones included) and the bytes of the NAR files they serve (each file
	// once), or ErrNotFound if there is no such cache.
	Usage(ctx context.Context, cacheID int64) (paths, bytes int64, err error)

	// AddPin records a pin revision, replacing one with the same cache, name
	// and hash, and sets the rule of its name; it returns ErrNotFound if the
	// cache does not exist. An empty Name is taken to be Hash; a zero
	// CreatedAt means now.
	AddPin(ctx context.Context, p Pin, rule PinRule) error
	// ListPins returns the pins of the cache ordered by name, then newest
	// first, with the rule of each name. An unknown cache has none.
	ListPins(ctx context.Context, cacheID int64) ([]Pin, map[string]PinRule, error)
	// DeletePins removes the revisions of a named pin (all of them when
	// hash is ""), or returns ErrNotFound if there were none. The rule of
	// the name goes with its last revision.
	DeletePins(ctx context.Context, cacheID int64, name, hash string) error

	// Collect removes the narinfos of a cache outside the closure of its
	// roots (see CollectPlan) and the NAR links no kept narinfo serves, in
	// bounded memory, and records the time as the cache's LastGC (unless a
	// dry run). Narinfos committed while it runs are kept, with their
	// closures. It returns ErrNotFound if the cache does not exist.
	Collect(ctx context.Context, plan CollectPlan) (CollectResult, error)
	// UnusedNars removes, and returns, up to limit Nar records that no cache
	// links to, that were created before before and that no upload claims
	// now (see ClaimNar), so that the caller deletes their
	// blobs (a dry run only returns them). Should the caller stop before
	// deleting them, the blobs stay without records, for OrphanBlobs to
	// find.
	UnusedNars(ctx context.Context, before time.Time, limit int, dryRun bool) ([]Nar, error)
	// OrphanBlobs keeps the account of blobs no record holds, for a sweep
	// of the blob store. keys were listed from the blob store at at. Of
	// them, those that a Nar, Object or Part names as its BlobKey, or that
	// are the Key of a Pack, are
	// forgotten as orphans; the others are noted as orphans seen at at
	// (the first sighting is kept). It returns those of the others first
	// seen before before, in no particular order: orphans for at least as
	// long, which the caller may delete. A dry run changes nothing. Blob
	// keys are never reused, so a blob that has been an orphan for longer
	// than any upload takes to record it stays one.
	OrphanBlobs(ctx context.Context, keys []string, at, before time.Time, dryRun bool) ([]string, error)
	// PruneOrphans forgets the orphans not seen since before: blobs that
	// are gone. A sweep calls it once it has listed the whole blob store.
	PruneOrphans(ctx context.Context, before time.Time) error
	// StaleUploads returns up to limit multipart uploads created before
	// before, in every cache.
	StaleUploads(ctx context.Context, before time.Time, limit int) ([]Upload, error)

	// TryLease takes the named lease for holder until ttl from now if it is
	// free, expired or already held by holder, and reports whether it did.
	// Several processes use it to run one collection at a time.
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives up the lease if holder holds it.
	ReleaseLease(ctx context.Context, name, holder string) error
	// LeaseHolder returns the holder of the named lease, or "" if it is
	// free or expired.
	LeaseHolder(ctx context.Context, name string) (string, error)
}

// ClosureSize is the size of a closure within one cache.
type ClosureSize struct {
	Paths     int64 // narinfos in it
	NarBytes  int64 // their NarSize, added up
	FileBytes int64 // the bytes of the NAR files they serve, each file once
}

// BrowseStore answers what a person looking at a cache asks of its paths.
// Every method only reads, and returns at most limit records where it takes
// one (limit < 1: none). A reference, as in GCStore, is a store path base
// name whose first 32 characters are the hash of the path it names.
type BrowseStore interface {
	// RecentNarInfos returns the narinfos of the cache most recently
	// created first (by CreatedAt, then Seq, highest first).
	RecentNarInfos(ctx context.Context, cacheID int64, limit int) ([]NarInfo, error)
	// FindNarInfos returns the narinfos of the cache whose Hash starts with
	// prefix, and those whose name (what follows "<Hash>-" in StorePath)
	// starts with it, ASCII case ignored: at most limit of each kind, each
	// narinfo once, ordered by name and then Hash. An empty prefix finds
	// nothing.
	FindNarInfos(ctx context.Context, cacheID int64, prefix string, limit int) ([]NarInfo, error)
	// NarInfos returns the narinfos of the cache with the given hashes
	// (thousands in one call), in no particular order; unknown hashes are
	// left out.
	NarInfos(ctx context.Context, cacheID int64, hashes []string) ([]NarInfo, error)
	// Referrers returns the narinfos of the cache that reference the path
	// with the given hash, the path itself left out, ordered by StorePath.
	Referrers(ctx context.Context, cacheID int64, hash string, limit int) ([]NarInfo, error)
	// Closure returns the size of the closure of the given hashes within
	// the cache: the narinfos of the cache they name and, transitively,
	// those their references name. Hashes the cache does not hold add
	// nothing.
	Closure(ctx context.Context, cacheID int64, hashes []string) (ClosureSize, error)
	// LastRead returns when the narinfo of hash in the cache was last read
	// (see Touch and TouchNars), the zero time if never, or ErrNotFound if
	// there is no such narinfo.
	LastRead(ctx context.Context, cacheID int64, hash string) (time.Time, error)
}

// Sample is what the history of a cache records of one interval.
type Sample struct {
	CacheID  int64
	At       time.Time     // when the interval starts
	Span     time.Duration // how much time the sample stands for, kept to the second
	Bytes    int64         // NAR bytes of the cache as last measured in the interval
	Paths    int64         // narinfos of the cache, measured with Bytes
	Requests int64         // narinfo lookups during the interval
	Hits     int64         // those of them answered with a narinfo
}

// HistoryStore keeps the history of each cache, as samples of its size and
// reads. Several processes may add to the same sample: the counts of the
// interval add up, and the sizes, which every process measures in the same
// store, replace each other.
type HistoryStore interface {
	// AddSample adds s to the history of its cache: if the cache has a
	// sample at s.At (to the second), s.Requests and s.Hits are added to
	// its counts and s.Bytes, s.Paths and s.Span replace its own;
	// otherwise s is recorded. It returns ErrNotFound if the cache does not
	// exist. The samples of a deleted cache go with it.
	AddSample(ctx context.Context, s Sample) error
	// Samples returns the latest limit samples of the cache whose At is at
	// or after since, oldest first. An unknown cache has none.
	Samples(ctx context.Context, cacheID int64, since time.Time, limit int) ([]Sample, error)
	// MergeSamples merges the samples of every cache whose At is before
	// before into one per multiple of step (counted in whole seconds from
	// the Unix epoch): the merged sample's At is the multiple; its Requests
	// and Hits are the sums, its Bytes and Paths those of the latest sample
	// merged, its Span the sum of the spans but at most step. A sample
	// whose At is a multiple of step is the one the later ones of its
	// multiple are merged into, and is otherwise unchanged.
	MergeSamples(ctx context.Context, before time.Time, step time.Duration) error
	// DeleteSamples removes the samples of every cache whose At is before
	// before.
	DeleteSamples(ctx context.Context, before time.Time) error
}

// Session is a login to the dashboard, opened with an HTTP token. The
// secret that names it is held by the browser only; the store keeps its
// hash.
type Session struct {
	ID        string // hex sha256 of the session's secret; unique
	TokenID   int64  // the token it was opened with
	CSRF      string // the token its forms carry
	CreatedAt time.Time
	ExpiresAt time.Time
}

// SessionStore keeps login sessions. A session goes with the token it was
// opened with (DeleteToken, and DeleteCache for the tokens it deletes).
type SessionStore interface {
	// CreateSession records s (a zero CreatedAt means now) and then, if
	// keep > 0, removes the sessions of the same token beyond the keep
	// latest (by CreatedAt; s is always kept). It returns ErrNotFound,
	// recording nothing, if there is no token s.TokenID and ErrExists if
	// a session has s.ID.
	CreateSession(ctx context.Context, s Session, keep int) error
	// GetSession returns the session with the given ID, expired or not,
	// and the token it was opened with, or ErrNotFound.
	GetSession(ctx context.Context, id string) (Session, Token, error)
	// DeleteSession removes the session with the given ID; removing one
	// that does not exist is not an error.
	DeleteSession(ctx context.Context, id string) error
	// ExpireSessions removes the sessions whose ExpiresAt is before before
	// and returns how many it removed.
	ExpireSessions(ctx context.Context, before time.Time) (int64, error)
}
