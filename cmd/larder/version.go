package main

import (
	"context"
	"fmt"
)

// versionCmd prints larder's version.
type versionCmd struct{ noFlags }

func (versionCmd) run(_ context.Context, e *env, _ []string) error {
	fmt.Fprintln(e.stdout, "larder", version)
	return nil
}
