package nixkey

import (
	"errors"
	"strings"
	"testing"
)

const (
	hash32   = "6h9lcbx523532ax1c5g2351w9bm8ykhy"
	fileHash = "17gd6zzlkx90irc6qawagdkgh1d7qvlnq46yjf7xiqw9ycz7zq4a"
	drvHex   = "5ca559b43a674a480bf08a0ff897e037fc469999f97606522371d51223a7c1de"
	buildID  = "abcdef0123456789abcdef0123456789abcdef01"
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		in   string
		want Key
	}{
		{"nix-cache-info", Key{Kind: CacheInfo}},
		{hash32 + ".narinfo", Key{Kind: NarInfo, Hash: hash32}},
		{"00000000000000000000000000000000.narinfo", Key{Kind: NarInfo, Hash: strings.Repeat("0", 32)}},
		{"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz.narinfo", Key{Kind: NarInfo, Hash: strings.Repeat("z", 32)}},
		{hash32 + ".ls", Key{Kind: Listing, Hash: hash32}},
		{"nar/" + fileHash + ".nar", Key{Kind: Nar, Hash: fileHash}},
		{"nar/" + fileHash + ".nar.xz", Key{Kind: Nar, Hash: fileHash, Ext: ".xz"}},
		{"nar/" + fileHash + ".nar.zst", Key{Kind: Nar, Hash: fileHash, Ext: ".zst"}},
		{"nar/" + fileHash + ".nar.bz2", Key{Kind: Nar, Hash: fileHash, Ext: ".bz2"}},
		{"nar/" + fileHash + ".nar.lz4", Key{Kind: Nar, Hash: fileHash, Ext: ".lz4"}},
		{"nar/" + fileHash + ".nar.br", Key{Kind: Nar, Hash: fileHash, Ext: ".br"}},
		{"nar/" + fileHash + ".nar.lzip", Key{Kind: Nar, Hash: fileHash, Ext: ".lzip"}},
		{"log/lv1lgxg9mgmvmbqz00g3ln1kld7s9imf-t2.drv", Key{Kind: Log, Name: "lv1lgxg9mgmvmbqz00g3ln1kld7s9imf-t2.drv"}},
		{"log/" + hash32 + "-a+b-_?=.x.drv", Key{Kind: Log, Name: hash32 + "-a+b-_?=.x.drv"}},
		{"log/" + hash32 + "-" + strings.Repeat("n", 207) + ".drv", Key{Kind: Log, Name: hash32 + "-" + strings.Repeat("n", 207) + ".drv"}},
		{"realisations/sha256:" + drvHex + "!out.doi", Key{Kind: Realisation, Name: "sha256:" + drvHex + "!out"}},
		{"realisations/sha256:" + drvHex + "!dev-1.2_x.doi", Key{Kind: Realisation, Name: "sha256:" + drvHex + "!dev-1.2_x"}},
		{"debuginfo/" + buildID + ".debug", Key{Kind: DebugInfo, Name: buildID}},
		{"debuginfo/ab.debug", Key{Kind: DebugInfo, Name: "ab"}},
		{"debuginfo/" + strings.Repeat("f", 128) + ".debug", Key{Kind: DebugInfo, Name: strings.Repeat("f", 128)}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Fatalf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

type invalidKey struct{ in, want string }

// shapeCases are keys rejected before the grammar of a kind applies.
func shapeCases() []invalidKey {
	return []invalidKey{
		{"", "key is empty"},
		{strings.Repeat("a", MaxLen+1), "more than the maximum of 512"},
		{"../x", `contains ".."`},
		{"..", `contains ".."`},
		{".", `"." path segment`},
		{"./nix-cache-info", `"." path segment`},
		{"nar/./" + fileHash + ".nar", `"." path segment`},
		{"nar/../../etc/passwd", `contains ".."`},
		{"nar/" + fileHash + "..nar", `contains ".."`},
		{"log/..%2f", "percent-encoded"},
		{"%2e%2e", "percent-encoded"},
		{"%2e%2e/%2e%2e/etc/passwd", "percent-encoded"},
		{"/nix-cache-info", "starts with '/'"},
		{"/etc/passwd", "starts with '/'"},
		{"nix-cache-info/", "ends with '/'"},
		{"nar/", "ends with '/'"},
		{"nar//" + fileHash + ".nar", "empty path segment"},
		{hash32 + ".narinfo\x00", "control byte 0x00"},
		{"nix-cache-info\x00.png", "control byte 0x00"},
		{"nix-cache-info\n", "control byte 0x0a"},
		{"nix-cache-info\r", "control byte 0x0d"},
		{"nix-cache-info\x7f", "control byte 0x7f"},
		{"nar\\" + fileHash + ".nar", "backslash"},
		{"nix-cache-infö", "non-ASCII byte"},
	}
}

// grammarCases are keys rejected by the grammar of their kind.
func grammarCases() []invalidKey {
	long := "log/" + hash32 + "-" + strings.Repeat("n", 208) + ".drv"
	return []invalidKey{
		{"NIX-CACHE-INFO", "unknown key"},
		{"nix-cache-info.txt", "unknown key"},
		{"index.html", "unknown key"},
		{hash32, "unknown key"},
		{hash32 + ".NARINFO", "unknown key"},
		{"6H9LCBX523532AX1C5G2351W9BM8YKHY.narinfo", `contains 'H'`},
		{"6h9lcbx523532ax1c5g2351w9bm8ykhe.narinfo", `contains 'e'`},
		{"6h9lcbx523532ax1c5g2351w9bm8ykho.narinfo", `contains 'o'`},
		{"6h9lcbx523532ax1c5g2351w9bm8ykhu.ls", `contains 'u'`},
		{"6h9lcbx523532ax1c5g2351w9bm8ykht.ls", `contains 't'`},
		{hash32[:31] + ".narinfo", "has 31 characters, want 32"},
		{hash32 + "0.narinfo", "has 33 characters, want 32"},
		{".narinfo", "has 0 characters, want 32"},
		{hash32 + "-t2.narinfo", "has 35 characters, want 32"},
		{"nar/" + fileHash, `no ".nar" extension`},
		{"nar/" + fileHash + ".nar.gz", `unknown NAR compression extension ".gz"`},
		{"nar/" + fileHash + ".nar.xz.xz", `unknown NAR compression extension ".xz.xz"`},
		{"nar/" + fileHash + ".nar.XZ", `unknown NAR compression extension ".XZ"`},
		{"nar/" + fileHash + ".nar.", `unknown NAR compression extension "."`},
		{"nar/" + fileHash + ".narinfo", `unknown NAR compression extension "info"`},
		{"nar/" + fileHash + ".tar", `does not start with ".nar"`},
		{"nar/x.nar.gz", "has 1 characters, want 52"},
		{"nar/" + fileHash[:51] + ".nar", "has 51 characters, want 52"},
		{"nar/" + fileHash + "0.nar", "has 53 characters, want 52"},
		{"nar/z" + fileHash[1:] + ".nar", "not canonical nix32"},
		{"nar/" + hash32 + ".nar", "has 32 characters, want 52"},
		{"nar/sub/" + fileHash + ".nar", "more than two path segments"},
		{"nars/" + fileHash + ".nar", `unknown directory "nars"`},
		{"Nar/" + fileHash + ".nar", `unknown directory "Nar"`},
		{"log/" + hash32 + "-t2", `no ".drv" suffix`},
		{"log/" + hash32 + "-t2.drv.bz2", `no ".drv" suffix`},
		{"log/" + hash32 + "-.drv", "starts with '.'"},
		{"log/" + hash32 + "-", "not a store path base name"},
		{"log/" + hash32 + ".drv", "not a store path base name"},
		{"log/t2.drv", "not a store path base name"},
		{"log/" + hash32 + "_t2.drv", "not a store path base name"},
		{"log/" + hash32 + "-a b.drv", "invalid character ' '"},
		{"log/" + hash32 + "-a:b.drv", "invalid character ':'"},
		{"log/" + hash32 + "-a!b.drv", "invalid character '!'"},
		{"log/" + "6h9lcbx523532ax1c5g2351w9bm8ykhe-t2.drv", "contains 'e'"},
		{long, "name is 212 bytes long"},
		{"log/nix/store/" + hash32 + "-t2.drv", "more than two path segments"},
		{"realisations/sha256:" + drvHex + ".doi", `no "!<output name>"`},
		{"realisations/sha256:" + drvHex + "!out", `does not end with ".doi"`},
		{"realisations/sha256:" + drvHex + "!.doi", "empty output name"},
		{"realisations/sha256:" + drvHex + "!o:t.doi", "invalid character ':'"},
		{"realisations/sha256:" + drvHex + "!a!b.doi", "invalid character '!'"},
		{"realisations/sha256:" + drvHex + "!" + strings.Repeat("o", 212) + ".doi", "output name is 212 bytes long"},
		{"realisations/sha512:" + drvHex + "!out.doi", `does not start with "sha256:"`},
		{"realisations/" + drvHex + "!out.doi", `does not start with "sha256:"`},
		{"realisations/sha256:" + fileHash + "!out.doi", "has 52 characters, want 64"},
		{"realisations/sha256:" + strings.ToUpper(drvHex) + "!out.doi", "want lower-case hex"},
		{"debuginfo/" + buildID, `does not end with ".debug"`},
		{"debuginfo/.debug", "has 0 characters, want 2 to 128"},
		{"debuginfo/a.debug", "has 1 characters, want 2 to 128"},
		{"debuginfo/" + strings.Repeat("f", 129) + ".debug", "has 129 characters"},
		{"debuginfo/" + strings.ToUpper(buildID) + ".debug", "want lower-case hex"},
		{"debuginfo/xyz.debug", "want lower-case hex"},
	}
}

func TestParseInvalid(t *testing.T) {
	tests := append(shapeCases(), grammarCases()...)
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error containing %q", tt.in, k, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
			}
			if k != (Key{}) {
				t.Errorf("Parse(%q) returned non-zero key %+v with its error", tt.in, k)
			}
		})
	}
}

