package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The user larder runs as. 65532 is the uid distroless images give their
// nonroot user, so volumes prepared for those fit this one too.
const (
	uid      = 65532
	gid      = 65532
	userName = "larder"
)

// The paths in the image.
const (
	binaryPath = "usr/bin/larder"
	caPath     = "etc/ssl/certs/ca-certificates.crt"
	dataDir    = "data"
)

// An entry is a file or directory of a layer.
type entry struct {
	name     string // relative to /, directories without a trailing slash
	dir      bool
	mode     int64
	uid, gid int
	data     []byte
}

// baseEntries are the files every platform's image shares: the accounts
// (with no shell, since the image has none), the CA certificates, the data
// directory that only larder's user may enter (as larder makes it itself),
// and a /tmp for SQLite's temporary files.
func baseEntries(caPEM []byte) []entry {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" +
		fmt.Sprintf("%s:x:%d:%d:larder:/%s:/sbin/nologin\n", userName, uid, gid, dataDir)
	group := "root:x:0:\n" + fmt.Sprintf("%s:x:%d:\n", userName, gid)
	return []entry{
		{name: dataDir, dir: true, mode: 0o700, uid: uid, gid: gid},
		{name: "etc", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl", dir: true, mode: 0o755},
		{name: "etc/ssl/certs", dir: true, mode: 0o755},
		{name: caPath, mode: 0o644, data: caPEM},
		{name: "tmp", dir: true, mode: 0o1777},
	}
}

// binaryEntries put larder's binary on $PATH, owned by root so that the
// process it becomes cannot rewrite it.
func binaryEntries(exe []byte) []entry {
	return []entry{
		{name: "usr", dir: true, mode: 0o755},
		{name: "usr/bin", dir: true, mode: 0o755},
		{name: binaryPath, mode: 0o755, data: exe},
	}
}

// layerTar writes entries as an uncompressed layer: sorted by name, every
// time mtime, owners by number only. Equal entries give equal bytes.
func layerTar(entries []entry, mtime time.Time) ([]byte, error) {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
			Format:  tar.FormatUSTAR,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("write %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("write %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caBundle is the PEM file of CA certificates the image trusts: path's, or
// Mozilla's roots as the pinned golang.org/x/crypto/x509roots/fallback
// module carries them. A root Mozilla trusts only with a constraint X.509
// cannot say (distrust after a date) is left out, since a PEM file would
// trust it without the constraint.
func caBundle(path string) ([]byte, error) {
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("CA certificates: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("CA certificates: %s holds no PEM certificate", path)
		}
		return data, nil
	}
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}
