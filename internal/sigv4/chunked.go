package sigv4

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"math"
	"strconv"
	"strings"
)

const (
	maxChunkLine       = 4096     // a chunk header: hex size and extensions
	maxTrailerBytes    = 16 << 10 // all trailer lines together
	chunkedBufferSize  = 32 << 10 // read buffer of the chunked decoder
	trailerSignatureID = "x-amz-trailer-signature"
)

// chunkSigner chains the signatures of an aws-chunked stream from the seed
// signature of the request.
type chunkSigner struct {
	key     []byte
	amzDate string
	scope   string
	prev    []byte
	mac     hash.Hash // HMAC-SHA256 with key, made on first use
	buf     []byte    // the string to sign
}

// chunk returns the signature of the next chunk, whose data has the given
// hex SHA-256.
func (s *chunkSigner) chunk(dataHash string) []byte {
	return s.sign("AWS4-HMAC-SHA256-PAYLOAD", emptySHA256, dataHash)
}

// trailer returns the signature of trailing headers whose canonical form has
// the given hex SHA-256.
func (s *chunkSigner) trailer(trailerHash string) []byte {
	return s.sign("AWS4-HMAC-SHA256-TRAILER", trailerHash)
}

// sign signs algorithm, date, scope, the previous signature and lines.
func (s *chunkSigner) sign(algorithm string, lines ...string) []byte {
	if s.mac == nil {
		s.mac = hmac.New(sha256.New, s.key)
	}
	b := append(s.buf[:0], algorithm...)
	b = append(append(b, '\n'), s.amzDate...)
	b = append(append(b, '\n'), s.scope...)
	b = hex.AppendEncode(append(b, '\n'), s.prev)
	for _, l := range lines {
		b = append(append(b, '\n'), l...)
	}
	s.buf = b
	s.mac.Reset()
	s.mac.Write(b)
	return s.mac.Sum(nil)
}

// chunkedReader decodes an aws-chunked body: "hex-size[;chunk-signature=sig]
// CRLF data CRLF" chunks, a final zero-size chunk, then trailing header lines
// and an empty line. With a signer every chunk signature is checked, and with
// signedTrailer so is the x-amz-trailer-signature. It returns io.EOF only
// after the whole stream, trailers included, has been read and checked.
type chunkedReader struct {
	br            *bufio.Reader
	signer        *chunkSigner // nil: the chunks carry no signatures
	signedTrailer bool
	trailerNames  []string // declared by x-amz-trailer, lower-case
	declared      int64    // x-amz-decoded-content-length, or -1
	decoded       int64
	left          int64 // data bytes left in the current chunk
	inChunk       bool
	want          []byte    // the signature the current chunk declared
	h             hash.Hash // SHA-256 of the current chunk's data
	sum           []byte
	trailers      map[string]string
	err           error
	done          bool
}

func newChunkedReader(r io.Reader, signer *chunkSigner, signedTrailer bool, trailerNames []string, declared int64) *chunkedReader {
	c := &chunkedReader{
		br:            bufio.NewReaderSize(r, chunkedBufferSize),
		signer:        signer,
		signedTrailer: signedTrailer,
		trailerNames:  trailerNames,
		declared:      declared,
	}
	if signer != nil {
		c.h = sha256.New()
	}
	return c
}

