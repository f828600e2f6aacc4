// Command image builds larder's OCI image: one image per platform, from
// scratch, gathered in an image index and written as an OCI image layout
// (and, with --tar, as an archive of that layout). It needs no container
// daemon: the layers are tar files written here, and the manifests are
// made with go-containerregistry.
//
//	go run ./release/image --version 1.2.3 \
//	    --binary linux/amd64=dist/larder-1.2.3-linux-amd64 \
//	    --binary linux/arm64=dist/larder-1.2.3-linux-arm64 \
//	    --binary linux/arm/v7=dist/larder-1.2.3-linux-armv7 \
//	    --out dist/oci --tar dist/larder-1.2.3-oci.tar
//
// The same binaries, version, revision and time give the same bytes, so
// the same digests: every timestamp is the build time (--created,
// $SOURCE_DATE_EPOCH or the commit time), and files are written in order.
//
// Each binary is checked before it goes in: a static ELF executable of its
// platform's architecture, built by Go from larder's cmd/larder.
//
// This program is release tooling: larder's own packages must not import
// it, and it imports none of theirs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var ue usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "image: %v\nRun 'go run ./release/image --help' for the flags.\n", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// A usageError is a command line that cannot be run as it is.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// run builds the image the command line asks for and prints its digest.
func run(args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	d, err := build(o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s:%s %s\n", o.out, o.version, d)
	if o.tar != "" {
		fmt.Fprintf(stdout, "%s:%s %s\n", o.tar, o.version, d)
	}
	return nil
}

// options is what the command line asks for.
type options struct {
	version  string
	revision string
	created  time.Time
	source   string
	licenses string
	binaries []binary // in the order of the platforms table
	caCerts  string   // a PEM file; "" for the bundle built in
	out      string
	tar      string
}

// A binary is a larder executable and the platform it is for.
type binary struct {
	platform platform
	path     string
}

// parseFlags reads the command line, filling in what it leaves out from
// $SOURCE_DATE_EPOCH and git.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	// Errors are reported once, by main; only --help prints the flags.
	fs.SetOutput(io.Discard)
	o := &options{}
	var created string
	fs.StringVar(&o.version, "version", "", "larder's version: the image's tag and version label (required)")
	fs.StringVar(&o.revision, "revision", "", "the commit built (default: git rev-parse HEAD)")
	fs.StringVar(&created, "created", "", "build time in Unix seconds (default: $SOURCE_DATE_EPOCH, else the commit time of HEAD)")
	fs.StringVar(&o.source, "source", "https://github.com/larder-cache/larder", "the source repository's URL")
	fs.StringVar(&o.licenses, "licenses", "", "SPDX expression of larder's licence, if it has one")
	fs.StringVar(&o.caCerts, "ca-certs", "", "PEM file to install as /etc/ssl/certs/ca-certificates.crt (default: Mozilla's roots as golang.org/x/crypto/x509roots/fallback pins them)")
	fs.StringVar(&o.out, "out", "dist/oci", "the OCI image layout directory to write (replaced if it is one)")
	fs.StringVar(&o.tar, "tar", "", "also write the layout as a tar archive to this file")
	fs.Func("binary", "PLATFORM=PATH: the larder binary for a platform ("+strings.Join(platformNames(), ", ")+"); once per platform", func(v string) error {
		name, path, ok := strings.Cut(v, "=")
		if !ok || path == "" {
			return fmt.Errorf("want PLATFORM=PATH, got %q", v)
		}
		p, ok := lookupPlatform(name)
		if !ok {
			return fmt.Errorf("unknown platform %q; known: %s", name, strings.Join(platformNames(), ", "))
		}
		if slices.ContainsFunc(o.binaries, func(b binary) bool { return b.platform.name == name }) {
			return fmt.Errorf("platform %s given twice", name)
		}
		o.binaries = append(o.binaries, binary{platform: p, path: path})
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "Usage: go run ./release/image --version VERSION --binary PLATFORM=PATH… [flags]")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	switch {
	case fs.NArg() > 0:
		return nil, usagef("unexpected argument %q: everything is a flag", fs.Arg(0))
	case o.version == "":
		return nil, usagef("--version is required")
	case !validTag(o.version):
		return nil, usagef("--version %q cannot be an image tag (letters, digits, _ . -, not starting with . or -, at most 128)", o.version)
	case len(o.binaries) == 0:
		return nil, usagef("no --binary given: name at least one PLATFORM=PATH")
	case o.out == "":
		return nil, usagef("--out is empty")
	}
	slices.SortFunc(o.binaries, func(a, b binary) int { return a.platform.order - b.platform.order })

	var err error
	if o.created, err = buildTime(created); err != nil {
		return nil, err
	}
	if o.revision == "" {
		if o.revision, err = gitOutput("rev-parse", "HEAD"); err != nil {
			return nil, fmt.Errorf("no --revision given, and git cannot tell the commit: %w", err)
		}
	}
	return o, nil
}

// buildTime is the time every timestamp of the image gets: flag's, else
// $SOURCE_DATE_EPOCH's, else the commit time of HEAD. It is never the
// clock's, which would make two builds differ.
func buildTime(flag string) (time.Time, error) {
	from, v := "--created", flag
	if v == "" {
		from, v = "SOURCE_DATE_EPOCH", os.Getenv("SOURCE_DATE_EPOCH")
	}
	if v == "" {
		out, err := gitOutput("log", "-1", "--format=%ct", "HEAD")
		if err != nil {
			return time.Time{}, fmt.Errorf("no --created or SOURCE_DATE_EPOCH given, and git cannot tell the commit time: %w", err)
		}
		from, v = "the commit time", out
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil || secs < 0 || secs > 253402300799 { // 9999-12-31T23:59:59Z
		return time.Time{}, usagef("%s %q is not a time in Unix seconds", from, v)
	}
	return time.Unix(secs, 0).UTC(), nil
}

// gitOutput runs git in the current directory and returns its output,
// trimmed.
func gitOutput(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, msg)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// validTag reports whether s is a tag by the grammar of the OCI
// distribution spec, [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(s string) bool {
	if s == "" || len(s) > 128 || s[0] == '.' || s[0] == '-' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
