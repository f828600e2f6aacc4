package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/larder-cache/larder/internal/service"
)

// verifyCmd checks that the blob of every NAR file the caches hold is
// there (with --full, that it holds the file), prints each one that is
// missing or damaged, and marks it so, unless --dry-run: neither it nor the
// narinfos pointing at it are served until the path is pushed again.
type verifyCmd struct {
	cache        string
	full, dryRun bool
}

func (c *verifyCmd) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.cache, "cache", "", "check only the NAR files of the cache `NAME`")
	fs.BoolVar(&c.full, "full", false, "read every NAR file back and check its hashes, not only that it is there")
	fs.BoolVar(&c.dryRun, "dry-run", false, "report what is wrong, change nothing")
}

func (c *verifyCmd) run(ctx context.Context, e *env, _ []string) error {
	a, err := e.open(ctx)
	if err != nil {
		return err
	}
	defer a.Close()
	opts := service.VerifyOptions{Cache: c.cache, Full: c.full, DryRun: c.dryRun,
		Problem: func(p service.VerifyProblem) {
			state := ""
			switch {
			case p.Back && p.Repaired:
				state = "; served again"
			case p.Repaired:
				state = "; withdrawn until it is pushed again"
			case c.dryRun && p.Back:
				state = "; would be served again"
			case c.dryRun && !p.Nar.Missing:
				state = "; would be withdrawn"
			}
			fmt.Fprintf(e.stdout, "%s: %s%s\n", p.Key, p.What, state)
		}}
	r, err := a.Service.Verify(ctx, opts)
	if err != nil {
		return userError(err)
	}
	what := "for their blobs"
	if c.full {
		what = "for their blobs and bytes"
	}
	fmt.Fprintf(e.stdout, "checked %d NAR files (%s) %s: %d missing, %d damaged, %d found back\n",
		r.Files, sizeText(r.Bytes), what, r.Missing, r.Damaged, r.Restored)
	if r.Problems() > 0 {
		return fmt.Errorf("%d NAR files are missing or damaged; push their paths again to restore them", r.Problems())
	}
	return nil
}
