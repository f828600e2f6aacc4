package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// refNameAnnotation tags a manifest in an OCI image layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// The command line the image runs by default. The program is the
// entrypoint and serve's arguments are the command, so that
// `docker run IMAGE token create …` runs `larder token create …`.
var (
	entrypoint = []string{"/" + binaryPath}
	serveCmd   = []string{"serve", "--listen", "0.0.0.0:8080", "--data", "/" + dataDir}
)

// build writes the image index o asks for and returns its digest.
func build(o *options) (v1.Hash, error) {
	if err := checkOut(o.out); err != nil {
		return v1.Hash{}, err
	}
	for _, b := range o.binaries {
		if err := checkBinary(b.platform, b.path); err != nil {
			return v1.Hash{}, err
		}
	}
	caPEM, err := caBundle(o.caCerts)
	if err != nil {
		return v1.Hash{}, err
	}
	base, err := newLayer(baseEntries(caPEM), o.created)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("base layer: %w", err)
	}

	anns := annotations(o)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, b := range o.binaries {
		img, err := platformImage(o, b, base, anns)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("image for %s: %w", b.platform.name, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{
				OS: "linux", Architecture: b.platform.arch, Variant: b.platform.variant,
			}},
		})
	}
	idx = mutate.Annotations(idx, anns).(v1.ImageIndex)
	digest, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, err
	}

	if err := writeLayout(o.out, idx, o.version); err != nil {
		return v1.Hash{}, err
	}
	if o.tar != "" {
		if err := writeTar(o.tar, o.out, o.created); err != nil {
			return v1.Hash{}, err
		}
	}
	return digest, nil
}

// annotations are the OCI annotations of the index and of each manifest,
// and the labels of each image's configuration.
func annotations(o *options) map[string]string {
	a := map[string]string{
		"org.opencontainers.image.title":       "larder",
		"org.opencontainers.image.description": "Self-hosted Nix binary cache server",
		"org.opencontainers.image.version":     o.version,
		"org.opencontainers.image.revision":    o.revision,
		"org.opencontainers.image.source":      o.source,
		"org.opencontainers.image.url":         o.source,
		"org.opencontainers.image.created":     o.created.Format(time.RFC3339),
	}
	if o.licenses != "" {
		a["org.opencontainers.image.licenses"] = o.licenses
	}
	return a
}

// platformImage is the image of one platform: the shared base layer, then
// a layer with b's binary.
func platformImage(o *options, b binary, base v1.Layer, anns map[string]string) (v1.Image, error) {
	exe, err := os.ReadFile(b.path)
	if err != nil {
		return nil, err
	}
	top, err := newLayer(binaryEntries(exe), o.created)
	if err != nil {
		return nil, fmt.Errorf("binary layer: %w", err)
	}
	created := v1.Time{Time: o.created}
	cfg := &v1.ConfigFile{
		Architecture: b.platform.arch,
		Variant:      b.platform.variant,
		OS:           "linux",
		Created:      created,
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			User:       fmt.Sprintf("%d:%d", uid, gid),
			Entrypoint: entrypoint,
			Cmd:        serveCmd,
			// LARDER_DATA makes every other command (token create, gc…)
			// find the same data directory as serve.
			Env:          []string{"PATH=/usr/bin", "LARDER_DATA=/" + dataDir},
			WorkingDir:   "/" + dataDir,
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Volumes:      map[string]struct{}{"/" + dataDir: {}},
			Labels:       anns,
		},
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, err
	}
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, History: v1.History{Created: created,
			CreatedBy: "release/image: /etc/passwd, /etc/group, CA certificates, /data, /tmp"}},
		mutate.Addendum{Layer: top, History: v1.History{Created: created,
			CreatedBy: "release/image: /" + binaryPath + " for " + b.platform.name}},
	)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, anns).(v1.Image), nil
}

// newLayer is a gzip-compressed OCI layer of entries. It is compressed
// here, once, with a gzip header that carries no time or name, so the same
// entries give the same blob.
func newLayer(entries []entry, mtime time.Time) (v1.Layer, error) {
	raw, err := layerTar(entries, mtime)
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	compressed := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(compressed)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// checkOut refuses an output directory that is something other than an
// OCI image layout, which build would otherwise replace.
func checkOut(out string) error {
	entries, err := os.ReadDir(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("output: %w", err)
	case len(entries) == 0:
		return nil
	}
	if _, err := os.Stat(filepath.Join(out, "oci-layout")); err != nil {
		return fmt.Errorf("output %s exists and is not an OCI image layout; not replacing it", out)
	}
	return nil
}

// writeLayout writes idx as an OCI image layout at out, tagged tag. It is
// written beside out and renamed into place, so out is never a layout half
// written, nor one with the blobs of an earlier build left in it.
func writeLayout(out string, idx v1.ImageIndex, tag string) error {
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return fmt.Errorf("output: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: tag})); err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	// go-containerregistry writes every file executable; blobs are data.
	err = filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chmod(path, 0o644)
	})
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}

// writeTar archives the layout at dir into file, with the same care as a
// layer: sorted names, mtime for every time, owner root, fixed modes. It
// is what `skopeo copy oci-archive:FILE:TAG`, `podman load` and Docker's
// `docker load` read.
func writeTar(file, dir string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			names = append(names, path)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	slices.Sort(names)

	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-")
	if err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, path := range names {
		if err := addToTar(tw, dir, path, mtime); err != nil {
			return fmt.Errorf("tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	if err := os.Rename(f.Name(), file); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	return nil
}

func addToTar(tw *tar.Writer, dir, path string, mtime time.Time) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, path)
	if err != nil {
		return err
	}
	h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatUSTAR}
	switch {
	case fi.IsDir():
		h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
		return tw.WriteHeader(h)
	case fi.Mode().IsRegular():
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, fi.Size()
	default:
		return fmt.Errorf("%s is neither a file nor a directory", path)
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	_, err = io.Copy(tw, src)
	return err
}
