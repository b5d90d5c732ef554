package pool

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

// The buddy allocator. Everything here except Alloc's final commit of the
// block runs under hdr.mu.
//
// Per order k (block size MinBlock<<k) a state bitmap holds 2 bits per block:
// 0 = neither (split, or part of a larger block), stFree = in the free list of
// order k, stAlloc = handed out by Alloc with order k. The pair of buddies
// share one bitmap word, so looking at a buddy never touches a new page.
//
// Commit invariants (so Free never needs to commit anything):
//   - a free block's first granule is committed (its list links and stamp
//     live there; Scavenge gives back the rest of a free block, never that);
//   - the state word of every block that is or ever was free at order k is
//     committed: Alloc commits the buddies' words before splitting;
//   - an allocated block has (at least) its first size bytes committed: the
//     size asked for, not the rounded block size, so a 300 MiB block costs
//     300 MiB of tmpfs, not 512 MiB.

// Alloc returns the offset of a block of at least size bytes: size rounded up
// to a power of two >= MinBlock, aligned to that size relative to the heap
// start (so at least 64-byte aligned in memory). Its content is undefined
// (old data, not zeros). Only the first size bytes are committed and may be
// used, even though the block is larger. Errors: ErrBadSize, ErrTooLarge, ErrExhausted, or a
// *shm.FullError when the pages cannot be committed; a failed Alloc changes
// nothing.
func (p *Pool) Alloc(size uint64) (uint64, error) {
	return p.AllocHeld(size, nil)
}

// A Holder records a block that a process holds (gocore/ledger's Entry).
type Holder interface {
	Hold(off, n uint64)
	Clear()
}

// AllocHeld is Alloc that records the block in h (h.Hold) under the pool
// mutex as it is taken, before its pages are committed (which may take
// milliseconds), and clears it (h.Clear) under the mutex if the block goes
// back because the commit failed: a process killed at any point of an
// allocation leaves the block either free or recorded. A nil h is none.
//
// When the tmpfs cannot hold the block's pages, the free blocks' committed
// pages are given back (ScavengeAll) and the allocation is tried once more.
func (p *Pool) AllocHeld(size uint64, holder Holder) (uint64, error) {
	off, err := p.allocHeld(size, holder)
	if errors.Is(err, syscall.ENOSPC) {
		if got, _ := p.ScavengeAll(); got > 0 {
			off, err = p.allocHeld(size, holder)
		}
	}
	return off, err
}

func (p *Pool) allocHeld(size uint64, holder Holder) (uint64, error) {
	if size == 0 {
		return 0, ErrBadSize
	}
	if size > p.lay.reserve {
		return 0, fmt.Errorf("%w: %d bytes asked, reservation is %d", ErrTooLarge, size, p.lay.reserve)
	}
	if p.closed.Load() {
		return 0, ErrClosed
	}
	k := orderOf(size)
	bs := uint64(MinBlock) << k
	h := p.hdr
	h.mu.Lock()
	off, err := p.allocLocked(k)
	if err != nil && h.scavOut != 0 {
		off, err = p.allocAfterScavenge(k, err)
	}
	if err != nil {
		h.mu.Unlock()
		return 0, err
	}
	h.inUse += bs
	h.allocs++
	if holder != nil {
		holder.Hold(off, size)
	}
	h.mu.Unlock()
	// Committing a large block may take a while: do it outside the lock. The
	// block is ours, and granule bits are set atomically.
	if err := p.commit(off, size); err != nil {
		h.mu.Lock()
		if holder != nil {
			holder.Clear()
		}
		p.freeLocked(off, k)
		h.inUse -= bs
		h.allocs--
		h.mu.Unlock()
		return 0, err
	}
	p.trimTail(off, size, bs)
	return off, nil
}

// scavengeWait bounds how long Alloc waits for a block a Scavenge pass holds
// (its pages go in milliseconds; a pass whose process died never returns it).
const scavengeWait = time.Second

// allocAfterScavenge retries allocLocked while a Scavenge pass holds a free
// block off the lists: in a pool that is empty, or nearly, the free memory
// is one large merged block, and while its pages are given back nothing else
// is free. Called with the mutex held and after allocLocked(k) failed with
// err; returns with the mutex held.
func (p *Pool) allocAfterScavenge(k uint, err error) (uint64, error) {
	h := p.hdr
	deadline := time.Now().Add(scavengeWait)
	for errors.Is(err, ErrExhausted) && h.scavOut != 0 && time.Now().Before(deadline) {
		h.mu.Unlock()
		time.Sleep(50 * time.Microsecond)
		h.mu.Lock()
		var off uint64
		if off, err = p.allocLocked(k); err == nil {
			return off, nil
		}
	}
	return 0, err
}

