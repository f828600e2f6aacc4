package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"
)

// pinListCmd lists a cache's pins with what each name keeps.
type pinListCmd struct{ noFlags }

func (pinListCmd) run(ctx context.Context, e *env, args []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	cache, err := a.Service.Operate(ctx, args[0])
	if err != nil {
		return userError(err)
	}
	pins, rules, err := a.Service.Pins(ctx, cache)
	if err != nil {
		return userError(err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTORE PATH\tPINNED\tKEEPS")
	for _, p := range pins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.StorePath, p.CreatedAt.UTC().Format(time.RFC3339), ruleText(rules[p.Name]))
	}
	return tw.Flush()
}
