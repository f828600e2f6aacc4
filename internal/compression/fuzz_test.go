package compression

import (
	"bytes"
	"io"
	"testing"
)

// FuzzNewReader checks that no input makes a decoder panic, hang or return
// an error that is not a *DecodeError. Run with -fuzz=FuzzNewReader; a
// plain test run checks the seeds.
func FuzzNewReader(f *testing.F) {
	data := testData(3000)
	for i, m := range allMethods {
		if m == Bzip2 {
			continue // seeds must not depend on the bzip2 tool
		}
		f.Add(uint8(i), encode(f, m, data))
	}
	f.Add(uint8(0), readFixture(f, "sample-multistream.nar.xz"))
	f.Add(uint8(2), readFixture(f, "sample.nar.bz2"))
	f.Fuzz(func(t *testing.T, which uint8, in []byte) {
		m := allMethods[int(which)%len(allMethods)]
		rc, err := NewReader(m, bytes.NewReader(in))
		if err != nil {
			return
		}
		defer rc.Close()
		// Read at most 64 MiB: a small input may still expand a lot.
		_, err = io.Copy(io.Discard, io.LimitReader(rc, 64<<20))
		if err == nil || err == io.EOF {
			return
		}
		if _, ok := err.(*DecodeError); !ok {
			t.Errorf("%s: error %T %v is not a *DecodeError", m, err, err)
		}
	})
}
