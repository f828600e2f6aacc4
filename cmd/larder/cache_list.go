package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// cacheListCmd lists the caches with their size, collection policy and
// upstreams.
type cacheListCmd struct{ noFlags }

func (cacheListCmd) run(ctx context.Context, e *env, _ []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	list, err := a.Service.ListCaches(ctx)
	if err != nil {
		return userError(err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACCESS\tPATHS\tSIZE\tRETENTION\tMAX SIZE\tLAST GC\tUPSTREAMS\tPUBLIC KEY")
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
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", cache.Name, access, paths, sizeText(bytes),
			retentionText(cache.Policy.Retention), sizeText(cache.Policy.MaxSize), last, upstreamMode(cache.Upstream),
			cache.PublicKey)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// The upstreams themselves, which do not fit in a column.
	for _, cache := range list {
		if len(cache.Upstream.Upstreams) == 0 {
			continue
		}
		fmt.Fprintf(e.stdout, "\nupstreams of %s (%s):\n", cache.Name, upstreamMode(cache.Upstream))
		for _, up := range cache.Upstream.Upstreams {
			fmt.Fprintf(e.stdout, "  %s  %s\n", up.URL, strings.Join(up.Keys, " "))
		}
	}
	return nil
}
