
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
