package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOneServerPerDataDirectory checks that a second server on the same
// data directory refuses to start, since the running one owns the temporary
// files of its uploads.
func TestOneServerPerDataDirectory(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	cmd := exec.Command(larderBin, "serve", "--data", srv.Data, "--listen", freeAddr(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(out.String(), "another larder serve is using") {
			t.Fatalf("second server: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("a second server on %s kept running:\n%s", srv.Data, out.String())
	}
}

// TestKilledServerRecovers kills the server with SIGKILL while a push is in
// flight, then starts it again: the temporary files of interrupted uploads
// are gone, everything served verifies with the cache's key, and the push
// completes when retried.
func TestKilledServerRecovers(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	n := needNix(t)
	c := n.buildClosure("crash-" + randomHex(4))
	url := srv.cacheURL("main")
	key := srv.pubkey(t, "main")
	pusher := n.withNetrc(srv.Host, srv.token(t, "main", "write"))

	// A leftover like the one a crash between write and rename leaves.
	tmp := filepath.Join(srv.Data, "blobs", "tmp~")
	must(t, os.WriteFile(filepath.Join(tmp, "put-interrupted"), []byte("half a NAR"), 0o600))

	push := exec.Command("nix", "copy", "--to", url+"?compression=xz", c.Top)
	push.Env = pusher.env()
	if err := push.Start(); err != nil {
		t.Fatal(err)
	}
	srv.waitLog(t, "kind=nar")
	_ = srv.cmd.Process.Kill()
	<-srv.exited
	_ = push.Wait() // fails or not, depending on where the kill landed

	srv = startServerOn(t, srv.Data, srv.Addr)
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Fatalf("temporary files survived the restart: %v", left)
	}
	// Whatever the killed server committed is whole and signed.
	for _, p := range c.Paths {
		if srv.narInfoStatus(t, "main", p) == 200 {
			needNix(t).run("nix", "store", "verify", "--store", url, "--trusted-public-keys", key, p)
		}
	}
	pusher.forget()
	pusher.run("nix", "copy", "--to", url+"?compression=xz", c.Top)
	needNix(t).run("nix", "store", "verify", "--store", url, "--trusted-public-keys", key, "-r", c.Top)
}
