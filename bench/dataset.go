//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// versionSet is a data set of the dedup measure: successive versions of
// one tree, each added to a Nix store as a store path of its own, as a
// cache receives a package's releases one after another.
type versionSet struct {
	name     string   // in the report
	label    string   // the store paths are named label-VERSION
	module   string   // the Go module the versions are fetched as
	versions []string // its versions, oldest first
	// tree is the directory of the module's tree each path is made of
	// ("" for all of it); binaries, if set, the directories copied into
	// a tree of executables instead.
	tree     string
	binaries []string
	target   string // of stored bytes ÷ whole-NAR zstd bytes
}

// toolchains are ten successive Go releases, as the module proxy serves
// them (about 65 MB of zip each).
func toolchains() []string {
	var v []string
	for n := range 10 {
		v = append(v, fmt.Sprintf("v0.0.1-go1.22.%d.linux-amd64", n))
	}
	return v
}

// versionSets are the data sets: a Go module's source, an SDK's source,
// and the compiled binaries of that SDK's releases.
func versionSets() []versionSet {
	var tools []string
	for n := 44; n <= 53; n++ {
		tools = append(tools, fmt.Sprintf("v0.%d.0", n))
	}
	return []versionSet{
		{name: "golang.org/x/tools source", label: "x-tools-src", module: "golang.org/x/tools", versions: tools, target: "≤ 0.45"},
		{name: "Go SDK source (src/)", label: "go-src", module: "golang.org/toolchain", versions: toolchains(), tree: "src", target: "≤ 0.25"},
		{name: "Go SDK binaries (bin/, pkg/tool/)", label: "go-bin", module: "golang.org/toolchain", versions: toolchains(),
			binaries: []string{"bin", "pkg/tool"}, target: "≤ 0.95"},
	}
}

// version returns the short version of a module version, for store path
// names: 0.53.0, 1.22.9.
func version(v string) string {
	v = strings.TrimPrefix(v, "v")
	if _, rest, ok := strings.Cut(v, "-go"); ok {
		v = strings.TrimSuffix(rest, ".linux-amd64")
	}
	return v
}

// fetchModule downloads a module version into the module cache under
// dir, unless it is there already, and returns the directory it is
// extracted to.
func fetchModule(ctx context.Context, dir, module, version string) (string, error) {
	env := []string{"GOMODCACHE=" + filepath.Join(dir, "gomod"), "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod"}
	// Outside any module, so that this checkout's go.mod plays no part.
	out, err := output(ctx, env, "sh", "-c", `cd "$1" && exec go mod download -json "$2"`, "sh", dir, module+"@"+version)
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal([]byte(out), &m); jerr != nil || m.Error != "" || m.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", module, version, err, m.Error)
	}
	return m.Dir, nil
}

// treeOf returns the directory of the version's tree, fetching it first
// if the data directory lacks it.
func treeOf(ctx context.Context, dir string, s versionSet, v string) (string, error) {
	mod, err := fetchModule(ctx, dir, s.module, v)
	if err != nil {
		return "", err
	}
	if s.binaries == nil {
		return filepath.Join(mod, s.tree), nil
	}
	tree := filepath.Join(dir, "trees", s.label+"-"+version(v))
	if _, err := os.Stat(tree); err == nil {
		return tree, nil
	}
	// The module cache drops the executable bits: copy the binaries with
	// them, into a tree renamed into place once whole.
	tmp := tree + ".tmp"
	_ = os.RemoveAll(tmp)
	for _, b := range s.binaries {
		if err := copyExecutables(filepath.Join(mod, b), filepath.Join(tmp, b)); err != nil {
			return "", err
		}
	}
	return tree, os.Rename(tmp, tree)
}

// copyExecutables copies the tree from to the directory to, every file
// executable.
func copyExecutables(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(to, strings.TrimPrefix(p, from))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, src); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

// addVersions adds each version of the set to the Nix store at store (a
// chroot store, local?root=DIR) with real Nix, and returns the store
// paths, oldest first, and the sum of their NAR sizes.
func addVersions(ctx context.Context, n *nixEnv, dir, store string, s versionSet) ([]string, int64, error) {
	var paths []string
	for _, v := range s.versions {
		tree, err := treeOf(ctx, dir, s, v)
		if err != nil {
			return nil, 0, err
		}
		out, err := n.run(ctx, "nix", "store", "add-path", "--store", store, "--name", s.label+"-"+version(v), tree)
		if err != nil {
			return nil, 0, err
		}
		paths = append(paths, strings.TrimSpace(out))
	}
	out, err := n.run(ctx, append([]string{"nix", "path-info", "--json", "--store", store}, paths...)...)
	if err != nil {
		return nil, 0, err
	}
	return paths, sumNarSize(out), nil
}
