// Command larder is a Nix binary cache server. Run `larder serve` to start
// it on the embedded default (SQLite and a local directory under
// ./larder-data); `larder help` lists the other commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/service"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `larder: a Nix binary cache server

Usage:
  larder serve [flags]                       run the server
  larder check-config [flags]                validate the configuration and exit
  larder cache create NAME [--private] [--priority N] [--retention 30d] [--max-size 50GiB]
  larder cache update NAME [--retention 30d] [--max-size 50GiB]
  larder cache list
  larder cache delete NAME
  larder cache pubkey NAME                   print the cache's public key
  larder token create --cache NAME|'GLOB'|'*' --perm read|write|admin [--expires 30d] [--description TEXT] [--s3]
  larder token list
  larder token revoke ID
  larder pin add CACHE STORE-PATH [--name N] [--keep-revisions K | --keep-days D]
  larder pin list CACHE
  larder pin remove CACHE NAME [--path STORE-PATH]
  larder gc [--cache NAME] [--dry-run]        collect garbage now
  larder migrate                             apply pending metadata schema migrations
  larder migrate-data --from FROM.toml --to TO.toml
                                             copy an installation to other stores, verified
  larder version

Every command takes --config FILE and the settings flags (--data, --listen, …;
see 'larder serve --help'). Settings come from defaults, then the config file,
then LARDER_* environment variables, then flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "larder:", err)
		}
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	switch {
	case errors.Is(err, flag.ErrHelp), errors.Is(err, errUsage):
		return 2
	}
	return 1
}

var errUsage = errors.New("usage")

// run dispatches a command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "check-config":
		return cmdCheckConfig(rest, stdout, stderr)
	case "cache":
		return cmdCache(ctx, rest, stdout, stderr)
	case "token":
		return cmdToken(ctx, rest, stdout, stderr)
	case "gc":
		return cmdGC(ctx, rest, stdout, stderr)
	case "pin":
		return cmdPin(ctx, rest, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, stdout, stderr)
	case "migrate-data":
		return cmdMigrateData(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "larder", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// splitSub splits "cache create …" style arguments into the subcommand and
// the rest, printing the usage when there is no subcommand.
func splitSub(args []string, stderr io.Writer) (string, []string, error) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, errUsage
	}
	return args[0], args[1:], nil
}

// command is what every subcommand starts from: a flag set carrying the
// settings flags, bound to a configuration loaded from defaults, file and
// environment.
type command struct {
	fs  *flag.FlagSet
	cfg *config.Config
}

func newCommand(name string, args []string, stderr io.Writer) (*command, error) {
	cfg, err := config.Load(configFlag(args), os.Environ())
	if err != nil {
		return nil, err
	}
	fs := flag.NewFlagSet("larder "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "TOML configuration file (also LARDER_CONFIG)")
	cfg.Flags(fs)
	return &command{fs: fs, cfg: &cfg}, nil
}

// parse parses args, allowing flags after positional arguments, validates
// the configuration and returns the positional arguments.
func (c *command) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			return nil, err
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if err := c.cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return pos, nil
}

// open assembles larder for a CLI command, logging to stderr.
func (c *command) open(ctx context.Context, stderr io.Writer) (*app.App, error) {
	return app.Open(ctx, *c.cfg, app.NewLogger(*c.cfg, stderr))
}

// configFlag finds --config in args before the flags are parsed, since the
// file must be read before the flags that override it are applied.
func configFlag(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// userError prints service errors the way a CLI user needs them: the
// message, without internal detail unless it is internal.
func userError(err error) error {
	if msg := service.Message(err); msg != "" {
		return errors.New(msg)
	}
	return err
}

func cmdCheckConfig(args []string, stdout, stderr io.Writer) error {
	c, err := newCommand("check-config", args, stderr)
	if err != nil {
		return err
	}
	if _, err := c.parse(args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "configuration is valid")
	for _, s := range config.Settings() {
		fmt.Fprintf(stdout, "  %s = %s\n", s.Name, c.fs.Lookup(s.Flag).Value.String())
	}
	return nil
}
