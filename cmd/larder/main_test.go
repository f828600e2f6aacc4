package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/larder-cache/larder/internal/buildinfo"
)

// runLine runs a command line in-process as main does, and returns what it
// printed and its exit status.
func runLine(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = report(&e, run(context.Background(), args, &o, &e))
	return o.String(), e.String(), code
}

// TestInapplicableFlags: a flag a command does not have is refused, with
// exit status 2 and a message that names it, before anything is opened
// (the data directory given is never created).
func TestInapplicableFlags(t *testing.T) {
	t.Setenv("LARDER_CONFIG", "")
	data := filepath.Join(t.TempDir(), "data")
	for _, tc := range []struct {
		args []string
		flag string
		says string // more the message must say
	}{
		{[]string{"cache", "list"}, "--private", "a flag of larder cache create, not of larder cache list"},
		{[]string{"cache", "list"}, "--retention=5d", "a flag of larder cache create and larder cache update"},
		{[]string{"cache", "list"}, "--max-size=1GiB", "not of larder cache list"},
		{[]string{"cache", "update", "main"}, "--private", "a flag of larder cache create"},
		{[]string{"cache", "update", "main"}, "--priority=3", "a flag of larder cache create"},
		{[]string{"cache", "delete", "main"}, "--retention=1d", ""},
		{[]string{"cache", "pubkey", "main"}, "--s3", "a flag of larder token create"},
		{[]string{"cache", "create", "x"}, "--perm=admin", "a flag of larder token create"},
		{[]string{"token", "list"}, "--perm=admin", "a flag of larder token create, not of larder token list"},
		{[]string{"token", "list"}, "--cache=main", ""},
		{[]string{"token", "revoke", "1"}, "--expires=1d", "a flag of larder token create"},
		{[]string{"token", "create", "--cache", "main", "--perm", "read"}, "--private", "a flag of larder cache create"},
		{[]string{"pin", "list", "main"}, "--name=x", "a flag of larder pin add"},
		{[]string{"pin", "remove", "main", "x"}, "--keep-days=3", "a flag of larder pin add"},
		{[]string{"pin", "add", "main", "/nix/store/x"}, "--path=/nix/store/y", "a flag of larder pin remove"},
		{[]string{"gc"}, "--retention=1d", ""},
		{[]string{"gc"}, "--perm=read", ""},
		{[]string{"serve"}, "--private", ""},
		{[]string{"serve"}, "--dry-run", "a flag of larder gc"},
		{[]string{"check-config"}, "--cache=main", ""},
		{[]string{"migrate"}, "--from=a.toml", "a flag of larder migrate-data"},
		{[]string{"migrate-data", "--from", "a.toml", "--to", "b.toml"}, "--data=x", "a settings flag, which larder migrate-data does not take"},
		{[]string{"migrate-data", "--from", "a.toml", "--to", "b.toml"}, "--config=x.toml", "a settings flag"},
		{[]string{"version"}, "--data=x", "a settings flag"},
		{[]string{"help"}, "--verbose", "a flag of larder gc"},
		{[]string{"completion", "bash"}, "--data=x", "a settings flag"},
		{[]string{"cache", "list"}, "--no-such-flag", ""},
	} {
		args := append(append([]string{}, tc.args...), tc.flag)
		if tc.args[0] != "migrate-data" && tc.args[0] != "version" && tc.args[0] != "help" && tc.args[0] != "completion" {
			args = append(args, "--data", data)
		}
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, errOut, code := runLine(t, args...)
			name, _, _ := strings.Cut(strings.TrimLeft(tc.flag, "-"), "=")
			if code != 2 {
				t.Errorf("exit status %d, want 2\nstderr:\n%s", code, errOut)
			}
			if !strings.Contains(errOut, "unknown flag --"+name) {
				t.Errorf("stderr does not say unknown flag --%s:\n%s", name, errOut)
			}
			if tc.says != "" && !strings.Contains(errOut, tc.says) {
				t.Errorf("stderr does not say %q:\n%s", tc.says, errOut)
			}
			if !strings.Contains(errOut, "usage: larder ") {
				t.Errorf("stderr does not show the usage line:\n%s", errOut)
			}
			if out != "" {
				t.Errorf("a refused command printed on stdout: %q", out)
			}
		})
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a refused command created the data directory (%v)", err)
	}
}

