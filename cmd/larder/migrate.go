package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/migrate"
)

// cmdMigrate applies pending schema migrations to the configured metadata
// store without serving. Servers also apply them when they start.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := newCommand("migrate", args, stderr)
	if err != nil {
		return err
	}
	if _, err := c.parse(args); err != nil {
		return err
	}
	s, err := app.OpenStores(ctx, *c.cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintln(stdout, "the metadata schema is up to date")
	return nil
}

// cmdMigrateData copies an installation to other stores: see package
// migrate. Each side is given by its own configuration file; the
// environment does not apply to either.
func cmdMigrateData(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("larder migrate-data", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "configuration file of the installation to copy")
	to := fs.String("to", "", "configuration file of the installation to copy into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *to == "" || fs.NArg() != 0 {
		return fmt.Errorf("usage: larder migrate-data --from FROM.toml --to TO.toml")
	}
	var sides [2]*app.Stores
	for i, path := range []string{*from, *to} {
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
	log := app.NewLogger(config.Default(), stderr)
	r, err := migrate.Copy(ctx, migrate.Stores{Meta: sides[0].Meta, Blobs: sides[0].Blobs},
		migrate.Stores{Meta: sides[1].Meta, Blobs: sides[1].Blobs}, log)
	fmt.Fprintf(stdout, "created %d caches and %d tokens; copied %d blobs (%d bytes); %d NARs, %d narinfos and %d other files in place; %d NAR files verified\n",
		r.Caches, r.Tokens, r.Blobs, r.BlobBytes, r.Nars, r.NarInfos, r.Objs, r.Verified)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "the copy is complete and verified")
	return nil
}
