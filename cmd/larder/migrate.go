package main

import (
	"context"
	"fmt"

	"github.com/larder-cache/larder/internal/app"
)

// migrateCmd applies pending schema migrations to the configured metadata
// store without serving. Servers also apply them when they start.
type migrateCmd struct{ noFlags }

func (migrateCmd) run(ctx context.Context, e *env, _ []string) error {
	s, err := app.OpenStores(ctx, e.cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintln(e.stdout, "the metadata schema is up to date")
	return nil
}
