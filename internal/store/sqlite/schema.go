package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the steps from one schema version to the next:
// migrations[i] takes a database from version i to version i+1. The
// version is kept in PRAGMA user_version. Released steps never change;
// later versions append new ones.
//
// Times are unix seconds. AUTOINCREMENT keeps IDs and Seqs from being
// reused after deletes, which the contract requires of cache IDs and which
// readers of ListNarInfoKeys rely on to resume after a Seq. Tables are
// STRICT, so a value of the wrong type is an error, not a silent
// conversion.
var migrations = []string{
	// 1: the initial schema. testdata/schema-v1.sql keeps a copy, which a
	// test compares with it.
	`
CREATE TABLE caches (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	name       TEXT    NOT NULL UNIQUE,
	private    INTEGER NOT NULL CHECK (private IN (0, 1)),
	priority   INTEGER NOT NULL,
	secret_key TEXT    NOT NULL,
	public_key TEXT    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	hash        TEXT    NOT NULL UNIQUE,
	cache_id    INTEGER REFERENCES caches (id) ON DELETE CASCADE, -- NULL: every cache
	perm        TEXT    NOT NULL,
	description TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER                                          -- NULL: never
) STRICT;
CREATE INDEX tokens_cache_id ON tokens (cache_id);

CREATE TABLE nars (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	file_hash   TEXT    NOT NULL UNIQUE,
	file_size   INTEGER NOT NULL,
	compression TEXT    NOT NULL,
	nar_hash    TEXT    NOT NULL,
	nar_size    INTEGER NOT NULL,
	blob_key    TEXT    NOT NULL,
	created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX nars_nar_hash ON nars (nar_hash);

CREATE TABLE cache_nars (
	cache_id   INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	nar_id     INTEGER NOT NULL REFERENCES nars (id),
	created_at INTEGER NOT NULL,
	PRIMARY KEY (cache_id, nar_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX cache_nars_nar_id ON cache_nars (nar_id);

-- A narinfo references the link of its Nar to its cache, so that no
-- narinfo can serve a Nar its cache does not hold, and unlinking a Nar
-- removes the narinfos that serve it.
CREATE TABLE narinfos (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	cache_id   INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	hash       TEXT    NOT NULL,
	store_path TEXT    NOT NULL,
	nar_id     INTEGER NOT NULL,
	nar_hash   TEXT    NOT NULL,
	nar_size   INTEGER NOT NULL,
	refs       TEXT    NOT NULL, -- JSON array of strings
	deriver    TEXT    NOT NULL,
	system     TEXT    NOT NULL,
	ca         TEXT    NOT NULL,
	sigs       TEXT    NOT NULL, -- JSON array of strings
	created_at INTEGER NOT NULL,
	UNIQUE (cache_id, hash),
	FOREIGN KEY (cache_id, nar_id) REFERENCES cache_nars (cache_id, nar_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX narinfos_nar_id ON narinfos (nar_id, cache_id);

CREATE TABLE files (
	cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	key          TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	size         INTEGER NOT NULL,
	sha256       TEXT    NOT NULL,
	blob_key     TEXT    NOT NULL,
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (cache_id, key)
) STRICT, WITHOUT ROWID;
`,
	migration2,
	migration3,
	migration4,
	migrationDashboard,
	upstreamMigration,
	chunkMigration,
}

