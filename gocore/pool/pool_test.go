package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/shm"
)

func TestCreateOpenClose(t *testing.T) {
	p := newTestPool(t, 3<<20) // rounds up to 4 MiB
	if p.Reserve() != 4<<20 || p.Name() != prefix+t.Name() {
		t.Fatalf("reserve %d name %q", p.Reserve(), p.Name())
	}
	for i, w := range p.UserWords() {
		if w != 0 {
			t.Fatalf("user word %d = %d after Create", i, w)
		}
	}
	atomic.StoreUint64(&p.UserWords()[3], 12345)
	off, err := p.Alloc(100)
	if err != nil {
		t.Fatal(err)
	}
	copy(p.Bytes(off, 100), "shared")

	q, err := Open(p.Name())
	if err != nil {
		t.Fatal(err)
	}
	if q.Reserve() != p.Reserve() || atomic.LoadUint64(&q.UserWords()[3]) != 12345 {
		t.Fatal("second handle does not see the header")
	}
	if got := string(q.Bytes(off, 6)); got != "shared" {
		t.Fatalf("second handle reads %q", got)
	}
	if q.Stats() != p.Stats() {
		t.Fatalf("stats differ: %+v vs %+v", q.Stats(), p.Stats())
	}
	if err := q.Free(off, 100); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.InUse != 0 || s.Allocs != 1 || s.Frees != 1 || s.Reserve != 4<<20 {
		t.Fatalf("stats %+v", s)
	}
	for i := 0; i < 2; i++ {
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Alloc(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Alloc after Close = %v", err)
	}
	if err := q.Free(off, 100); !errors.Is(err, ErrClosed) {
		t.Fatalf("Free after Close = %v", err)
	}
	if q.Stats() != (Stats{}) {
		t.Fatal("Stats after Close not zero")
	}
	checkHeap(t, p)
}

func TestCreateExclusive(t *testing.T) {
	p := newTestPool(t, MinReserve)
	if _, err := Create(p.Name(), MinReserve); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create = %v, want ErrExist", err)
	}
	if _, err := Create(prefix+"huge", MaxReserve+1); err == nil {
		t.Fatal("Create above MaxReserve succeeded")
	}
}

func TestOpenRejects(t *testing.T) {
	p := newTestPool(t, MinReserve)
	h := p.hdr
	tests := []struct {
		name   string
		mutate func()
		undo   func()
		want   string
	}{
		{"magic", func() { h.magic = 0x1234 }, func() { h.magic = Magic }, "magic 0x1234"},
		{"uninitialized", func() { h.magic = 0 }, func() { h.magic = Magic }, "not initialized"},
		{"version", func() { h.version = 99 }, func() { h.version = Version }, "version 99"},
		{"reserve", func() { h.reserve = 3 << 20 }, func() { h.reserve = MinReserve }, "corrupt"},
		{"layout", func() { h.stateOffs[2]++ }, func() { h.stateOffs[2]-- }, "corrupt"},
	}
	for _, tc := range tests {
		tc.mutate()
		_, err := Open(p.Name())
		tc.undo()
		if !errors.Is(err, ErrNotPool) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Open = %v, want ErrNotPool mentioning %q", tc.name, err, tc.want)
		}
	}
	q, err := Open(p.Name())
	if err != nil {
		t.Fatal(err)
	}
	q.Close()

	// Not a pool at all, and too small.
	for _, size := range []uint64{4096, 4 << 20} {
		name := fmt.Sprintf("%snotapool%d", prefix, size)
		s, err := shm.Create(name, size)
		if err != nil {
			t.Fatal(err)
		}
		s.Commit(0, 4096)
		copy(s.Bytes(), "garbage!")
		_, err = Open(name)
		s.Close()
		s.Unlink()
		if !errors.Is(err, ErrNotPool) {
			t.Errorf("Open of a %d-byte non-pool = %v", size, err)
		}
	}
	if _, err := Open(prefix + "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing pool = %v", err)
	}
}

func TestReuseAfterFree(t *testing.T) {
	p := newTestPool(t, 16<<20)
	for _, size := range []uint64{1, 64, 100, 4096, 1 << 20} {
		a, err := p.Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Free(a, size); err != nil {
			t.Fatal(err)
		}
		b, err := p.Alloc(size)
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Errorf("size %d: got %#x after freeing %#x", size, b, a)
		}
		if err := p.Free(b, size); err != nil {
			t.Fatal(err)
		}
	}
	checkHeap(t, p)
}

func TestSizesAndAlignment(t *testing.T) {
	p := newTestPool(t, 1<<30)
	sizes := []uint64{1, 2, 63, 64, 65, 127, 128, 129, 1000, 4095, 4096, 4097, 65535, 65536, 65537,
		1 << 20, 3<<20 + 1, 64 << 20, 256 << 20}
	type blk struct{ off, size uint64 }
	var live []blk
	for _, size := range sizes {
		off, err := p.Alloc(size)
		if err != nil {
			t.Fatalf("Alloc(%d): %v", size, err)
		}
		rounded := uint64(MinBlock) << orderOf(size)
		if rounded < size || (off-p.Reserve())%rounded != 0 || (p.Base()+uintptr(off))%64 != 0 || off == 0 {
			t.Errorf("Alloc(%d) = %#x: not aligned to %d", size, off, rounded)
		}
		b := p.Bytes(off, size)
		b[0], b[size-1] = 0xAB, 0xCD // first and last byte are writable
		live = append(live, blk{off, size})
	}
	for i, a := range live { // no two blocks overlap
		for _, b := range live[i+1:] {
			if a.off < b.off+b.size && b.off < a.off+a.size {
				t.Errorf("blocks %+v and %+v overlap", a, b)
			}
		}
	}
	var want uint64
	for _, s := range sizes {
		want += uint64(MinBlock) << orderOf(s)
	}
	if s := p.Stats(); s.InUse != want {
		t.Errorf("InUse %d, want %d", s.InUse, want)
	}
	checkHeap(t, p)
	for _, b := range live {
		if err := p.Free(b.off, b.size); err != nil {
			t.Fatal(err)
		}
	}
	checkHeap(t, p)
}

