package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub, args, err := splitSub(args, stderr)
	if err != nil {
		return err
	}
	c, err := newCommand("token "+sub, args, stderr)
	if err != nil {
		return err
	}
	cacheName := c.fs.String("cache", "", "create: the cache the token is for, a glob of cache names such as 'ci-*', or '*' for every cache")
	perm := c.fs.String("perm", "", "create: read, write or admin")
	expires := c.fs.String("expires", "", "create: lifetime such as 12h or 30d (default: never expires)")
	desc := c.fs.String("description", "", "create: a note shown by token list")
	s3 := c.fs.Bool("s3", false, "create: an S3 access key pair, printed as 'ACCESS_KEY_ID SECRET_ACCESS_KEY'")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if len(pos) != 0 || *cacheName == "" || *perm == "" {
			return fmt.Errorf("usage: larder token create --cache NAME --perm read|write|admin [--expires DURATION] [--s3]")
		}
	case "list":
		if len(pos) != 0 {
			return fmt.Errorf("token list takes no arguments")
		}
	case "revoke":
		if len(pos) != 1 {
			return fmt.Errorf("usage: larder token revoke ID")
		}
	default:
		return fmt.Errorf("unknown command: token %s", sub)
	}
	var lifetime time.Duration
	if *expires != "" {
		if lifetime, err = parseLifetime(*expires); err != nil {
			return err
		}
	}
	a, err := c.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer a.Close()
	svc := a.Service
	switch sub {
	case "create":
		text, _, err := svc.CreateToken(ctx, service.TokenSpec{
			Cache: *cacheName, Perm: store.Perm(*perm), ExpiresIn: lifetime, Description: *desc, S3: *s3,
		})
		if err != nil {
			return userError(err)
		}
		fmt.Fprintln(stdout, text)
	case "revoke":
		id, err := strconv.ParseInt(pos[0], 10, 64)
		if err != nil {
			return fmt.Errorf("token ID %q is not a number (see larder token list)", pos[0])
		}
		if err := svc.RevokeToken(ctx, id); err != nil {
			return userError(err)
		}
		fmt.Fprintf(stdout, "revoked token %d\n", id)
	case "list":
		list, err := svc.ListTokens(ctx)
		if err != nil {
			return userError(err)
		}
		return printTokens(stdout, list)
	}
	return nil
}

func printTokens(w io.Writer, list []store.Token) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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

// parseLifetime parses a Go duration, or a whole number of days like 30d.
func parseLifetime(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("expiry %q is not a positive duration such as 12h or 30d", s)
	}
	return d, nil
}
