package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/larder-cache/larder/internal/config"
)

// completionCmd prints a bash script that completes larder's commands and
// their flags, made from the command table.
type completionCmd struct{ noFlags }

func (completionCmd) run(_ context.Context, e *env, args []string) error {
	if args[0] != "bash" {
		return e.usage("no completion for %q; bash is the one there is", args[0])
	}
	writeBashCompletion(e.stdout)
	return nil
}

// writeBashCompletion writes the script: at the first word it offers the
// commands and groups, after a group its commands, and after a command
// its flags (the settings flags too, unless it takes none) for a word that
// starts with a dash; anything else completes as file names.
func writeBashCompletion(w io.Writer) {
	settings := []string{"--config"}
	for _, s := range config.Settings() {
		settings = append(settings, "--"+s.Flag)
	}
	var top []string
	groups := map[string][]string{}
	var cases strings.Builder
	for _, c := range commands() {
		first, sub, isSub := strings.Cut(c.name, " ")
		if !slices.Contains(top, first) {
			top = append(top, first)
		}
		if isSub {
			groups[first] = append(groups[first], sub)
		}
		flags := []string{"--help"}
		c.ownFlags(c.new()).VisitAll(func(f *flag.Flag) { flags = append(flags, "--"+f.Name) })
		if !c.noSettings {
			flags = append(flags, "$settings")
		}
		fmt.Fprintf(&cases, "\t%q) flags=%q ;;\n", c.name, strings.Join(flags, " "))
	}
	var groupCases strings.Builder
	var groupNames []string
	for _, g := range top {
		if subs := groups[g]; len(subs) > 0 {
			fmt.Fprintf(&groupCases, "\t\t%s) words=%q ;;\n", g, strings.Join(subs, " "))
			groupNames = append(groupNames, g)
		}
	}
	fmt.Fprintf(w, `# bash completion for larder: source it, or save it as
# /etc/bash_completion.d/larder. Made by 'larder completion bash'.
_larder() {
	local cur="${COMP_WORDS[COMP_CWORD]}" words="" flags="" cmd="${COMP_WORDS[1]}"
	local settings=%q
	if [ "$COMP_CWORD" -eq 1 ]; then
		words=%q
	elif [ "$COMP_CWORD" -eq 2 ] && [[ "$cur" != -* ]]; then
		case "$cmd" in
%s		esac
	fi
	case "$cmd" in
		%s) cmd="$cmd ${COMP_WORDS[2]}" ;;
	esac
	case "$cmd" in
%s	esac
	if [[ "$cur" == -* ]]; then
		words="$flags"
	fi
	COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _larder larder
`, strings.Join(settings, " "), strings.Join(top, " "), groupCases.String(), strings.Join(groupNames, "|"), cases.String())
}
