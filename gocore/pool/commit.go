package pool

import (
	"math/bits"
	"sync/atomic"
	"unsafe"
)

// Lazy commit. Every 64 KiB granule of the segment has one bit in the granule
// bitmap (at gbOff), set once the granule has been fallocated; the pages of
// the bitmap itself are tracked the same way by hdr.l2. Bits are only ever
// set (atomically, after fallocate succeeded), never cleared, so each granule
// costs one fallocate over the pool's life, whichever process gets there
// first. Two processes racing on one granule may both fallocate it, which is
// harmless; only the one that sets the bit counts it in hdr.committed.
//
// The header granule is committed by Create and is in neither bitmap.

// gbWord returns the granule bitmap word holding granule g's bit, committing
// the bitmap page first when commit is set. It returns nil when that page is
// not committed (and commit is false), or with the commit error.
func (p *Pool) gbWord(g uint64, commit bool) (*uint64, error) {
	woff := gbOff + (g>>6)*8
	l2 := woff>>granShift - gbOff>>granShift
	lw, lbit := &p.hdr.l2[l2>>6], uint64(1)<<(l2&63)
	if atomic.LoadUint64(lw)&lbit == 0 {
		if !commit {
			return nil, nil
		}
		if err := p.seg.Commit(woff&^(Granule-1), Granule); err != nil {
			return nil, err
		}
		if atomic.OrUint64(lw, lbit)&lbit == 0 {
			atomic.AddUint64(&p.hdr.committed, Granule)
		}
	}
	return (*uint64)(unsafe.Add(p.base, woff)), nil
}

// committed reports whether the granule holding segment offset off has been
// committed, without committing anything.
func (p *Pool) committed(off uint64) bool {
	g := off >> granShift
	w, _ := p.gbWord(g, false)
	return w != nil && atomic.LoadUint64(w)&(1<<(g&63)) != 0
}

// commit makes sure every granule overlapping [off, off+n) is committed,
// fallocating runs of missing granules. On error, the granules committed so
// far stay committed (and recorded); nothing else changes.
func (p *Pool) commit(off, n uint64) error {
	if n == 0 {
		return nil
	}
	g, end := off>>granShift, (off+n-1)>>granShift+1
	for g < end {
		w, err := p.gbWord(g, true)
		if err != nil {
			return err
		}
		if atomic.LoadUint64(w)&(1<<(g&63)) != 0 {
			g++
			continue
		}
		e := g + 1 // extend the run of uncommitted granules
		for e < end {
			w2, _ := p.gbWord(e, true)
			if w2 == nil || atomic.LoadUint64(w2)&(1<<(e&63)) != 0 {
				break
			}
			e++
		}
		if err := p.seg.Commit(g<<granShift, (e-g)<<granShift); err != nil {
			return err
		}
		var added uint64
		for ; g < e; g++ {
			w, _ := p.gbWord(g, false) // committed by the run loop above
			bit := uint64(1) << (g & 63)
			if g&63 == 0 && e-g >= 64 { // a whole word at once
				added += uint64(64 - bits.OnesCount64(atomic.OrUint64(w, ^uint64(0))))
				g += 63
				continue
			}
			if atomic.OrUint64(w, bit)&bit == 0 {
				added++
			}
		}
		atomic.AddUint64(&p.hdr.committed, added<<granShift)
	}
	return nil
}
