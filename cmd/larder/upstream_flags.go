package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/larder-cache/larder/internal/store"
)

// upstreamFlags are the flags that set a cache's upstreams, taken by cache
// update.
type upstreamFlags struct {
	upstreams   []store.Upstream
	none        bool
	skip, pull  optionalBool
	upstreamSet bool
}

func (u *upstreamFlags) flags(fs *flag.FlagSet) {
	fs.Func("upstream", "an upstream cache `URL=KEY[,KEY…]`: its URL and the public keys that sign it (repeat for more; replaces the list)",
		func(s string) error {
			up, err := parseUpstreamFlag(s)
			if err != nil {
				return err
			}
			u.upstreams = append(u.upstreams, up)
			u.upstreamSet = true
			return nil
		})
	fs.BoolVar(&u.none, "no-upstreams", false, "remove every upstream")
	fs.Var(&u.skip, "skip", "`true|false`: record what an upstream holds as upstream-only instead of storing it (default true with upstreams)")
	fs.Var(&u.pull, "pull-through", "`true|false`: fetch for readers what only an upstream holds, and store it (default false)")
}

// parseUpstreamFlag parses URL=KEY[,KEY…]. A URL has no "=" (it has no
// query), so the first one ends it; keys are base64, without commas.
func parseUpstreamFlag(s string) (store.Upstream, error) {
	url, keys, ok := strings.Cut(s, "=")
	if !ok || url == "" || keys == "" {
		return store.Upstream{}, errors.New("want URL=KEY, such as https://cache.nixos.org=cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=")
	}
	return store.Upstream{URL: url, Keys: strings.Split(keys, ",")}, nil
}

// set reports whether any of the flags was given.
func (u *upstreamFlags) set() bool { return u.upstreamSet || u.none || u.skip.set || u.pull.set }

// check refuses flags that contradict each other.
func (u *upstreamFlags) check() error {
	if u.none && u.upstreamSet {
		return errors.New("--no-upstreams and --upstream exclude each other")
	}
	return nil
}

// apply changes cfg as the flags say. Upstreams given to a cache that had
// none skip what they hold unless --skip=false says otherwise.
func (u *upstreamFlags) apply(cfg *store.UpstreamConfig) {
	switch {
	case u.none:
		cfg.Upstreams = nil
	case u.upstreamSet:
		if len(cfg.Upstreams) == 0 && !u.skip.set {
			cfg.Skip = true
		}
		cfg.Upstreams = u.upstreams
	}
	if u.skip.set {
		cfg.Skip = u.skip.value
	}
	if u.pull.set {
		cfg.PullThrough = u.pull.value
	}
}

// optionalBool is a boolean flag that knows whether it was given.
type optionalBool struct{ set, value bool }

func (b *optionalBool) String() string {
	if b == nil || !b.set {
		return ""
	}
	return strconv.FormatBool(b.value)
}

func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	b.set, b.value = true, v
	return nil
}

func (b *optionalBool) IsBoolFlag() bool { return true }

// upstreamMode describes what a cache does with its upstreams.
func upstreamMode(u store.UpstreamConfig) string {
	var modes []string
	if len(u.Upstreams) == 0 {
		return "-"
	}
	if u.Skip {
		modes = append(modes, "skip")
	}
	if u.PullThrough {
		modes = append(modes, "pull-through")
	}
	if len(modes) == 0 {
		return "none" // upstreams kept, but used for nothing
	}
	return strings.Join(modes, "+")
}
