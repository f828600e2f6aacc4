package main

import (
	"context"
	"fmt"

	"github.com/larder-cache/larder/internal/buildinfo"
)

// versionCmd prints larder's version, the commit it was built from, and the
// Go and platform that built it, in one line:
// "larder v1.2.0 (commit 0a1b2c…, go1.26.0, linux/arm64)".
type versionCmd struct{ noFlags }

func (versionCmd) run(_ context.Context, e *env, _ []string) error {
	fmt.Fprintln(e.stdout, buildinfo.String())
	return nil
}
