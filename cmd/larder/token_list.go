package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

// tokenListCmd lists the tokens: their IDs, scopes and expiry, never the
// tokens themselves.
type tokenListCmd struct{ noFlags }

func (tokenListCmd) run(ctx context.Context, e *env, _ []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	list, err := a.Service.ListTokens(ctx)
	if err != nil {
		return userError(err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tCACHES\tPERM\tCREATED\tEXPIRES\tDESCRIPTION")
	for _, t := range list {
		kind := "http"
		if t.AccessKeyID != "" {
			kind = "s3 " + t.AccessKeyID
		}
		exp := "never"
		if !t.ExpiresAt.IsZero() {
			exp = t.ExpiresAt.UTC().Format(time.RFC3339)
			if time.Now().After(t.ExpiresAt) {
				exp += " (expired)"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, kind, t.Scope, t.Perm,
			t.CreatedAt.UTC().Format(time.RFC3339), exp, t.Description)
	}
	return tw.Flush()
}
