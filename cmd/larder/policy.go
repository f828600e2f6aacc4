package main

import (
	"flag"
	"fmt"

	"github.com/larder-cache/larder/internal/config"
	"github.com/larder-cache/larder/internal/store"
)

// policyFlags are the flags that set a cache's garbage collection policy,
// taken by cache create and cache update.
type policyFlags struct {
	retention, maxSize string
}

func (p *policyFlags) flags(fs *flag.FlagSet) {
	fs.StringVar(&p.retention, "retention", "", "keep paths pushed or fetched within `D`, such as 30d or 12h (0: keep all)")
	fs.StringVar(&p.maxSize, "max-size", "", "keep at most `S` of NAR files, such as 50GiB (0: no limit)")
}

// set reports whether any of the flags was given.
func (p *policyFlags) set() bool { return p.retention != "" || p.maxSize != "" }

// apply changes pol as the flags say.
func (p *policyFlags) apply(pol *store.Policy) error {
	if p.retention != "" {
		d, err := parseLifetime(p.retention)
		if p.retention == "0" || p.retention == "forever" {
			d, err = 0, nil
		}
		if err != nil {
			return fmt.Errorf("--retention: %w", err)
		}
		pol.Retention = d
	}
	if p.maxSize != "" {
		var b config.ByteSize
		if err := b.UnmarshalText([]byte(p.maxSize)); err != nil {
			return fmt.Errorf("--max-size: %w", err)
		}
		pol.MaxSize = int64(b)
	}
	return nil
}
