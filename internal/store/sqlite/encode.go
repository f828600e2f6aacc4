package sqlite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/larder-cache/larder/internal/store"
)

// encodeList returns l as a JSON array, which keeps any valid UTF-8 string
// intact. Other strings are refused: JSON would change them.
func encodeList(l []string) (string, error) {
	for _, e := range l {
		if !utf8.ValidString(e) {
			return "", fmt.Errorf("%q is not valid UTF-8", e)
		}
	}
	if len(l) == 0 {
		return "[]", nil
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// decodeList returns the list encoded by encodeList; empty is nil.
func decodeList(b []byte) ([]string, error) {
	if l, ok := decodePlainList(b); ok {
		return l, nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	return normList(l), nil
}

// decodePlainList decodes, without the cost of encoding/json, a JSON array
// of strings none of which has an escape, as the references and signatures
// of narinfos are. It reports false for any other input.
func decodePlainList(b []byte) ([]string, bool) {
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	body := b[1 : len(b)-1]
	if len(body) == 0 {
		return nil, true
	}
	l := make([]string, 0, bytes.Count(body, []byte(`","`))+1)
	for {
		if len(body) < 2 || body[0] != '"' {
			return nil, false
		}
		end := bytes.IndexByte(body[1:], '"') + 1
		if end == 0 || !plainString(body[1:end]) {
			return nil, false
		}
		l = append(l, string(body[1:end]))
		body = body[end+1:]
		if len(body) == 0 {
			return l, true
		}
		if body[0] != ',' {
			return nil, false
		}
		body = body[1:]
	}
}

// plainString reports whether s is the content of a JSON string as it is,
// without escapes: valid UTF-8 with no backslash or control character.
func plainString(s []byte) bool {
	for _, c := range s {
		if c == '\\' || c < 0x20 {
			return false
		}
	}
	return utf8.Valid(s)
}

// normList returns l, or nil if it is empty.
func normList(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}

// encodeMap returns m as a JSON object, which keeps any valid UTF-8 keys
// and values intact. Other strings are refused: JSON would change them.
// Empty and nil maps are "{}".
func encodeMap(m map[string]string) (string, error) {
	if len(m) == 0 {
		return "{}", nil
	}
	for k, v := range m {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return "", fmt.Errorf("%q: %q is not valid UTF-8", k, v)
		}
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// decodeMap returns the map encoded by encodeMap; empty is nil.
func decodeMap(b []byte) (map[string]string, error) {
	if string(b) == "{}" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// upstreamJSON is how an upstream is kept in the upstreams column.
type upstreamJSON struct {
	URL  string   `json:"url"`
	Keys []string `json:"keys"`
}

// encodeUpstreams returns the upstreams as a JSON array.
func encodeUpstreams(ups []store.Upstream) (string, error) {
	list := make([]upstreamJSON, 0, len(ups))
	for _, u := range ups {
		for _, s := range append([]string{u.URL}, u.Keys...) {
			if !utf8.ValidString(s) {
				return "", fmt.Errorf("upstream %q is not valid UTF-8", s)
			}
		}
		list = append(list, upstreamJSON{URL: u.URL, Keys: append([]string{}, u.Keys...)})
	}
	b, err := json.Marshal(list)
	return string(b), err
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
