package sigv4

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"io"
	"net/http"
	"strconv"
)

var errNoProgress = errors.New("sigv4: the request body returned no data repeatedly")

// payload is Request.Body: it passes the decoded payload through, feeds every
// hash that has to be checked, and withholds the last byte it has read until
// the source has ended and every check has passed. A failed check is
// returned instead of that byte, so no consumer ever sees the whole payload
// succeed when it should not.
type payload struct {
	src      io.Reader
	closer   io.Closer
	declared int64 // payload length the request declares, or -1
	n        int64 // payload bytes read from src

	hashes   []hash.Hash
	sha      hash.Hash // signed payload: SHA-256 to compare with wantSHA
	wantSHA  []byte
	md5      hash.Hash
	check    hash.Hash // the flexible checksum
	plan     checksumPlan
	trailers func() map[string]string // aws-chunked trailers, at the end

	held    byte // the withheld byte
	holding bool
	small   [512]byte // staging for reads of fewer than 2 bytes
	queued  []byte    // released bytes of small not yet delivered
	err     error
	eof     bool
	sums    map[string]string
}

// Read implements io.Reader.
func (b *payload) Read(p []byte) (int, error) {
	if len(b.queued) > 0 {
		n := copy(p, b.queued)
		b.queued = b.queued[n:]
		return n, nil
	}
	switch {
	case b.err != nil:
		return 0, b.err
	case b.eof:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	case len(p) == 1:
		n, err := b.fill(b.small[:])
		b.queued = b.small[:n]
		m := copy(p, b.queued)
		b.queued = b.queued[m:]
		if m > 0 {
			return m, nil
		}
		return 0, err
	}
	return b.fill(p)
}

// fill reads into p (at least 2 bytes long), keeping the last byte back.
func (b *payload) fill(p []byte) (int, error) {
	for tries := 0; ; tries++ {
		k := 0
		if b.holding {
			p[0], k = b.held, 1
		}
		n, err := b.src.Read(p[k:])
		if n > 0 {
			b.consume(p[k : k+n])
		}
		total := k + n
		switch {
		case b.declared >= 0 && b.n > b.declared:
			b.err = errInvalidRequest("The request body is longer than its declared length of " +
				strconv.FormatInt(b.declared, 10) + " bytes.")
			return 0, b.err
		case err == io.EOF:
			if ferr := b.finish(); ferr != nil {
				b.err = ferr
				return 0, ferr
			}
			b.eof, b.holding = true, false
			if total == 0 {
				return 0, io.EOF
			}
			return total, nil
		case err != nil:
			b.err = errBodyRead(err)
			return 0, b.err
		case total >= 2:
			b.held, b.holding = p[total-1], true
			return total - 1, nil
		case total == 1:
			b.held, b.holding = p[0], true
		}
		if tries >= 100 {
			b.err = errBodyRead(errNoProgress)
			return 0, b.err
		}
	}
}

func (b *payload) consume(data []byte) {
	b.n += int64(len(data))
	for _, h := range b.hashes {
		h.Write(data)
	}
}

// finish runs the end-of-payload checks, in the order S3 reports them.
func (b *payload) finish() *Error {
	if b.declared >= 0 && b.n < b.declared {
		return errIncomplete("got " + strconv.FormatInt(b.n, 10) + " of " + strconv.FormatInt(b.declared, 10) + " bytes")
	}
	if b.sha != nil && !bytes.Equal(b.sha.Sum(nil), b.wantSHA) {
		return newError("XAmzContentSHA256Mismatch", http.StatusBadRequest,
			"The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	if alg := b.plan.alg; alg != nil {
		got := b.check.Sum(nil)
		want := b.plan.want
		if b.plan.inTrailer {
			var ok bool
			if want, ok = alg.decode(b.trailers()[alg.header]); !ok {
				return alg.errInvalid()
			}
		}
		if want != nil && !bytes.Equal(got, want) {
			return alg.errMismatch()
		}
		b.sums = map[string]string{alg.header: base64.StdEncoding.EncodeToString(got)}
	}
	if b.md5 != nil && !bytes.Equal(b.md5.Sum(nil), b.plan.md5) {
		return newError("BadDigest", http.StatusBadRequest, "The Content-MD5 you specified did not match what we received.")
	}
	return nil
}

// Close closes the request body.
func (b *payload) Close() error { return b.closer.Close() }

// checksums returns the flexible checksum computed over the payload, once
// Body has reached io.EOF.
func (b *payload) checksums() map[string]string {
	if !b.eof {
		return nil
	}
	out := make(map[string]string, len(b.sums))
	for k, v := range b.sums {
		out[k] = v
	}
	return out
}

// setHashes arranges for the checks of plan and, for a signed payload, the
// SHA-256 wantSHA (nil when the payload is not signed).
func (b *payload) setHashes(plan checksumPlan, wantSHA []byte) {
	b.plan = plan
	if wantSHA != nil {
		b.sha, b.wantSHA = sha256.New(), wantSHA
		b.hashes = append(b.hashes, b.sha)
	}
	if plan.alg != nil {
		b.check = plan.alg.new()
		b.hashes = append(b.hashes, b.check)
	}
	if plan.md5 != nil {
		b.md5 = md5.New()
		b.hashes = append(b.hashes, b.md5)
	}
}
