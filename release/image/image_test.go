//go:build linux

package main

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestImage builds the image of the three platforms as a release does and
// looks at it with the tools that will read it: skopeo sees an index of
// the three, each with larder's configuration; umoci unpacks each into a
// root file system holding larder for its architecture and nothing else;
// the host's binary runs from there. Two builds are the same bytes.
func TestImage(t *testing.T) {
	skopeo, umoci := needOCITools(t)
	dir := t.TempDir()
	out1, tar1 := filepath.Join(dir, "one", "oci"), filepath.Join(dir, "one", "larder.tar")
	out2, tar2 := filepath.Join(dir, "two", "oci"), filepath.Join(dir, "two", "larder.tar")
	// Given out of order: the index lists them in the platforms table's.
	bins := binaryArgs(t, "linux/arm/v7", "linux/amd64", "linux/arm64")

	// An earlier build at another time in out1, which the next replaces.
	other := append(baseArgs(), "--created", strconv.Itoa(testEpoch+1), "--out", out1)
	otherDigest := printedDigest(t, buildImage(t, append(other, bins...)...))
	printed := buildImage(t, append(append(baseArgs(), "--out", out1, "--tar", tar1), bins...)...)
	digest := printedDigest(t, printed)
	buildImage(t, append(append(baseArgs(), "--out", out2, "--tar", tar2), bins...)...)

	t.Run("reproducible", func(t *testing.T) {
		if digest == otherDigest {
			t.Errorf("another --created gave the same digest %s", digest)
		}
		want := fmt.Sprintf("%s:%s %s\n%s:%s %s\n", out1, testVersion, digest, tar1, testVersion, digest)
		if printed != want {
			t.Errorf("printed %q, want %q", printed, want)
		}
		one, two := treeSums(t, out1), treeSums(t, out2)
		if !slices.Equal(one, two) {
			t.Errorf("two builds differ:\n%s\n---\n%s", strings.Join(one, "\n"), strings.Join(two, "\n"))
		}
		// Two layers per platform, one shared; a config and a manifest
		// per platform; the index. Nothing of the earlier build is left.
		if blobs := len(one) - 5; blobs != 1+3+3+3+1 { // less ., blobs, blobs/sha256, index.json, oci-layout
			t.Errorf("%d blobs:\n%s", blobs, strings.Join(one, "\n"))
		}
		a, err := os.ReadFile(tar1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(tar2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("the two tar files differ: sha256 %x and %x", sha256.Sum256(a), sha256.Sum256(b))
		}
		t.Logf("index %s; tar %d bytes", digest, len(a))
	})

	ref := "oci:" + out1 + ":" + testVersion
	t.Run("index", func(t *testing.T) {
		raw := command(t, skopeo, "inspect", "--raw", ref)
		if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != digest {
			t.Errorf("skopeo reads index %s, the build printed %s", got, digest)
		}
		var idx struct {
			MediaType string `json:"mediaType"`
			Manifests []struct {
				MediaType string `json:"mediaType"`
				Platform  struct {
					OS, Architecture, Variant string
				} `json:"platform"`
			} `json:"manifests"`
			Annotations map[string]string `json:"annotations"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		if idx.MediaType != "application/vnd.oci.image.index.v1+json" {
			t.Errorf("media type %q", idx.MediaType)
		}
		var platforms []string
		for _, m := range idx.Manifests {
			if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
				t.Errorf("manifest media type %q", m.MediaType)
			}
			p := m.Platform.OS + "/" + m.Platform.Architecture
			if m.Platform.Variant != "" {
				p += "/" + m.Platform.Variant
			}
			platforms = append(platforms, p)
		}
		if !slices.Equal(platforms, testPlatforms) {
			t.Errorf("platforms %v, want %v", platforms, testPlatforms)
		}
		checkLabels(t, "index annotations", idx.Annotations)

		archived := command(t, skopeo, "inspect", "--raw", "oci-archive:"+tar1+":"+testVersion)
		if !bytes.Equal(archived, raw) {
			t.Errorf("the tar file's index differs from the layout's:\n%s\n%s", archived, raw)
		}
	})

	for _, platform := range testPlatforms {
		t.Run(strings.ReplaceAll(platform, "/", "-"), func(t *testing.T) {
			checkConfig(t, platform, command(t, skopeo, append(append([]string{"inspect", "--config"}, overrides(platform)...), ref)...))

			// umoci unpacks one manifest, so skopeo first copies the
			// platform's out of the index into a layout of its own.
			single := filepath.Join(t.TempDir(), "oci")
			command(t, skopeo, append(append([]string{"--insecure-policy", "copy", "--quiet"}, overrides(platform)...),
				ref, "oci:"+single+":"+testVersion)...)
			bundle := filepath.Join(t.TempDir(), "bundle")
			command(t, umoci, "unpack", "--rootless", "--image", single+":"+testVersion, bundle)
			checkRootfs(t, platform, filepath.Join(bundle, "rootfs"))
			checkRuntimeConfig(t, filepath.Join(bundle, "config.json"))
		})
	}
}

// printedDigest is the index digest a build printed.
func printedDigest(t *testing.T, printed string) string {
	t.Helper()
	first, _, _ := strings.Cut(printed, "\n")
	_, digest, ok := strings.Cut(first, " ")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("printed %q", printed)
	}
	return digest
}

// treeSums lists every file and directory under dir with its mode and the
// SHA-256 of its content.
func treeSums(t *testing.T, dir string) []string {
	t.Helper()
	var sums []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		sums = append(sums, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// checkLabels checks the OCI annotations every level of the image carries.
func checkLabels(t *testing.T, what string, got map[string]string) {
	t.Helper()
	want := map[string]string{
		"org.opencontainers.image.title":       "larder",
		"org.opencontainers.image.description": "Self-hosted Nix binary cache server",
		"org.opencontainers.image.version":     testVersion,
		"org.opencontainers.image.revision":    testRevision,
		"org.opencontainers.image.source":      "https://github.com/larder-cache/larder",
		"org.opencontainers.image.url":         "https://github.com/larder-cache/larder",
		"org.opencontainers.image.created":     "2023-11-14T22:13:20Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d labels, want %d: %v", what, len(got), len(want), got)
	}
}

// checkConfig checks the image configuration skopeo read for platform.
func checkConfig(t *testing.T, platform string, raw []byte) {
	t.Helper()
	var cfg struct {
		Created      string
		Architecture string
		Variant      string
		OS           string
		Config       struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			Env          []string
			WorkingDir   string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
			Labels       map[string]string
		}
		History []struct{ Created string }
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	parts := strings.Split(platform, "/")
	variant := ""
	if len(parts) == 3 {
		variant = parts[2]
	}
	if cfg.OS != parts[0] || cfg.Architecture != parts[1] || cfg.Variant != variant {
		t.Errorf("config is for %s/%s/%s", cfg.OS, cfg.Architecture, cfg.Variant)
	}
	c := cfg.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/bin/larder"}) {
		t.Errorf("entrypoint %q", c.Entrypoint)
	}
	if !slices.Equal(c.Cmd, []string{"serve", "--listen", "0.0.0.0:8080", "--data", "/data"}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	if !slices.Contains(c.Env, "LARDER_DATA=/data") {
		t.Errorf("env %q", c.Env)
	}
	if c.WorkingDir != "/data" {
		t.Errorf("working directory %q", c.WorkingDir)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("volumes %v", c.Volumes)
	}
	checkLabels(t, "labels", c.Labels)
	if cfg.Created != "2023-11-14T22:13:20Z" || len(cfg.History) != 2 || cfg.History[1].Created != cfg.Created {
		t.Errorf("created %q, history %+v", cfg.Created, cfg.History)
	}
}

// checkRootfs checks the root file system umoci unpacked for platform:
// exactly these files, larder's binary for the platform's machine, the
// data directory larder's user owns, and accounts with no shell.
func checkRootfs(t *testing.T, platform, rootfs string) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(rootfs, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == rootfs {
			return err
		}
		rel, _ := filepath.Rel(rootfs, path)
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"data", "etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs",
		"etc/ssl/certs/ca-certificates.crt", "tmp", "usr", "usr/bin", "usr/bin/larder"}
	if !slices.Equal(paths, want) {
		t.Errorf("root file system holds %q, want %q", paths, want)
	}

	exe := filepath.Join(rootfs, "usr/bin/larder")
	p, _ := lookupPlatform(platform)
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != p.machine || f.Class != p.class {
		t.Errorf("binary is for %v %v, want %v %v", f.Machine, f.Class, p.machine, p.class)
	}
	f.Close()
	// Owned by root, readable and runnable by everyone: larder's user can
	// run it and cannot change it.
	checkFile(t, exe, 0o755, 0, 0)
	checkFile(t, filepath.Join(rootfs, "data"), fs.ModeDir|0o700, uid, gid)
	checkFile(t, filepath.Join(rootfs, "tmp"), fs.ModeDir|fs.ModeSticky|0o777, 0, 0)
	checkFile(t, filepath.Join(rootfs, "etc/passwd"), 0o644, 0, 0)

	passwd, err := os.ReadFile(filepath.Join(rootfs, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(passwd)), "\n")
	if !slices.Contains(lines, "larder:x:65532:65532:larder:/data:/sbin/nologin") {
		t.Errorf("passwd has no larder user:\n%s", passwd)
	}
	for _, line := range lines {
		fields := strings.Split(line, ":")
		if shell := fields[len(fields)-1]; shell != "/sbin/nologin" {
			t.Errorf("passwd gives %s the shell %s", fields[0], shell)
		}
	}
	group, err := os.ReadFile(filepath.Join(rootfs, "etc/group"))
	if err != nil || !slices.Contains(strings.Split(string(group), "\n"), "larder:x:65532:") {
		t.Errorf("group has no larder group: %q, %v", group, err)
	}

	certs, err := os.ReadFile(filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for block, rest := pem.Decode(certs); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			t.Errorf("a %s block in the CA certificates", block.Type)
		}
		n++
	}
	if n < 100 {
		t.Errorf("%d CA certificates", n)
	}

	if p.arch == runtime.GOARCH && p.goarm == "" {
		out, err := exec.Command(exe, "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "larder "+testVersion+" ") {
			t.Errorf("larder version from the image: %q, %v", out, err)
		}
	}
}

// checkFile checks the mode of path and the owner umoci recorded for it.
func checkFile(t *testing.T, path string, mode fs.FileMode, wantUID, wantGID int) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	if u, g := rootlessOwner(t, path); u != wantUID || g != wantGID {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, u, g, wantUID, wantGID)
	}
}

// rootlessOwner is the owner an unprivileged umoci unpack recorded for
// path: as it cannot chown, it writes the image's owner, when that is not
// root, into the user.rootlesscontainers attribute (a protobuf message
// with the uid as field 1 and the gid as field 2, both varints; see
// rootlesscontainers.io).
func rootlessOwner(t *testing.T, path string) (uid, gid int) {
	t.Helper()
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(path, "user.rootlesscontainers", buf)
	if errors.Is(err, syscall.ENODATA) {
		return 0, 0
	}
	if err != nil {
		t.Fatalf("%s: user.rootlesscontainers: %v", path, err)
	}
	msg := buf[:n]
	fields := map[byte]int{}
	for len(msg) > 0 {
		key := msg[0]
		msg = msg[1:]
		if key&7 != 0 { // varint
			t.Fatalf("%s: user.rootlesscontainers %x is not two varints", path, buf[:n])
		}
		v, shift := 0, 0
		for {
			if len(msg) == 0 {
				t.Fatalf("%s: user.rootlesscontainers %x ends within a varint", path, buf[:n])
			}
			b := msg[0]
			msg = msg[1:]
			v |= int(b&0x7f) << shift
			shift += 7
			if b < 0x80 {
				break
			}
		}
		if v == noopID {
			v = 0
		}
		fields[key>>3] = v
	}
	return fields[1], fields[2]
}

// noopID in user.rootlesscontainers leaves an id as unpacking made it:
// that of root in the container.
const noopID = 1<<32 - 1

// checkRuntimeConfig checks what umoci made of the image configuration: the
// runtime bundle's process.
func checkRuntimeConfig(t *testing.T, path string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Process struct {
			User struct{ UID, GID int }
			Args []string
			Env  []string
			Cwd  string
		}
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	p := spec.Process
	if p.User.UID != uid || p.User.GID != gid {
		t.Errorf("runs as %d:%d", p.User.UID, p.User.GID)
	}
	if want := []string{"/usr/bin/larder", "serve", "--listen", "0.0.0.0:8080", "--data", "/data"}; !slices.Equal(p.Args, want) {
		t.Errorf("runs %q, want %q", p.Args, want)
	}
	if p.Cwd != "/data" || !slices.Contains(p.Env, "LARDER_DATA=/data") {
		t.Errorf("cwd %q, env %q", p.Cwd, p.Env)
	}
}
