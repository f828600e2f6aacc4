package main

import (
	"context"
	"fmt"

	"github.com/larder-cache/larder/internal/app"
)

// migrateCmd applies pending schema migrations to the configured metadata
// store without serving. It opens nothing else, so it works while the blob
// store is unreachable. Servers also apply the migrations when they start.
type migrateCmd struct{ noFlags }

func (migrateCmd) run(ctx context.Context, e *env, _ []string) error {
	if err := app.MigrateMeta(ctx, e.cfg); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "the metadata schema is up to date")
	return nil
}