// TestUsageErrors: wrong numbers of arguments, missing required flags,
// bad flag values and unknown commands are usage errors (exit status 2),
// checked before the configuration is read or anything opened.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	// A configuration file that does not parse: usage errors come first.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("listen = \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LARDER_CONFIG", bad)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--data", "x", "cache", "list"}, "flags go after the command"},
		{[]string{"cache"}, "cache: missing subcommand"},
		{[]string{"cache", "shred"}, "unknown command: cache shred"},
		{[]string{"token", "steal"}, "unknown command: token steal"},
		{[]string{"cache", "create"}, "cache create: takes 1 argument(s), got 0"},
		{[]string{"cache", "create", "a", "b"}, "cache create: takes 1 argument(s), got 2"},
		{[]string{"cache", "list", "extra"}, "cache list: takes no arguments"},
		{[]string{"cache", "update", "main"}, "nothing to change"},
		{[]string{"pin", "add", "main"}, "pin add: takes 2 argument(s), got 1"},
		{[]string{"pin", "remove", "main", "a", "b"}, "pin remove: takes 2 argument(s), got 3"},
		{[]string{"token", "revoke"}, "token revoke: takes 1 argument(s)"},
		{[]string{"token", "revoke", "x1"}, `token ID "x1" is not a number`},
		{[]string{"token", "create", "--cache", "main"}, "--cache and --perm are required"},
		{[]string{"token", "create", "main", "--perm", "read"}, "token create: takes no arguments"},
		{[]string{"gc", "extra"}, "gc: takes no arguments"},
		{[]string{"migrate", "now"}, "migrate: takes no arguments"},
		{[]string{"migrate-data", "--from", "a.toml"}, "--from and --to are required"},
		{[]string{"cache", "create", "x", "--priority", "high"}, `invalid value "high" for flag --priority`},
		{[]string{"cache", "create", "x", "--private=maybe"}, "--private"},
		{[]string{"gc", "--cache"}, "flag needs an argument: --cache"},
		{[]string{"serve", "--max-upload-size", "lots"}, `invalid value "lots" for flag --max-upload-size`},
		{[]string{"completion", "fish"}, `no completion for "fish"`},
		{[]string{"help", "cache", "shred"}, `no command "cache shred"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runLine(t, tc.args...)
			if code != 2 {
				t.Errorf("exit status %d, want 2\nstderr:\n%s", code, errOut)
			}
			if !strings.Contains(errOut, tc.says) {
				t.Errorf("stderr does not say %q:\n%s", tc.says, errOut)
			}
			if out != "" {
				t.Errorf("a refused command printed on stdout: %q", out)
			}
		})
	}
	// Once the command line is right, the configuration file is read.
	if _, errOut, code := runLine(t, "cache", "list", "--data", filepath.Join(dir, "data")); code != 1 || !strings.Contains(errOut, bad) {
		t.Errorf("cache list with a configuration file that does not parse: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestHelp: every command has --help, printed on standard output with exit
// status 0: its usage line, each of its own flags and, unless it takes no
// settings, the settings flags or where to find them. larder help COMMAND
// prints the same; larder GROUP --help lists the group.
func TestHelp(t *testing.T) {
	t.Setenv("LARDER_CONFIG", "")
	for _, c := range commands() {
		words := strings.Fields(c.name)
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := runLine(t, append(words, "--help")...)
			if code != 0 || errOut != "" {
				t.Fatalf("larder %s --help: exit %d, stderr:\n%s", c.name, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: "+c.synopsis()+"\n") {
				t.Errorf("larder %s --help does not start with its usage line:\n%s", c.name, out)
			}
			c.ownFlags(c.new()).VisitAll(func(f *flag.Flag) {
				if !strings.Contains(out, "\n  --"+f.Name) {
					t.Errorf("larder %s --help does not list --%s:\n%s", c.name, f.Name, out)
				}
			})
			switch {
			case c.noSettings && strings.Contains(out, "--config"):
				t.Errorf("larder %s --help mentions settings, which it does not take:\n%s", c.name, out)
			case c.helpSettings && !strings.Contains(out, "\n  --data VALUE") && !strings.Contains(out, "\n  --gc-grace VALUE"):
				t.Errorf("larder %s --help does not list the settings flags:\n%s", c.name, out)
			case !c.noSettings && !c.helpSettings && !strings.Contains(out, "'larder help settings'"):
				t.Errorf("larder %s --help does not point to the settings flags:\n%s", c.name, out)
			}
			for _, h := range [][]string{append(words, "-h"), append([]string{"help"}, words...)} {
				if again, _, code := runLine(t, h...); code != 0 || again != out {
					t.Errorf("larder %s: exit %d, printed something other than larder %s --help:\n%s", strings.Join(h, " "), code, c.name, again)
				}
			}
		})
	}
	for _, group := range []string{"cache", "token", "pin"} {
		out, _, code := runLine(t, group, "--help")
		if code != 0 {
			t.Errorf("larder %s --help: exit %d", group, code)
		}
		for _, c := range groupCommands(group) {
			if !strings.Contains(out, c.synopsis()) {
				t.Errorf("larder %s --help does not list %s:\n%s", group, c.name, out)
			}
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		out, _, code := runLine(t, args...)
		if code != 0 {
			t.Errorf("larder %v: exit %d", args, code)
		}
		for _, c := range commands() {
			if !strings.Contains(out, "  "+c.synopsis()) {
				t.Errorf("larder %v does not list %s:\n%s", args, c.name, out)
			}
		}
	}
	out, _, code := runLine(t, "help", "settings")
	if code != 0 || !strings.Contains(out, "--config FILE") || !strings.Contains(out, "--max-nar-size VALUE") || !strings.Contains(out, "LARDER_MAX_NAR_SIZE") {
		t.Errorf("larder help settings: exit %d:\n%s", code, out)
	}
}

// TestSynopsisNamesEveryFlag: each command's usage line, written by hand in
// the table, names every flag the command has.
func TestSynopsisNamesEveryFlag(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range commands() {
		if seen[c.name] {
			t.Errorf("two commands named %q", c.name)
		}
		seen[c.name] = true
		c.ownFlags(c.new()).VisitAll(func(f *flag.Flag) {
			if !strings.Contains(c.usage+" ", "--"+f.Name+" ") && !strings.Contains(c.usage, "--"+f.Name+"]") {
				t.Errorf("the usage line of %s, %q, does not name --%s", c.name, c.usage, f.Name)
			}
		})
	}
}

// TestParseArgs: flags may come before, between and after positional
// arguments; everything after -- is positional.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args, want []string
		private    bool
	}{
		{[]string{"a", "--private", "b"}, []string{"a", "b"}, true},
		{[]string{"--private", "a"}, []string{"a"}, true},
		{[]string{"a", "b", "--private"}, []string{"a", "b"}, true},
		{[]string{"a", "--", "--private", "-x"}, []string{"a", "--private", "-x"}, false},
		{[]string{"--", "a"}, []string{"a"}, false},
		{nil, nil, false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		private := fs.Bool("private", false, "")
		got, err := parseArgs(fs, tc.args)
		if err != nil || !reflect.DeepEqual(got, tc.want) || *private != tc.private {
			t.Errorf("parseArgs(%q) = %q, %v, private %v; want %q, private %v", tc.args, got, err, *private, tc.want, tc.private)
		}
	}
}

// TestREADMEListsEveryCommand: the README's CLI section shows each command.
func TestREADMEListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range commands() {
		if !strings.Contains(string(readme), "larder "+c.name) {
			t.Errorf("README.md does not show larder %s", c.name)
		}
	}
}

// TestBashCompletion: the completion script offers commands, the commands
// of a group, and a command's own flags and the settings flags.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var script bytes.Buffer
	writeBashCompletion(&script)
	for _, tc := range []struct {
		words []string
		want  string
	}{
		{[]string{"larder", "ca"}, "cache"},
		{[]string{"larder", "pin", ""}, "add list remove"},
		{[]string{"larder", "cache", "create", "foo", "--pr"}, "--priority --private"},
		{[]string{"larder", "cache", "list", "--pr"}, ""},
		{[]string{"larder", "token", "create", "--pe"}, "--perm"},
		{[]string{"larder", "gc", "--da"}, "--data"},
		{[]string{"larder", "migrate-data", "--da"}, ""},
	} {
		cmd := exec.Command(bash, "-c", script.String()+`
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _larder; echo "${COMPREPLY[*]}"`, "bash")
		cmd.Args = append(cmd.Args, tc.words...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("completing %q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestVersion: larder version and --version print the build in one line,
// the version first.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut, code := runLine(t, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("larder %s: status %d, stderr %q", args[0], code, errOut)
		}
		if want := buildinfo.String() + "\n"; out != want {
			t.Errorf("larder %s printed %q, want %q", args[0], out, want)
		}
		if !strings.HasPrefix(out, "larder "+buildinfo.Version()+" (commit "+buildinfo.Commit()+", go") {
			t.Errorf("larder %s printed %q: not version, commit and Go", args[0], out)
		}
	}
}