// migration2 adds what the S3 API needs: S3 access keys and token scopes
// by name, the keys NAR links and narinfos are listed under, MD5s, object
// metadata, held narinfos and multipart uploads.
//
// Tokens are rebuilt, since a column becomes nullable and another goes: a
// token scoped to a cache gets the cache's name as its scope, one for every
// cache "*"; IDs, hashes and the AUTOINCREMENT counter are kept. Files
// become objects. Existing NAR links are listed under the key the Nix layout
// gives them, "nar/<file hash>.nar<extension of the compression>", and
// existing narinfos under "<hash>.narinfo"; existing MD5s and ETags are
// empty. The defaults of the added columns serve only to add them: every
// insert names all columns.
//
// Keys compare with the BINARY collation, byte by byte, as S3 orders them.
// Each kind of listed key has a unique index on (cache_id, key), so that
// ListKeys merges three range scans.
const migration2 = `
CREATE TABLE tokens_v2 (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	hash          TEXT    UNIQUE, -- HTTP token; NULL for an S3 key
	access_key_id TEXT    UNIQUE, -- S3 key; NULL for an HTTP token
	secret        TEXT    NOT NULL, -- S3 key; '' for an HTTP token
	scope         TEXT    NOT NULL, -- a cache name, a glob of names, or '*'
	perm          TEXT    NOT NULL,
	description   TEXT    NOT NULL,
	created_at    INTEGER NOT NULL,
	expires_at    INTEGER,          -- NULL: never
	CHECK ((hash IS NULL) <> (access_key_id IS NULL))
) STRICT;
INSERT INTO sqlite_sequence (name, seq)
	SELECT 'tokens_v2', seq FROM sqlite_sequence WHERE name = 'tokens';
INSERT INTO tokens_v2 (id, hash, access_key_id, secret, scope, perm, description, created_at, expires_at)
	SELECT t.id, t.hash, NULL, '', coalesce(c.name, '*'), t.perm, t.description, t.created_at, t.expires_at
	FROM tokens t LEFT JOIN caches c ON c.id = t.cache_id;
DROP TABLE tokens;
ALTER TABLE tokens_v2 RENAME TO tokens;
CREATE INDEX tokens_scope ON tokens (scope);

ALTER TABLE nars ADD COLUMN md5 TEXT NOT NULL DEFAULT '';

ALTER TABLE cache_nars ADD COLUMN key TEXT NOT NULL DEFAULT '';
UPDATE cache_nars SET key = (
	SELECT 'nar/' || n.file_hash || '.nar' || CASE n.compression
		WHEN 'xz' THEN '.xz' WHEN 'zstd' THEN '.zst' WHEN 'bzip2' THEN '.bz2'
		WHEN 'lz4' THEN '.lz4' WHEN 'br' THEN '.br' ELSE '' END
	FROM nars n WHERE n.id = cache_nars.nar_id);
CREATE UNIQUE INDEX cache_nars_key ON cache_nars (cache_id, key);

ALTER TABLE narinfos ADD COLUMN key TEXT NOT NULL DEFAULT '';
UPDATE narinfos SET key = hash || '.narinfo';
CREATE UNIQUE INDEX narinfos_key ON narinfos (cache_id, key);

ALTER TABLE files RENAME TO objects;
ALTER TABLE objects ADD COLUMN md5 TEXT NOT NULL DEFAULT '';
ALTER TABLE objects ADD COLUMN etag TEXT NOT NULL DEFAULT '';
ALTER TABLE objects ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'; -- JSON object of strings

-- Narinfos that wait for their NAR file, as uploaded.
CREATE TABLE held_narinfos (
	cache_id   INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	hash       TEXT    NOT NULL,
	file_hash  TEXT    NOT NULL,
	body       BLOB    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (cache_id, hash)
) STRICT;
CREATE INDEX held_narinfos_file_hash ON held_narinfos (cache_id, file_hash);
CREATE INDEX held_narinfos_created_at ON held_narinfos (created_at);

CREATE TABLE uploads (
	id           TEXT    PRIMARY KEY,
	cache_id     INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	key          TEXT    NOT NULL,
	content_type TEXT    NOT NULL,
	metadata     TEXT    NOT NULL, -- JSON object of strings
	created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX uploads_key ON uploads (cache_id, key);

CREATE TABLE parts (
	upload_id  TEXT    NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
	number     INTEGER NOT NULL,
	size       INTEGER NOT NULL,
	md5        TEXT    NOT NULL,
	blob_key   TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (upload_id, number)
) STRICT, WITHOUT ROWID;
`

// migration3 adds what garbage collection needs: the policy and last
// collection of caches, the last read of narinfos, their references as
// rows, pins and leases.
//
// narinfo_refs holds, for each narinfo, the store path hashes it references
// (a reference is a store path base name, "<hash>-<name>", whose hash is
// its first 32 characters: the one piece of Nix's layout the store knows);
// a narinfo's reference to itself is left out, since it adds nothing to a
// closure. Its primary key leads with (cache_id, hash), which a closure
// follows; the index on (cache_id, ref_hash) finds what refers to a path.
// PutNarInfo writes the rows of every narinfo it writes; the rows go with
// their narinfo. The rows of existing narinfos are filled in from refs.
//
// last_access is NULL until a narinfo is read: its last use is then its
// creation. last_gc is NULL until a collection finishes. Retention and
// keep_for are seconds; lease expiries are unix milliseconds.
const migration3 = `
ALTER TABLE caches ADD COLUMN retention INTEGER NOT NULL DEFAULT 0;
ALTER TABLE caches ADD COLUMN max_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE caches ADD COLUMN last_gc INTEGER; -- NULL: never

ALTER TABLE narinfos ADD COLUMN last_access INTEGER; -- NULL: never read

CREATE TABLE narinfo_refs (
	cache_id INTEGER NOT NULL,
	hash     TEXT    NOT NULL,
	ref_hash TEXT    NOT NULL,
	PRIMARY KEY (cache_id, hash, ref_hash),
	FOREIGN KEY (cache_id, hash) REFERENCES narinfos (cache_id, hash) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX narinfo_refs_ref_hash ON narinfo_refs (cache_id, ref_hash);
INSERT OR IGNORE INTO narinfo_refs (cache_id, hash, ref_hash)
	SELECT ni.cache_id, ni.hash, substr(r.value, 1, 32) FROM narinfos ni, json_each(ni.refs) r
	WHERE substr(r.value, 1, 32) <> ni.hash;

-- Revisions of pins, and the rule of each pin name.
CREATE TABLE pins (
	cache_id   INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	name       TEXT    NOT NULL,
	hash       TEXT    NOT NULL,
	store_path TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (cache_id, name, hash)
) STRICT, WITHOUT ROWID;
CREATE TABLE pin_rules (
	cache_id       INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	name           TEXT    NOT NULL,
	keep_revisions INTEGER NOT NULL,
	keep_for       INTEGER NOT NULL,
	PRIMARY KEY (cache_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE leases (
	name       TEXT    PRIMARY KEY,
	holder     TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`

