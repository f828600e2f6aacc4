package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the driver sqliteSchemaVersion reads with

	"github.com/larder-cache/larder/internal/testserver"
)

// TestMigrateData moves an embedded installation (SQLite and a directory)
// to PostgreSQL and S3 with larder migrate-data, runs it again to catch up,
// then serves from the new stores: Nix substitutes the old pushes from it
// with the cache's old key, and the old token still pushes. The largest
// NAR file is stored as chunks before the move, and is served from its
// copied chunks after it.
func TestMigrateData(t *testing.T) {
	t.Parallel()
	old := startServer(t)
	n := needNix(t)
	key := old.pubkey(t, "main")
	c := n.buildClosure("migrate-" + randomHex(4))
	hashes, files := n.narHashes("", c.Paths), snapshot(t, c.Paths)
	n.withNetrc(old.Host, old.AdminToken).run("nix", "copy", "--to", old.cacheURL("main")+"?compression=zstd", c.Top)
	big := waitChunked(t, old, c)
	if err := old.terminate(t); err != nil {
		t.Fatal(err)
	}
	blobs := old.countFiles(t, "blobs/nar") + old.countFiles(t, "blobs/pack")

	st := newSharedStores(t, testserver.MinIO(t), testserver.Postgres(t))
	dir := t.TempDir()
	from, to := filepath.Join(dir, "from.toml"), filepath.Join(dir, "to.toml")
	newData := t.TempDir()
	must(t, os.WriteFile(from, []byte(fmt.Sprintf("data = %q\n", old.Data)), 0o600))
	must(t, os.WriteFile(to, []byte(fmt.Sprintf("data = %q\nmeta = %q\nblobs = %q\n", newData, st.meta, st.blobs)), 0o600))
	for round, want := range [][]string{
		{fmt.Sprintf("copied %d blobs", blobs), "chunk lists of 1 NARs recorded"},
		{"copied 0 blobs", "chunk lists of 0 NARs recorded"},
	} {
		out, errOut, err := runLarder(nil, "migrate-data", "--from", from, "--to", to)
		if err != nil || !strings.Contains(out, want[0]) || !strings.Contains(out, want[1]) || !strings.Contains(out, "verified") {
			t.Fatalf("migrate-data round %d: %v\n%s%s", round+1, err, out, errOut)
		}
	}

	must(t, os.WriteFile(filepath.Join(newData, "admin-token"), []byte(old.AdminToken+"\n"), 0o600))
	moved := startServerOn(t, newData, freeAddr(t), "--config", to)
	if got := moved.pubkey(t, "main"); got != key {
		t.Fatalf("the migrated cache has the key %s, not %s", got, key)
	}
	code, body := httpDo(t, "GET", moved.cacheURL("main")+"/"+hashPart(big.path)+".narinfo", "", nil)
	if code != 200 || body != big.narinfo {
		t.Fatalf("the migrated narinfo of %s: %d\n%s\nwant\n%s", big.path, code, body, big.narinfo)
	}
	checkPublishedFile(t, moved.cacheURL("main"), narInfoFields(body))
	n.deleteLocal(append(append([]string{}, c.Paths...), c.Drvs...)...)
	subst := needNix(t)
	subst.run("nix-store", "-r", c.Top, "--option", "substituters", moved.cacheURL("main"), "--option", "trusted-public-keys", key)
	checkRestored(t, subst, "substituting from the migrated installation", c, hashes, files)
	d := n.buildPair("migrated-push-" + randomHex(4))
	n.withNetrc(moved.Host, old.AdminToken).run("nix", "copy", "--to", moved.cacheURL("main"), d.Top)
	needNix(t).run("nix", "store", "verify", "--store", moved.cacheURL("main"), "--trusted-public-keys", key, "-r", d.Top)
}

// chunkedPath is a path whose NAR file a server stores as chunks, with
// the narinfo the server publishes for it.
type chunkedPath struct {
	path, narinfo string
}

