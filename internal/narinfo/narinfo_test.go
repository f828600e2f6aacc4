package narinfo

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

const (
	outPath    = "/nix/store/g7kc613x7zma7s9nq20w4g7jmm9fiyc0-larder-fixture-out"
	inputBase  = "cbr1pfg7k5733f54x2n872spsrcwb498-larder-fixture-input"
	outBase    = "g7kc613x7zma7s9nq20w4g7jmm9fiyc0-larder-fixture-out"
	drvBase    = "c51ya1cciyj7qzswlsjdccq6mhb449z6-larder-fixture-out.drv"
	narHash32  = "0p0hgpddm2yq482q1s2raqa0b2vrzbzi3hbm0mw6d8ayqg6hrqxq"
	fileHash32 = "1mqll3k922ii8bxgjrkfbn9a1dk6yi4rb33bvgy07i52dhwrn49a"
	sig1       = "larder-test-1:FufeE6nnozxUhrDBUlh/NUA3lKDOvMhBduv4avSlQ5fRF59wN+5eiQL1cQgIBhOF2xTM/MBvNGVklXCJFi57DQ=="
	sig2       = "larder-test-2:REqpf20CedNj1/gZst/0Cd+Uq8loJxVLeY2/BWEjTE89izrUtZETZsZWMGR2V3UQVuqXURaiG0qF7YTVuRSfBA=="
)

// sample is testdata/output-signed.narinfo: a derivation output written by
// nix copy and signed by nix store sign with both test keys.
const sample = "StorePath: " + outPath + "\n" +
	"URL: nar/" + fileHash32 + ".nar.xz\n" +
	"Compression: xz\n" +
	"FileHash: sha256:" + fileHash32 + "\n" +
	"FileSize: 220\n" +
	"NarHash: sha256:" + narHash32 + "\n" +
	"NarSize: 240\n" +
	"References: " + inputBase + " " + outBase + "\n" +
	"Deriver: " + drvBase + "\n" +
	"Sig: " + sig1 + "\n" +
	"Sig: " + sig2 + "\n"