// allocLocked takes a block of order k off the free lists, splitting a larger
// one if needed. Everything that can fail (committing the buddies' links and
// state words) happens before the first change.
func (p *Pool) allocLocked(k uint) (uint64, error) {
	h := p.hdr
	j := k
	for j <= p.lay.maxOrder && h.heads[j] == 0 {
		j++
	}
	if j > p.lay.maxOrder {
		return 0, fmt.Errorf("%w: no free block of %d bytes", ErrExhausted, uint64(MinBlock)<<k)
	}
	b := h.heads[j]
	for i := j; i > k; {
		i--
		if err := p.commit(b+MinBlock<<i, 24); err != nil { // links and stamp
			return 0, err
		}
		if err := p.commit(p.stateAddr(i, p.index(b, i)), 8); err != nil {
			return 0, err
		}
	}
	p.remove(j, b)
	p.setState(j, p.index(b, j), 0)
	for i := j; i > k; {
		i--
		buddy := b + MinBlock<<i
		p.setState(i, p.index(buddy, i), stFree)
		p.push(i, buddy)
	}
	p.setState(k, p.index(b, k), stAlloc)
	return b, nil
}

// Free returns the block at off that Alloc(size) returned, merging it with
// its free buddies. It returns an error wrapping ErrBadFree, and changes
// nothing, when off/size do not name a block currently allocated with that
// size: zero or oversized size, an offset outside the heap or not aligned,
// a double free, or a size different from the one given to Alloc (rounded
// sizes that are equal are fine).
func (p *Pool) Free(off, size uint64) error {
	l := &p.lay
	if size == 0 || size > l.reserve {
		return fmt.Errorf("%w: size %d", ErrBadFree, size)
	}
	k := orderOf(size)
	bs := uint64(MinBlock) << k
	if off < l.heapOff || off-l.heapOff >= l.reserve || (off-l.heapOff)&(bs-1) != 0 {
		return fmt.Errorf("%w: offset %#x is not a %d-byte block of the heap", ErrBadFree, off, bs)
	}
	if p.closed.Load() {
		return ErrClosed
	}
	idx := p.index(off, k)
	h := p.hdr
	h.mu.Lock()
	st := 0
	if p.committed(p.stateAddr(k, idx)) { // never committed: never allocated
		st = p.state(k, idx)
	}
	if st != stAlloc {
		h.mu.Unlock()
		if st == stFree {
			return fmt.Errorf("%w: double free of block %#x (%d bytes)", ErrBadFree, off, bs)
		}
		return fmt.Errorf("%w: %#x is not a block allocated with %d bytes (double free or wrong size)",
			ErrBadFree, off, size)
	}
	p.freeLocked(off, k)
	h.inUse -= bs
	h.frees++
	h.mu.Unlock()
	return nil
}

// freeLocked frees the allocated block off of order k and merges buddies.
func (p *Pool) freeLocked(off uint64, k uint) {
	l := &p.lay
	idx := p.index(off, k)
	p.setState(k, idx, 0)
	for k < l.maxOrder {
		bidx := idx ^ 1
		if p.state(k, bidx) != stFree {
			break
		}
		p.remove(k, l.heapOff+bidx<<(minShift+k))
		p.setState(k, bidx, 0)
		idx >>= 1
		k++
	}
	p.setState(k, idx, stFree)
	p.push(k, l.heapOff+idx<<(minShift+k))
}

// index returns the number of the order-k block at segment offset off.
func (p *Pool) index(off uint64, k uint) uint64 { return (off - p.lay.heapOff) >> (minShift + k) }

// stateAddr returns the segment offset of the state word of block idx at order k.
func (p *Pool) stateAddr(k uint, idx uint64) uint64 { return p.lay.stateOffs[k] + (idx>>5)*8 }

func (p *Pool) stateWord(k uint, idx uint64) *uint64 {
	return (*uint64)(unsafe.Add(p.base, p.stateAddr(k, idx)))
}

func (p *Pool) state(k uint, idx uint64) int {
	return int(*p.stateWord(k, idx) >> ((idx & 31) * 2) & 3)
}

func (p *Pool) setState(k uint, idx uint64, st int) {
	w, sh := p.stateWord(k, idx), (idx&31)*2
	*w = *w&^(3<<sh) | uint64(st)<<sh
}

// links returns the {next, prev, stamp} words of the free block at off: the
// list links, and the Scavenge epoch in which it became free.
func (p *Pool) links(off uint64) *[3]uint64 { return (*[3]uint64)(unsafe.Add(p.base, off)) }

// push puts block off at the head of free list k (LIFO: a freed block is
// the first one reused), stamped with the current epoch.
func (p *Pool) push(k uint, off uint64) {
	h := p.hdr
	next := h.heads[k]
	*p.links(off) = [3]uint64{next, 0, h.epoch}
	if next != 0 {
		p.links(next)[1] = off
	}
	h.heads[k] = off
}

// remove unlinks block off from free list k.
func (p *Pool) remove(k uint, off uint64) {
	ln := p.links(off)
	next, prev := ln[0], ln[1]
	if prev != 0 {
		p.links(prev)[0] = next
	} else {
		p.hdr.heads[k] = next
	}
	if next != 0 {
		p.links(next)[1] = prev
	}
}
