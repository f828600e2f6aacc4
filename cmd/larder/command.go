package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/service"
)

// A command is one of larder's commands, as the table in commands.go lists
// it.
type command struct {
	name    string // what follows larder on the command line: "cache create"
	usage   string // its arguments and flags in the usage line: "NAME [--private]"
	nargs   int    // how many positional arguments it takes; anyArgs: any number
	summary string // what it does, in a few words
	// noSettings is set for a command that takes neither --config nor the
	// settings flags, since it reads no configuration of its own.
	noSettings bool
	// helpSettings is set for a command whose --help lists the settings
	// flags in full (serve, check-config), not only points to them.
	helpSettings bool
	new          func() runner
}

const anyArgs = -1

// A runner is what a command does. Each command's type lives in a file of
// its own; a new one gets a value per run.
type runner interface {
	// flags registers the command's own flags on fs (the settings flags are
	// added by the caller).
	flags(fs *flag.FlagSet)
	// run runs the command on its positional arguments, whose number has
	// been checked.
	run(ctx context.Context, e *env, args []string) error
}

// A checker is a runner that checks its command line further than the
// number of its arguments (a required flag, an argument's form). What
// check refuses is a usage error, found before the configuration is read.
type checker interface {
	check(args []string) error
}

// noFlags is embedded by the commands that have no flags of their own.
type noFlags struct{}

func (noFlags) flags(*flag.FlagSet) {}

// env is what a running command works with.
type env struct {
	cmd            *command
	cfg            config.Config // loaded, flags applied and validated; zero with noSettings
	stdout, stderr io.Writer
}

// open assembles larder for the command, logging to stderr.
func (e *env) open(ctx context.Context) (*app.App, error) {
	return e.openLogging(ctx, e.stderr)
}

// openLogging assembles larder for the command, logging to w.
func (e *env) openLogging(ctx context.Context, w io.Writer) (*app.App, error) {
	return app.Open(ctx, e.cfg, app.NewLogger(e.cfg, w))
}

// usage returns a usage error of the command: what is wrong with its
// command line.
func (e *env) usage(format string, args ...any) error {
	return e.cmd.usageError(fmt.Sprintf(format, args...))
}

// usageError is a command line larder cannot run: exit status 2.
type usageError struct {
	msg  string // what is wrong, starting with the command's name
	hint string // the usage line and where to read more
}

func (e *usageError) Error() string { return e.msg }

func (c *command) usageError(msg string) error {
	return &usageError{
		msg:  c.name + ": " + msg,
		hint: fmt.Sprintf("usage: %s\nRun 'larder %s --help' for more.", c.synopsis(), c.name),
	}
}

// synopsis is the command's usage line.
func (c *command) synopsis() string {
	return strings.TrimSpace("larder " + c.name + " " + c.usage)
}

// ownFlags returns a flag set with the command's own flags only, registered
// by r: for its help and to parse with the settings flags.
func (c *command) ownFlags(r runner) *flag.FlagSet {
	fs := flag.NewFlagSet("larder "+c.name, flag.ContinueOnError)
	r.flags(fs)
	return fs
}

// execute runs the command on args, the command line after its name. The
// command line is checked first: its flags (the command's own, and unless
// noSettings --config and the settings flags), --help, and the number of
// positional arguments, which may come before, after or between flags.
// Then the configuration is loaded (defaults, file, environment, flags)
// and validated, and the command runs.
func (c *command) execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	r := c.new()
	own := c.ownFlags(r)
	fs := flag.NewFlagSet(own.Name(), flag.ContinueOnError)
	fs.SetOutput(io.Discard) // larder prints its own messages
	fs.Usage = func() {}
	own.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })

	e := &env{cmd: c, stdout: stdout, stderr: stderr}
	var loadErr error
	if !c.noSettings {
		// The file is read before the flags that override it are parsed.
		e.cfg, loadErr = config.Load(configFlag(args), os.Environ())
		if loadErr != nil {
			// The command line is still checked, so that --help works
			// and usage errors come first.
			e.cfg = config.Default()
		}
		fs.String("config", "", "TOML configuration `FILE` (also LARDER_CONFIG)")
		e.cfg.Flags(fs)
	}
	pos, err := parseArgs(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printHelp(stdout, c, own)
		return nil
	case err != nil:
		return c.usageError(flagMessage(c, err))
	case c.nargs != anyArgs && len(pos) != c.nargs:
		return c.usageError(argsMessage(c.nargs, pos))
	}
	if ch, ok := r.(checker); ok {
		if err := ch.check(pos); err != nil {
			return c.usageError(err.Error())
		}
	}
	if loadErr != nil {
		return loadErr
	}
	if !c.noSettings {
		if err := e.cfg.Validate(); err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
	}
	return r.run(ctx, e, pos)
}

// parseArgs parses args with fs, allowing flags after positional arguments,
// and returns the positional arguments. Everything after "--" is
// positional.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// undefinedFlag is how package flag starts its message about a flag that
// the flag set does not have.
const undefinedFlag = "flag provided but not defined: -"

// flagMessage says what is wrong with a command line that fs refused. Of a
// flag the command does not have it says so, and which commands have it.
func flagMessage(c *command, err error) string {
	name, ok := strings.CutPrefix(err.Error(), undefinedFlag)
	if !ok {
		return dashes.Replace(err.Error())
	}
	msg := "unknown flag --" + name
	if c.noSettings && isSetting(name) {
		return msg + " (a settings flag, which larder " + c.name + " does not take)"
	}
	var others []string
	for _, o := range commands() {
		if o != c && o.ownFlags(o.new()).Lookup(name) != nil {
			others = append(others, o.name)
		}
	}
	switch len(others) {
	case 0:
		return msg
	case 1:
		return msg + " (a flag of larder " + others[0] + ", not of larder " + c.name + ")"
	}
	last := len(others) - 1
	return msg + " (a flag of larder " + strings.Join(others[:last], ", larder ") + " and larder " + others[last] + ", not of larder " + c.name + ")"
}

// dashes writes flags in package flag's messages as larder's help does.
var dashes = strings.NewReplacer("flag -", "flag --", "for -", "for --", "argument: -", "argument: --")

// isSetting reports whether name is --config or a settings flag.
func isSetting(name string) bool {
	return name == "config" || slices.ContainsFunc(config.Settings(), func(s config.Setting) bool { return s.Flag == name })
}

func argsMessage(want int, got []string) string {
	switch {
	case want == 0:
		return fmt.Sprintf("takes no arguments, got %q", got)
	case len(got) < want:
		return fmt.Sprintf("takes %d argument(s), got %d", want, len(got))
	}
	return fmt.Sprintf("takes %d argument(s), got %d: %q", want, len(got), got)
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
