package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

// cacheListCmd lists the caches with their size and collection policy.
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
