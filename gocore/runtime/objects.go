package runtime

import (
	"errors"
	"sync/atomic"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// Kinds of sync objects.
const (
	KindSemaphore uint32 = 1
	KindEvent     uint32 = 2
	KindRLock     uint32 = 3
	KindRaw       uint32 = 4 // plain shared bytes (sharedctypes)
	KindCondition uint32 = 5
	KindBarrier   uint32 = 6
)

const objectMagic = 0x4f504d44 // "DMPO"

// ErrBadObject reports an address that does not hold a live object of the
// expected kind.
var ErrBadObject = errors.New("runtime: invalid or destroyed object")

// objectHeader precedes every sync object's payload in the pool.
//
// magic and gen form the header's first word, the object's tag: a C mirror
// (pyext/fastpath_sync.c) reads it on each operation, one 8-byte load, to know
// that its handle still names this object (see Address).
type objectHeader struct {
	magic uint32 // objectMagic while alive, 0 once freed
	gen   uint32 // the generation of the address it was made under
	kind  uint32
	refs  int32  // references held by Python objects in any process
	size  uint64 // allocation size, for Free
}

// ObjectTag is the first header word of the live object named by a: what a
// C mirror compares the word at ObjectTagOffset before its payload with.
func ObjectTag(a Address) uint64 { return uint64(objectMagic) | uint64(a.Gen())<<32 }

// ObjectTagOffset is how far before an object's payload its tag word is.
const ObjectTagOffset = headerSize

const headerSize = uint64(unsafe.Sizeof(objectHeader{}))

func (r *Runtime) newObject(kind uint32, payload uintptr) (Address, unsafe.Pointer, error) {
	size := headerSize + uint64(payload)
	off, err := r.Pool.Alloc(size)
	if err != nil {
		return 0, nil, err
	}
	b := r.Pool.Bytes(off, size)
	clear(b) // pool memory is not zeroed; zero values must be meaningful
	h := (*objectHeader)(unsafe.Pointer(&b[0]))
	gen := r.nextGen()
	h.gen, h.kind, h.refs, h.size = gen, kind, 1, size
	atomic.StoreUint32(&h.magic, objectMagic)
	return MakeAddress(r.Node, gen, off), unsafe.Add(unsafe.Pointer(&b[0]), headerSize), nil
}

// object validates a and returns its header and payload; kind 0 accepts any kind.
func (r *Runtime) object(a Address, kind uint32) (*objectHeader, unsafe.Pointer, error) {
	off, err := r.local(a)
	if err != nil {
		return nil, nil, err
	}
	if off%64 != 0 || !r.Pool.Contains(off, headerSize) {
		return nil, nil, ErrBadObject
	}
	h := (*objectHeader)(r.Pool.Pointer(off))
	if atomic.LoadUint32(&h.magic) != objectMagic || h.gen != a.Gen() || (kind != 0 && h.kind != kind) {
		return nil, nil, ErrBadObject
	}
	return h, unsafe.Add(unsafe.Pointer(h), headerSize), nil
}

// NewObject allocates a zeroed object of kind with a payload of size bytes,
// holding one reference; it returns the address and the payload.
func (r *Runtime) NewObject(kind uint32, size uintptr) (Address, unsafe.Pointer, error) {
	return r.newObject(kind, size)
}

// Object returns the payload of the live object of kind at a.
func (r *Runtime) Object(a Address, kind uint32) (unsafe.Pointer, error) {
	_, p, err := r.object(a, kind)
	return p, err
}

// newObjectOf allocates a zeroed object of kind whose payload is a T (the
// zero value of every shmsync primitive is ready to use).
func newObjectOf[T any](r *Runtime, kind uint32) (Address, *T, error) {
	var zero T
	a, p, err := r.NewObject(kind, unsafe.Sizeof(zero))
	return a, (*T)(p), err
}

// objectOf returns the payload of the live object of kind at a as a *T.
func objectOf[T any](r *Runtime, a Address, kind uint32) (*T, error) {
	p, err := r.Object(a, kind)
	if err != nil {
		return nil, err
	}
	return (*T)(p), nil
}

// NewSemaphore creates a semaphore with the given value and maximum (0: none).
func (r *Runtime) NewSemaphore(value, max uint32) (Address, error) {
	a, p, err := r.newObject(KindSemaphore, unsafe.Sizeof(shmsync.Semaphore{}))
	if err != nil {
		return 0, err
	}
	(*shmsync.Semaphore)(p).Init(value, max)
	return a, nil
}

// Semaphore returns the semaphore at a.
func (r *Runtime) Semaphore(a Address) (*shmsync.Semaphore, error) {
	return objectOf[shmsync.Semaphore](r, a, KindSemaphore)
}

// RetainObject adds a reference to the sync object at a.
func (r *Runtime) RetainObject(a Address) error {
	h, err := r.anyObject(a)
	if err != nil {
		return err
	}
	atomic.AddInt32(&h.refs, 1)
	return nil
}

// ReleaseObject drops a reference to the sync object at a and frees it with
// the last one.
func (r *Runtime) ReleaseObject(a Address) error {
	h, err := r.anyObject(a)
	if err != nil {
		return err
	}
	if atomic.AddInt32(&h.refs, -1) > 0 {
		return nil
	}
	if !atomic.CompareAndSwapUint32(&h.magic, objectMagic, 0) {
		return ErrBadObject
	}
	return r.Pool.Free(a.Offset(), h.size)
}

func (r *Runtime) anyObject(a Address) (*objectHeader, error) {
	h, _, err := r.object(a, 0)
	return h, err
}
