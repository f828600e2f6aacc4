package main

import (
	"context"
	"fmt"
	"strconv"
)

// tokenRevokeCmd revokes a token by the ID token list shows.
type tokenRevokeCmd struct{ noFlags }

func (tokenRevokeCmd) check(args []string) error {
	if _, err := strconv.ParseInt(args[0], 10, 64); err != nil {
		return fmt.Errorf("token ID %q is not a number (see larder token list)", args[0])
	}
	return nil
}

func (tokenRevokeCmd) run(ctx context.Context, e *env, args []string) error {
	id, _ := strconv.ParseInt(args[0], 10, 64) // checked by check
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Service.RevokeToken(ctx, id); err != nil {
		return userError(err)
	}
	fmt.Fprintf(e.stdout, "revoked token %d\n", id)
	return nil
}
