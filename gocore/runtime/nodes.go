package runtime

import (
	"errors"
	"sync/atomic"
	"unsafe"
)

// Lost-node marks: one bit per node of a multi-node run, in the pool of
// this node's part of the run. The node's agent sets a node's bit when it
// finds the node lost; every process of the node looks at the bit before
// an operation on that node's objects and while it waits for one, so a
// loss reaches all of them at once without a message to each.

// MaxNodes is the number of nodes the marks cover (node ids are uint16).
const MaxNodes = 1 << 16

const marksBytes = MaxNodes / 8

// ErrNoMarks is returned by MarkNodeLost in a run without marks.
var ErrNoMarks = errors.New("runtime: this run has no lost-node marks (no agent)")

// MakeNodeMarks gives the run its lost-node marks, all clear. The node's
// agent calls it once, before its processes can look.
func (r *Runtime) MakeNodeMarks() error {
	w := &r.Pool.UserWords()[wordLostMarks]
	if atomic.LoadUint64(w) != 0 {
		return nil
	}
	off, err := r.Pool.Alloc(marksBytes)
	if err != nil {
		return err
	}
	clear(r.Pool.Bytes(off, marksBytes))
	if !atomic.CompareAndSwapUint64(w, 0, off) {
		r.Pool.Free(off, marksBytes)
	}
	return nil
}

// marks returns the marks' words, or nil in a run without them.
func (r *Runtime) marks() *[marksBytes / 8]uint64 {
	off := atomic.LoadUint64(&r.Pool.UserWords()[wordLostMarks])
	if off == 0 {
		return nil
	}
	return (*[marksBytes / 8]uint64)(unsafe.Pointer(unsafe.SliceData(r.Pool.Bytes(off, marksBytes))))
}

// MarkNodeLost sets node's mark (for good).
func (r *Runtime) MarkNodeLost(node uint16) error {
	m := r.marks()
	if m == nil {
		return ErrNoMarks
	}
	w := &m[node/64]
	bit := uint64(1) << (node % 64)
	for {
		old := atomic.LoadUint64(w)
		if old&bit != 0 || atomic.CompareAndSwapUint64(w, old, old|bit) {
			return nil
		}
	}
}

// NodeLost reports whether node's mark is set: two loads, no lock.
func (r *Runtime) NodeLost(node uint16) bool {
	m := r.marks()
	return m != nil && atomic.LoadUint64(&m[node/64])&(uint64(1)<<(node%64)) != 0
}
