package sqlite

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
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
