package pool

import (
	"sync/atomic"
)

// Giving memory back. Committed granules are reused, so a steady stream of
// large messages commits its working set once and then touches only warm
// pages. After a burst, though, what the burst committed stays committed:
// in a small tmpfs (Docker's 64 MB /dev/shm) the next large message then
// fails with ENOSPC on an empty pool, and nothing else on the machine can
// use that memory.
//
// Scavenge gives back the committed granules of free blocks, except each
// block's first granule (its links and stamp live there). Hysteresis is by
// age: push stamps a free block with the epoch (passes so far) it became free
// in, and a pass takes only blocks that stayed free through the last `age`
// passes, so a block reused within that time is never released and a stream
// does not pay for faults. A pass that must find room (ScavengeAll: an Alloc that
// could not commit its pages) takes every free block.
//
// A block handed out for fewer bytes than it once held keeps the pages of
// its earlier use beyond what it needs now (1 MiB messages in the 2 MiB
// blocks where a 10 MiB one was). Where the filesystem is tight (less than a
// quarter or 64 MiB free: shm.Segment.Tight), Alloc gives that tail back at once (trimTail): Scavenge only
// reaches free blocks, and a burst of such blocks could fill a small tmpfs
// with pages nothing uses. Where it is not, the pages stay for the next
// larger message.
//
// A block is released outside the pool mutex: the pass takes it off its free
// list and marks it allocated (so no Alloc hands it out and no Free merges
// with it), punches holes in its granules and clears their bits, then frees
// it again. One block at a time, so that at most one free block is out of
// reach of Alloc while its pages go. In an empty pool that block is all the
// free memory (everything merged into one), so the header counts the blocks
// passes hold out (scavOut), and an Alloc that finds nothing free while one
// is out waits for it (up to scavengeWait) instead of failing: without that,
// an Alloc racing a pass failed with ErrExhausted on an empty pool (seen in
// TestStressGoroutines). Alloc commits again any granule whose bit is clear
// before it hands out a block, as it does for a fresh pool.

// Tight reports whether the filesystem holding the pool is short of room
// (shm.Segment.Tight): callers then give memory back sooner.
func (p *Pool) Tight() bool { return p.seg.Tight() }

// scavengeMinOrder is the smallest order Scavenge looks at: blocks of two
// granules (one to give back beside the first).
const scavengeMinOrder = granShift + 1 - minShift

// Scavenge gives back the committed granules of every free block that has
// stayed free through the last age passes (age >= 1: at least since the
// previous pass), and starts a new pass. It returns the bytes given back.
func (p *Pool) Scavenge(age uint64) (uint64, error) { return p.scavenge(max(age, 1)) }

// ScavengeAll gives back the committed granules of every free block.
func (p *Pool) ScavengeAll() (uint64, error) { return p.scavenge(0) }

func (p *Pool) scavenge(age uint64) (uint64, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	h := p.hdr
	h.mu.Lock()
	epoch := h.epoch
	h.epoch++
	h.mu.Unlock()
	var total uint64
	// Largest orders first. A block given back is pushed again with a new
	// stamp and no committed granule beyond its first, so the list is read
	// again from its head each time without finding it twice.
	for k := p.lay.maxOrder; k >= scavengeMinOrder; k-- {
		for i := 0; i < scavengeMaxBlocks; i++ {
			h.mu.Lock()
			b := p.nextReleasable(k, epoch, age)
			if b == 0 {
				h.mu.Unlock()
				break
			}
			p.remove(k, b)
			p.setState(k, p.index(b, k), stAlloc)
			h.scavOut++
			h.mu.Unlock()
			if scavengeHook != nil {
				scavengeHook()
			}
			got, err := p.release(b+Granule, uint64(MinBlock)<<k-Granule)
			total += got
			h.mu.Lock()
			p.freeLocked(b, k)
			h.scavOut--
			h.mu.Unlock()
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// scavengeHook, when set (tests only), runs while a pass holds a block off
// its list.
var scavengeHook func()

// scavengeMaxBlocks bounds the blocks one pass gives back per order (the
// rest wait for the next pass).
const scavengeMaxBlocks = 1024

// nextReleasable returns the first block of free list k that holds committed
// granules beyond its first and is old enough (stamped at least age passes
// before epoch; age 0: any); 0 when there is none. Called with the mutex held.
func (p *Pool) nextReleasable(k uint, epoch, age uint64) uint64 {
	for b := p.hdr.heads[k]; b != 0; b = p.links(b)[0] {
		if age > 0 && p.links(b)[2]+age > epoch {
			continue
		}
		if p.anyCommitted(b+Granule, uint64(MinBlock)<<k-Granule) {
			return b
		}
	}
	return 0
}

// anyCommitted reports whether a granule of [off, off+n) is committed; off
// and n are multiples of Granule.
func (p *Pool) anyCommitted(off, n uint64) bool {
	for g, end := off>>granShift, (off+n)>>granShift; g < end; {
		w, _ := p.gbWord(g, false)
		if w == nil { // a bitmap page never committed: none of its granules is
			g = (g | (Granule*8 - 1)) + 1
			continue
		}
		bitsLeft := 64 - g&63
		if bitsLeft > end-g {
			bitsLeft = end - g
		}
		mask := (^uint64(0) >> (64 - bitsLeft)) << (g & 63)
		if atomic.LoadUint64(w)&mask != 0 {
			return true
		}
		g += bitsLeft
	}
	return false
}

// release punches out the committed granules of [off, off+n) (a block taken
// off its list by scavenge) and clears their bits, run by run. It returns the
// bytes given back; on error the granules of the failed run stay committed
// and recorded.
func (p *Pool) release(off, n uint64) (uint64, error) {
	var total uint64
	g, end := off>>granShift, (off+n)>>granShift
	for g < end {
		if !p.committed(g << granShift) {
			g++
			continue
		}
		e := g + 1
		for e < end && p.committed(e<<granShift) {
			e++
		}
		if err := p.seg.Release(g<<granShift, (e-g)<<granShift); err != nil {
			return total, err
		}
		var cleared uint64
		for ; g < e; g++ {
			w, _ := p.gbWord(g, false)
			bit := uint64(1) << (g & 63)
			if atomic.AndUint64(w, ^bit)&bit != 0 {
				cleared++
			}
		}
		atomic.AddUint64(&p.hdr.committed, -(cleared << granShift))
		atomic.AddUint64(&p.hdr.released, cleared<<granShift)
		total += cleared << granShift
	}
	return total, nil
}

// trimTail gives back the committed granules of the block at off (bs bytes,
// just allocated for size bytes, so ours alone) beyond its size, when the
// filesystem is tight.
func (p *Pool) trimTail(off, size, bs uint64) {
	lo := (off + size + Granule - 1) &^ (Granule - 1)
	if lo >= off+bs || !p.anyCommitted(lo, off+bs-lo) || !p.seg.Tight() {
		return
	}
	p.release(lo, off+bs-lo)
}
