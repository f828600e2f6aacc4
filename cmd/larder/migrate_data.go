package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/migrate"
)

// migrateDataCmd copies an installation to other stores: see package
// migrate. Each side is given by its own configuration file; neither the
// environment nor the settings flags apply to either.
type migrateDataCmd struct {
	from, to string
}

func (c *migrateDataCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.from, "from", "", "configuration `FILE` of the installation to copy (required)")
	fs.StringVar(&c.to, "to", "", "configuration `FILE` of the installation to copy into (required)")
}

func (c *migrateDataCmd) check([]string) error {
	if c.from == "" || c.to == "" {
		return errors.New("--from and --to are required")
	}
	return nil
}

func (c *migrateDataCmd) run(ctx context.Context, e *env, _ []string) error {
	var sides [2]*app.Stores
	for i, path := range []string{c.from, c.to} {
		cfg, err := config.Load(path, nil)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if sides[i], err = app.OpenStores(ctx, cfg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer sides[i].Close()
	}
	log := app.NewLogger(config.Default(), e.stderr)
	r, err := migrate.Copy(ctx, migrate.Stores{Meta: sides[0].Meta, Blobs: sides[0].Blobs},
		migrate.Stores{Meta: sides[1].Meta, Blobs: sides[1].Blobs}, log)
	fmt.Fprintf(e.stdout, "created %d caches and %d tokens; copied %d blobs (%d bytes); %d NARs, %d narinfos and %d other files in place; chunk lists of %d NARs recorded; %d NAR files verified\n",
		r.Caches, r.Tokens, r.Blobs, r.BlobBytes, r.Nars, r.NarInfos, r.Objs, r.Packed, r.Verified)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "the copy is complete and verified")
	return nil
}
