package narverify

import (
	"bytes"
	"io"
	"sync"
	"testing"

	"github.com/larder-cache/larder/internal/compression"
)

var benchNAR = sync.OnceValue(func() []byte {
	b := newNAR().dir(
		"big", fileNode(string(randomBytes(64<<20, 9))),
		"small", dirNode("a", fileNode("a"), "b", linkNode("a")),
	)
	return b.Bytes()
})

// BenchmarkVerify measures verifying a 64 MiB NAR, uncompressed and
// zstd-compressed, read with 32 KiB reads and with io.Copy (which uses
// WriteTo). The MB/s are of the decompressed NAR; file/nar is the
// compression ratio.
func BenchmarkVerify(b *testing.B) {
	narData := benchNAR()
	for _, m := range []string{compression.None, compression.Zstd} {
		file := compress(b, m, narData)
		opts := Options{Ext: ext(b, m), Size: int64(len(file))}
		b.Run(m+"/read32KiB", func(b *testing.B) {
			b.SetBytes(int64(len(narData)))
			buf := make([]byte, 32<<10)
			for b.Loop() {
				v := NewReader(bytes.NewReader(file), opts)
				for {
					_, err := v.Read(buf)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(len(file))/float64(len(narData)), "file/nar")
		})
		b.Run(m+"/copy", func(b *testing.B) {
			b.SetBytes(int64(len(narData)))
			for b.Loop() {
				v := NewReader(bytes.NewReader(file), opts)
				if _, err := io.Copy(io.Discard, v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(file))/float64(len(narData)), "file/nar")
		})
	}
}
