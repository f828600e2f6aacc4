package main

import (
	"context"
	"flag"
	"fmt"
)

// pinRemoveCmd removes a pin: every revision of its name, or one.
type pinRemoveCmd struct {
	path string
}

func (c *pinRemoveCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.path, "path", "", "remove only the revision of this `STORE-PATH`")
}

func (c *pinRemoveCmd) run(ctx context.Context, e *env, args []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	cache, err := a.Service.Operate(ctx, args[0])
	if err != nil {
		return userError(err)
	}
	if err := a.Service.Unpin(ctx, cache, args[1], c.path); err != nil {
		return userError(err)
	}
	fmt.Fprintf(e.stdout, "unpinned %s in cache %s\n", args[1], args[0])
	return nil
}
