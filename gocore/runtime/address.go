package runtime

import "sync/atomic"

// Address names an object of a run:
//
//	bits 63..48  the node index
//	bits 47..36  the object's generation (see below)
//	bits 35..0   the object's byte offset in that node's pool, divided by 64
//
// Objects are pool blocks, 64-byte aligned (pool.MinBlock), so offsets below
// MaxOffset (4 TiB: a pool reservation of up to 2 TiB) fit. The zero Address
// names nothing (offset 0 is the pool header).
//
// The generation tells apart the objects that a pool offset holds one after
// another. Each new object takes the next value of a run-wide counter (a
// pool header word), mod 4096, and stores it in its header; every lookup
// checks it. A handle kept past the object's end (an over-release: one
// reference dropped twice) thus fails with ErrBadObject or ErrBadHandle when
// a newer object sits at the offset, instead of reaching that object, unless
// a multiple of 4096 objects were made run-wide in between.
type Address uint64

const (
	nodeShift  = 48
	genShift   = 36
	genMask    = 1<<(nodeShift-genShift) - 1
	unitShift  = 6 // offsets are multiples of 64
	offsetMask = 1<<genShift - 1

	// MaxOffset bounds the pool offsets an Address can name.
	MaxOffset = 1 << (genShift + unitShift)
)

// MakeAddress combines a node index, a generation (its low 12 bits) and a
// 64-byte aligned pool offset below MaxOffset.
func MakeAddress(node uint16, gen uint32, off uint64) Address {
	return Address(uint64(node)<<nodeShift | uint64(gen&genMask)<<genShift | off>>unitShift&offsetMask)
}

// Node is the index of the node whose pool holds the object.
func (a Address) Node() uint16 { return uint16(a >> nodeShift) }

// Gen is the object's generation (12 bits).
func (a Address) Gen() uint32 { return uint32(a>>genShift) & genMask }

// Offset is the object's offset in its node's pool.
func (a Address) Offset() uint64 { return (uint64(a) & offsetMask) << unitShift }

// nextGen takes the generation of a new object from the run's counter.
func (r *Runtime) nextGen() uint32 {
	return uint32(atomic.AddUint64(&r.Pool.UserWords()[wordGen], 1)) & genMask
}
