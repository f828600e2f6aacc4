package sigv4

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"net/http"
	"strings"

	"github.com/minio/crc64nvme"
)

// checksumAlgorithm is one of S3's flexible checksum algorithms.
type checksumAlgorithm struct {
	name   string // as in x-amz-sdk-checksum-algorithm and BadDigest messages
	header string // the x-amz-checksum-* header or trailer
	size   int
	new    func() hash.Hash
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var checksumAlgorithms = []*checksumAlgorithm{
	{"CRC32", "x-amz-checksum-crc32", crc32.Size, func() hash.Hash { return crc32.NewIEEE() }},
	{"CRC32C", "x-amz-checksum-crc32c", crc32.Size, func() hash.Hash { return crc32.New(castagnoli) }},
	{"CRC64NVME", "x-amz-checksum-crc64nvme", crc64nvme.Size, func() hash.Hash { return crc64nvme.New() }},
	{"SHA1", "x-amz-checksum-sha1", sha1.Size, sha1.New},
	{"SHA256", "x-amz-checksum-sha256", sha256.Size, sha256.New},
}

func checksumByName(name string) *checksumAlgorithm {
	for _, a := range checksumAlgorithms {
		if strings.EqualFold(a.name, name) {
			return a
		}
	}
	return nil
}

func checksumByHeader(name string) *checksumAlgorithm {
	for _, a := range checksumAlgorithms {
		if strings.EqualFold(a.header, name) {
			return a
		}
	}
	return nil
}

// decode parses a base64 checksum value, reporting whether it is well formed.
func (a *checksumAlgorithm) decode(v string) ([]byte, bool) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	return b, err == nil && len(b) == a.size
}

func (a *checksumAlgorithm) errInvalid() *Error {
	return errInvalidRequest("Value for " + a.header + " header is invalid.")
}

func (a *checksumAlgorithm) errMismatch() *Error {
	return newError("BadDigest", http.StatusBadRequest,
		"The "+a.name+" you specified did not match the calculated checksum.")
}

// checksumPlan is what the request asks to be checked over its payload.
type checksumPlan struct {
	alg       *checksumAlgorithm // nil when no checksum was asked for
	want      []byte             // from the header; nil when it comes in the trailer (or not at all)
	inTrailer bool
	md5       []byte // Content-MD5, if sent
}

// planChecksums reads the checksum headers of r. trailerNames are the
// lower-cased names x-amz-trailer declares.
func planChecksums(r *http.Request, trailerNames []string) (checksumPlan, *Error) {
	var p checksumPlan
	for _, a := range checksumAlgorithms {
		v := r.Header.Get(a.header)
		if v == "" {
			continue
		}
		if p.alg != nil {
			return p, errInvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
		}
		want, ok := a.decode(v)
		if !ok {
			return p, a.errInvalid()
		}
		p.alg, p.want = a, want
	}
	for _, name := range trailerNames {
		if !strings.HasPrefix(name, "x-amz-checksum-") {
			continue
		}
		a := checksumByHeader(name)
		if a == nil {
			return p, errInvalidRequest("The value specified in the x-amz-trailer header is not supported")
		}
		if p.alg != nil {
			return p, errInvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
		}
		p.alg, p.inTrailer = a, true
	}
	if err := p.checkNamed(r); err != nil {
		return p, err
	}
	if v, ok := r.Header["Content-Md5"]; ok {
		sum, err := base64.StdEncoding.DecodeString(strings.TrimSpace(strings.Join(v, "")))
		if err != nil || len(sum) != md5.Size {
			return p, newError("InvalidDigest", http.StatusBadRequest, "The Content-MD5 you specified is not valid.")
		}
		p.md5 = sum
	}
	return p, nil
}

// checkNamed reconciles x-amz-sdk-checksum-algorithm / x-amz-checksum-algorithm
// with the checksum sent, or picks the algorithm when none was sent.
func (p *checksumPlan) checkNamed(r *http.Request) *Error {
	for _, h := range []string{"X-Amz-Sdk-Checksum-Algorithm", "X-Amz-Checksum-Algorithm"} {
		name := strings.TrimSpace(r.Header.Get(h))
		if name == "" {
			continue
		}
		a := checksumByName(name)
		switch {
		case a == nil:
			return errInvalidRequest("Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]")
		case p.alg == nil:
			p.alg = a
		case p.alg != a:
			return errInvalidRequest("Value for " + strings.ToLower(h) + " header is invalid.")
		}
	}
	return nil
}
