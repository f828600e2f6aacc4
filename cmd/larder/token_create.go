package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/larder-cache/larder/internal/service"
	"github.com/larder-cache/larder/internal/store"
)

// tokenCreateCmd creates a token, or an S3 access key pair, and prints it:
// only its hash is kept (and an S3 secret, which checking a signature
// needs).
type tokenCreateCmd struct {
	cache, perm, expires, description string
	s3                                bool
}

func (c *tokenCreateCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.cache, "cache", "", "the `NAME` of the cache the token is for, a glob of cache names such as 'ci-*', or '*' for every cache (required)")
	fs.StringVar(&c.perm, "perm", "", "its permission `PERM`: read, write or admin (required)")
	fs.StringVar(&c.expires, "expires", "", "its lifetime `D`, such as 12h or 30d (default: never expires)")
	fs.StringVar(&c.description, "description", "", "a note `TEXT` that token list shows beside the token")
	fs.BoolVar(&c.s3, "s3", false, "an S3 access key pair, printed as 'ACCESS_KEY_ID SECRET_ACCESS_KEY'")
}

func (c *tokenCreateCmd) check([]string) error {
	if c.cache == "" || c.perm == "" {
		return errors.New("--cache and --perm are required")
	}
	return nil
}

func (c *tokenCreateCmd) run(ctx context.Context, e *env, _ []string) error {
	var lifetime time.Duration
	if c.expires != "" {
		var err error
		if lifetime, err = parseLifetime(c.expires); err != nil {
			return err
		}
	}
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	text, _, err := a.Service.CreateToken(ctx, service.TokenSpec{
		Cache: c.cache, Perm: store.Perm(c.perm), ExpiresIn: lifetime, Description: c.description, S3: c.s3,
	})
	if err != nil {
		return userError(err)
	}
	fmt.Fprintln(e.stdout, text)
	return nil
}
