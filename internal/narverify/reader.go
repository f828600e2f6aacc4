package narverify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"sync/atomic"

	"github.com/larder-cache/larder/internal/compression"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// Reader verifies an upload while passing it through. It yields the bytes
// of the underlying reader unchanged; meanwhile it hashes and counts them
// and, in a goroutine of its own, decompresses them and checks the NAR.
//
// The Read that would deliver the upload's final bytes (the one reaching
// Options.Size) first completes the verification and, if anything is
// wrong, returns an *Error instead of those bytes. So a consumer that reads
// exactly Size bytes and stops never receives a complete stream of bad
// data. When the size is unknown the end is only known when the
// underlying reader reports io.EOF, which may come after the last bytes
// have been passed on; then the *Error takes the place of io.EOF. A
// verified upload ends with io.EOF after its last bytes; after a failure
// every Read returns the same *Error. Limits are enforced as the data
// arrives, so a decompression bomb is stopped early.
//
// A Reader is not safe for concurrent use. A Reader read to its end (or to
// an error) has released everything; otherwise call Close, for example
// deferred, to stop its goroutine.
type Reader struct {
	src      io.Reader
	opts     Options
	fileSHA  hash.Hash
	fileMD5  hash.Hash  // if opts.MD5
	fileHash *asyncHash // feeds both, from start
	n        int64      // bytes read from src and fed to the verifier
	sawEOF   bool       // src has reported io.EOF
	started  bool
	pw       *io.PipeWriter // feeds the verifier; nil when it is not running
	done     chan struct{}  // closed when the verifier has returned
	ver      *verifier
	err      error // terminal state: io.EOF after success
	res      Result
	probe    [1]byte
}

// NewReader returns a Reader verifying the upload read from r. Nothing is
// read, and no goroutine started, before the first Read.
func NewReader(r io.Reader, opts Options) *Reader {
	return &Reader{src: r, opts: opts}
}

