
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
