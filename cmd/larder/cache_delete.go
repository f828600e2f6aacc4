package main

import (
	"context"
	"fmt"
)

// cacheDeleteCmd deletes a cache. Its NAR files stay until garbage
// collection finds that no other cache holds them.
type cacheDeleteCmd struct{ noFlags }

func (cacheDeleteCmd) run(ctx context.Context, e *env, args []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Service.DeleteCache(ctx, args[0]); err != nil {
		return userError(err)
	}
	fmt.Fprintf(e.stdout, "deleted cache %s\n", args[0])
	return nil
}
