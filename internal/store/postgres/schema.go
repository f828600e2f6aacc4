package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are the steps from one schema version to the next:
// migrations[i] takes a database from version i to version i+1. The
// versions applied are rows of schema_migrations. Released steps never
// change; later versions append new ones.
//
// Version 1 is the logical schema of the SQLite store's current version,
// in PostgreSQL's types: identity columns, which never reuse a value, for
// IDs; timestamptz kept to the second; text[] for lists of strings and
// jsonb for maps of them. Keys and names compare with the "C" collation,
// byte by byte, as S3 orders keys, whatever the database's default.
//
// Seqs of narinfos do not come from a sequence: see narinfo_seq and
// PutNarInfo.
var migrations = []string{
	// 1: the initial schema. testdata/schema-v1.sql keeps a copy, which a
	// test compares with it.
	`
CREATE TABLE caches (
	id         bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name       text    COLLATE "C" NOT NULL UNIQUE,
	private    boolean NOT NULL,
	priority   bigint  NOT NULL,
	secret_key text    NOT NULL,
	public_key text    NOT NULL,
	created_at timestamptz NOT NULL
);

CREATE TABLE tokens (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hash          text   COLLATE "C" UNIQUE, -- HTTP token; NULL for an S3 key
	access_key_id text   COLLATE "C" UNIQUE, -- S3 key; NULL for an HTTP token
	secret        text   NOT NULL,           -- S3 key; '' for an HTTP token
	scope         text   COLLATE "C" NOT NULL, -- a cache name, a glob of names, or '*'
	perm          text   NOT NULL,
	description   text   NOT NULL,
	created_at    timestamptz NOT NULL,
	expires_at    timestamptz,               -- NULL: never
	CHECK ((hash IS NULL) <> (access_key_id IS NULL))
);
CREATE INDEX tokens_scope ON tokens (scope);

CREATE TABLE nars (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	file_hash   text   COLLATE "C" NOT NULL UNIQUE,
	file_size   bigint NOT NULL,
	compression text   NOT NULL,
	nar_hash    text   NOT NULL,
	nar_size    bigint NOT NULL,
	md5         text   NOT NULL,
	blob_key    text   NOT NULL,
	created_at  timestamptz NOT NULL
);
CREATE INDEX nars_nar_hash ON nars (nar_hash);

-- The links of Nars to caches, listed under key.
CREATE TABLE cache_nars (
	cache_id   bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	nar_id     bigint NOT NULL REFERENCES nars (id),
	key        text   COLLATE "C" NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (cache_id, nar_id),
	UNIQUE (cache_id, key)
);
CREATE INDEX cache_nars_nar_id ON cache_nars (nar_id);

-- A narinfo references the link of its Nar to its cache, so that no
-- narinfo can serve a Nar its cache does not hold, and unlinking a Nar
-- removes the narinfos that serve it.
CREATE TABLE narinfos (
	seq        bigint PRIMARY KEY, -- from narinfo_seq
	cache_id   bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	hash       text   COLLATE "C" NOT NULL,
	key        text   COLLATE "C" NOT NULL,
	store_path text   NOT NULL,
	nar_id     bigint NOT NULL,
	nar_hash   text   NOT NULL,
	nar_size   bigint NOT NULL,
	refs       text[] NOT NULL,
	deriver    text   NOT NULL,
	system     text   NOT NULL,
	ca         text   NOT NULL,
	sigs       text[] NOT NULL,
	created_at timestamptz NOT NULL,
	UNIQUE (cache_id, hash),
	UNIQUE (cache_id, key),
	FOREIGN KEY (cache_id, nar_id) REFERENCES cache_nars (cache_id, nar_id) ON DELETE CASCADE
);
CREATE INDEX narinfos_nar_id ON narinfos (nar_id, cache_id);

-- The last Seq given to a narinfo, in its only row. A transaction adding a
-- narinfo increments it and holds the row lock until it commits, so that
-- Seqs become visible in the order they are given.
CREATE TABLE narinfo_seq (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	last     bigint  NOT NULL
);
INSERT INTO narinfo_seq (last) VALUES (0);

CREATE TABLE objects (
	cache_id     bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	key          text   COLLATE "C" NOT NULL,
	content_type text   NOT NULL,
	size         bigint NOT NULL,
	sha256       text   NOT NULL,
	md5          text   NOT NULL,
	etag         text   NOT NULL,
	metadata     jsonb  NOT NULL, -- object of strings
	blob_key     text   NOT NULL,
	created_at   timestamptz NOT NULL,
	PRIMARY KEY (cache_id, key)
);

-- Narinfos that wait for their NAR file, as uploaded.
CREATE TABLE held_narinfos (
	cache_id   bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	hash       text   COLLATE "C" NOT NULL,
	file_hash  text   COLLATE "C" NOT NULL,
	body       bytea  NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (cache_id, hash)
);
CREATE INDEX held_narinfos_file_hash ON held_narinfos (cache_id, file_hash);
CREATE INDEX held_narinfos_created_at ON held_narinfos (created_at);

CREATE TABLE uploads (
	id           text   COLLATE "C" PRIMARY KEY,
	cache_id     bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	key          text   COLLATE "C" NOT NULL,
	content_type text   NOT NULL,
	metadata     jsonb  NOT NULL, -- object of strings
	created_at   timestamptz NOT NULL
);
CREATE INDEX uploads_key ON uploads (cache_id, key);

CREATE TABLE parts (
	upload_id  text    COLLATE "C" NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
	number     integer NOT NULL,
	size       bigint  NOT NULL,
	md5        text    NOT NULL,
	blob_key   text    NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (upload_id, number)
);
`,
	migration2,
	migration3,
	migrationDashboard,
	upstreamMigration,
	chunkMigration,
}

