package config

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "http://127.0.0.1:8080" || c.Data != "larder-data" {
		t.Fatalf("defaults: %+v", c)
	}
}

// TestPrecedence checks defaults < file < environment < flags.
func TestPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "larder.toml")
	err := os.WriteFile(file, []byte(`
listen = "127.0.0.1:1111"
data = "/from/file"
max_nar_size = "2GiB"
log_level = "debug"
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"LARDER_LISTEN=127.0.0.1:2222", "LARDER_MAX_NAR_SIZE=3GiB", "LARDER_CONFIG=" + file, "OTHER=x"}
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	c.Flags(fs)
	if err := fs.Parse([]string{"--listen", "127.0.0.1:3333"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	switch {
	case c.Listen != "127.0.0.1:3333":
		t.Errorf("listen %q: the flag should win", c.Listen)
	case c.MaxNarSize != 3<<30:
		t.Errorf("max_nar_size %d: the environment should win over the file", c.MaxNarSize)
	case c.Data != "/from/file" || c.LogLevel != "debug":
		t.Errorf("file settings lost: %+v", c)
	case c.BodyTimeout != Duration(time.Minute):
		t.Errorf("default lost: %v", c.BodyTimeout)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(s string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.toml", n))
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, file string
		env        []string
		want       string
	}{
		{"unknown key", write(`lisen = "x"`), nil, "unknown setting lisen"},
		{"bad size", write(`max_nar_size = "lots"`), nil, "not a size"},
		{"bad toml", write(`listen = `), nil, "read config file"},
		{"missing file", filepath.Join(dir, "nope.toml"), nil, "read config file"},
		{"bad env duration", "", []string{"LARDER_BODY_TIMEOUT=soon"}, "LARDER_BODY_TIMEOUT"},
		{"bad env number", "", []string{"LARDER_MAX_DECOMPRESSION_RATIO=many"}, "not a number"},
	}
	for _, c := range cases {
		_, err := Load(c.file, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	invalid := []func(*Config){
		func(c *Config) { c.Listen = "nohost" },
		func(c *Config) { c.LogLevel = "loud" },
		func(c *Config) { c.LogFormat = "xml" },
		func(c *Config) { c.MaxNarSize = 0 },
		func(c *Config) { c.PublicURL = "ftp://x" },
		func(c *Config) { c.Data = "" },
		func(c *Config) { c.BodyTimeout = 0 },
		func(c *Config) { c.MaxDecoderWindow = 0 },
		func(c *Config) { c.DecoderMemory = c.MaxDecoderWindow - 1 },
		func(c *Config) { c.DecoderMemoryWait = 0 },
	}
	for i, f := range invalid {
		c := Default()
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("invalid config %d accepted: %+v", i, c)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{
		"512": 512, "64KiB": 64 << 10, "1.5GiB": 3 << 29, "10MB": 10e6, "2 TiB": 2 << 40, "7B": 7,
	} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || b != want {
			t.Errorf("%q: %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1XB", "lots", "1e30"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String: %q", s)
	}
}

// TestREADMEDocumentsEverySetting keeps the README's configuration
// reference complete.
func TestREADMEDocumentsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings() {
		if !strings.Contains(string(readme), "`"+s.Name+"`") || !strings.Contains(string(readme), s.Env) {
			t.Errorf("README does not document %s (%s)", s.Name, s.Env)
		}
	}
}
