package pool

import (
	"errors"
	"fmt"
	"io/fs"
	"sync/atomic"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/shm"
)

var (
	// ErrTooLarge reports an Alloc larger than the reservation can ever hold.
	ErrTooLarge = errors.New("pool: allocation larger than the pool's reservation")
	// ErrExhausted reports that no free block is large enough: the
	// reservation is used up by live blocks (or too fragmented).
	ErrExhausted = errors.New("pool: reservation exhausted")
	// ErrBadSize reports an Alloc of 0 bytes.
	ErrBadSize = errors.New("pool: allocation size must be > 0")
	// ErrBadFree reports a Free of something that is not a block currently
	// allocated with that size (double free, wrong size, bad offset).
	ErrBadFree = errors.New("pool: bad free")
	// ErrClosed reports a use of a closed Pool.
	ErrClosed = errors.New("pool: closed")
	// ErrNotPool reports a segment that does not hold a pool of this version.
	ErrNotPool = errors.New("pool: not a dragon_mp pool")
)

// Pool is one process's handle on a shared pool. Its methods may be called
// from any goroutine; all processes' handles share one allocator.
type Pool struct {
	seg    *shm.Segment
	base   unsafe.Pointer
	hdr    *header
	lay    layout
	closed atomic.Bool
}

// Stats is a snapshot of a pool's counters (shared by all processes).
type Stats struct {
	Reserve   uint64 // heap size in bytes
	Committed uint64 // bytes of the segment fallocated so far (metadata included)
	InUse     uint64 // sum of the sizes of the blocks currently allocated (rounded sizes)
	Allocs    uint64 // successful Allocs so far
	Frees     uint64 // successful Frees so far
	Released  uint64 // bytes given back to the kernel by Scavenge so far
}

// Create makes the pool segment name (in shm.Dir()) with a heap of reserve
// bytes, rounded up to a power of two >= MinReserve; 0 means DefaultReserve.
// The segment is 2*reserve bytes, sparse: a fresh pool commits a few hundred
// KiB.
func Create(name string, reserve uint64) (*Pool, error) {
	r := roundReserve(reserve)
	if r == 0 {
		return nil, fmt.Errorf("pool: reservation %d is above the maximum %d", reserve, uint64(MaxReserve))
	}
	lay := newLayout(r)
	seg, err := shm.Create(name, lay.segSize)
	if err != nil {
		return nil, err
	}
	p := newPool(seg, lay)
	if err := p.init(); err != nil {
		seg.Close()
		seg.Unlink()
		return nil, err
	}
	return p, nil
}

func newPool(seg *shm.Segment, lay layout) *Pool {
	base := seg.Base()
	return &Pool{seg: seg, base: base, hdr: (*header)(base), lay: lay}
}

// init writes the header of a fresh (all-zero) segment and puts the whole
// heap in the free list of the top order. The magic goes last, so Open never
// accepts a half-written header.
func (p *Pool) init() error {
	if err := p.seg.Commit(0, Granule); err != nil {
		return err
	}
	h, l := p.hdr, &p.lay
	h.committed = Granule
	h.version = Version
	h.minShift = minShift
	h.granShift = granShift
	h.maxOrder = uint32(l.maxOrder)
	h.reserve = l.reserve
	h.heapOff = l.heapOff
	h.segSize = l.segSize
	h.gbOff = gbOff
	h.gbBytes = l.gbBytes
	h.stateOffs = l.stateOffs
	top := l.maxOrder
	if err := p.commit(l.heapOff, 16); err != nil {
		return err
	}
	if err := p.commit(p.stateAddr(top, 0), 8); err != nil {
		return err
	}
	p.setState(top, 0, stFree)
	p.push(top, l.heapOff)
	atomic.StoreUint64(&h.magic, Magic)
	return nil
}

// Open maps the existing pool segment name and checks its header.
func Open(name string) (*Pool, error) {
	seg, err := shm.Open(name)
	if err != nil {
		return nil, err
	}
	lay, err := checkHeader(seg)
	if err != nil {
		seg.Close()
		return nil, err
	}
	return newPool(seg, lay), nil
}