func TestErrorQuotesKeySafely(t *testing.T) {
	_, err := Parse("nar/\x00\n" + strings.Repeat("x", 600))
	if err == nil {
		t.Fatal("Parse accepted a hostile key")
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\x00\n") {
		t.Errorf("error message contains raw control bytes: %q", msg)
	}
	if len(msg) > 300 {
		t.Errorf("error message is %d bytes long, want the key shortened: %q", len(msg), msg)
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{
		CacheInfo:   "cache-info",
		NarInfo:     "narinfo",
		Listing:     "listing",
		Nar:         "nar",
		Log:         "log",
		Realisation: "realisation",
		DebugInfo:   "debuginfo",
		Kind(0):     "kind(0)",
		Kind(99):    "kind(99)",
	}
	for k, w := range want {
		if got := k.String(); got != w {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, w)
		}
	}
}

func TestInvalidKindString(t *testing.T) {
	if s := (Key{}).String(); s != "" {
		t.Errorf("zero Key String() = %q, want \"\"", s)
	}
	if s := (Key{Kind: 42, Hash: hash32}).String(); s != "" {
		t.Errorf("Key with unknown kind String() = %q, want \"\"", s)
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"nix-cache-info", hash32 + ".narinfo", hash32 + ".ls",
		"nar/" + fileHash + ".nar.xz", "nar/" + fileHash + ".nar",
		"log/" + hash32 + "-t2.drv",
		"realisations/sha256:" + drvHex + "!out.doi",
		"debuginfo/" + buildID + ".debug",
		"../x", "nar/../../etc/passwd", "%2e%2e", "/abs", "a//b", "nar/x.nar.gz",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		out := k.String()
		if out != s {
			t.Fatalf("Parse(%q).String() = %q, want the input back", s, out)
		}
		k2, err := Parse(out)
		if err != nil || k2 != k {
			t.Fatalf("re-parse of %q = %+v, %v; want %+v", out, k2, err, k)
		}
		if strings.Contains(s, "..") || strings.HasPrefix(s, "/") || strings.Contains(s, "\\") {
			t.Fatalf("Parse accepted path-like key %q", s)
		}
	})
}
