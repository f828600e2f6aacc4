// Command larder is a Nix binary cache server. Run `larder serve` to start
// it on the embedded default (SQLite and a local directory under
// ./larder-data); `larder help` lists the other commands.
//
// Each command is a type in a file of its own, with its own flags, and one
// entry in the table in commands.go.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if code := report(os.Stderr, err); code != 0 {
		os.Exit(code)
	}
}

// report prints err, if any, and returns the exit status it calls for: 2
// for a command line larder cannot run, 1 for a command that failed.
func report(w io.Writer, err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(w, "larder: %s\n%s\n", ue.msg, ue.hint)
		return 2
	}
	fmt.Fprintln(w, "larder:", err)
	return 1
}

// run runs a command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &usageError{msg: "no command given", hint: strings.TrimRight(usageText(), "\n")}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		args = append([]string{"help"}, args[1:]...)
	case "-version", "--version":
		args = append([]string{"version"}, args[1:]...)
	}
	if c, rest := lookup(args); c != nil {
		return c.execute(ctx, rest, stdout, stderr)
	}
	group := groupCommands(args[0])
	switch {
	case len(group) == 0 && strings.HasPrefix(args[0], "-"):
		return &usageError{msg: fmt.Sprintf("unknown command %q: flags go after the command", args[0]), hint: "Run 'larder help' for the commands."}
	case len(group) == 0:
		return &usageError{msg: fmt.Sprintf("unknown command %q", args[0]), hint: "Run 'larder help' for the commands."}
	case len(args) > 1 && isHelp(args[1]):
		fmt.Fprint(stdout, listText(group))
		return nil
	case len(args) == 1:
		return &usageError{msg: args[0] + ": missing subcommand", hint: strings.TrimRight(listText(group), "\n")}
	}
	return &usageError{msg: "unknown command: " + args[0] + " " + args[1], hint: strings.TrimRight(listText(group), "\n")}
}

// lookup finds the command args start with, and returns it with the rest
// of args.
func lookup(args []string) (*command, []string) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c, args[len(words):]
		}
	}
	return nil, nil
}

// groupCommands returns the commands of a group, such as cache: those whose
// name is the group's followed by a word.
func groupCommands(group string) []*command {
	var out []*command
	for _, c := range commands() {
		if first, _, sub := strings.Cut(c.name, " "); sub && first == group {
			out = append(out, c)
		}
	}
	return out
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }
