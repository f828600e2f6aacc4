package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/client"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/push"
)

// pushCmd uploads store paths, with their closures, to a cache of a larder
// server: see package push. It reads no configuration of the server's; it
// is a client like nix copy.
type pushCmd struct {
	server, cache        string
	tokenFile, netrcFile string
	stdin, noClosure     bool
	jobs, level          int
	partSize             config.ByteSize
	pin                  string
	keepRevisions        int
	watch                bool
	nixDB                string
}

func (c *pushCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", os.Getenv("LARDER_SERVER"), "the larder server, `URL` (also LARDER_SERVER)")
	fs.StringVar(&c.cache, "cache", "main", "the cache to push to, `NAME`")
	fs.StringVar(&c.tokenFile, "token-file", "", "read the token from `FILE` (else LARDER_TOKEN, else the netrc file)")
	fs.StringVar(&c.netrcFile, "netrc-file", "", "netrc `FILE` to take the token from (default: Nix's netrc-file setting)")
	fs.BoolVar(&c.stdin, "stdin", false, "read the store paths from standard input, separated by white space")
	fs.BoolVar(&c.noClosure, "no-closure", false, "push only the paths named, not what they refer to")
	fs.IntVar(&c.jobs, "j", 4, "upload `N` paths at once")
	fs.IntVar(&c.level, "zstd-level", 3, "zstd compression `LEVEL`, 1 (fastest) to 22")
	c.partSize = 32 << 20
	fs.Func("part-size", "send NAR files larger than `SIZE` (default 32MiB) in parts of that size, at least 5MiB",
		func(v string) error { return c.partSize.UnmarshalText([]byte(v)) })
	fs.StringVar(&c.pin, "pin", "", "pin each path named as a revision of the pin `NAME`")
	fs.IntVar(&c.keepRevisions, "keep-revisions", 0, "with --pin: keep the newest `K` revisions (0: all)")
	fs.BoolVar(&c.watch, "watch-store", false, "keep running and push every new valid store path as it appears")
	fs.StringVar(&c.nixDB, "nix-db", push.DefaultNixDB, "with --watch-store: the Nix database `FILE` to watch")
}

func (c *pushCmd) check(args []string) error {
	switch {
	case c.server == "":
		return errors.New("--server (or LARDER_SERVER) is required")
	case c.watch && (len(args) > 0 || c.stdin):
		return errors.New("--watch-store pushes what appears in the store; it takes no paths")
	case !c.watch && len(args) == 0 && !c.stdin:
		return errors.New("name the store paths to push, or give --stdin or --watch-store")
	case c.jobs < 1:
		return errors.New("-j must be at least 1")
	case c.level < 1 || c.level > 22:
		return errors.New("--zstd-level must be between 1 and 22")
	case c.partSize < push.MinPartSize:
		return fmt.Errorf("--part-size must be at least %d bytes (5MiB)", push.MinPartSize)
	case c.keepRevisions < 0:
		return errors.New("--keep-revisions must not be negative")
	case c.keepRevisions > 0 && c.pin == "":
		return errors.New("--keep-revisions needs --pin")
	}
	return nil
}

func (c *pushCmd) run(ctx context.Context, e *env, args []string) error {
	log := app.NewLogger(config.Default(), e.stderr)
	nix := push.NixCLI{}
	token, err := c.token(ctx, nix)
	if err != nil {
		return err
	}
	cl, err := client.New(c.server, client.Options{Token: token, Logger: log})
	if err != nil {
		return err
	}
	opts := push.Options{Cache: c.cache, Jobs: c.jobs, PartSize: int64(c.partSize), ZstdLevel: c.level}
	if c.watch {
		rep := newLineReporter(e.stdout)
		opts.Reporter = rep
		return push.Watch(ctx, cl, nix, push.WatchOptions{Options: opts, DB: c.nixDB, Logger: log,
			Pushed: func(r push.Result, err error) { rep.summary(r, err) }})
	}
	if c.stdin {
		more, err := readPaths(os.Stdin)
		if err != nil {
			return err
		}
		args = append(args, more...)
	}
	if len(args) == 0 {
		fmt.Fprintln(e.stdout, "no store paths given: nothing to push")
		return nil
	}
	infos, err := nix.PathInfo(ctx, args, !c.noClosure)
	if err != nil {
		return err
	}
	var rep interface {
		push.Reporter
		summary(push.Result, error)
	}
	if isTerminal(e.stderr) {
		rep = newBarReporter(e.stderr)
	} else {
		rep = newLineReporter(e.stdout)
	}
	opts.Reporter = rep
	res, err := push.Push(ctx, cl, nix, infos, opts)
	rep.summary(res, err)
	if err != nil {
		return err
	}
	if c.pin != "" {
		tops, err := nix.PathInfo(ctx, args, false)
		if err != nil {
			return err
		}
		for _, p := range tops {
			if err := cl.Pin(ctx, c.cache, c.pin, p.Path, c.keepRevisions); err != nil {
				return fmt.Errorf("pin %s as %s: %w", p.Path, c.pin, err)
			}
			fmt.Fprintf(e.stdout, "pinned %s as a revision of %s\n", p.Path, c.pin)
		}
	}
	return nil
}

// token returns the token to send: from --token-file, LARDER_TOKEN, or the
// netrc file's entry for the server's host; "" if none.
func (c *pushCmd) token(ctx context.Context, nix push.NixCLI) (string, error) {
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return "", fmt.Errorf("read the token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv("LARDER_TOKEN"); t != "" {
		return t, nil
	}
	netrc := c.netrcFile
	if netrc == "" {
		var err error
		if netrc, err = nix.NetrcFile(ctx); err != nil || netrc == "" {
			return "", nil // no netrc: push without a token, which the server will say is needed
		}
		if _, err := os.Stat(netrc); err != nil {
			return "", nil
		}
	}
	cl, err := client.New(c.server, client.Options{})
	if err != nil {
		return "", err
	}
	tok, _, err := client.NetrcPassword(netrc, cl.Host())
	return tok, err
}

// readPaths reads white-space separated store paths.
func readPaths(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read store paths from standard input: %w", err)
	}
	return out, nil
}