func TestMergeBackToOneBlock(t *testing.T) {
	const r = 256 << 20
	p := newTestPool(t, r)
	rng := rand.New(rand.NewPCG(1, 2))
	type blk struct{ off, size uint64 }
	var live []blk
	for i := 0; i < 5000; i++ {
		size := uint64(1) << rng.IntN(17)
		size += rng.Uint64N(size)
		off, err := p.Alloc(size)
		if err != nil {
			t.Fatalf("Alloc(%d): %v", size, err)
		}
		live = append(live, blk{off, size})
	}
	rng.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	for i, b := range live {
		if err := p.Free(b.off, b.size); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			checkHeap(t, p)
		}
	}
	if s := p.Stats(); s.InUse != 0 || s.Allocs != s.Frees {
		t.Fatalf("stats %+v after freeing everything", s)
	}
	checkHeap(t, p)
	// Everything merged: the whole heap is one block again.
	off, err := p.Alloc(r)
	if err != nil {
		t.Fatalf("Alloc(whole heap): %v", err)
	}
	if off != p.Reserve() {
		t.Fatalf("whole-heap block at %#x", off)
	}
	if _, err := p.Alloc(1); !errors.Is(err, ErrExhausted) {
		t.Fatalf("Alloc in a full heap = %v, want ErrExhausted", err)
	}
	if err := p.Free(off, r); err != nil {
		t.Fatal(err)
	}
	checkHeap(t, p)
}

func TestAllocErrors(t *testing.T) {
	p := newTestPool(t, MinReserve)
	tests := []struct {
		size uint64
		want error
	}{
		{0, ErrBadSize},
		{MinReserve + 1, ErrTooLarge},
		{1 << 40, ErrTooLarge},
		{^uint64(0), ErrTooLarge},
	}
	for _, tc := range tests {
		if _, err := p.Alloc(tc.size); !errors.Is(err, tc.want) {
			t.Errorf("Alloc(%d) = %v, want %v", tc.size, err, tc.want)
		}
	}
	if s := p.Stats(); s.InUse != 0 || s.Allocs != 0 {
		t.Fatalf("failed Allocs changed stats: %+v", s)
	}
	checkHeap(t, p)
}

func TestBadFree(t *testing.T) {
	p := newTestPool(t, 16<<20)
	heap := p.Reserve()
	a64, _ := p.Alloc(64)
	a128, _ := p.Alloc(128)
	a4k, _ := p.Alloc(4096)
	freed, _ := p.Alloc(256)
	if err := p.Free(freed, 256); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		off, size uint64
		want      string
	}{
		{"zero size", a64, 0, "size 0"},
		{"size above reserve", a64, 32 << 20, "size"},
		{"offset 0", 0, 64, "not a 64-byte block"},
		{"in the metadata", heap - 64, 64, "not a 64-byte block"},
		{"past the heap", 2 * heap, 64, "not a 64-byte block"},
		{"far past the heap", ^uint64(0) &^ 63, 64, "not a 64-byte block"},
		{"unaligned", a64 + 1, 64, "not a 64-byte block"},
		{"unaligned for size", a4k + 64, 4096, "not a 4096-byte block"},
		{"wrong size larger", a64, 128, "not a block allocated"},
		{"wrong size smaller", a128, 64, "not a block allocated"},
		{"inside a block", a4k + 64, 64, "not a block allocated"},
		{"double free", freed, 256, "double free"},
		{"never allocated, uncommitted", heap + 8<<20, 64, "not a block allocated"},
	}
	before := p.Stats()
	for _, tc := range tests {
		err := p.Free(tc.off, tc.size)
		if !errors.Is(err, ErrBadFree) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Free(%#x, %d) = %v, want ErrBadFree with %q", tc.name, tc.off, tc.size, err, tc.want)
		}
		checkHeap(t, p)
	}
	if after := p.Stats(); after != before {
		t.Fatalf("bad frees changed stats: %+v -> %+v", before, after)
	}
	// A double free caught while the block is still free at its own order.
	if err := p.Free(a64, 64); err != nil {
		t.Fatal(err)
	}
	if err := p.Free(a64, 64); !errors.Is(err, ErrBadFree) || !strings.Contains(err.Error(), "double free") {
		t.Fatalf("double free = %v", err)
	}
	// Rounded sizes that match are fine.
	if err := p.Free(a128, 100); err != nil {
		t.Fatal(err)
	}
	if err := p.Free(a4k, 4000); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.InUse != 0 {
		t.Fatalf("InUse %d", s.InUse)
	}
	checkHeap(t, p)
}

func TestPointerBytesBounds(t *testing.T) {
	p := newTestPool(t, MinReserve)
	off, _ := p.Alloc(64)
	if uintptr(p.Pointer(off)) != p.Base()+uintptr(off) {
		t.Fatal("Pointer is not Base+off")
	}
	if len(p.Bytes(off, 0)) != 0 || len(p.Bytes(2*MinReserve, 0)) != 0 {
		t.Fatal("empty Bytes")
	}
	for _, tc := range []struct{ off, n uint64 }{{0, 1}, {MinReserve - 1, 1}, {2*MinReserve - 10, 11}, {off, ^uint64(0)}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Bytes(%#x, %d) did not panic", tc.off, tc.n)
				}
			}()
			p.Bytes(tc.off, tc.n)
		}()
	}
	p.Free(off, 64)
}
