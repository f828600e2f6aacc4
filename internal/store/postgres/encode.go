package postgres

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/larder-cache/larder/internal/store"
)

// normList returns l, or nil if it is empty.
func normList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// orEmpty returns l, or an empty list if it is nil: pgx sends a nil slice
// as NULL.
func orEmpty(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// encodeMap returns m as a JSON object for a jsonb column. Strings that are
// not valid UTF-8 are refused: JSON would change them. Empty and nil maps
// are "{}".
func encodeMap(m map[string]string) ([]byte, error) {
	if len(m) == 0 {
		return []byte("{}"), nil
	}
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("%q: %q is not valid UTF-8", k, v)
		}
	}
	return json.Marshal(m)
}

// normMap returns m, or nil if it is empty.
func normMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// upstreamJSON is how an upstream is kept in the upstreams column.
type upstreamJSON struct {
	URL  string   `json:"url"`
	Keys []string `json:"keys"`
}

// encodeUpstreams returns the upstreams as a JSON array for a jsonb
// column. Strings that are not valid UTF-8 are refused.
func encodeUpstreams(ups []store.Upstream) ([]byte, error) {
	list := make([]upstreamJSON, 0, len(ups))
	for _, u := range ups {
		for _, s := range append([]string{u.URL}, u.Keys...) {
			if !utf8.ValidString(s) {
				return nil, fmt.Errorf("upstream %q is not valid UTF-8", s)
			}
		}
		list = append(list, upstreamJSON{URL: u.URL, Keys: orEmpty(u.Keys)})
	}
	return json.Marshal(list)
}

// decodeUpstreams returns the upstreams encoded by encodeUpstreams; none
// is nil, and so is an upstream without keys.
func decodeUpstreams(b []byte) ([]store.Upstream, error) {
	var list []upstreamJSON
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	var ups []store.Upstream
	for _, u := range list {
		ups = append(ups, store.Upstream{URL: u.URL, Keys: normList(u.Keys)})
	}
	return ups, nil
}