// migration4 adds what keeps blobs safe from, and reachable by, garbage
// collection: until when an upload claims a Nar (claimed_until, unix
// seconds; 0 until one does), whether its blob was found missing, indexes that find
// the record naming a blob key, and the orphans a sweep of the blob store
// has seen (blobs no record names), with their first and last sightings.
const migration4 = `
ALTER TABLE nars ADD COLUMN claimed_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nars ADD COLUMN missing INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1));
CREATE INDEX nars_blob_key ON nars (blob_key);
CREATE INDEX objects_blob_key ON objects (blob_key);
CREATE INDEX parts_blob_key ON parts (blob_key);

CREATE TABLE orphan_blobs (
	blob_key   TEXT    PRIMARY KEY,
	first_seen INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX orphan_blobs_last_seen ON orphan_blobs (last_seen);
`

// migrationDashboard adds what the dashboard reads: indexes that find a
// cache's latest narinfos and its narinfos by the start of their name (the
// part of the store path after "<hash>-", lower-cased, as FindNarInfos
// compares it), the samples of each cache's history, and login sessions,
// which go with their token. Sample times and spans are unix seconds and
// seconds.
const migrationDashboard = `
CREATE INDEX narinfos_created_at ON narinfos (cache_id, created_at);
CREATE INDEX narinfos_name ON narinfos (cache_id, lower(substr(store_path, instr(store_path, hash) + 33)), hash);

CREATE TABLE cache_samples (
	cache_id INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	at       INTEGER NOT NULL,
	span     INTEGER NOT NULL,
	bytes    INTEGER NOT NULL,
	paths    INTEGER NOT NULL,
	requests INTEGER NOT NULL,
	hits     INTEGER NOT NULL,
	PRIMARY KEY (cache_id, at)
) STRICT, WITHOUT ROWID;
CREATE INDEX cache_samples_at ON cache_samples (at);

CREATE TABLE sessions (
	id         TEXT    PRIMARY KEY,
	token_id   INTEGER NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
	csrf       TEXT    NOT NULL,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_token_id ON sessions (token_id, created_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
`

