package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
)

// cacheUpdateCmd changes a cache's garbage collection policy.
type cacheUpdateCmd struct {
	policy policyFlags
}

func (c *cacheUpdateCmd) flags(fs *flag.FlagSet) { c.policy.flags(fs) }

func (c *cacheUpdateCmd) check([]string) error {
	if !c.policy.set() {
		return errors.New("nothing to change; give --retention or --max-size")
	}
	return nil
}

func (c *cacheUpdateCmd) run(ctx context.Context, e *env, args []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	cache, err := a.Service.GetCache(ctx, args[0])
	if err != nil {
		return userError(err)
	}
	pol := cache.Policy
	if err := c.policy.apply(&pol); err != nil {
		return err
	}
	if err := a.Service.SetPolicy(ctx, args[0], pol); err != nil {
		return userError(err)
	}
	fmt.Fprintf(e.stdout, "cache %s: retention %s, max size %s\n", args[0], retentionText(pol.Retention), sizeText(pol.MaxSize))
	return nil
}
