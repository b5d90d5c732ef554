package pool

import (
	"fmt"
	"testing"
)

func BenchmarkAllocFree(b *testing.B) {
	for _, size := range []uint64{64, 1 << 20} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			p := newTestPool(b, 1<<30)
			// Keep some blocks live so Alloc splits and Free merges.
			for i := 0; i < 100; i++ {
				p.Alloc(size)
			}
			b.ReportAllocs()
			for b.Loop() {
				off, err := p.Alloc(size)
				if err != nil {
					b.Fatal(err)
				}
				if err := p.Free(off, size); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("%dB-parallel", size), func(b *testing.B) {
			p := newTestPool(b, 1<<30)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					off, err := p.Alloc(size)
					if err != nil {
						b.Fatal(err)
					}
					if err := p.Free(off, size); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
