package presence

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
)

// snapshotMagic starts a snapshot, and names its format.
const snapshotMagic = "larder presence index v1\n"

// maxSnapshotCaches bounds the caches a snapshot may claim, so that a
// damaged file cannot make Read allocate without end.
const maxSnapshotCaches = 1 << 16

// WriteTo writes the index to w as a snapshot that Read reads back: the
// records of each cache, bucket by bucket, and a SHA-256 of all of it. It
// holds the index's read lock while it writes.
func (x *Index) WriteTo(w io.Writer) (int64, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, sum)}
	bw := bufio.NewWriterSize(cw, 1<<16)
	ids := make([]int64, 0, len(x.caches))
	for id := range x.caches {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var word [8]byte
	_, _ = bw.WriteString(snapshotMagic)
	binary.BigEndian.PutUint32(word[:4], uint32(len(ids)))
	_, _ = bw.Write(word[:4])
	for _, id := range ids {
		s := x.caches[id]
		binary.BigEndian.PutUint64(word[:], uint64(id))
		_, _ = bw.Write(word[:])
		for _, b := range s.buckets {
			binary.BigEndian.PutUint32(word[:4], uint32(len(b)/recordLen))
			_, _ = bw.Write(word[:4])
		}
		for _, b := range s.buckets {
			_, _ = bw.Write(b)
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	n, err := w.Write(sum.Sum(nil))
	return cw.n + int64(n), err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrBadSnapshot is returned by Read for a snapshot that is damaged,
// truncated, or not one.
var ErrBadSnapshot = errors.New("not a valid presence index snapshot")

// Read reads an index from a snapshot WriteTo wrote. It checks the
// snapshot whole (its checksum, that each bucket is sorted without
// repeats, that nothing follows it) and returns an error wrapping
// ErrBadSnapshot if any check fails.
func Read(r io.Reader) (*Index, error) {
	sum := sha256.New()
	br := bufio.NewReaderSize(r, 1<<16)
	sr := &sumReader{r: br, h: sum}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
	}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(sr, magic); err != nil || string(magic) != snapshotMagic {
		return nil, bad("no header")
	}
	var word [8]byte
	if _, err := io.ReadFull(sr, word[:4]); err != nil {
		return nil, bad("truncated")
	}
	caches := binary.BigEndian.Uint32(word[:4])
	if caches > maxSnapshotCaches {
		return nil, bad("%d caches", caches)
	}
	x := New()
	var counts [1 << bucketBits]uint32
	for range caches {
		if _, err := io.ReadFull(sr, word[:]); err != nil {
			return nil, bad("truncated")
		}
		id := int64(binary.BigEndian.Uint64(word[:]))
		if x.caches[id] != nil {
			return nil, bad("cache %d twice", id)
		}
		for i := range counts {
			if _, err := io.ReadFull(sr, word[:4]); err != nil {
				return nil, bad("truncated")
			}
			counts[i] = binary.BigEndian.Uint32(word[:4])
		}
		s := &set{}
		for i, n := range counts {
			if n == 0 {
				continue
			}
			if n > 1<<28 {
				return nil, bad("a bucket of %d records", n)
			}
			size := int(n) * recordLen
			// The spare room Add would leave, so that the first keys
			// added after a start do not each copy their bucket.
			b := make([]byte, size, size+size/8+8*recordLen)
			if _, err := io.ReadFull(sr, b); err != nil {
				return nil, bad("truncated")
			}
			for j := recordLen; j < size; j += recordLen {
				if load(b[j-recordLen:]) >= load(b[j:]) {
					return nil, bad("bucket %d of cache %d is not sorted", i, id)
				}
			}
			s.buckets[i] = b
			s.n += int(n)
		}
		x.caches[id] = s
	}
	want := sum.Sum(nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != string(want) {
		return nil, bad("checksum mismatch")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return nil, bad("data after the end")
	}
	return x, nil
}

// sumReader hashes what it reads.
type sumReader struct {
	r io.Reader
	h hash.Hash
}

func (s *sumReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.h.Write(p[:n])
	return n, err
}