// migration2 adds what garbage collection needs: the policy and last
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
// keep_for are seconds. Lease expiries are the server's time, which every
// process sharing the database shares.
const migration2 = `
ALTER TABLE caches
	ADD COLUMN retention bigint NOT NULL DEFAULT 0,
	ADD COLUMN max_size  bigint NOT NULL DEFAULT 0,
	ADD COLUMN last_gc   timestamptz; -- NULL: never

ALTER TABLE narinfos ADD COLUMN last_access timestamptz; -- NULL: never read

CREATE TABLE narinfo_refs (
	cache_id bigint NOT NULL,
	hash     text   COLLATE "C" NOT NULL,
	ref_hash text   COLLATE "C" NOT NULL,
	PRIMARY KEY (cache_id, hash, ref_hash),
	FOREIGN KEY (cache_id, hash) REFERENCES narinfos (cache_id, hash) ON DELETE CASCADE
);
CREATE INDEX narinfo_refs_ref_hash ON narinfo_refs (cache_id, ref_hash);
INSERT INTO narinfo_refs (cache_id, hash, ref_hash)
	SELECT DISTINCT ni.cache_id, ni.hash, left(r.ref, 32) FROM narinfos ni, unnest(ni.refs) AS r (ref)
	WHERE left(r.ref, 32) <> ni.hash;

-- Revisions of pins, and the rule of each pin name.
CREATE TABLE pins (
	cache_id   bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	name       text   COLLATE "C" NOT NULL,
	hash       text   COLLATE "C" NOT NULL,
	store_path text   NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (cache_id, name, hash)
);
CREATE TABLE pin_rules (
	cache_id       bigint NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	name           text   COLLATE "C" NOT NULL,
	keep_revisions bigint NOT NULL,
	keep_for       bigint NOT NULL,
	PRIMARY KEY (cache_id, name)
);

CREATE TABLE leases (
	name       text COLLATE "C" PRIMARY KEY,
	holder     text NOT NULL,
	expires_at timestamptz NOT NULL
);
`

// migration3 adds what keeps blobs safe from, and reachable by, garbage
// collection: until when an upload claims a Nar (claimed_until, by the
// server's clock; the epoch until one does), whether its blob was found missing, indexes that find
// the record naming a blob key, and the orphans a sweep of the blob store
// has seen (blobs no record names), with their first and last sightings.
const migration3 = `
ALTER TABLE nars
	ADD COLUMN claimed_until timestamptz NOT NULL DEFAULT 'epoch',
	ADD COLUMN missing    boolean     NOT NULL DEFAULT false;
CREATE INDEX nars_blob_key ON nars (blob_key);
CREATE INDEX objects_blob_key ON objects (blob_key);
CREATE INDEX parts_blob_key ON parts (blob_key);

CREATE TABLE orphan_blobs (
	blob_key   text PRIMARY KEY,
	first_seen timestamptz NOT NULL,
	last_seen  timestamptz NOT NULL
);
CREATE INDEX orphan_blobs_last_seen ON orphan_blobs (last_seen);
`

// migrationDashboard adds what the dashboard reads: indexes that find a
// cache's latest narinfos and its narinfos by the start of their name (the
// part of the store path after "<hash>-", lower-cased and compared byte by
// byte, as FindNarInfos compares it), the samples of each cache's history
// (span in seconds), and login sessions, which go with their token.
const migrationDashboard = `
CREATE INDEX narinfos_created_at ON narinfos (cache_id, created_at);
CREATE INDEX narinfos_name ON narinfos (cache_id,
	(lower(substr(store_path, strpos(store_path, hash COLLATE "C") + 33)) COLLATE "C"), hash);

CREATE TABLE cache_samples (
	cache_id bigint      NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
	at       timestamptz NOT NULL,
	span     bigint      NOT NULL,
	bytes    bigint      NOT NULL,
	paths    bigint      NOT NULL,
	requests bigint      NOT NULL,
	hits     bigint      NOT NULL,
	PRIMARY KEY (cache_id, at)
);
CREATE INDEX cache_samples_at ON cache_samples (at);

CREATE TABLE sessions (
	id         text   COLLATE "C" PRIMARY KEY,
	token_id   bigint NOT NULL REFERENCES tokens (id) ON DELETE CASCADE,
	csrf       text   NOT NULL,
	created_at timestamptz NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_token_id ON sessions (token_id, created_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
`

