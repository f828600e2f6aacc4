package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/larder-cache/larder/internal/config"
)

// checkConfigCmd validates the configuration without starting anything,
// and prints every setting as it applies, secrets hidden.
type checkConfigCmd struct{ noFlags }

func (checkConfigCmd) run(_ context.Context, e *env, _ []string) error {
	// The settings flags print each value as the configuration holds it.
	values := flag.NewFlagSet("", flag.ContinueOnError)
	e.cfg.Flags(values)
	fmt.Fprintln(e.stdout, "configuration is valid")
	for _, s := range config.Settings() {
		fmt.Fprintf(e.stdout, "  %s = %s\n", s.Name, config.Redact(s.Name, values.Lookup(s.Flag).Value.String()))
	}
	return nil
}