// replaceLine returns sample with its line for key replaced by line, or
// removed if line is "".
func replaceLine(key, line string) string {
	var out []string
	for _, l := range strings.SplitAfter(sample, "\n") {
		if strings.HasPrefix(l, key+": ") {
			if line == "" {
				continue
			}
			l = line + "\n"
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

func mustHash(t testing.TB, s string) Hash {
	t.Helper()
	h, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestParseSample(t *testing.T) {
	n, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := &NarInfo{
		StorePath:   outPath,
		URL:         "nar/" + fileHash32 + ".nar.xz",
		Compression: "xz",
		FileHash:    mustHash(t, "sha256:"+fileHash32),
		FileSize:    220,
		NarHash:     mustHash(t, "sha256:"+narHash32),
		NarSize:     240,
		References:  []string{inputBase, outBase},
		Deriver:     drvBase,
		Sigs:        []string{sig1, sig2},
	}
	if !reflect.DeepEqual(n, want) {
		t.Fatalf("Parse = %+v\nwant %+v", n, want)
	}
	if got := n.HashPart(); got != "g7kc613x7zma7s9nq20w4g7jmm9fiyc0" {
		t.Errorf("HashPart() = %q", got)
	}
	if err := n.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestFixtureRoundTrip parses narinfos that Nix 2.8.0 wrote and checks that
// Bytes reproduces each file byte for byte. The fixtures were made with:
//
//	nix-store --generate-binary-cache-key larder-test-1 larder-test-1.sk larder-test-1.pk
//	nix-store --generate-binary-cache-key larder-test-2 larder-test-2.sk larder-test-2.pk
//	A=$(nix-store --add fixture.txt)   # "larder fixture\n"
//	O=$(nix-build --no-out-link -E 'let input = builtins.toFile "larder-fixture-input" "hello\n"; in
//	  derivation { name = "larder-fixture-out"; system = "x86_64-linux"; builder = "/bin/sh";
//	  args = ["-c" "echo ${input} $out > $out"]; }')
//	nix copy --to "file://$W/cache?compression=xz" $A $O
//	nix copy --derivation --to "file://$W/cache?compression=xz" $(nix-store -q --deriver $O)
//	nix copy --to "file://$W/cache-zstd?compression=zstd" $A
//	nix copy --to "file://$W/cache-none?compression=none" <input path>
//	nix store sign --store file://$W/cache -k larder-test-1.sk $O $A
//	nix store sign --store file://$W/cache -k larder-test-2.sk $O
func TestFixtureRoundTrip(t *testing.T) {
	files, err := filepath.Glob("testdata/*.narinfo")
	if err != nil || len(files) < 5 {
		t.Fatalf("want at least 5 fixtures, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, data)
		})
	}
}

// checkRoundTrip checks that data parses, validates and renders back to
// itself.
func checkRoundTrip(t *testing.T, data []byte) *NarInfo {
	t.Helper()
	n, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, data)
	}
	if err := n.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if got := n.Bytes(); !bytes.Equal(got, data) {
		t.Errorf("Bytes() differs from the input\n got: %q\nwant: %q", got, data)
	}
	if n.String() != string(data) {
		t.Errorf("String() differs from the input")
	}
	return n
}

func TestFixtureFields(t *testing.T) {
	read := func(name string) *NarInfo {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		n, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := read("text-none.narinfo"); n.Compression != "none" || n.FileHash != n.NarHash || n.FileSize != n.NarSize ||
		!strings.HasPrefix(n.CA, "text:sha256:") || len(n.References) != 0 || n.Deriver != "" {
		t.Errorf("text-none.narinfo parsed to %+v", n)
	}
	if n := read("fixed-zstd.narinfo"); n.Compression != "zstd" || n.CA != "fixed:r:"+n.NarHash.String() {
		t.Errorf("fixed-zstd.narinfo parsed to %+v", n)
	}
	if n := read("drv.narinfo"); !reflect.DeepEqual(n.References, []string{inputBase}) || n.HashPart()+"-larder-fixture-out.drv" != drvBase {
		t.Errorf("drv.narinfo parsed to %+v", n)
	}
}

func TestNix32KnownValues(t *testing.T) {
	tests := []struct{ data, nix32 string }{
		{"", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"},
		{"hello", "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"},
	}
	for _, tt := range tests {
		sum := sha256.Sum256([]byte(tt.data))
		h := Hash(sum)
		if got := h.Nix32(); got != tt.nix32 {
			t.Errorf("Nix32 of sha256(%q) = %s, want %s", tt.data, got, tt.nix32)
		}
		if got := nixbase32.EncodeToString(sum[:]); got != tt.nix32 {
			t.Errorf("go-nix encodes sha256(%q) as %s, want %s", tt.data, got, tt.nix32)
		}
		if h.String() != "sha256:"+tt.nix32 {
			t.Errorf("String() = %s", h)
		}
		forms := []string{
			"sha256:" + tt.nix32,
			"sha256:" + hex.EncodeToString(sum[:]),
			"sha256:" + strings.ToUpper(hex.EncodeToString(sum[:])),
			"sha256:" + base64.StdEncoding.EncodeToString(sum[:]),
			"sha256-" + base64.StdEncoding.EncodeToString(sum[:]),
		}
		for _, f := range forms {
			if got, err := ParseHash(f); err != nil || got != h {
				t.Errorf("ParseHash(%q) = %s, %v; want %s", f, got, err, h)
			}
		}
	}
}

func TestParseHashErrors(t *testing.T) {
	sum := sha256.Sum256(nil)
	nix32 := nixbase32.EncodeToString(sum[:])
	tests := []struct{ in, want string }{
		{nix32, `no "sha256:" prefix`},
		{":" + nix32, `no "sha256:" prefix`},
		{"md5:" + nix32[:26], "uses md5, want sha256"},
		{"sha1:" + nix32[:32], "uses sha1, want sha256"},
		{"sha512:" + nix32, "uses sha512, want sha256"},
		{"blake3:" + nix32, `unknown algorithm "blake3"`},
		{"SHA256:" + nix32, `unknown algorithm "SHA256"`},
		{"sha256:", "digest has 0 characters"},
		{"sha256:" + nix32[:51], "digest has 51 characters"},
		{"sha256:" + nix32[:51] + "e", "digest is corrupt"},
		{"sha256:z" + nix32[1:], "digest is corrupt"},
		{"sha256:" + strings.Repeat("g", 64), "digest is corrupt"},
		{"sha256:" + strings.Repeat("!", 44), "digest is corrupt"},
		{"sha256-" + nix32, "SRI hash"},
		{"sha256-" + hex.EncodeToString(sum[:]), "SRI hash"},
		{"sha256:sha256:" + nix32, "digest has 59 characters"},
	}
	for _, tt := range tests {
		_, err := ParseHash(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseHash(%q) error = %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestParseNormalises(t *testing.T) {
	sum := mustHash(t, "sha256:"+narHash32)
	hexHash := "sha256:" + hex.EncodeToString(sum[:])
	tests := []struct {
		name, in string
		check    func(*NarInfo) bool
	}{
		{"no Compression means bzip2", replaceLine("Compression", ""), func(n *NarInfo) bool { return n.Compression == "bzip2" }},
		{"base16 NarHash", replaceLine("NarHash", "NarHash: "+hexHash), func(n *NarInfo) bool { return n.NarHash == sum }},
		{"SRI NarHash", replaceLine("NarHash", "NarHash: sha256-"+base64.StdEncoding.EncodeToString(sum[:])), func(n *NarInfo) bool { return n.NarHash == sum }},
		{"unknown-deriver", replaceLine("Deriver", "Deriver: unknown-deriver"), func(n *NarInfo) bool { return n.Deriver == "" }},
		{"unknown keys ignored", sample + "X-Larder: 1\nFoo: bar\nFoo: baz\n", func(n *NarInfo) bool { return n.NarSize == 240 }},
		{"empty System", sample + "System: \n", func(n *NarInfo) bool { return n.System == "" }},
		{"System", sample + "System: x86_64-linux\n", func(n *NarInfo) bool { return n.System == "x86_64-linux" }},
		{"References sorted", replaceLine("References", "References: "+outBase+" "+inputBase), func(n *NarInfo) bool {
			return slices.Equal(n.References, []string{inputBase, outBase})
		}},
		{"extra spaces in References", replaceLine("References", "References:  "+outBase+"   "+inputBase+" "), func(n *NarInfo) bool {
			return slices.Equal(n.References, []string{inputBase, outBase})
		}},
		{"empty References", replaceLine("References", "References: "), func(n *NarInfo) bool { return len(n.References) == 0 }},
		{"no References line", replaceLine("References", ""), func(n *NarInfo) bool { return len(n.References) == 0 }},
		{"Sigs sorted and merged", sample + "Sig: " + sig1 + "\n", func(n *NarInfo) bool { return slices.Equal(n.Sigs, []string{sig1, sig2}) }},
		{"no FileHash", replaceLine("FileHash", ""), func(n *NarInfo) bool { return n.FileHash.IsZero() && n.FileSize == 220 }},
		{"CA in base16", sample + "CA: fixed:r:" + hexHash + "\n", func(n *NarInfo) bool { return n.CA == "fixed:r:sha256:"+narHash32 }},
		{"flat sha1 CA", sample + "CA: fixed:sha1:" + strings.Repeat("0", 40) + "\n", func(n *NarInfo) bool { return n.CA == "fixed:sha1:"+strings.Repeat("0", 32) }},
		{"text CA", sample + "CA: text:sha256:" + narHash32 + "\n", func(n *NarInfo) bool { return n.CA == "text:sha256:"+narHash32 }},
		{"non-ASCII System", sample + "System: x86_64-linüx\n", func(n *NarInfo) bool { return n.System == "x86_64-linüx" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(n) {
				t.Fatalf("unexpected result %+v", n)
			}
			checkReparse(t, n)
		})
	}
}

// checkReparse checks that the rendering of n parses to a value equal to n.
func checkReparse(t *testing.T, n *NarInfo) {
	t.Helper()
	out := n.Bytes()
	n2, err := Parse(out)
	if err != nil {
		t.Fatalf("re-parse of %q: %v", out, err)
	}
	if !reflect.DeepEqual(n, n2) {
		t.Fatalf("re-parse differs:\n%+v\n%+v", n, n2)
	}
	if !bytes.Equal(n2.Bytes(), out) {
		t.Fatalf("rendering is not stable")
	}
}

func TestBytesCanonicalOrder(t *testing.T) {
	n := &NarInfo{
		StorePath:   outPath,
		URL:         "nar/x.nar",
		Compression: "none",
		NarHash:     mustHash(t, "sha256:"+narHash32),
		NarSize:     240,
		References:  []string{outBase, inputBase, outBase},
		System:      "x86_64-linux",
		Sigs:        []string{sig2, sig1, sig2},
		CA:          "fixed:r:sha256:" + narHash32,
	}
	want := "StorePath: " + outPath + "\nURL: nar/x.nar\nCompression: none\n" +
		"NarHash: sha256:" + narHash32 + "\nNarSize: 240\n" +
		"References: " + inputBase + " " + outBase + "\nSystem: x86_64-linux\n" +
		"Sig: " + sig1 + "\nSig: " + sig2 + "\nCA: fixed:r:sha256:" + narHash32 + "\n"
	if got := n.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	if n.References[0] != outBase || n.Sigs[0] != sig2 {
		t.Errorf("Bytes modified the NarInfo: %+v", n)
	}
	empty := &NarInfo{StorePath: outPath, URL: "u", Compression: "xz", NarHash: n.NarHash, NarSize: 1, FileSize: 7}
	if got := empty.String(); !strings.Contains(got, "\nFileSize: 7\nNarHash: ") || !strings.Contains(got, "\nReferences: \n") {
		t.Errorf("String() = %q, want FileSize without FileHash and an empty References line", got)
	}
}

func TestFingerprint(t *testing.T) {
	n, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	want := "1;" + outPath + ";sha256:" + narHash32 + ";240;/nix/store/" + inputBase + ",/nix/store/" + outBase
	if got := n.Fingerprint(); got != want {
		t.Errorf("Fingerprint() =\n%s\nwant\n%s", got, want)
	}
	if got := Fingerprint(outPath, n.NarHash, 240, []string{outBase, inputBase, outBase}); got != want {
		t.Errorf("Fingerprint with unsorted, repeated references =\n%s\nwant\n%s", got, want)
	}
	if got := Fingerprint(outPath, n.NarHash, 240, nil); got != "1;"+outPath+";sha256:"+narHash32+";240;" {
		t.Errorf("Fingerprint without references = %s", got)
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tt := range invalidCases() {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("Parse accepted the input; got %+v", n)
			}
			if n != nil {
				t.Errorf("Parse returned a NarInfo with its error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Errorf("error %v is not a *ParseError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

type invalidCase struct{ name, in, want string }

// invalidCases returns the hostile inputs of TestParseInvalid.
func invalidCases() []invalidCase {
	cases := []invalidCase{
		{"empty", "", "narinfo is empty"},
		{"truncated", sample[:len(sample)-1], "narinfo is truncated: it does not end with a newline"},
		{"truncated mid-line", sample[:100], "narinfo is truncated"},
		{"invalid UTF-8", sample + "System: \xff\xfe\n", "line 12: invalid UTF-8"},
		{"NUL", replaceLine("URL", "URL: nar/x\x00.nar"), "line 2: control character U+0000"},
		{"tab", replaceLine("URL", "URL:\tnar/x.nar"), "line 2: control character U+0009"},
		{"DEL", sample + "System: a\x7f\n", "control character U+007F"},
		{"C1 control", sample + "System: a\u0085\n", "control character U+0085"},
		{"CRLF", strings.ReplaceAll(sample, "\n", "\r\n"), `line 1: carriage return: lines must end with "\n", not "\r\n"`},
		{"no separator", replaceLine("URL", "URL"), `line 2: expected "Key: value"`},
		{"garbage line", strings.Replace(sample, "xz\n", "xz\nthis is not a narinfo line\n", 1), `line 3: expected "Key: value"`},
		{"no space after colon", replaceLine("NarSize", "NarSize:240"), `line 7: expected "Key: value"`},
		{"colon at end", replaceLine("NarSize", "NarSize:"), `line 7: expected "Key: value"`},
		{"empty key", sample + ": x\n", "found an empty key"},
		{"key with space", sample + "Store Path: x\n", `found key "Store Path" with invalid character ' '`},
		{"empty line", strings.Replace(sample, "\n", "\n\n", 1), "line 2: empty line"},
		{"blank final line", sample + "\n", "line 12: empty line"},
		{"over-long line", sample + "System: " + strings.Repeat("x", MaxLineLen) + "\n", "System line is 4104 bytes long, more than the maximum of 4096"},
		{"over-long unknown line", sample + "X: " + strings.Repeat("x", MaxLineLen) + "\n", "X line is 4099 bytes long"},
		{"over-long References", replaceLine("References", "References: "+strings.Repeat(inputBase+" ", MaxReferencesLineLen/len(inputBase))), "more than the maximum of 1048576"},
		{"missing StorePath", replaceLine("StorePath", ""), "narinfo has no StorePath line"},
		{"missing URL", replaceLine("URL", ""), "narinfo has no URL line"},
		{"missing NarHash", replaceLine("NarHash", ""), "narinfo has no NarHash line"},
		{"missing NarSize", replaceLine("NarSize", ""), "narinfo has no NarSize line"},
		{"empty URL", replaceLine("URL", "URL: "), "line 2: invalid URL: URL is empty"},
		{"NarSize 0", replaceLine("NarSize", "NarSize: 0"), "line 7: invalid NarSize: size is 0"},
		{"NarSize negative", replaceLine("NarSize", "NarSize: -240"), `invalid NarSize: size "-240" is not a non-negative decimal integer`},
		{"NarSize plus", replaceLine("NarSize", "NarSize: +240"), "is not a non-negative decimal integer"},
		{"NarSize hex", replaceLine("NarSize", "NarSize: 0xf0"), "is not a non-negative decimal integer"},
		{"NarSize space", replaceLine("NarSize", "NarSize: 240 "), "is not a non-negative decimal integer"},
		{"NarSize empty", replaceLine("NarSize", "NarSize: "), "invalid NarSize: size is empty"},
		{"NarSize overflow", replaceLine("NarSize", "NarSize: 18446744073709551616"), "is out of range"},
		{"FileSize negative", replaceLine("FileSize", "FileSize: -1"), "line 5: invalid FileSize"},
		{"FileSize text", replaceLine("FileSize", "FileSize: big"), "line 5: invalid FileSize"},
		{"unknown compression", replaceLine("Compression", "Compression: gzip2"), `line 3: invalid Compression: unknown compression method "gzip2"`},
		{"empty compression", replaceLine("Compression", "Compression: "), `unknown compression method ""`},
		{"upper-case compression", replaceLine("Compression", "Compression: XZ"), `unknown compression method "XZ"`},
	}
	cases = append(cases, duplicateCases()...)
	cases = append(cases, storePathCases()...)
	cases = append(cases, hashCases()...)
	return append(cases, sigAndCACases()...)
}

// duplicateCases repeats each single-valued key.
func duplicateCases() []invalidCase {
	var cases []invalidCase
	lines := strings.SplitAfter(sample, "\n")
	for i, key := range []string{"StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize", "References", "Deriver"} {
		cases = append(cases, invalidCase{"duplicate " + key, sample + lines[i],
			fmt.Sprintf("line 12: duplicate %s (first on line %d)", key, i+1)})
	}
	return append(cases,
		invalidCase{"duplicate System", sample + "System: a\nSystem: a\n", "line 13: duplicate System (first on line 12)"},
		invalidCase{"duplicate CA", sample + "CA: text:sha256:" + narHash32 + "\nCA: text:sha256:" + narHash32 + "\n", "line 13: duplicate CA"},
		invalidCase{"duplicate conflicting StorePath", sample + "StorePath: /nix/store/" + inputBase + "\n", "duplicate StorePath"},
	)
}

// storePathCases are bad store paths, references and derivers.
func storePathCases() []invalidCase {
	sp := func(v string) string { return replaceLine("StorePath", "StorePath: "+v) }
	ref := func(v string) string { return replaceLine("References", "References: "+v) }
	drv := func(v string) string { return replaceLine("Deriver", "Deriver: "+v) }
	h := "g7kc613x7zma7s9nq20w4g7jmm9fiyc0"
	return []invalidCase{
		{"StorePath with ..", sp("/nix/store/../etc/passwd"), `line 1: invalid StorePath: "../etc/passwd" is not a store path base name`},
		{"StorePath with slash in name", sp("/nix/store/" + h + "-a/../../etc"), `contains invalid character '/'`},
		{"StorePath with .. in name", sp("/nix/store/" + h + "-../../etc"), `starts with '.'`},
		{"StorePath name starts with dot", sp("/nix/store/" + h + "-.hidden"), "starts with '.'"},
		{"StorePath outside store", sp("/tmp/" + outBase), `is not in /nix/store`},
		{"StorePath relative", sp(outBase), `is not in /nix/store`},
		{"StorePath other store dir", sp("/gnu/store/" + outBase), `is not in /nix/store`},
		{"StorePath trailing slash", sp(outPath + "/"), `invalid character '/'`},
		{"StorePath subpath", sp(outPath + "/bin/sh"), `invalid character '/'`},
		{"StorePath no name", sp("/nix/store/" + h), "not a store path base name"},
		{"StorePath empty name", sp("/nix/store/" + h + "-"), "not a store path base name"},
		{"StorePath bad hash char", sp("/nix/store/g7kc613x7zma7s9nq20w4g7jmm9fiyce-x"), `contains 'e', which is not in the nix32 alphabet`},
		{"StorePath upper-case hash", sp("/nix/store/G7kc613x7zma7s9nq20w4g7jmm9fiyc0-x"), `contains 'G'`},
		{"StorePath short hash", sp("/nix/store/g7kc613x7zma7s9nq20w4g7jmm9fiyc-xx"), "not a store path base name"},
		{"StorePath space", sp(outPath + " x"), `invalid character ' '`},
		{"StorePath non-ASCII", sp(outPath + "é"), `invalid character 'é'`},
		{"StorePath long name", sp("/nix/store/" + h + "-" + strings.Repeat("n", 212)), "212 bytes long, more than the maximum of 211"},
		{"Reference with slash", ref(inputBase + " a/b"), `line 8: invalid References: reference: "a/b" is not a store path base name`},
		{"Reference full path", ref("/nix/store/" + inputBase), "invalid References: reference"},
		{"Reference with slash in name", ref(h + "-a/b"), `invalid character '/'`},
		{"Reference dotdot", ref(".."), "is not a store path base name"},
		{"Reference twice", ref(inputBase + " " + outBase + " " + inputBase), `reference "` + inputBase + `" is listed twice`},
		{"Reference bad hash", ref("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x"), "not in the nix32 alphabet"},
		{"Deriver not drv", drv(outBase), `invalid Deriver: "` + outBase + `" is not a derivation`},
		{"Deriver full path", drv("/nix/store/" + drvBase), "invalid Deriver"},
		{"Deriver empty", drv(""), "invalid Deriver"},
		{"Deriver bad", drv("../x.drv"), "invalid Deriver"},
	}
}

// hashCases are bad FileHash and NarHash values.
func hashCases() []invalidCase {
	nh := func(v string) string { return replaceLine("NarHash", "NarHash: "+v) }
	return []invalidCase{
		{"NarHash md5", nh("md5:" + narHash32[:26]), "line 6: invalid NarHash: hash \"md5:"},
		{"NarHash sha1", nh("sha1:" + narHash32[:32]), "uses sha1, want sha256"},
		{"NarHash sha512", nh("sha512:" + narHash32), "uses sha512, want sha256"},
		{"NarHash no prefix", nh(narHash32), `has no "sha256:" prefix`},
		{"NarHash bad char", nh("sha256:" + narHash32[:51] + "u"), "digest is corrupt"},
		{"NarHash non-canonical", nh("sha256:z" + narHash32[1:]), "non-zero padding"},
		{"NarHash short", nh("sha256:" + narHash32[:50]), "digest has 50 characters"},
		{"NarHash zero", nh("sha256:" + strings.Repeat("0", 52)), "hash is all zeros"},
		{"NarHash empty", nh(""), "invalid NarHash"},
		{"FileHash bad base64", replaceLine("FileHash", "FileHash: sha256:"+strings.Repeat("*", 44)), "line 4: invalid FileHash"},
		{"FileHash SRI hex", replaceLine("FileHash", "FileHash: sha256-"+strings.Repeat("a", 64)), "SRI hash"},
	}
}

// sigAndCACases are bad Sig and CA values.
func sigAndCACases() []invalidCase {
	sig := func(v string) string { return sample + "Sig: " + v + "\n" }
	ca := func(v string) string { return sample + "CA: " + v + "\n" }
	return []invalidCase{
		{"Sig bad base64", sig("k:!!!notbase64!!!"), "line 12: invalid Sig: signature is corrupt: data is corrupt: illegal base64 data"},
		{"Sig short", sig("k:" + base64.StdEncoding.EncodeToString(make([]byte, 32))), "data is not the right size: expected 64 but got 32"},
		{"Sig no name", sig(":" + sig1[len("larder-test-1:"):]), "name is missing"},
		{"Sig no colon", sig("larder-test-1"), "invalid number of fields"},
		{"Sig empty", sig(""), "invalid Sig"},
		{"Sig name with space", sig("my key:" + sig1[len("larder-test-1:"):]), "contains white space"},
		{"CA unknown method", ca("nar:sha256:" + narHash32), `does not start with "text:" or "fixed:"`},
		{"CA no algorithm", ca("fixed:" + narHash32), `has no "<algorithm>:" before its hash`},
		{"CA bad algorithm", ca("fixed:r:sha3:" + narHash32), "unknown algorithm"},
		{"CA text sha1", ca("text:sha1:" + strings.Repeat("0", 40)), "uses sha1, want sha256"},
		{"CA bad hash", ca("fixed:r:sha256:xyz"), "digest has 3 characters"},
		{"CA double prefix", ca("fixed:r:sha256:sha256:" + narHash32), "digest has 59 characters"},
		{"CA empty", ca(""), "invalid CA"},
		{"CA SRI", ca("fixed:r:sha256-" + base64.StdEncoding.EncodeToString(make([]byte, 32))), `has no "<algorithm>:"`},
	}
}

func TestManyReferences(t *testing.T) {
	refs := make([]string, 10000)
	for i := range refs {
		sum := sha256.Sum256([]byte(fmt.Sprint(i)))
		refs[i] = nixbase32.EncodeToString(sum[:20]) + "-dep-" + fmt.Sprint(i)
	}
	in := replaceLine("References", "References: "+strings.Join(refs, " "))
	n, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(n.References) != len(refs) || !slices.IsSorted(n.References) {
		t.Fatalf("got %d references (sorted: %v), want %d sorted", len(n.References), slices.IsSorted(n.References), len(refs))
	}
	checkReparse(t, n)
	dup := replaceLine("References", "References: "+strings.Join(refs, " ")+" "+refs[9999])
	if _, err := Parse([]byte(dup)); err == nil || !strings.Contains(err.Error(), "is listed twice") {
		t.Fatalf("duplicate among 10001 references: error = %v", err)
	}
}

func TestValidate(t *testing.T) {
	good := func() *NarInfo {
		n, err := Parse([]byte(sample))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		name   string
		mutate func(*NarInfo)
		want   string
	}{
		{"bad store path", func(n *NarInfo) { n.StorePath = "/etc/passwd" }, "StorePath"},
		{"empty URL", func(n *NarInfo) { n.URL = "" }, "URL is empty"},
		{"URL with newline", func(n *NarInfo) { n.URL = "nar/x\nSig: y" }, "control characters"},
		{"no compression", func(n *NarInfo) { n.Compression = "" }, "unknown compression"},
		{"zero NarHash", func(n *NarInfo) { n.NarHash = Hash{} }, "NarHash is missing"},
		{"zero NarSize", func(n *NarInfo) { n.NarSize = 0 }, "NarSize is 0"},
		{"reference with space", func(n *NarInfo) { n.References = []string{inputBase + " " + outBase} }, "References"},
		{"empty reference", func(n *NarInfo) { n.References = []string{""} }, "References"},
		{"duplicate reference", func(n *NarInfo) { n.References = []string{inputBase, inputBase} }, "listed twice"},
		{"bad deriver", func(n *NarInfo) { n.Deriver = outBase }, "Deriver"},
		{"System with newline", func(n *NarInfo) { n.System = "x\nCA: y" }, "System"},
		{"bad sig", func(n *NarInfo) { n.Sigs = []string{"x"} }, "Sig"},
		{"non-canonical CA", func(n *NarInfo) { n.CA = "fixed:r:sha256:" + strings.Repeat("0", 64) }, "CA"},
	}
	for _, tt := range tests {
		n := good()
		tt.mutate(n)
		err := n.Validate()
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want an invalid-narinfo error containing %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.narinfo")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(sample))
	f.Add([]byte(replaceLine("Compression", "") + "CA: fixed:sha1:" + strings.Repeat("0", 40) + "\n"))
	f.Add([]byte("StorePath: /nix/store/../x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data)
		if err != nil {
			if n != nil || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %v with result %v", err, n)
			}
			return
		}
		if err := n.Validate(); err != nil {
			t.Fatalf("parsed narinfo does not validate: %v", err)
		}
		out := n.Bytes()
		n2, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if !reflect.DeepEqual(n, n2) {
			t.Fatalf("re-parse differs:\n%+v\n%+v", n, n2)
		}
		if !bytes.Equal(n2.Bytes(), out) {
			t.Fatalf("rendering is not stable")
		}
	})
}
