package narinfo

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
)

// mustPublic parses a public key in Nix's text format, as Nix writes one,
// with go-nix's parser, to check larder's against.
func mustPublic(t *testing.T, s string) PublicKey {
	t.Helper()
	pk, err := signature.ParsePublicKey(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("public key %q: %v", s, err)
	}
	return PublicKey{name: pk.Name, key: pk.Data}
}

func TestParsePublicKey(t *testing.T) {
	_, pk1, pk1Text := readKeys(t, "larder-test-1")
	got, err := ParsePublicKey(pk1Text + "\n")
	if err != nil {
		t.Fatalf("ParsePublicKey of a key nix-store wrote: %v", err)
	}
	if got.Name() != pk1.Name() || !got.key.Equal(pk1.key) || got.String() != pk1Text {
		t.Fatalf("ParsePublicKey = %v, want %v", got, pk1)
	}
	secret, _, err := GenerateKey("k")
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]string{
		"":                        "want <name>:<base64",
		"k":                       "want <name>:<base64",
		":" + pk1Text[14:]:        "key name is empty",
		"k:***":                   "not 32 bytes of base64",
		secret:                    "not 32 bytes of base64",
		"a b:" + pk1Text[14:]:     "contains white space",
		"k:" + pk1Text[14:] + "A": "not 32 bytes of base64",
	} {
		if _, err := ParsePublicKey(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePublicKey(%q) = %v, want an error containing %q", s, err, want)
		}
	}
}

// readKeys loads a key pair that nix-store --generate-binary-cache-key wrote
// into testdata.
func readKeys(t *testing.T, name string) (SecretKey, PublicKey, string) {
	t.Helper()
	skText, err := os.ReadFile(filepath.Join("testdata", name+".sk"))
	if err != nil {
		t.Fatal(err)
	}
	pkText, err := os.ReadFile(filepath.Join("testdata", name+".pk"))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := ParseSecretKey(string(skText))
	if err != nil {
		t.Fatal(err)
	}
	return sk, mustPublic(t, string(pkText)), string(pkText)
}

// TestFixtureSignatures checks Sign and Verify against the Sig lines that
// nix store sign wrote into the fixtures with the test keys.
func TestFixtureSignatures(t *testing.T) {
	sk1, pk1, pk1Text := readKeys(t, "larder-test-1")
	sk2, pk2, _ := readKeys(t, "larder-test-2")
	if sk1.Name() != "larder-test-1" || pk1.Name() != "larder-test-1" {
		t.Errorf("key names = %q, %q", sk1.Name(), pk1.Name())
	}
	if got := sk1.PublicKey().String(); got != pk1Text || pk1.String() != pk1Text {
		t.Errorf("public key = %q / %q, want %q", got, pk1.String(), pk1Text)
	}
	n, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	fp := n.Fingerprint()
	if got := Sign(sk1, fp); got != sig1 {
		t.Errorf("Sign(larder-test-1) = %s\nwant the signature Nix wrote %s", got, sig1)
	}
	if got := Sign(sk2, fp); got != sig2 {
		t.Errorf("Sign(larder-test-2) = %s\nwant the signature Nix wrote %s", got, sig2)
	}
	for _, c := range []struct {
		keys []PublicKey
		sig  string
		want bool
	}{
		{[]PublicKey{pk1}, sig1, true},
		{[]PublicKey{pk2, pk1}, sig1, true},
		{[]PublicKey{pk2}, sig1, false},
		{nil, sig1, false},
		{[]PublicKey{pk2}, sig2, true},
	} {
		if got := Verify(c.keys, fp, c.sig); got != c.want {
			t.Errorf("Verify(%v, %q) = %v, want %v", c.keys, c.sig, got, c.want)
		}
	}
	if !n.Verify([]PublicKey{pk2}) || n.Verify(nil) {
		t.Errorf("NarInfo.Verify gives wrong answers")
	}
	signed, err := os.ReadFile("testdata/fixed-xz-signed.narinfo")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(signed)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Verify([]PublicKey{pk1}) || len(m.Sigs) != 1 || Sign(sk1, m.Fingerprint()) != m.Sigs[0] {
		t.Errorf("fixed-xz-signed.narinfo: our signature differs from %v", m.Sigs)
	}
}