func checkHeader(seg *shm.Segment) (layout, error) {
	name := seg.Name()
	if seg.Size() < 2*MinReserve {
		return layout{}, fmt.Errorf("%w: segment %s is only %d bytes", ErrNotPool, name, seg.Size())
	}
	h := (*header)(seg.Base())
	switch m := atomic.LoadUint64(&h.magic); m {
	case Magic:
	case 0:
		return layout{}, fmt.Errorf("%w: segment %s has no pool header (not initialized yet?)", ErrNotPool, name)
	default:
		return layout{}, fmt.Errorf("%w: segment %s has magic %#x, want %#x", ErrNotPool, name, m, uint64(Magic))
	}
	if h.version != Version {
		return layout{}, fmt.Errorf("%w: segment %s has pool layout version %d, this library understands %d "+
			"(mixed dragon_mp versions in one run?)", ErrNotPool, name, h.version, Version)
	}
	r := h.reserve
	if r < MinReserve || r > MaxReserve || r&(r-1) != 0 {
		return layout{}, fmt.Errorf("%w: segment %s has a corrupt header (reserve %d)", ErrNotPool, name, r)
	}
	l := newLayout(r)
	if h.minShift != minShift || h.granShift != granShift || uint(h.maxOrder) != l.maxOrder ||
		h.heapOff != l.heapOff || h.segSize != l.segSize || seg.Size() != l.segSize ||
		h.gbOff != gbOff || h.gbBytes != l.gbBytes || h.stateOffs != l.stateOffs {
		return layout{}, fmt.Errorf("%w: segment %s has a corrupt header (layout does not match reserve %d, size %d)",
			ErrNotPool, name, r, seg.Size())
	}
	return l, nil
}

// Name returns the pool's segment name.
func (p *Pool) Name() string { return p.seg.Name() }

// Reserve returns the heap size (the largest block) in bytes.
func (p *Pool) Reserve() uint64 { return p.lay.reserve }

// Base returns the address where this process mapped the segment. Offsets
// are relative to it.
func (p *Pool) Base() uintptr { return uintptr(p.base) }

// UserWords returns the 32 header words that belong to the runtime package.
// They are zero after Create; access them atomically.
func (p *Pool) UserWords() *[32]uint64 { return &p.hdr.user }

// Pointer returns the address of offset off, which must lie in the heap.
func (p *Pool) Pointer(off uint64) unsafe.Pointer {
	p.checkRange(off, 0)
	return unsafe.Add(p.base, off)
}

// Bytes returns the n bytes at offset off as a slice into the mapping (no
// copy). The range must lie in the heap.
func (p *Pool) Bytes(off, n uint64) []byte {
	p.checkRange(off, n)
	return unsafe.Slice((*byte)(unsafe.Add(p.base, off)), n)
}

func (p *Pool) checkRange(off, n uint64) {
	if p.closed.Load() {
		panic(ErrClosed)
	}
	l := &p.lay
	if off < l.heapOff || off > l.segSize || n > l.segSize-off {
		panic(fmt.Sprintf("pool: range [%#x, +%d) outside the heap [%#x, %#x)", off, n, l.heapOff, l.segSize))
	}
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	if p.closed.Load() {
		return Stats{}
	}
	h := p.hdr
	h.mu.Lock()
	s := Stats{Reserve: p.lay.reserve, InUse: h.inUse, Allocs: h.allocs, Frees: h.frees}
	h.mu.Unlock()
	s.Committed = atomic.LoadUint64(&h.committed)
	s.Released = atomic.LoadUint64(&h.released)
	return s
}

// Close unmaps the pool from this process. It is idempotent. Blocks stay
// allocated and the segment stays; no method may be used afterwards, and
// slices and pointers obtained from the pool become invalid.
func (p *Pool) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.seg.Close()
}

// Destroy closes the pool and removes its segment (other processes' mappings
// stay valid until they Close).
func (p *Pool) Destroy() error {
	cerr := p.Close()
	if err := p.seg.Unlink(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return cerr
}
