package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// cmdPin adds, lists and removes pins, which keep paths and their closures
// whatever a cache's policy says.
func cmdPin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := splitSub(args, stderr)
	if err != nil {
		return err
	}
	c, err := newCommand("pin "+sub, args, stderr)
	if err != nil {
		return err
	}
	name := c.fs.String("name", "", "add: the pin's name; each push pinned under one name is a revision")
	revisions := c.fs.Int("keep-revisions", 0, "add: keep this many newest revisions of the name (0: all)")
	days := c.fs.Int("keep-days", 0, "add: keep the revisions of the name younger than this many days (0: any age)")
	path := c.fs.String("path", "", "remove: only the revision of this store path")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	want := map[string]int{"add": 2, "list": 1, "remove": 2}
	if n, ok := want[sub]; !ok {
		return fmt.Errorf("unknown command: pin %s", sub)
	} else if len(pos) != n {
		return fmt.Errorf("usage: larder pin add CACHE STORE-PATH [--name N] [--keep-revisions K | --keep-days D] | pin list CACHE | pin remove CACHE NAME [--path P]")
	}
	a, err := c.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.Close()
	svc := a.Service
	cache, err := svc.Operate(ctx, pos[0])
	if err != nil {
		return userError(err)
	}
	switch sub {
	case "add":
		rule := store.PinRule{KeepRevisions: *revisions, KeepFor: time.Duration(*days) * 24 * time.Hour}
		p, err := svc.Pin(ctx, cache, service.PinSpec{StorePath: pos[1], Name: *name, Rule: rule})
		if err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "pinned %s as %s in cache %s\n", p.StorePath, p.Name, pos[0])
	case "remove":
		if err := svc.Unpin(ctx, cache, pos[1], *path); err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "unpinned %s in cache %s\n", pos[1], pos[0])
	case "list":
		pins, rules, err := svc.Pins(ctx, cache)
		if err != nil {
			return userError(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTORE PATH\tPINNED\tKEEPS")
		for _, p := range pins {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.StorePath, p.CreatedAt.UTC().Format(time.RFC3339), ruleText(rules[p.Name]))
		}
		return tw.Flush()
	}
	return nil
}

func ruleText(r store.PinRule) string {
	switch {
	case r.KeepRevisions > 0 && r.KeepFor > 0:
		return strconv.Itoa(r.KeepRevisions) + " newest, younger than " + retentionText(r.KeepFor)
	case r.KeepRevisions > 0:
		return strconv.Itoa(r.KeepRevisions) + " newest revisions"
	case r.KeepFor > 0:
		return "revisions younger than " + retentionText(r.KeepFor)
	}
	return "every revision"
}
