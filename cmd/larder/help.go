package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/larder-cache/larder/internal/config"
)

// helpCmd prints the usage of larder, of a group of commands, of one
// command, or the settings.
type helpCmd struct{ noFlags }

func (helpCmd) run(_ context.Context, e *env, args []string) error {
	switch {
	case len(args) == 0:
		fmt.Fprint(e.stdout, usageText())
		return nil
	case len(args) == 1 && args[0] == "settings":
		printSettings(e.stdout)
		return nil
	}
	if c, rest := lookup(args); c != nil && len(rest) == 0 {
		printHelp(e.stdout, c, c.ownFlags(c.new()))
		return nil
	}
	if group := groupCommands(args[0]); len(args) == 1 && len(group) > 0 {
		fmt.Fprint(e.stdout, listText(group))
		return nil
	}
	return e.usage("no command %q (larder help lists them)", strings.Join(args, " "))
}

// usageText is what larder help prints.
func usageText() string {
	return "larder: a Nix binary cache server\n\n" + listText(commands()) + `
Every command but ` + withoutSettings() + ` also takes
--config FILE and the settings flags (--data, --blobs, --meta, --listen, …),
which 'larder help settings' lists. Settings come from defaults, then the
config file, then LARDER_* environment variables, then flags.

'larder COMMAND --help' or 'larder help COMMAND' describes a command and
its flags. Exit status: 0 on success, 1 if the command failed, 2 if its
command line is wrong.
`
}

// listText lists commands with their usage lines and summaries.
func listText(cmds []*command) string {
	const column = 40
	var b strings.Builder
	b.WriteString("Usage:\n")
	for _, c := range cmds {
		line := "  " + c.synopsis()
		if len(line) < column {
			fmt.Fprintf(&b, "%-*s %s\n", column, line, c.summary)
		} else {
			fmt.Fprintf(&b, "%s\n%*s %s\n", line, column, "", c.summary)
		}
	}
	return b.String()
}

// printHelp prints what larder COMMAND --help prints: the usage line, the
// summary, the command's own flags, and the settings flags or a pointer to
// them.
func printHelp(w io.Writer, c *command, own *flag.FlagSet) {
	fmt.Fprintf(w, "usage: %s\n\n%s.\n", c.synopsis(), sentence(c.summary))
	n := 0
	own.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, own)
	}
	switch {
	case c.noSettings:
	case c.helpSettings:
		fmt.Fprint(w, "\nSettings flags (as in the config file and LARDER_* variables):\n")
		printSettingFlags(w)
	default:
		fmt.Fprint(w, "\nIt also takes --config FILE and the settings flags (--data, --blobs,\n--meta, …), which 'larder help settings' lists.\n")
	}
}

// printFlags prints the flags of fs, each with its value's name, its usage
// and its default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		fmt.Fprintf(w, "%s\n        %s", line, usage)
		if d := f.DefValue; d != "" && d != "0" && d != "false" {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}

// printSettings prints what larder help settings prints.
func printSettings(w io.Writer) {
	fmt.Fprint(w, `Settings come from defaults, then a TOML file (--config FILE or
LARDER_CONFIG), then LARDER_* environment variables, then flags. Every
command but `+withoutSettings()+` takes them.

`)
	printSettingFlags(w)
}

// printSettingFlags prints --config and a flag for every setting, with its
// name in the file, its environment variable and its default.
func printSettingFlags(w io.Writer) {
	fmt.Fprint(w, "  --config FILE\n        TOML configuration file (also LARDER_CONFIG)\n")
	for _, s := range config.Settings() {
		fmt.Fprintf(w, "  --%s VALUE\n        %s\n        (%s in the file, %s", s.Flag, s.Help, s.Name, s.Env)
		if s.Default != "" {
			fmt.Fprintf(w, "; default %s", config.Redact(s.Name, s.Default))
		}
		fmt.Fprintln(w, ")")
	}
}

// withoutSettings names the commands that take no settings, for the help.
func withoutSettings() string {
	var names []string
	for _, c := range commands() {
		if c.noSettings {
			names = append(names, c.name)
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// sentence starts s with a capital letter.
func sentence(s string) string {
	for i, r := range s {
		return string(unicode.ToUpper(r)) + s[i+len(string(r)):]
	}
	return s
}
