package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/larder-cache/larder/internal/service"
)

// cacheCreateCmd creates a cache with a new signing key.
type cacheCreateCmd struct {
	private  bool
	priority int
	policy   policyFlags
}

func (c *cacheCreateCmd) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.private, "private", false, "reading the cache needs a read token")
	fs.IntVar(&c.priority, "priority", 40, "the cache's priority `N` in nix-cache-info (lower is preferred)")
	c.policy.flags(fs)
}

func (c *cacheCreateCmd) run(ctx context.Context, e *env, args []string) error {
	spec := service.CacheSpec{Name: args[0], Private: c.private, Priority: c.priority}
	if err := c.policy.apply(&spec.Policy); err != nil {
		return err
	}
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	cache, err := a.Service.CreateCache(ctx, spec)
	if err != nil {
		return userError(err)
	}
	fmt.Fprintf(e.stdout, "created cache %s\npublic key: %s\n", cache.Name, cache.PublicKey)
	return nil
}