func TestVerifyRejectsTampering(t *testing.T) {
	_, pk1, _ := readKeys(t, "larder-test-1")
	n, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	fp := n.Fingerprint()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig1, "larder-test-1:"))
	if err != nil {
		t.Fatal(err)
	}
	raw[0] ^= 1
	flipped := "larder-test-1:" + base64.StdEncoding.EncodeToString(raw)
	keys := []PublicKey{pk1}
	for name, c := range map[string]struct{ fp, sig string }{
		"other size":        {strings.Replace(fp, ";240;", ";241;", 1), sig1},
		"other references":  {strings.TrimSuffix(fp, ",/nix/store/"+outBase), sig1},
		"flipped bit":       {fp, flipped},
		"renamed signature": {fp, "larder-test-2" + strings.TrimPrefix(sig1, "larder-test-1")},
		"bad base64":        {fp, "larder-test-1:%%%"},
		"empty":             {fp, ""},
		"no name":           {fp, strings.TrimPrefix(sig1, "larder-test-1")},
		"short":             {fp, "larder-test-1:" + base64.StdEncoding.EncodeToString(raw[:63])},
	} {
		if Verify(keys, c.fp, c.sig) {
			t.Errorf("%s: Verify accepted a bad signature", name)
		}
	}
	n.NarSize++
	if n.Verify(keys) {
		t.Errorf("NarInfo.Verify accepted signatures of a changed narinfo")
	}
	if Verify([]PublicKey{{}}, fp, sig1) {
		t.Errorf("Verify accepted a signature with the zero PublicKey")
	}
}

func TestNarInfoSign(t *testing.T) {
	sk1, _, _ := readKeys(t, "larder-test-1")
	sk2, _, _ := readKeys(t, "larder-test-2")
	n, err := Parse([]byte(replaceLine("Sig", "")))
	if err != nil {
		t.Fatal(err)
	}
	n.Sign(sk2)
	n.Sign(sk1)
	n.Sign(sk1)
	if !slices.Equal(n.Sigs, []string{sig1, sig2}) {
		t.Fatalf("Sigs = %q, want %q", n.Sigs, []string{sig1, sig2})
	}
	if got := n.String(); got != sample {
		t.Errorf("signed narinfo =\n%s\nwant\n%s", got, sample)
	}
}

func TestGenerateKey(t *testing.T) {
	secret, public, err := GenerateKey("cache.example.org-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{secret, public} {
		if !strings.HasPrefix(s, "cache.example.org-1:") || strings.ContainsAny(s, "\n ") {
			t.Errorf("key %q is not in Nix's format", s)
		}
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "cache.example.org-1:"))
	if err != nil || len(data) != ed25519.PrivateKeySize {
		t.Fatalf("secret key data = %d bytes, %v; want %d", len(data), err, ed25519.PrivateKeySize)
	}
	sk, err := ParseSecretKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	pk := mustPublic(t, public)
	if sk.PublicKey().String() != public {
		t.Errorf("public key of the secret key = %s, want %s", sk.PublicKey(), public)
	}
	sig := Sign(sk, "1;x")
	if !Verify([]PublicKey{pk}, "1;x", sig) || Verify([]PublicKey{pk}, "1;y", sig) {
		t.Errorf("signature %s does not verify correctly", sig)
	}
	if s := sk.String(); strings.Contains(s, secret[len("cache.example.org-1:"):]) || s != "cache.example.org-1:<redacted>" {
		t.Errorf("SecretKey.String() = %q, want the key data redacted", s)
	}
	other, _, err := GenerateKey("cache.example.org-1")
	if err != nil || other == secret {
		t.Errorf("two generated keys are equal or failed: %v", err)
	}
}

func TestKeyNames(t *testing.T) {
	for _, name := range []string{"cache.example.org-1", "a", "test-1", "ключ"} {
		if err := ValidateKeyName(name); err != nil {
			t.Errorf("ValidateKeyName(%q) = %v", name, err)
		}
	}
	for name, want := range map[string]string{
		"":        "key name is empty",
		"a:b":     "contains ':'",
		"a b":     "contains white space",
		"a\tb":    "contains white space",
		"a\nb":    "contains white space",
		"a\u00a0": "contains white space",
		"a\x00b":  "control",
		"a\xffb":  "invalid character",
	} {
		err := ValidateKeyName(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateKeyName(%q) = %v, want an error containing %q", name, err, want)
		}
		if _, _, err := GenerateKey(name); err == nil {
			t.Errorf("GenerateKey(%q) succeeded", name)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	secret, public, err := GenerateKey("k")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "k:"))
	other := slices.Clone(data)
	other[40] ^= 1
	mismatched := "k:" + base64.StdEncoding.EncodeToString(other)
	for s, want := range map[string]string{
		"":                  "invalid secret key",
		"k":                 "invalid secret key",
		"k:":                "data is missing",
		":" + secret[2:]:    "name is missing",
		"k:***":             "data is corrupt",
		public:              "data is not the right size",
		mismatched:          "public half does not match its seed",
		"a b:" + secret[2:]: "contains white space",
	} {
		_, err := ParseSecretKey(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSecretKey(%q) = %v, want an error containing %q", s, err, want)
		}
	}
	if _, err := ParseSecretKey("  " + secret + "\n"); err != nil {
		t.Errorf("ParseSecretKey with surrounding white space: %v", err)
	}
}
