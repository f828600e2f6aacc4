
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
