package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// pinAddCmd pins a store path of a cache: it and its closure are kept
// whatever the cache's policy says.
type pinAddCmd struct {
	name            string
	revisions, days int
}

func (c *pinAddCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.name, "name", "", "the pin's name `N`; each path pinned under one name is a revision")
	fs.IntVar(&c.revisions, "keep-revisions", 0, "keep the `K` newest revisions of the name (0: all)")
	fs.IntVar(&c.days, "keep-days", 0, "keep the revisions of the name younger than `D` days (0: any age)")
}

func (c *pinAddCmd) run(ctx context.Context, e *env, args []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	cache, err := a.Service.Operate(ctx, args[0])
	if err != nil {
		return userError(err)
	}
	rule := store.PinRule{KeepRevisions: c.revisions, KeepFor: time.Duration(c.days) * 24 * time.Hour}
	p, err := a.Service.Pin(ctx, cache, service.PinSpec{StorePath: args[1], Name: c.name, Rule: rule})
	if err != nil {
		return userError(err)
	}
	fmt.Fprintf(e.stdout, "pinned %s as %s in cache %s\n", p.StorePath, p.Name, args[0])
	return nil
}
