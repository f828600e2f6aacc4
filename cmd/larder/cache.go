package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/larder-cache/larder/internal/app"
	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// policyFlags are the flags that set a cache's garbage collection policy.
type policyFlags struct {
	retention, maxSize *string
}

func (p policyFlags) apply(pol *store.Policy) error {
	if *p.retention != "" {
		d, err := parseLifetime(*p.retention)
		if *p.retention == "0" || *p.retention == "forever" {
			d, err = 0, nil
		}
		if err != nil {
			return fmt.Errorf("--retention: %w", err)
		}
		pol.Retention = d
	}
	if *p.maxSize != "" {
		var b config.ByteSize
		if err := b.UnmarshalText([]byte(*p.maxSize)); err != nil {
			return fmt.Errorf("--max-size: %w", err)
		}
		pol.MaxSize = int64(b)
	}
	return nil
}

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
	pf := policyFlags{
		retention: c.fs.String("retention", "", "create, update: keep paths pushed or fetched within this long, such as 30d (0: keep all)"),
		maxSize:   c.fs.String("max-size", "", "create, update: keep at most this many bytes of NAR files, such as 50GiB (0: no limit)"),
	}
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 1, "update": 1, "delete": 1, "pubkey": 1, "list": 0}
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
		spec := service.CacheSpec{Name: pos[0], Private: *private, Priority: *priority}
		if err := pf.apply(&spec.Policy); err != nil {
			return err
		}
		cache, err := svc.CreateCache(ctx, spec)
		if err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "created cache %s\npublic key: %s\n", cache.Name, cache.PublicKey)
	case "update":
		if *pf.retention == "" && *pf.maxSize == "" {
			return fmt.Errorf("cache update: nothing to change; give --retention or --max-size")
		}
		cache, err := svc.GetCache(ctx, pos[0])
		if err != nil {
			return userError(err)
		}
		pol := cache.Policy
		if err := pf.apply(&pol); err != nil {
			return err
		}
		if err := svc.SetPolicy(ctx, pos[0], pol); err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "cache %s: retention %s, max size %s\n", pos[0], retentionText(pol.Retention), sizeText(pol.MaxSize))
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
		return listCaches(ctx, stdout, a)
	}
	return nil
}

// listCaches prints every cache with its size and collection policy.
func listCaches(ctx context.Context, w io.Writer, a *app.App) error {
	list, err := a.Service.ListCaches(ctx)
	if err != nil {
		return userError(err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACCESS\tPATHS\tSIZE\tRETENTION\tMAX SIZE\tLAST GC\tPUBLIC KEY")
	for _, cache := range list {
		access := "public"
		if cache.Private {
			access = "private"
		}
		paths, bytes, err := a.Service.CacheUsage(ctx, cache)
		if err != nil {
			return userError(err)
		}
		last := "never"
		if !cache.LastGC.IsZero() {
			last = cache.LastGC.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", cache.Name, access, paths, sizeText(bytes),
			retentionText(cache.Policy.Retention), sizeText(cache.Policy.MaxSize), last, cache.PublicKey)
	}
	return tw.Flush()
}

func retentionText(d time.Duration) string {
	switch {
	case d == 0:
		return "forever"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func sizeText(b int64) string {
	const unit = 1024
	if b == 0 {
		return "-"
	}
	if b < unit {
		return fmt.Sprintf("%dB", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(b)/float64(div), "KMGTP"[exp])
}