// Read reads the upload's next bytes; see Reader.
func (v *Reader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if !v.started {
		if err := v.start(); err != nil {
			return 0, v.fail(err)
		}
	}
	if v.opts.Size >= 0 {
		left := v.opts.Size - v.n
		if left == 0 {
			return v.complete(0)
		}
		p = p[:min(int64(len(p)), left)]
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := v.src.Read(p)
	if n > 0 {
		if ferr := v.feed(p[:n]); ferr != nil {
			return 0, v.fail(ferr)
		}
	}
	switch {
	case err == io.EOF:
		v.sawEOF = true
		if v.opts.Size >= 0 && v.n < v.opts.Size {
			return 0, v.fail(newError(KindTruncated, io.ErrUnexpectedEOF,
				"body ended after %d of %d bytes", v.n, v.opts.Size))
		}
		return v.complete(n)
	case err != nil:
		return 0, v.fail(v.readFailed(err))
	case v.opts.Size >= 0 && v.n == v.opts.Size:
		return v.complete(n)
	}
	return n, nil
}

// WriteTo writes the upload to w, verified as by Read, through a buffer of
// 1 MiB, which makes io.Copy from a Reader faster than its own 32 KiB
// buffer would. If w fails, the verification is stopped as by Close and
// w's error returned.
func (v *Reader) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := v.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr == nil && m < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				v.Close()
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Result returns the verified upload's hashes and sizes once Read has
// returned io.EOF, or the error that ended the verification. Before that
// it returns ErrNotFinished.
func (v *Reader) Result() (Result, error) {
	switch v.err {
	case nil:
		return Result{}, ErrNotFinished
	case io.EOF:
		return v.res, nil
	}
	return Result{}, v.err
}

// Close stops an unfinished verification, which then fails with ErrClosed,
// and waits for its goroutine to end. It does not close the underlying
// reader. Closing a Reader that has finished, or closing it again, does
// nothing. Close always returns nil.
func (v *Reader) Close() error {
	if v.err == nil {
		v.fail(ErrClosed)
	}
	return nil
}

// start checks the options and starts the verifier.
func (v *Reader) start() error {
	v.started = true
	o := v.opts
	if _, err := compression.ForExt(o.Ext); err != nil {
		return newError(KindInvalid, err, "nar file name has an unsupported compression extension")
	}
	if o.ExpectFileHash != nil && len(o.ExpectFileHash) != sha256.Size {
		return newError(KindInvalid, nil, "expected file hash has %d bytes, not %d",
			len(o.ExpectFileHash), sha256.Size)
	}
	if max := o.Limits.MaxFileSize; max > 0 && o.Size > max {
		return newError(KindTooLarge, nil, "upload of %d bytes exceeds the maximum file size of %d bytes",
			o.Size, max)
	}
	v.fileSHA = sha256.New()
	var w io.Writer = v.fileSHA
	if o.MD5 {
		v.fileMD5 = md5.New()
		w = io.MultiWriter(v.fileSHA, v.fileMD5)
	}
	v.fileHash = newAsyncHash(w)
	pr, pw := io.Pipe()
	v.pw = pw
	v.done = make(chan struct{})
	ctx := o.Context
	if ctx == nil {
		ctx = context.Background()
	}
	v.ver = &verifier{ctx: ctx, ext: o.Ext, size: o.Size, limits: o.Limits, decoder: o.Decoder}
	go v.ver.run(pr, v.done)
	return nil
}

// feed hashes, counts and hands to the verifier bytes read from src.
func (v *Reader) feed(b []byte) error {
	if max := v.opts.Limits.MaxFileSize; max > 0 && v.n+int64(len(b)) > max {
		return newError(KindTooLarge, nil, "upload exceeds the maximum file size of %d bytes", max)
	}
	v.fileHash.Write(b)
	v.n += int64(len(b))
	v.ver.received.Store(v.n)
	if _, err := v.pw.Write(b); err != nil {
		// The verifier stopped before the end of the input: it failed.
		<-v.done
		if v.ver.err != nil {
			return v.ver.err
		}
		return newError(KindInvalid, err, "nar verification stopped early")
	}
	return nil
}

// complete finishes the verification once all bytes are in and returns
// the final bytes' count, or the error that replaces them.
func (v *Reader) complete(n int) (int, error) {
	if !v.sawEOF {
		if err := v.probeEnd(); err != nil {
			return 0, v.fail(err)
		}
	}
	v.pw.Close()
	<-v.done
	v.pw = nil
	if v.ver.err != nil {
		return 0, v.fail(v.ver.err)
	}
	v.fileHash.Close()
	var sum [32]byte
	v.fileSHA.Sum(sum[:0])
	if want := v.opts.ExpectFileHash; want != nil && !bytes.Equal(want, sum[:]) {
		return 0, v.fail(newError(KindInvalid, nil, "file hash is sha256:%s but the key names sha256:%s",
			nixbase32.EncodeToString(sum[:]), nixbase32.EncodeToString(want)))
	}
	v.res = Result{
		Compression: v.ver.method,
		FileHash:    sum,
		FileSize:    v.n,
		NarHash:     v.ver.narHash,
		NarSize:     v.ver.narSize.Load(),
	}
	if v.fileMD5 != nil {
		v.fileMD5.Sum(v.res.FileMD5[:0])
	}
	v.err = io.EOF
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// probeEnd checks that src has nothing after the declared size.
func (v *Reader) probeEnd() error {
	for range 100 {
		k, err := v.src.Read(v.probe[:])
		switch {
		case k > 0:
			return newError(KindTruncated, nil, "body is longer than its Content-Length (%d bytes)", v.opts.Size)
		case err == io.EOF:
			v.sawEOF = true
			return nil
		case err != nil:
			return v.readFailed(err)
		}
	}
	return v.readFailed(io.ErrNoProgress)
}

func (v *Reader) readFailed(err error) *Error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		// An HTTP body whose connection closed before Content-Length bytes.
		if v.opts.Size >= 0 {
			return newError(KindTruncated, err, "body ended after %d of %d bytes", v.n, v.opts.Size)
		}
		return newError(KindTruncated, err, "body ended early after %d bytes", v.n)
	}
	return newError(KindReadFailed, err, "reading the upload after %d bytes", v.n)
}

// fail makes err the terminal error and stops the verifier.
func (v *Reader) fail(err error) error {
	v.err = err
	if v.fileHash != nil {
		v.fileHash.Close()
	}
	if v.pw != nil {
		v.pw.CloseWithError(err)
		<-v.done
		v.pw = nil
	}
	return err
}

