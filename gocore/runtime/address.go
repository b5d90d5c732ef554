package runtime

// Address names an object of a run: bits 63..48 are the node index, bits
// 47..0 the object's byte offset in that node's pool. The zero Address names
// nothing (offset 0 is the pool header).
type Address uint64

const offsetBits = 48

// MakeAddress combines a node index and a pool offset.
func MakeAddress(node uint16, off uint64) Address {
	return Address(uint64(node)<<offsetBits | off&(1<<offsetBits-1))
}

// Node is the index of the node whose pool holds the object.
func (a Address) Node() uint16 { return uint16(a >> offsetBits) }

// Offset is the object's offset in its node's pool.
func (a Address) Offset() uint64 { return uint64(a) & (1<<offsetBits - 1) }
