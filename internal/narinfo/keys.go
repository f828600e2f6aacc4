package narinfo

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/nix-community/go-nix/pkg/narinfo/signature"
)

// ValidateKeyName checks the name of a signing key: it must be non-empty
// and may not contain ':', white space or control characters. Nix names
// keys after the cache, with a generation number, such as
// "cache.example.org-1".
func ValidateKeyName(name string) error {
	if name == "" {
		return errors.New("key name is empty")
	}
	for _, r := range name {
		switch {
		case r == ':':
			return fmt.Errorf("key name %s contains ':'", quote(name))
		case unicode.IsSpace(r):
			return fmt.Errorf("key name %s contains white space", quote(name))
		case unicode.IsControl(r) || r == unicode.ReplacementChar:
			return fmt.Errorf("key name %s contains a control or invalid character", quote(name))
		}
	}
	return nil
}

// SecretKey is a named ed25519 key that signs store paths.
type SecretKey struct {
	name string
	key  ed25519.PrivateKey
}

// PublicKey is a named ed25519 key that checks signatures of store paths.
type PublicKey struct {
	name string
	key  ed25519.PublicKey
}

// GenerateKey generates a signing key pair named name and returns both keys
// in Nix's text formats, as nix-store --generate-binary-cache-key writes
// them: "<name>:<base64 of 64 bytes>" for the secret key (seed, then public
// key) and "<name>:<base64 of 32 bytes>" for the public key, without a
// trailing newline.
func GenerateKey(name string) (secret, public string, err error) {
	if err := ValidateKeyName(name); err != nil {
		return "", "", err
	}
	sk, pk, err := signature.GenerateKeypair(name, rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generating key %s: %w", quote(name), err)
	}
	return sk.String(), pk.String(), nil
}

// ParseSecretKey parses a secret key in Nix's text format,
// "<name>:<base64 of 64 bytes>". Leading and trailing white space, such as
// the final newline of a key file, is ignored, as Nix ignores it. The key's
// public half must match its seed.
func ParseSecretKey(s string) (SecretKey, error) {
	s = strings.TrimSpace(s)
	if _, err := signature.LoadSecretKey(s); err != nil {
		return SecretKey{}, fmt.Errorf("invalid secret key: %w", err)
	}
	name, data, _ := strings.Cut(s, ":")
	if err := ValidateKeyName(name); err != nil {
		return SecretKey{}, fmt.Errorf("invalid secret key: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) != ed25519.PrivateKeySize {
		return SecretKey{}, errors.New("invalid secret key: key data is not 64 bytes of base64")
	}
	key := ed25519.PrivateKey(raw)
	derived := ed25519.NewKeyFromSeed(key.Seed()).Public().(ed25519.PublicKey)
	if subtle.ConstantTimeCompare(derived, key[ed25519.SeedSize:]) != 1 {
		return SecretKey{}, fmt.Errorf("invalid secret key %s: its public half does not match its seed", quote(name))
	}
	return SecretKey{name: name, key: key}, nil
}

// ParsePublicKey parses a public key in Nix's text format,
// "<name>:<base64 of 32 bytes>", as trusted-public-keys lists them.
// Leading and trailing white space is ignored.
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	name, data, ok := strings.Cut(s, ":")
	if !ok {
		return PublicKey{}, fmt.Errorf("invalid public key %s: want <name>:<base64 of 32 bytes>", quote(s))
	}
	if err := ValidateKeyName(name); err != nil {
		return PublicKey{}, fmt.Errorf("invalid public key: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(data)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("invalid public key %s: key data is not 32 bytes of base64", quote(name))
	}
	return PublicKey{name: name, key: ed25519.PublicKey(raw)}, nil
}

// Name returns the name of the key.
func (k SecretKey) Name() string {
	return k.name
}

// PublicKey returns the public key of k.
func (k SecretKey) PublicKey() PublicKey {
	return PublicKey{name: k.name, key: k.key.Public().(ed25519.PublicKey)}
}

// String returns the key name with the key data redacted, so that a
// secret key can be logged safely.
func (k SecretKey) String() string {
	return k.name + ":<redacted>"
}

// Name returns the name of the key.
func (k PublicKey) Name() string {
	return k.name
}

// String returns the key in Nix's text format.
func (k PublicKey) String() string {
	return k.name + ":" + base64.StdEncoding.EncodeToString(k.key)
}

// Sign signs a fingerprint and returns the signature as it appears after
// "Sig: " in a narinfo, "<key name>:<base64 of 64 bytes>". Ed25519
// signatures are deterministic, so Sign returns the same signature as Nix.
// k must come from ParseSecretKey; Sign panics on the zero SecretKey.
func Sign(k SecretKey, fingerprint string) string {
	return k.name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.key, []byte(fingerprint)))
}

// Verify reports whether sig, "<key name>:<base64>", is a valid signature
// of fingerprint by one of keys with the same name. A malformed signature
// is not valid.
func Verify(keys []PublicKey, fingerprint, sig string) bool {
	s, err := signature.ParseSignature(sig)
	if err != nil {
		return false
	}
	for _, k := range keys {
		if k.name == s.Name && len(k.key) == ed25519.PublicKeySize && ed25519.Verify(k.key, []byte(fingerprint), s.Data) {
			return true
		}
	}
	return false
}

// parseSig checks a signature from a Sig line and returns its canonical
// form.
func parseSig(s string) (string, error) {
	sig, err := signature.ParseSignature(s)
	if err != nil {
		return "", err
	}
	if err := ValidateKeyName(sig.Name); err != nil {
		return "", fmt.Errorf("signature is corrupt: %w", err)
	}
	return sig.String(), nil
}

// Sign adds the signature of k to the narinfo, keeping Sigs sorted and
// unique.
func (n *NarInfo) Sign(k SecretKey) {
	n.Sigs = sortedUnique(append(n.Sigs, Sign(k, n.Fingerprint())))
}

// Verify reports whether at least one signature of the narinfo is valid for
// one of keys.
func (n *NarInfo) Verify(keys []PublicKey) bool {
	fp := n.Fingerprint()
	for _, sig := range n.Sigs {
		if Verify(keys, fp, sig) {
			return true
		}
	}
	return false
}