// upstreamMigration adds what upstream caches need: the upstreams of each
// cache (a JSON array of {"url": …, "keys": […]}) with what the cache does
// with them, and upstream-only narinfos.
//
// An upstream-only narinfo has no Nar, so narinfos are rebuilt with a
// nullable nar_id (a foreign key with a NULL column is not checked), the
// URL of the upstream that holds the path and when it last confirmed so
// (both NULL on the others). narinfo_refs, whose foreign key names
// narinfos, is rebuilt with it, since dropping a table deletes the rows
// that refer to it. Every row, Seq and the AUTOINCREMENT counter are kept.
const upstreamMigration = `
ALTER TABLE caches ADD COLUMN upstreams TEXT NOT NULL DEFAULT '[]';
ALTER TABLE caches ADD COLUMN upstream_skip INTEGER NOT NULL DEFAULT 0 CHECK (upstream_skip IN (0, 1));
ALTER TABLE caches ADD COLUMN upstream_pull INTEGER NOT NULL DEFAULT 0 CHECK (upstream_pull IN (0, 1));

CREATE TABLE narinfos_new (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	cache_id    INTEGER NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	hash        TEXT    NOT NULL,
	key         TEXT    NOT NULL,
	store_path  TEXT    NOT NULL,
	nar_id      INTEGER,          -- NULL: upstream-only
	nar_hash    TEXT    NOT NULL,
	nar_size    INTEGER NOT NULL,
	refs        TEXT    NOT NULL, -- JSON array of strings
	deriver     TEXT    NOT NULL,
	system      TEXT    NOT NULL,
	ca          TEXT    NOT NULL,
	sigs        TEXT    NOT NULL, -- JSON array of strings
	created_at  INTEGER NOT NULL,
	last_access INTEGER,          -- NULL: never read
	upstream    TEXT,             -- upstream-only: the URL of the upstream
	checked_at  INTEGER,          -- upstream-only: when the upstream last had it
	UNIQUE (cache_id, hash),
	CHECK ((nar_id IS NULL) = (upstream IS NOT NULL)),
	CHECK ((upstream IS NULL) = (checked_at IS NULL)),
	FOREIGN KEY (cache_id, nar_id) REFERENCES cache_nars (cache_id, nar_id) ON DELETE CASCADE
) STRICT;
INSERT INTO sqlite_sequence (name, seq)
	SELECT 'narinfos_new', seq FROM sqlite_sequence WHERE name = 'narinfos';
INSERT INTO narinfos_new (seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs, deriver,
		system, ca, sigs, created_at, last_access)
	SELECT seq, cache_id, hash, key, store_path, nar_id, nar_hash, nar_size, refs, deriver,
		system, ca, sigs, created_at, last_access FROM narinfos;
CREATE TABLE narinfo_refs_new (
	cache_id INTEGER NOT NULL,
	hash     TEXT    NOT NULL,
	ref_hash TEXT    NOT NULL,
	PRIMARY KEY (cache_id, hash, ref_hash),
	FOREIGN KEY (cache_id, hash) REFERENCES narinfos_new (cache_id, hash) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
INSERT INTO narinfo_refs_new (cache_id, hash, ref_hash) SELECT cache_id, hash, ref_hash FROM narinfo_refs;
DROP TABLE narinfo_refs;
DROP TABLE narinfos;
ALTER TABLE narinfos_new RENAME TO narinfos;
ALTER TABLE narinfo_refs_new RENAME TO narinfo_refs;
CREATE INDEX narinfos_nar_id ON narinfos (nar_id, cache_id);
CREATE UNIQUE INDEX narinfos_key ON narinfos (cache_id, key);
CREATE INDEX narinfos_checked_at ON narinfos (checked_at) WHERE nar_id IS NULL;
CREATE INDEX narinfo_refs_ref_hash ON narinfo_refs (cache_id, ref_hash);
-- the dashboard's indexes, dropped with the old table
CREATE INDEX narinfos_created_at ON narinfos (cache_id, created_at);
CREATE INDEX narinfos_name ON narinfos (cache_id, lower(substr(store_path, instr(store_path, hash) + 33)), hash);
`

// chunkMigration adds the index of chunked NARs: the packed form of a Nar
// (its served file's hash and size), the packs, the chunks with where
// their frames lie, and the ordered chunk list of each packed Nar. A
// chunk or a pack cannot be removed while something refers to it.
const chunkMigration = `
ALTER TABLE nars ADD COLUMN packed_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE nars ADD COLUMN packed_size INTEGER NOT NULL DEFAULT 0;
CREATE INDEX nars_packed_hash ON nars (packed_hash) WHERE packed_hash <> '';
CREATE INDEX nars_whole ON nars (file_hash) WHERE packed_hash = '' AND missing = 0;
CREATE TABLE packs (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	key        TEXT    NOT NULL UNIQUE,
	size       INTEGER NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE chunks (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	hash        TEXT    NOT NULL UNIQUE,
	size        INTEGER NOT NULL,
	pack_id     INTEGER NOT NULL REFERENCES packs (id),
	pack_offset INTEGER NOT NULL,
	length      INTEGER NOT NULL
) STRICT;
CREATE INDEX chunks_pack_id ON chunks (pack_id, pack_offset);
CREATE TABLE nar_chunks (
	nar_id   INTEGER NOT NULL REFERENCES nars (id) ON DELETE CASCADE,
	idx      INTEGER NOT NULL,
	chunk_id INTEGER NOT NULL REFERENCES chunks (id),
	PRIMARY KEY (nar_id, idx)
) STRICT, WITHOUT ROWID;
CREATE INDEX nar_chunks_chunk_id ON nar_chunks (chunk_id);
`

// migrate brings the schema of db to the newest version, applying the
// missing migrations in one transaction. A database newer than this
// program is an error, so that an old binary does not write into a schema
// it does not know.
func migrate(ctx context.Context, db *sql.DB) error {
	v, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	if v == len(migrations) {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	defer tx.Rollback()
	// Another process may have migrated since the first look.
	if v, err = schemaVersion(ctx, tx); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this program's %d", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	// PRAGMA takes no parameters; the number is formatted by this program.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

// querier is a *sql.DB or *sql.Tx.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaVersion returns the schema version of the database.
func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