// verifier decompresses and checks the NAR in its own goroutine. Its
// fields other than the atomics are written by that goroutine only and
// read by the Reader only after done is closed.
type verifier struct {
	ctx      context.Context
	ext      string
	size     int64
	limits   Limits
	decoder  compression.Options
	received atomic.Int64 // bytes handed to the pipe so far
	narSize  atomic.Int64 // decompressed bytes so far
	method   string
	narHash  [32]byte
	err      error
}

func (w *verifier) run(pr *io.PipeReader, done chan<- struct{}) {
	defer close(done)
	w.err = w.verify(pr)
	// Unblock the writer if the verification ended before the input did.
	pr.CloseWithError(w.err)
}

// verify reads the upload from pr to its end and checks it.
func (w *verifier) verify(pr io.Reader) error {
	src := bufio.NewReaderSize(pr, 256<<10)
	head, err := src.Peek(compression.MagicLen)
	if err != nil && err != io.EOF && len(head) < compression.MagicLen {
		return err // the writer gave up
	}
	method, err := compression.Resolve(w.ext, head)
	if err != nil {
		return newError(KindInvalid, err, "nar compression does not match its file name")
	}
	w.method = method
	dec, err := compression.Open(w.ctx, method, src, w.decoder)
	if err != nil {
		return w.classify(err)
	}
	defer dec.Close()
	narSHA := sha256.New()
	nar := &narCounter{r: dec, h: newAsyncHash(narSHA), w: w}
	defer nar.h.Close()
	br := bufio.NewReaderSize(nar, 1<<20)
	if err := parseNAR(br); err != nil {
		return w.classify(err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err == nil {
			return newError(KindInvalid, nil, "%s has trailing data after the NAR", w.what())
		}
		return w.classify(err)
	}
	if _, err := src.ReadByte(); err != io.EOF {
		if err == nil {
			return newError(KindInvalid, nil, "nar has trailing data after the %s data", method)
		}
		return w.classify(err)
	}
	nar.h.Close()
	narSHA.Sum(w.narHash[:0])
	return nil
}

// what names the data the NAR is read from, for messages.
func (w *verifier) what() string {
	if w.method == compression.None {
		return "upload"
	}
	return "decompressed " + w.method + " data"
}

// classify turns an error met while decompressing or parsing into an
// *Error.
func (w *verifier) classify(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var de *compression.DecodeError
	var le *compression.LimitError
	var be *compression.BusyError
	switch {
	case errors.As(err, &le):
		return newError(KindTooLarge, le, "%s data is too large to decode", w.method)
	case errors.As(err, &be):
		return newError(KindBusy, be, "no decoder memory free for the %s data", w.method)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return newError(KindReadFailed, err, "gave up waiting for decoder memory")
	case errors.As(err, &de):
		return newError(KindInvalid, de.Err, "nar is not valid %s data", de.Method)
	}
	return newError(KindInvalid, err, "%s is not a valid NAR", w.what())
}

// narCounter hashes and counts the decompressed NAR and enforces the
// limits on it.
type narCounter struct {
	r io.Reader
	h *asyncHash
	n int64
	w *verifier
}

func (c *narCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.h.Write(p[:n])
		c.n += int64(n)
		c.w.narSize.Store(c.n)
		if lerr := c.w.checkLimits(c.n); lerr != nil {
			return 0, lerr
		}
	}
	return n, err
}

// checkLimits checks n decompressed bytes against the limits.
func (w *verifier) checkLimits(n int64) error {
	l := w.limits
	if l.MaxNarSize > 0 && n > l.MaxNarSize {
		return newError(KindTooLarge, nil, "decompressed NAR exceeds the maximum NAR size of %d bytes", l.MaxNarSize)
	}
	if l.MaxRatio > 0 && n > l.RatioFloor {
		file := w.size
		if file < 0 {
			file = w.received.Load()
		}
		if float64(n) > l.MaxRatio*float64(file) {
			return newError(KindTooLarge, nil, "decompressed NAR exceeds %gx the upload size (decompression bomb?)", l.MaxRatio)
		}
	}
	return nil
}
