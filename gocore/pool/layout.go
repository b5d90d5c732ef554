package pool

import (
	"math/bits"

	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// Layout constants. Changing any of them, or the header struct, needs a new
// Version.
const (
	// Magic marks an initialized pool header ("DRGNPOOL" little-endian).
	Magic = 0x4c4f4f504e475244
	// Version is the layout version of the segment.
	Version = 2

	// MinBlock is the smallest block and the alignment of every block.
	MinBlock  = 1 << minShift
	minShift  = 6
	granShift = 16
	// Granule is the commit unit: the pool fallocates 64 KiB at a time.
	Granule = 1 << granShift

	// DefaultReserve is the heap size a pool reserves by default (sparse).
	DefaultReserve = 64 << 30
	// MinReserve and MaxReserve bound the reservation.
	MinReserve = 1 << 20
	MaxReserve = 1 << 45

	maxOrders = 64 // capacity of the per-order arrays in the header
	l2Words   = 32 // bits: one per granule of the granule bitmap (MaxReserve needs 2048)

	gbOff = Granule // the granule bitmap starts right after the header granule

	stFree  = 1 // block state: in the free list of its order
	stAlloc = 2 // block state: handed out by Alloc at this order
)

// header lives at offset 0 of the segment. Its layout is fixed (amd64/arm64
// natural alignment); layout_test.go pins the offsets listed in doc.go.
type header struct {
	magic     uint64 // 0: Magic, stored last by Create
	version   uint32 // 8
	minShift  uint32 // 12
	granShift uint32 // 16
	maxOrder  uint32 // 20: log2(reserve/MinBlock)
	reserve   uint64 // 24: heap size R (a power of two)
	heapOff   uint64 // 32: offset of the heap (= R)
	segSize   uint64 // 40: segment size (= 2R)
	gbOff     uint64 // 48: offset of the granule bitmap
	gbBytes   uint64 // 56: its size in bytes

	mu shmsync.Mutex // 64: guards the allocator state below (not committed/l2)
	_  [60]byte

	committed uint64 // 128: bytes committed (atomic)
	inUse     uint64 // 136: sum of allocated block sizes
	allocs    uint64 // 144
	frees     uint64 // 152
	epoch     uint64 // 160: Scavenge passes so far; a free block's stamp is the epoch it was freed in
	released  uint64 // 168: bytes given back to the kernel by Scavenge so far (atomic)
	scavOut   uint64 // 176: free blocks a Scavenge pass holds off the lists right now (0 or 1 each pass)
	_         [8]byte

	user      [32]uint64        // 192: the runtime's words
	l2        [l2Words]uint64   // 448: committed granules of the granule bitmap (atomic)
	stateOffs [maxOrders]uint64 // 704: offset of each order's state bitmap
	heads     [maxOrders]uint64 // 1216: free list heads (segment offsets, 0 = empty)
}

// layout is the geometry derived from the reservation; Create stores it in
// the header and Open checks the header against it.
type layout struct {
	reserve   uint64
	maxOrder  uint
	heapOff   uint64
	segSize   uint64
	gbBytes   uint64
	stateOffs [maxOrders]uint64
	metaEnd   uint64
}

func roundUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// roundReserve turns a requested reservation into a valid one: 0 means
// DefaultReserve; others are rounded up to a power of two >= MinReserve.
// It returns 0 when the request is above MaxReserve.
func roundReserve(r uint64) uint64 {
	switch {
	case r == 0:
		return DefaultReserve
	case r > MaxReserve:
		return 0
	case r <= MinReserve:
		return MinReserve
	}
	return 1 << bits.Len64(r-1)
}

func newLayout(r uint64) layout {
	l := layout{reserve: r, heapOff: r, segSize: 2 * r}
	l.maxOrder = uint(bits.TrailingZeros64(r)) - minShift
	l.gbBytes = roundUp(l.segSize>>granShift>>3, 8)
	cur := roundUp(gbOff+l.gbBytes, Granule)
	for k := uint(0); k <= l.maxOrder; k++ {
		l.stateOffs[k] = cur
		blocks := r >> (minShift + k)
		cur += roundUp(blocks*2/8, 64) // 2 bits per block, 64-byte aligned
	}
	l.metaEnd = cur
	return l
}

// orderOf returns the order of the smallest block holding size bytes.
func orderOf(size uint64) uint {
	if size <= MinBlock {
		return 0
	}
	return uint(bits.Len64(size-1)) - minShift
}
