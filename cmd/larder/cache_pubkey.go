package main

import (
	"context"
	"fmt"
)

// cachePubkeyCmd prints a cache's public key, one line: keyname:base64.
type cachePubkeyCmd struct{ noFlags }

func (cachePubkeyCmd) run(ctx context.Context, e *env, args []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	cache, err := a.Service.GetCache(ctx, args[0])
	if err != nil {
		return userError(err)
	}
	fmt.Fprintln(e.stdout, cache.PublicKey)
	return nil
}
