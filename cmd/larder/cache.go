package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/larder-cache/larder/internal/service"
)

func cmdCache(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := splitSub(args, stderr)
	if err != nil {
		return err
	}
	c, err := newCommand("cache "+sub, args, stderr)
	if err != nil {
		return err
	}
	private := c.fs.Bool("private", false, "create: reading the cache needs a read token")
	priority := c.fs.Int("priority", 40, "create: the cache's priority in nix-cache-info (lower is preferred)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "delete": 1, "pubkey": 1, "list": 0}
	n, known := want[sub]
	if !known {
		return fmt.Errorf("unknown command: cache %s", sub)
	}
	if len(pos) != n {
		return fmt.Errorf("cache %s takes %d argument(s), got %d", sub, n, len(pos))
	}
	a, err := c.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.Close()
	svc := a.Service
	switch sub {
	case "create":
		cache, err := svc.CreateCache(ctx, service.CacheSpec{Name: pos[0], Private: *private, Priority: *priority})
		if err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "created cache %s\npublic key: %s\n", cache.Name, cache.PublicKey)
	case "delete":
		if err := svc.DeleteCache(ctx, pos[0]); err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "deleted cache %s\n", pos[0])
	case "pubkey":
		cache, err := svc.GetCache(ctx, pos[0])
		if err != nil {
			return userError(err)
		}
		fmt.Fprintln(stdout, cache.PublicKey)
	case "list":
		list, err := svc.ListCaches(ctx)
		if err != nil {
			return userError(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tACCESS\tPRIORITY\tPUBLIC KEY")
		for _, cache := range list {
			access := "public"
			if cache.Private {
				access = "private"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", cache.Name, access, cache.Priority, cache.PublicKey)
		}
		return tw.Flush()
	}
	return nil
}
