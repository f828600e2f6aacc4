package postgres

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
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
