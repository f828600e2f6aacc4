package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/nix-community/go-nix/pkg/nar"
)

// PathInfo is what Nix knows of a valid store path, as nix path-info
// --json prints it.
type PathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"` // "sha256-<base64>" or "sha256:<nix32>"
	NarSize    int64    `json:"narSize"`
	References []string `json:"references"` // full store paths
	Deriver    string   `json:"deriver"`    // full store path, or ""
	Signatures []string `json:"signatures"`
	CA         string   `json:"ca"`
}

// Store is the Nix store push reads: the paths' metadata and their NARs.
type Store interface {
	// PathInfo returns the metadata of the given store paths (or of the
	// store paths symlinks such as ./result point at), and with closure
	// of every path they refer to, directly or not.
	PathInfo(ctx context.Context, paths []string, closure bool) ([]PathInfo, error)
	// Dump streams the NAR of a store path; the caller closes it, which
	// reports how the dump ended.
	Dump(ctx context.Context, path string) (io.ReadCloser, error)
}

// NixCLI is the Store of the local Nix installation, through the nix and
// nix-store commands on PATH.
type NixCLI struct{}

var _ Store = NixCLI{}

// PathInfo runs nix path-info --json.
func (NixCLI) PathInfo(ctx context.Context, paths []string, closure bool) ([]PathInfo, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	args := []string{"--extra-experimental-features", "nix-command", "path-info", "--json"}
	if closure {
		args = append(args, "--recursive")
	}
	cmd := exec.CommandContext(ctx, "nix", append(append(args, "--"), paths...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("nix path-info: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	var infos []PathInfo
	if err := json.Unmarshal(out.Bytes(), &infos); err != nil {
		return nil, fmt.Errorf("nix path-info printed what is not its JSON: %w", err)
	}
	for _, p := range infos {
		if p.Path == "" || p.NarHash == "" || p.NarSize <= 0 {
			// Nix prints {"path": …, "valid": false} for a path it does not have.
			return nil, fmt.Errorf("%s is not a valid store path here", p.Path)
		}
	}
	return infos, nil
}

// Dump serialises the store path as a NAR in this process, as nix-store
// --dump would (go-nix's writer, which sorts entries and marks files
// executable as Nix does): on a dependency chain, starting a nix-store per
// path would cost more than the upload. Push checks every NAR against the
// hash Nix recorded, so a difference would be found, never sent. A path
// that cannot be read here (a store on another machine, a daemon-only
// store) is dumped by nix-store.
func (n NixCLI) Dump(ctx context.Context, path string) (io.ReadCloser, error) {
	if _, err := os.Lstat(path); err != nil {
		return n.dumpWithNixStore(ctx, path)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(nar.DumpPath(pw, path)) }()
	return pr, nil
}

// dumpWithNixStore runs nix-store --dump.
func (NixCLI) dumpWithNixStore(ctx context.Context, path string) (io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, "nix-store", "--dump", path)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("nix-store --dump %s: %w", path, err)
	}
	return &dump{r: out, cmd: cmd, errOut: &errOut, path: path}, nil
}

// dump is the output of nix-store --dump; closing it waits for the command.
type dump struct {
	r      io.ReadCloser
	cmd    *exec.Cmd
	errOut *bytes.Buffer
	path   string
	eof    bool
}

func (d *dump) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if errors.Is(err, io.EOF) {
		d.eof = true
	}
	return n, err
}

func (d *dump) Close() error {
	if !d.eof {
		_ = d.cmd.Process.Kill()
	}
	_ = d.r.Close()
	if err := d.cmd.Wait(); err != nil && d.eof {
		return fmt.Errorf("nix-store --dump %s: %w: %s", d.path, err, strings.TrimSpace(d.errOut.String()))
	}
	return nil
}

// NetrcFile returns the netrc file Nix reads credentials from (its
// netrc-file setting, as nix show-config says, with NIX_CONFIG applied).
func (NixCLI) NetrcFile(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "nix", "--extra-experimental-features", "nix-command", "show-config", "--json")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("nix show-config: %w: %s", err, strings.TrimSpace(errOut.String()))
	}
	var conf map[string]struct {
		Value any `json:"value"`
	}
	if err := json.Unmarshal(out.Bytes(), &conf); err != nil {
		return "", fmt.Errorf("nix show-config printed what is not its JSON: %w", err)
	}
	path, _ := conf["netrc-file"].Value.(string)
	return path, nil
}
