package compression

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestNames(t *testing.T) {
	want := []string{"none", "xz", "zstd", "bzip2", "gzip", "lz4", "br"}
	got := Names()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, name := range want {
		if !Supported(name) {
			t.Errorf("Supported(%q) = false", name)
		}
	}
}

func TestExt(t *testing.T) {
	tests := []struct {
		name, ext string
	}{
		{"none", ""},
		{"xz", ".xz"},
		{"zstd", ".zst"},
		{"bzip2", ".bz2"},
		{"gzip", ""},
		{"lz4", ".lz4"},
		{"br", ".br"},
	}
	for _, tt := range tests {
		got, err := Ext(tt.name)
		if err != nil || got != tt.ext {
			t.Errorf("Ext(%q) = %q, %v; want %q", tt.name, got, err, tt.ext)
		}
		cands, err := ForExt(got)
		if err != nil || !slices.Contains(cands, tt.name) {
			t.Errorf("ForExt(%q) = %v, %v; want it to contain %q", got, cands, err, tt.name)
		}
	}
}

func TestUnsupportedNames(t *testing.T) {
	for _, name := range []string{"", "lzip", "lzma", "compress", "XZ", "zst", "bz2", "gz", "brotli", "none "} {
		if Supported(name) {
			t.Errorf("Supported(%q) = true", name)
		}
		if _, err := Ext(name); !errors.Is(err, ErrUnsupported) {
			t.Errorf("Ext(%q) error = %v, want ErrUnsupported", name, err)
		}
		if _, err := NewReader(name, strings.NewReader("x")); !errors.Is(err, ErrUnsupported) {
			t.Errorf("NewReader(%q) error = %v, want ErrUnsupported", name, err)
		} else if !strings.Contains(err.Error(), "unsupported compression") {
			t.Errorf("NewReader(%q) error %q does not say why", name, err)
		}
	}
}

func TestForExt(t *testing.T) {
	tests := []struct {
		ext  string
		want []string
	}{
		{"", []string{"none", "gzip"}},
		{".xz", []string{"xz"}},
		{".zst", []string{"zstd"}},
		{".bz2", []string{"bzip2"}},
		{".lz4", []string{"lz4"}},
		{".br", []string{"br"}},
	}
	for _, tt := range tests {
		got, err := ForExt(tt.ext)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ForExt(%q) = %v, %v; want %v", tt.ext, got, err, tt.want)
		}
	}
	for _, ext := range []string{".gz", ".lzip", ".lz", "xz", ".zstd", ".nar", ".XZ", "."} {
		if got, err := ForExt(ext); !errors.Is(err, ErrUnsupported) {
			t.Errorf("ForExt(%q) = %v, %v; want ErrUnsupported", ext, got, err)
		}
	}
}

const narHead = "\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-1\x00\x00\x00"

func TestDetect(t *testing.T) {
	tests := []struct {
		head   string
		want   string
		wantOK bool
	}{
		{"\xfd7zXZ\x00\x00\x04", "xz", true},
		{"\x28\xb5\x2f\xfd\x24\x00", "zstd", true},
		{"BZh91AY&SY", "bzip2", true},
		{"\x1f\x8b\x08\x00", "gzip", true},
		{"\x04\x22\x4d\x18\x64", "lz4", true},
		{narHead + "\x01\x00\x00\x00\x00\x00\x00\x00(", "none", true},
		{narHead, "none", true},
		{narHead[:23], "", false}, // too short to tell
		{"\xfd7zXZ", "", false},
		{"\x28\xb5\x2f", "", false},
		{"BZ", "", false},
		{"\x1f", "", false},
		{"\x0d\x00\x00\x00\x00\x00\x00\x00nix-archive-2\x00\x00\x00", "", false},
		{"\x0b\x00\x00\x00", "", false}, // brotli has no magic
		{"", "", false},
		{"hello, world, this is plain text", "", false},
	}
	for _, tt := range tests {
		got, ok := Detect([]byte(tt.head))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("Detect(%q) = %q, %v; want %q, %v", tt.head, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestDetectEncoded checks that what every encoder writes is recognised.
func TestDetectEncoded(t *testing.T) {
	data := testData(1000)
	for _, m := range allMethods {
		got, ok := Detect(head(encode(t, m, data)))
		switch {
		case m == Brotli:
			if ok {
				t.Errorf("brotli data detected as %q", got)
			}
		case !ok || got != m:
			t.Errorf("%s data detected as %q, %v", m, got, ok)
		}
	}
}

func head(b []byte) []byte {
	return b[:min(len(b), MagicLen)]
}

func TestResolve(t *testing.T) {
	tests := []struct {
		ext, head string
		want      string
		mismatch  string // found method of the expected *MismatchError
	}{
		{"", narHead, "none", ""},
		{"", "\x1f\x8b\x08\x00", "gzip", ""},
		{"", "garbage that is no NAR", "none", ""},
		{"", "", "none", ""},
		{"", "\xfd7zXZ\x00\x00\x04", "", "xz"},
		{"", "\x28\xb5\x2f\xfd", "", "zstd"},
		{".xz", "\xfd7zXZ\x00\x00\x04", "xz", ""},
		{".xz", "\x28\xb5\x2f\xfd", "", "zstd"},
		{".xz", narHead, "", "none"},
		{".xz", "\x1f\x8b\x08", "", "gzip"},
		{".xz", "unknown", "xz", ""},
		{".zst", "\xfd7zXZ\x00", "", "xz"},
		{".bz2", "BZh9", "bzip2", ""},
		{".bz2", "\x04\x22\x4d\x18", "", "lz4"},
		{".lz4", "\x04\x22\x4d\x18", "lz4", ""},
		{".br", "\x1f\x8b\x08", "br", ""},
		{".br", "BZh", "br", ""},
		{".br", "\x0b\x02\x80", "br", ""},
		{".br", "\xfd7zXZ\x00", "", "xz"},
		{".br", narHead, "", "none"},
	}
	for _, tt := range tests {
		got, err := Resolve(tt.ext, []byte(tt.head))
		if tt.mismatch == "" {
			if err != nil || got != tt.want {
				t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tt.ext, tt.head, got, err, tt.want)
			}
			continue
		}
		var me *MismatchError
		if !errors.As(err, &me) || me.Found != tt.mismatch || me.Ext != tt.ext {
			t.Errorf("Resolve(%q, %q) = %q, %v; want a mismatch finding %s", tt.ext, tt.head, got, err, tt.mismatch)
		}
	}
	if _, err := Resolve(".gz", []byte("\x1f\x8b")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Resolve(.gz) error = %v, want ErrUnsupported", err)
	}
}

func TestMismatchMessage(t *testing.T) {
	tests := []struct {
		ext, head, want string
	}{
		{".xz", "\x28\xb5\x2f\xfd", `extension ".nar.xz" means xz compression but the content is zstd data`},
		{"", "\xfd7zXZ\x00", `extension ".nar" means an uncompressed or gzip NAR but the content is xz data`},
		{".zst", narHead, `extension ".nar.zst" means zstd compression but the content is an uncompressed NAR`},
	}
	for _, tt := range tests {
		_, err := Resolve(tt.ext, []byte(tt.head))
		if err == nil || err.Error() != tt.want {
			t.Errorf("Resolve(%q) error = %v, want %q", tt.ext, err, tt.want)
		}
	}
}