// upstreamMigration adds what upstream caches need: the upstreams of each
// cache (a JSON array of {"url": …, "keys": […]}) with what the cache does
// with them, and upstream-only narinfos: narinfos without a Nar (a foreign
// key with a NULL column is not checked), with the URL of the upstream
// that holds the path and when it last confirmed so (both NULL on the
// others).
const upstreamMigration = `
ALTER TABLE caches
	ADD COLUMN upstreams     jsonb   NOT NULL DEFAULT '[]',
	ADD COLUMN upstream_skip boolean NOT NULL DEFAULT false,
	ADD COLUMN upstream_pull boolean NOT NULL DEFAULT false;
ALTER TABLE narinfos
	ALTER COLUMN nar_id DROP NOT NULL,
	ADD COLUMN upstream   text,
	ADD COLUMN checked_at timestamptz,
	ADD CONSTRAINT narinfos_upstream_only CHECK ((nar_id IS NULL) = (upstream IS NOT NULL)),
	ADD CONSTRAINT narinfos_upstream_checked CHECK ((upstream IS NULL) = (checked_at IS NULL));
CREATE INDEX narinfos_checked_at ON narinfos (checked_at) WHERE nar_id IS NULL;
`

// migrateLock is the key of the transaction-level advisory lock migrate
// holds, so that processes starting at once migrate one after the other
// (the bytes of "larder" and a 1).
const migrateLock int64 = 0x6c61726465720001

// chunkMigration adds the index of chunked NARs: the packed form of a Nar
// (its served file's hash and size), the packs, the chunks with where
// their frames lie, and the ordered chunk list of each packed Nar. A
// chunk or a pack cannot be removed while something refers to it.
const chunkMigration = `
ALTER TABLE nars
	ADD COLUMN packed_hash text COLLATE "C" NOT NULL DEFAULT '',
	ADD COLUMN packed_size bigint NOT NULL DEFAULT 0;
CREATE INDEX nars_packed_hash ON nars (packed_hash) WHERE packed_hash <> '';
CREATE INDEX nars_whole ON nars (file_hash) WHERE packed_hash = '' AND NOT missing;
CREATE TABLE packs (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	key        text   COLLATE "C" NOT NULL UNIQUE,
	size       bigint NOT NULL,
	created_at timestamptz NOT NULL
);
CREATE TABLE chunks (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hash        text   COLLATE "C" NOT NULL UNIQUE,
	size        bigint NOT NULL,
	pack_id     bigint NOT NULL REFERENCES packs (id),
	pack_offset bigint NOT NULL,
	length      bigint NOT NULL
);
CREATE INDEX chunks_pack_id ON chunks (pack_id, pack_offset);
CREATE TABLE nar_chunks (
	nar_id   bigint  NOT NULL REFERENCES nars (id) ON DELETE CASCADE,
	idx      integer NOT NULL,
	chunk_id bigint  NOT NULL REFERENCES chunks (id),
	PRIMARY KEY (nar_id, idx)
);
CREATE INDEX nar_chunks_chunk_id ON nar_chunks (chunk_id);
`

// migrate brings the schema to the newest version, applying the missing
// migrations in one transaction under migrateLock. A schema that is up to
// date is only read, so that a role without the right to create tables
// can open it. A database newer than this program is an error, so that an
// old binary does not write into a schema it does not know, and so is one
// whose encoding is not UTF-8, which would not check that text is.
func migrate(ctx context.Context, conn *pgx.Conn) error {
	var enc string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_encoding')`).Scan(&enc); err != nil {
		return fmt.Errorf("read database encoding: %w", err)
	}
	if enc != "UTF8" {
		return fmt.Errorf("database encoding is %s, want UTF8", enc)
	}
	if v, err := schemaVersion(ctx, conn); err != nil || v == len(migrations) {
		return err
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLock); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`)
		if err != nil {
			return err
		}
		// Another process may have migrated since the first look.
		v, err := schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("to version %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, i+1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	return nil
}

// querier is a *pgx.Conn or a pgx.Tx.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// schemaVersion returns the schema version of the database: 0 if the
// schema where tables are created, the first of the search_path, has no
// schema_migrations table. It is an error if the version is newer than
// this program knows.
func schemaVersion(ctx context.Context, q querier) (int, error) {
	var exists bool
	err := q.QueryRow(ctx, `SELECT to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NOT NULL`).Scan(&exists)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	err = q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return 0, fmt.Errorf("schema version %d is newer than this program's %d", v, len(migrations))
	}
	return v, nil
}