// waitChunked waits until srv stores the NAR file of the largest path of
// c (the only one above the default chunk_min_nar_size) as chunks: until
// its whole blob is deleted, which the server does only once the chunk
// list is recorded. It returns that path with its narinfo.
func waitChunked(t *testing.T, srv *server, c closure) chunkedPath {
	t.Helper()
	var big string
	for _, p := range c.Paths {
		if strings.Contains(p, "-big-") {
			big = p
		}
	}
	if big == "" {
		t.Fatalf("no big path in %v", c.Paths)
	}
	deadline := time.Now().Add(60 * time.Second)
	for srv.countFiles(t, "blobs/nar") != len(c.Paths)-1 || srv.countFiles(t, "blobs/pack") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute the server holds %d whole NAR files and %d packs, not %d and some",
				srv.countFiles(t, "blobs/nar"), srv.countFiles(t, "blobs/pack"), len(c.Paths)-1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	code, body := httpDo(t, "GET", srv.cacheURL("main")+"/"+hashPart(big)+".narinfo", "", nil)
	if code != 200 {
		t.Fatalf("the narinfo of %s: %d %s", big, code, body)
	}
	checkPublishedFile(t, srv.cacheURL("main"), narInfoFields(body))
	return chunkedPath{path: big, narinfo: body}
}

// unreachableBlobs is a blob store no one listens at, with credentials in
// it that no message may show.
const unreachableBlobs = "s3://larder-unreachable/larder?endpoint=http://127.0.0.1:1&region=x&access_key=AKIAHIDDENKEY&secret_key=blobs-s3cr3t"

// TestMigrateOpensOnlyMeta: larder migrate migrates the metadata store
// while the blob store is unreachable, on SQLite and on PostgreSQL, since
// it needs nothing else; larder serve with the same configuration fails at
// once, naming the blob store without its credentials.
func TestMigrateOpensOnlyMeta(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		meta    func(t *testing.T, data string) string
		version func(t *testing.T, meta string) int
	}{
		{"sqlite", func(t *testing.T, data string) string { return "sqlite://" + filepath.Join(data, "meta", "larder.db") }, sqliteSchemaVersion},
		{"postgres", func(t *testing.T, _ string) string { return testserver.Postgres(t) + "&password=pg-s3cr3t" }, postgresSchemaVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := t.TempDir()
			meta := tc.meta(t, data)
			settings := []string{"--data", data, "--meta", meta, "--blobs", unreachableBlobs}
			out, errOut, err := runLarder(nil, append([]string{"migrate"}, settings...)...)
			if err != nil || !strings.Contains(out, "the metadata schema is up to date") {
				t.Fatalf("larder migrate with an unreachable blob store: %v\n%s%s", err, out, errOut)
			}
			if v := tc.version(t, meta); v < 1 {
				t.Errorf("after larder migrate the schema version is %d", v)
			}
			if out, errOut, err := runLarder(nil, append([]string{"migrate"}, settings...)...); err != nil {
				t.Errorf("larder migrate again: %v\n%s%s", err, out, errOut)
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			addr := freeAddr(t)
			serve := exec.CommandContext(ctx, larderBin, append([]string{"serve", "--listen", addr}, settings...)...)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "LARDER_") {
					serve.Env = append(serve.Env, kv)
				}
			}
			got, err := serve.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("larder serve with an unreachable blob store did not exit:\n%s", got)
			}
			if code := exitStatus(err); code != 1 {
				t.Errorf("larder serve with an unreachable blob store: exit status %d (%v), want 1:\n%s", code, err, got)
			}
			if !strings.Contains(string(got), "open blob store s3://larder-unreachable/larder?endpoint=http://127.0.0.1:1") {
				t.Errorf("larder serve does not say which blob store it could not open:\n%s", got)
			}
			for _, secret := range []string{"AKIAHIDDENKEY", "blobs-s3cr3t", "pg-s3cr3t"} {
				if strings.Contains(string(got), secret) {
					t.Errorf("larder serve printed the secret %q:\n%s", secret, got)
				}
			}
			if code, err := httpGetQuick("http://" + addr + "/_larder/health"); err == nil {
				t.Errorf("something answers %d on %s", code, addr)
			}
		})
	}
}

// sqliteSchemaVersion reads the schema version of a SQLite metadata store.
func sqliteSchemaVersion(t *testing.T, meta string) int {
	t.Helper()
	db, err := sql.Open("sqlite", strings.TrimPrefix(meta, "sqlite://"))
	must(t, err)
	defer db.Close()
	var v int
	must(t, db.QueryRow("PRAGMA user_version").Scan(&v))
	return v
}

// postgresSchemaVersion reads the schema version of a PostgreSQL metadata
// store.
func postgresSchemaVersion(t *testing.T, meta string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, meta)
	must(t, err)
	defer conn.Close(ctx)
	var v int
	must(t, conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v))
	return v
}
