package client

import (
	"os"
	"path/filepath"
	"testing"
)

func TestNetrcPassword(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "netrc")
	text := `machine other.example login x password wrong
# a comment line is just words to netrc, but no keyword
machine cache.example
  login larder
  password lrd_token_1
macdef init
machine cache.example password in-a-macro

machine later.example login y password second
default login anon password fallback
`
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"cache.example": "lrd_token_1", "later.example": "second", "unknown.example": "fallback", "other.example": "wrong",
	} {
		got, ok, err := NetrcPassword(path, host)
		if err != nil || !ok || got != want {
			t.Errorf("password for %s: %q %v %v, want %q", host, got, ok, err, want)
		}
	}
	if err := os.WriteFile(path, []byte("machine a login b password c\nmachine d login e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := NetrcPassword(path, "d"); ok || err != nil {
		t.Errorf("a machine without a password gave one: %v %v", ok, err)
	}
	if _, ok, err := NetrcPassword(path, "x"); ok || err != nil {
		t.Errorf("an unknown machine without default gave a password: %v %v", ok, err)
	}
	if _, _, err := NetrcPassword(filepath.Join(t.TempDir(), "none"), "x"); err == nil {
		t.Error("a missing netrc file is no error")
	}
	if err := os.WriteFile(path, []byte("machine a password"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := NetrcPassword(path, "a"); ok || err != nil {
		t.Errorf("a truncated netrc file gave a password: %v %v", ok, err)
	}
}