// Read implements io.Reader.
func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.done {
		return 0, io.EOF
	}
	for c.left == 0 {
		if err := c.advance(); err != nil {
			if err == io.EOF {
				c.done = true
				return 0, io.EOF
			}
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	if n > 0 {
		if c.h != nil {
			c.h.Write(p[:n])
		}
		c.left -= int64(n)
		c.decoded += int64(n)
	}
	switch {
	case err == io.EOF && c.left > 0:
		c.err = errIncomplete("the aws-chunked stream ended inside a chunk")
	case err != nil && err != io.EOF:
		c.err = errBodyRead(err)
	}
	return n, c.err
}

// readLine reads one line, without its "\n" or "\r\n". It returns io.EOF only
// at a clean end of the stream.
func (c *chunkedReader) readLine(limit int) (string, error) {
	line, err := c.br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull || len(line) > limit:
		return "", errChunked("a line is too long")
	case err == io.EOF && len(line) == 0:
		return "", io.EOF
	case err == io.EOF:
		return "", errIncomplete("the aws-chunked stream ended inside a line")
	case err != nil:
		return "", errBodyRead(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return string(line), nil
}

// advance finishes the current chunk and starts the next one; at the final
// chunk it reads the trailers and returns io.EOF if all is well.
func (c *chunkedReader) advance() error {
	if c.inChunk {
		if err := c.endChunk(); err != nil {
			return err
		}
	}
	line, err := c.readLine(maxChunkLine)
	if err == io.EOF {
		return errIncomplete("the aws-chunked stream ended before its final chunk")
	}
	if err != nil {
		return err
	}
	size, sig, err := c.parseHeader(line)
	if err != nil {
		return err
	}
	if size == 0 {
		return c.finish(sig)
	}
	if size > math.MaxInt64-c.decoded || (c.declared >= 0 && c.decoded+size > c.declared) {
		return errChunked("the chunks carry more than x-amz-decoded-content-length bytes")
	}
	c.left, c.inChunk, c.want = size, true, sig
	if c.h != nil {
		c.h.Reset()
	}
	return nil
}

// parseHeader parses "hex-size[;name=value…]".
func (c *chunkedReader) parseHeader(line string) (size int64, sig []byte, err error) {
	sizeText, ext, _ := strings.Cut(line, ";")
	if sizeText == "" || len(sizeText) > 16 {
		return 0, nil, errChunked("bad chunk size")
	}
	size, perr := strconv.ParseInt(sizeText, 16, 64)
	if perr != nil || size < 0 {
		return 0, nil, errChunked("bad chunk size")
	}
	if c.signer == nil {
		return size, nil, nil
	}
	for _, param := range strings.Split(ext, ";") {
		name, value, _ := strings.Cut(param, "=")
		if strings.TrimSpace(name) != "chunk-signature" {
			continue
		}
		sig, derr := hex.DecodeString(strings.TrimSpace(value))
		if derr != nil || len(sig) != sha256.Size {
			break
		}
		return size, sig, nil
	}
	return 0, nil, chunkSignatureError("a chunk has no valid chunk-signature")
}

func chunkSignatureError(detail string) *Error {
	e := errSignature()
	e.Message = msgChunkSig + " (" + detail + ")"
	return e
}

// endChunk checks the signature of the chunk just read and its closing CRLF.
func (c *chunkedReader) endChunk() error {
	c.inChunk = false
	if c.signer != nil {
		c.sum = c.h.Sum(c.sum[:0])
		got := c.signer.chunk(hex.EncodeToString(c.sum))
		if !hmac.Equal(got, c.want) {
			return chunkSignatureError("chunk ending at payload byte " + strconv.FormatInt(c.decoded, 10))
		}
		c.signer.prev = got
	}
	line, err := c.readLine(maxChunkLine)
	switch {
	case err == io.EOF:
		return errIncomplete("the aws-chunked stream ended after chunk data")
	case err != nil:
		return err
	case line != "":
		return errChunked("chunk data is longer than its size or not followed by CRLF")
	}
	return nil
}

// finish checks the final chunk's signature and reads the trailers.
func (c *chunkedReader) finish(sig []byte) error {
	if c.signer != nil {
		got := c.signer.chunk(emptySHA256)
		if !hmac.Equal(got, sig) {
			return chunkSignatureError("final chunk")
		}
		c.signer.prev = got
	}
	if err := c.readTrailers(); err != nil {
		return err
	}
	if c.declared >= 0 && c.decoded != c.declared {
		return errIncomplete("the chunks carry " + strconv.FormatInt(c.decoded, 10) +
			" bytes, x-amz-decoded-content-length says " + strconv.FormatInt(c.declared, 10))
	}
	return io.EOF
}

// readTrailers reads "name:value" lines to the end of the body. Empty lines
// are skipped: minio-go ends each trailer with "\n" and then sends CRLFs.
func (c *chunkedReader) readTrailers() error {
	var canonical strings.Builder
	var sigText string
	c.trailers = map[string]string{}
	for total := 0; ; {
		line, err := c.readLine(maxTrailerBytes)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if total += len(line) + 2; total > maxTrailerBytes {
			return errTrailer("the trailer is too long")
		}
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.ToLower(strings.TrimSpace(name)), strings.TrimSpace(value)
		switch {
		case !ok || name == "":
			return errTrailer("a trailer line is not name:value")
		case sigText != "":
			return errTrailer("a trailer follows " + trailerSignatureID)
		case name == trailerSignatureID && !c.signedTrailer:
			return errTrailer("a trailer signature in a stream without signed trailers")
		case name == trailerSignatureID:
			sigText = value
			continue
		case !c.declaredTrailer(name):
			return errTrailer("trailer " + name + " is not declared in x-amz-trailer")
		}
		if _, dup := c.trailers[name]; dup {
			return errTrailer("trailer " + name + " is repeated")
		}
		c.trailers[name] = value
		canonical.WriteString(name + ":" + value + "\n")
	}
	for _, name := range c.trailerNames {
		if _, ok := c.trailers[name]; !ok {
			return errTrailer("trailer " + name + " declared in x-amz-trailer is missing")
		}
	}
	if c.signedTrailer {
		return c.checkTrailerSignature(canonical.String(), sigText)
	}
	return nil
}

func (c *chunkedReader) declaredTrailer(name string) bool {
	for _, n := range c.trailerNames {
		if n == name {
			return true
		}
	}
	return false
}

func (c *chunkedReader) checkTrailerSignature(canonical, sigText string) error {
	sig, err := hex.DecodeString(sigText)
	if sigText == "" || err != nil || len(sig) != sha256.Size {
		e := errSignature()
		e.Message = msgTrailerSig + " (no valid " + trailerSignatureID + ")"
		return e
	}
	got := c.signer.trailer(sha256Hex(canonical))
	if !hmac.Equal(got, sig) {
		e := errSignature()
		e.Message = msgTrailerSig
		return e
	}
	c.signer.prev = got
	return nil
}

// trailerMap returns the trailers read, once the stream has ended.
func (c *chunkedReader) trailerMap() map[string]string { return c.trailers }
