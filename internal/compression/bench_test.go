package compression

import (
	"bytes"
	"io"
	"sync"
	"testing"
)

var benchData = sync.OnceValue(func() []byte { return testData(16 << 20) })

// BenchmarkNewReader measures decoding 16 MiB with each method's decoder,
// read as io.Copy reads it. The MB/s are of the decompressed data.
func BenchmarkNewReader(b *testing.B) {
	data := benchData()
	for _, m := range allMethods {
		if m == Bzip2 {
			continue // the bzip2 tool may be missing; its decoder is the standard library's
		}
		enc := encode(b, m, data)
		b.Run(m, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				rc, err := NewReader(m, bytes.NewReader(enc))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
