package runtime

import (
	"fmt"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/pool"
)

// Raw objects: plain shared bytes for Python's sharedctypes (Value, Array,
// RawValue, RawArray, heap.BufferWrapper).
//
// A raw object is a KindRaw object (objects.go): the object header with the
// cross-process reference count, then a small prefix holding the data size,
// then the data, zeroed at creation and aligned to RawAlign bytes in the pool
// (and so in every process's mapping: blocks are at least 64-byte aligned).
//
//	object header | size uint64, padding | data (size bytes)
//	              ^ object payload        ^ RawAlign-aligned
//
// Python maps the data in place (ctypes over the pool mapping at
// Pool.Base()+offset), so the bytes are the same in every process of the run;
// the runtime never touches them after creation. References are the generic
// ones (RetainObject / ReleaseObject); the last release frees the block.

// RawAlign is the alignment of a raw object's data: enough for any ctypes
// type (long double, SSE vectors), more than stdlib's heap gives (8).
const RawAlign = 32

// rawPrefix is the distance from the object payload to the data.
var rawPrefix = uint64((headerSize+8+RawAlign-1)&^(RawAlign-1)) - headerSize

// ErrRawSize reports a raw object size the pool can never hold; it is a
// pool.ErrTooLarge (Python: MemoryError).
var ErrRawSize = fmt.Errorf("runtime: raw object size out of range: %w", pool.ErrTooLarge)

// maxRawSize keeps the arithmetic far from overflowing; the pool refuses
// anything above its reservation anyway (pool.ErrTooLarge).
const maxRawSize = 1 << 56

// NewRaw allocates a raw object of size zeroed bytes (0 is allowed) holding
// one reference.
func (r *Runtime) NewRaw(size uint64) (Address, error) {
	if size > maxRawSize {
		return 0, ErrRawSize
	}
	a, p, err := r.NewObject(KindRaw, uintptr(rawPrefix+size))
	if err != nil {
		return 0, err
	}
	// Written before the address is handed to anyone: no other process can
	// look at it yet.
	*(*uint64)(p) = size
	return a, nil
}

// Raw returns the pool offset and size of the data of the live raw object at
// a. Pool.Pointer(off) is its address in this process.
func (r *Runtime) Raw(a Address) (off, size uint64, err error) {
	h, p, err := r.object(a, KindRaw)
	if err != nil {
		return 0, 0, err
	}
	// The header is trusted once its magic matched, but the size lives in
	// shared memory: check it against the block before handing it out.
	size = *(*uint64)(p)
	if size > maxRawSize || headerSize+rawPrefix+size > h.size ||
		!r.Pool.Contains(a.Offset(), h.size) {
		return 0, 0, ErrBadObject
	}
	return a.Offset() + headerSize + rawPrefix, size, nil
}

// RawBytes is the data of the raw object at a, as a slice of the pool.
func (r *Runtime) RawBytes(a Address) ([]byte, error) {
	off, size, err := r.Raw(a)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(r.Pool.Pointer(off)), size), nil
}
