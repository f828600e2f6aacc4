//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestSourceDateEpoch: without --created, SOURCE_DATE_EPOCH is the time
// of everything in the image, and what go-containerregistry reads back
// from the layout is a valid index.
func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1600000000")
	out := filepath.Join(t.TempDir(), "oci")
	args := []string{"--version", testVersion, "--revision", testRevision, "--out", out}
	buildImage(t, append(args, binaryArgs(t, "linux/amd64")...)...)

	img := onlyImage(t, out)
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Unix(1600000000, 0).UTC()
	if !cfg.Created.Equal(want) || len(cfg.History) != 2 || !cfg.History[1].Created.Equal(want) {
		t.Errorf("created %v, history %+v; want %v", cfg.Created, cfg.History, want)
	}
	if got := cfg.Config.Labels["org.opencontainers.image.created"]; got != "2020-09-13T12:26:40Z" {
		t.Errorf("created label %q", got)
	}
	for name, h := range extract(t, img) {
		if !h.ModTime.Equal(want) {
			t.Errorf("%s: mtime %v", name, h.ModTime)
		}
	}
}

// TestCACertsFlag: --ca-certs puts another PEM bundle in place of the one
// built in, and refuses a file with no certificate in it.
func TestCACertsFlag(t *testing.T) {
	builtIn, err := caBundle("")
	if err != nil {
		t.Fatal(err)
	}
	first, _ := pem.Decode(builtIn)
	if first == nil {
		t.Fatal("no certificate built in")
	}
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine.pem")
	if err := os.WriteFile(mine, pem.EncodeToMemory(first), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "oci")
	args := append(baseArgs(), binaryArgs(t, "linux/amd64")...)
	buildImage(t, append(args, "--out", out, "--ca-certs", mine)...)
	files := extract(t, onlyImage(t, out))
	h, ok := files["etc/ssl/certs/ca-certificates.crt"]
	if !ok || h.Size != int64(len(pem.EncodeToMemory(first))) || h.Uid != 0 || h.Mode != 0o644 {
		t.Errorf("ca-certificates.crt: %+v", h)
	}
	if h := files["data"]; h == nil || h.Uid != uid || h.Gid != gid || h.Mode != 0o700 {
		t.Errorf("data: %+v", h)
	}

	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("no certificates here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(append(args, "--out", filepath.Join(dir, "oci2"), "--ca-certs", notPEM), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not.pem holds no PEM certificate") {
		t.Errorf("got %v", err)
	}
}

// onlyImage reads back the layout at out, checks it with
// go-containerregistry's validation, and returns its one image.
func onlyImage(t *testing.T, out string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(out)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	om, err := outer.IndexManifest()
	if err != nil || len(om.Manifests) != 1 {
		t.Fatalf("index.json: %+v, %v", om, err)
	}
	idx, err := outer.ImageIndex(om.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("invalid index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		t.Fatalf("index: %+v, %v", im, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// extract returns the tar headers of img's flattened file system, by
// name (directories without their trailing slash).
func extract(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	var data bytes.Buffer
	if _, err := io.Copy(&data, rc); err != nil {
		t.Fatal(err)
	}
	files := map[string]*tar.Header{}
	tr := tar.NewReader(&data)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = h
	}
}
