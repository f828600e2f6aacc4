package narinfo

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nix-community/go-nix/pkg/storepath"
)

// Bytes renders the narinfo exactly as Nix 2.8 writes it (nar-info.cc,
// NarInfo::to_string): the fields in the order StorePath, URL, Compression,
// FileHash, FileSize, NarHash, NarSize, References, Deriver, System, Sig,
// CA, hashes as "sha256:<nix32>", References always present (as
// "References: " when empty) and sorted, Sig lines sorted and unique,
// optional fields left out when empty, and a final newline. FileHash and
// FileSize, which Nix always has, are left out when FileHash is zero
// (FileSize is still written if it is not 0).
//
// Bytes does not check the fields; use Validate for a NarInfo not made by
// Parse.
func (n *NarInfo) Bytes() []byte {
	var b strings.Builder
	field := func(key, value string) {
		b.WriteString(key)
		b.WriteString(": ")
		b.WriteString(value)
		b.WriteByte('\n')
	}
	field("StorePath", n.StorePath)
	field("URL", n.URL)
	field("Compression", n.Compression)
	if !n.FileHash.IsZero() {
		field("FileHash", n.FileHash.String())
	}
	if !n.FileHash.IsZero() || n.FileSize != 0 {
		field("FileSize", strconv.FormatUint(n.FileSize, 10))
	}
	field("NarHash", n.NarHash.String())
	field("NarSize", strconv.FormatUint(n.NarSize, 10))
	field("References", strings.Join(sortedUnique(slices.Clone(n.References)), " "))
	if n.Deriver != "" {
		field("Deriver", n.Deriver)
	}
	if n.System != "" {
		field("System", n.System)
	}
	for _, sig := range sortedUnique(slices.Clone(n.Sigs)) {
		field("Sig", sig)
	}
	if n.CA != "" {
		field("CA", n.CA)
	}
	return []byte(b.String())
}

// String returns the rendering of Bytes as a string.
func (n *NarInfo) String() string {
	return string(n.Bytes())
}

// HashPart returns the 32-character hash part of the store path, which names
// the narinfo in a cache ("<hash part>.narinfo"), or "" if the store path is
// too short to have one.
func (n *NarInfo) HashPart() string {
	base, ok := strings.CutPrefix(n.StorePath, storepath.StoreDir+"/")
	if !ok || len(base) < hashPartLen {
		return ""
	}
	return base[:hashPartLen]
}

// Fingerprint returns the string that Nix signs for the narinfo; see the
// function Fingerprint.
func (n *NarInfo) Fingerprint() string {
	return Fingerprint(n.StorePath, n.NarHash, n.NarSize, n.References)
}

// Fingerprint returns the string that Nix signs for a store path
// (ValidPathInfo::fingerprint): "1;<store path>;sha256:<nix32 NAR
// hash>;<NAR size>;<references>", where references are the full store paths
// of refs (base names), sorted, without duplicates and joined by commas.
func Fingerprint(storePath string, narHash Hash, narSize uint64, refs []string) string {
	full := make([]string, len(refs))
	for i, r := range refs {
		full[i] = storepath.StoreDir + "/" + r
	}
	return "1;" + storePath + ";" + narHash.String() + ";" +
		strconv.FormatUint(narSize, 10) + ";" + strings.Join(sortedUnique(full), ",")
}

// Validate checks a NarInfo that was not made by Parse against the rules
// Parse applies. It does not require References and Sigs to be sorted,
// since Bytes sorts them. Every error wraps ErrInvalid.
func (n *NarInfo) Validate() error {
	if err := n.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// validate does the work of Validate.
func (n *NarInfo) validate() error {
	if err := checkStorePath(n.StorePath); err != nil {
		return fmt.Errorf("StorePath: %w", err)
	}
	if err := checkURL(n.URL); err != nil {
		return err
	}
	if err := checkCompression(n.Compression); err != nil {
		return err
	}
	if n.NarHash.IsZero() {
		return errors.New("NarHash is missing")
	}
	if n.NarSize == 0 {
		return errors.New("NarSize is 0")
	}
	if err := checkReferences(n.References); err != nil {
		return fmt.Errorf("References: %w", err)
	}
	if len("References: "+strings.Join(n.References, " ")) > MaxReferencesLineLen {
		return fmt.Errorf("References line is longer than %d bytes", MaxReferencesLineLen)
	}
	if n.Deriver != "" {
		if err := checkDeriver(n.Deriver); err != nil {
			return fmt.Errorf("Deriver: %w", err)
		}
	}
	return n.validateText()
}

// validateText checks the free-form fields, signatures and CA.
func (n *NarInfo) validateText() error {
	if err := checkText(n.System); err != nil {
		return fmt.Errorf("System: %w", err)
	}
	if len("System: "+n.System) > MaxLineLen {
		return fmt.Errorf("System is longer than %d bytes", MaxLineLen)
	}
	if err := checkText(n.URL); err != nil || len("URL: "+n.URL) > MaxLineLen {
		return fmt.Errorf("URL %s has control characters or is too long", quote(n.URL))
	}
	for _, s := range n.Sigs {
		if sig, err := parseSig(s); err != nil || sig != s {
			return fmt.Errorf("Sig %s is not a canonical signature", quote(s))
		}
	}
	if n.CA != "" {
		if ca, err := parseCA(n.CA); err != nil || ca != n.CA {
			return fmt.Errorf("CA %s is not a canonical content address", quote(n.CA))
		}
	}
	return nil
}

// checkText checks that s is valid UTF-8 without control characters, so
// that it can be written as the value of a narinfo line.
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("invalid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}
