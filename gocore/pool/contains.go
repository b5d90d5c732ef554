package pool

// Contains reports whether [off, off+n) lies inside the heap, so callers can
// validate an offset from an untrusted source without a panic.
func (p *Pool) Contains(off, n uint64) bool {
	l := &p.lay
	return !p.closed.Load() && off >= l.heapOff && off <= l.segSize && n <= l.segSize-off
}

// Size is the length of the mapping; offsets into the heap are below it.
func (p *Pool) Size() uint64 { return p.lay.segSize }
