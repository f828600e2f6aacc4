package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/testserver"
)

// TestMigrateData moves an embedded installation (SQLite and a directory)
// to PostgreSQL and S3 with larder migrate-data, runs it again to catch up,
// then serves from the new stores: Nix substitutes the old pushes from it
// with the cache's old key, and the old token still pushes.
func TestMigrateData(t *testing.T) {
	t.Parallel()
	old := startServer(t)
	n := needNix(t)
	key := old.pubkey(t, "main")
	c := n.buildClosure("migrate-" + randomHex(4))
	hashes, files := n.narHashes("", c.Paths), snapshot(t, c.Paths)
	n.withNetrc(old.Host, old.AdminToken).run("nix", "copy", "--to", old.cacheURL("main")+"?compression=zstd", c.Top)
	if err := old.terminate(t); err != nil {
		t.Fatal(err)
	}

	st := newSharedStores(t, testserver.MinIO(t), testserver.Postgres(t))
	dir := t.TempDir()
	from, to := filepath.Join(dir, "from.toml"), filepath.Join(dir, "to.toml")
	newData := t.TempDir()
	must(t, os.WriteFile(from, []byte(fmt.Sprintf("data = %q\n", old.Data)), 0o600))
	must(t, os.WriteFile(to, []byte(fmt.Sprintf("data = %q\nmeta = %q\nblobs = %q\n", newData, st.meta, st.blobs)), 0o600))
	for round, want := range []string{"copied 4 blobs", "copied 0 blobs"} {
		out, errOut, err := runLarder(nil, "migrate-data", "--from", from, "--to", to)
		if err != nil || !strings.Contains(out, want) || !strings.Contains(out, "verified") {
			t.Fatalf("migrate-data round %d: %v\n%s%s", round+1, err, out, errOut)
		}
	}

	must(t, os.WriteFile(filepath.Join(newData, "admin-token"), []byte(old.AdminToken+"\n"), 0o600))
	moved := startServerOn(t, newData, freeAddr(t), "--config", to)
	if got := moved.pubkey(t, "main"); got != key {
		t.Fatalf("the migrated cache has the key %s, not %s", got, key)
	}
	n.deleteLocal(append(append([]string{}, c.Paths...), c.Drvs...)...)
	subst := needNix(t)
	subst.run("nix-store", "-r", c.Top, "--option", "substituters", moved.cacheURL("main"), "--option", "trusted-public-keys", key)
	checkRestored(t, subst, "substituting from the migrated installation", c, hashes, files)
	d := n.buildPair("migrated-push-" + randomHex(4))
	n.withNetrc(moved.Host, old.AdminToken).run("nix", "copy", "--to", moved.cacheURL("main"), d.Top)
	needNix(t).run("nix", "store", "verify", "--store", moved.cacheURL("main"), "--trusted-public-keys", key, "-r", d.Top)
}
