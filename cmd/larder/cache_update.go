package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
)

// cacheUpdateCmd changes a cache's garbage collection policy and its
// upstreams.
type cacheUpdateCmd struct {
	policy   policyFlags
	upstream upstreamFlags
}

func (c *cacheUpdateCmd) flags(fs *flag.FlagSet) {
	c.policy.flags(fs)
	c.upstream.flags(fs)
}

func (c *cacheUpdateCmd) check([]string) error {
	if !c.policy.set() && !c.upstream.set() {
		return errors.New("nothing to change; give --retention, --max-size, --upstream, --no-upstreams, --skip or --pull-through")
	}
	return c.upstream.check()
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
	if c.policy.set() {
		pol := cache.Policy
		if err := c.policy.apply(&pol); err != nil {
			return err
		}
		if err := a.Service.SetPolicy(ctx, args[0], pol); err != nil {
			return userError(err)
		}
		fmt.Fprintf(e.stdout, "cache %s: retention %s, max size %s\n", args[0], retentionText(pol.Retention), sizeText(pol.MaxSize))
	}
	if c.upstream.set() {
		up := cache.Upstream
		c.upstream.apply(&up)
		if err := a.Service.SetUpstream(ctx, args[0], up); err != nil {
			return userError(err)
		}
		fmt.Fprintf(e.stdout, "cache %s: %d upstreams, %s\n", args[0], len(up.Upstreams), upstreamMode(up))
	}
	return nil
}
