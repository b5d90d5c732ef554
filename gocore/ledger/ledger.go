package ledger

import (
	"errors"
	"sync/atomic"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/pool"
)

const (
	// Slots is the number of processes a run's directory can name at once.
	Slots = 8192
	// Entries is the number of blocks and references a process can record at once.
	Entries = 256
	// MaxRefs is how many of them may be references: the rest stay for blocks.
	MaxRefs = Entries - 64

	slotBytes  = 32
	entryBytes = 16
	dirBytes   = Slots * slotBytes
	ledgerSize = Entries * entryBytes

	reaping  = uint64(1) << 63 // pid word: a reaper has claimed the slot
	reserved = ^uint64(0)      // entry len: reserved, no block recorded yet
	refMark  = uint64(1) << 62 // entry len: refMark|kind records a reference, not a block
)

// Kinds of reference a ledger records (what releases it).
const (
	RefChannel = 1 // a gocore/channel channel
	RefObject  = 2 // any other counted object (sync objects, raw arrays, pipes)
)

// Reaped counts what Reap gave back.
type Reaped struct {
	Blocks int    // blocks freed
	Bytes  uint64 // their sizes
	Refs   int    // references released
}

// ErrFull is returned by Register when every slot of the directory is taken.
var ErrFull = errors.New("ledger: directory full")

type slot struct {
	pid, start, ledger, _ uint64
}

type entry struct {
	off, n uint64
}

// Directory is the run's table of ledgers, one per registered process.
type Directory struct {
	p     *pool.Pool
	slots *[Slots]slot
}

// Open returns the run's directory, whose pool offset is kept in *word (0:
// none yet: made here, and published with a CAS so that concurrent first
// users agree on one).
func Open(p *pool.Pool, word *uint64) (*Directory, error) {
	off := atomic.LoadUint64(word)
	if off == 0 {
		o, err := p.Alloc(dirBytes)
		if err != nil {
			return nil, err
		}
		clear(p.Bytes(o, dirBytes))
		if atomic.CompareAndSwapUint64(word, 0, o) {
			off = o
		} else {
			p.Free(o, dirBytes)
			off = atomic.LoadUint64(word)
		}
	}
	return &Directory{p: p, slots: (*[Slots]slot)(unsafe.Pointer(unsafe.SliceData(p.Bytes(off, dirBytes))))}, nil
}

// Register takes a slot for the process (pid, start) and gives it a ledger.
func (d *Directory) Register(pid int, start uint64) (*Ledger, error) {
	for i := range d.slots {
		s := &d.slots[i]
		if atomic.LoadUint64(&s.pid) != 0 || !atomic.CompareAndSwapUint64(&s.pid, 0, uint64(pid)) {
			continue
		}
		// The slot records its ledger block as the pool hands it out (under
		// the pool mutex): killed at any point from here, the process leaves
		// the block recorded, and the reaper frees it. Its entries count
		// only once start is set, after they are cleared (the block holds
		// whatever its last user left).
		off, err := d.p.AllocHeld(ledgerSize, slotLedger{s})
		if err != nil {
			atomic.StoreUint64(&s.pid, 0)
			return nil, err
		}
		clear(d.p.Bytes(off, ledgerSize))
		atomic.StoreUint64(&s.start, start)
		return &Ledger{entries: d.entries(off)}, nil
	}
	return nil, ErrFull
}

// slotLedger records a slot's ledger block as the pool allocates it (a
// pool.Holder).
type slotLedger struct{ s *slot }

func (h slotLedger) Hold(off, _ uint64) { atomic.StoreUint64(&h.s.ledger, off) }
func (h slotLedger) Clear()             { atomic.StoreUint64(&h.s.ledger, 0) }

func (d *Directory) entries(off uint64) *[Entries]entry {
	return (*[Entries]entry)(unsafe.Pointer(unsafe.SliceData(d.p.Bytes(off, ledgerSize))))
}

// Reap frees the recorded blocks, releases the recorded references (with
// release(addr, kind)), and frees the ledger and the slot of every
// registered process for which alive(pid, start) is false; start is 0 for a
// process that died while registering.
func (d *Directory) Reap(alive func(pid int, start uint64) bool, release func(addr uint64, kind int)) (r Reaped) {
	for i := range d.slots {
		s := &d.slots[i]
		pid := atomic.LoadUint64(&s.pid)
		start := atomic.LoadUint64(&s.start)
		if pid == 0 || pid&reaping != 0 || alive(int(pid), start) {
			continue
		}
		if !atomic.CompareAndSwapUint64(&s.pid, pid, pid|reaping) {
			continue
		}
		if off := atomic.LoadUint64(&s.ledger); off != 0 {
			es := d.entries(off)
			if start == 0 { // died while registering: the entries were never this process's
				es = &[Entries]entry{}
			}
			for j := range es {
				e := &es[j]
				b := atomic.LoadUint64(&e.off)
				if b == 0 {
					continue
				}
				n := atomic.LoadUint64(&e.n)
				if n != reserved && n&refMark != 0 {
					if release != nil {
						release(b, int(n&^refMark))
						r.Refs++
					}
					continue
				}
				if d.p.Free(b, n) == nil {
					r.Blocks++
					r.Bytes += n
				}
			}
			d.p.Free(off, ledgerSize)
		}
		atomic.StoreUint64(&s.ledger, 0)
		atomic.StoreUint64(&s.start, 0)
		atomic.StoreUint64(&s.pid, 0)
	}
	return r
}

// Stats returns how many processes are registered and the blocks and bytes
// their ledgers record (references are not counted).
func (d *Directory) Stats() (processes, blocks int, bytes uint64) {
	for i := range d.slots {
		s := &d.slots[i]
		if atomic.LoadUint64(&s.pid) == 0 {
			continue
		}
		processes++
		if off := atomic.LoadUint64(&s.ledger); off != 0 {
			es := d.entries(off)
			for j := range es {
				b, n := atomic.LoadUint64(&es[j].off), atomic.LoadUint64(&es[j].n)
				if b != 0 && n&refMark == 0 {
					blocks++
					bytes += n
				}
			}
		}
	}
	return processes, blocks, bytes
}

// Refs returns how many references the registered processes' ledgers record.
func (d *Directory) Refs() (refs int) {
	for i := range d.slots {
		s := &d.slots[i]
		if atomic.LoadUint64(&s.pid) == 0 {
			continue
		}
		if off := atomic.LoadUint64(&s.ledger); off != 0 {
			refs += (&Ledger{entries: d.entries(off)}).Refs()
		}
	}
	return refs
}

// Ledger is one process's record of the blocks it holds. Its methods are
// safe for concurrent use by the process's threads.
type Ledger struct {
	entries *[Entries]entry
	hint    atomic.Uint32 // where the next Reserve starts looking
	refs    atomic.Int32  // entries reserved for references
}

// Entry is one record of a Ledger.
type Entry struct {
	e       *entry
	ref     *Ledger // set when the entry was reserved for a reference
	cleared bool    // Clear ran: the entry may be another reservation's now
}

// Reserve returns a free entry, reserved for this caller, or nil when all
// are in use (or l is nil).
func (l *Ledger) Reserve() *Entry {
	if l == nil {
		return nil
	}
	start := l.hint.Load()
	for k := uint32(0); k < Entries; k++ {
		i := (start + k) % Entries
		e := &l.entries[i]
		if atomic.LoadUint64(&e.n) == 0 && atomic.CompareAndSwapUint64(&e.n, 0, reserved) {
			l.hint.Store(i + 1)
			return &Entry{e: e}
		}
	}
	return nil
}

// ReserveRef returns a free entry for a reference, or nil when MaxRefs
// entries already hold references (the rest stay for blocks), all are in
// use, or l is nil.
func (l *Ledger) ReserveRef() *Entry {
	if l == nil {
		return nil
	}
	if l.refs.Add(1) > MaxRefs {
		l.refs.Add(-1)
		return nil
	}
	e := l.Reserve()
	if e == nil {
		l.refs.Add(-1)
		return nil
	}
	e.ref = l
	return e
}

// Held returns how many blocks l records (for tests and stats).
func (l *Ledger) Held() int {
	n := 0
	for i := range l.entries {
		if atomic.LoadUint64(&l.entries[i].off) != 0 && atomic.LoadUint64(&l.entries[i].n)&refMark == 0 {
			n++
		}
	}
	return n
}

// Refs returns how many references l records (for tests and stats).
func (l *Ledger) Refs() int {
	n := 0
	for i := range l.entries {
		e := &l.entries[i]
		if atomic.LoadUint64(&e.off) != 0 && atomic.LoadUint64(&e.n)&refMark != 0 {
			n++
		}
	}
	return n
}

// Hold records the block (off, n) in a reserved entry. A nil Entry does nothing.
func (e *Entry) Hold(off, n uint64) {
	if e == nil {
		return
	}
	atomic.StoreUint64(&e.e.n, n)
	atomic.StoreUint64(&e.e.off, off)
}

// HoldRef records a reference of the given kind to the object at addr (a
// runtime address, never 0) in an entry from ReserveRef. A nil Entry does
// nothing.
func (e *Entry) HoldRef(addr uint64, kind int) {
	if e == nil {
		return
	}
	atomic.StoreUint64(&e.e.n, refMark|uint64(kind))
	atomic.StoreUint64(&e.e.off, addr)
}

// Clear forgets the entry's block or reference (this process no longer
// owns it) and frees the entry. Free the block, or release the reference,
// only after Clear. A second Clear of the same Entry does nothing (the
// entry may already record another reservation's block). An Entry belongs
// to one goroutine at a time.
func (e *Entry) Clear() {
	if e == nil || e.cleared {
		return
	}
	e.cleared = true
	atomic.StoreUint64(&e.e.off, 0)
	atomic.StoreUint64(&e.e.n, 0)
	if e.ref != nil {
		e.ref.refs.Add(-1)
		e.ref = nil
	}
}

// Unreserve frees an entry that holds no block.
func (e *Entry) Unreserve() { e.Clear() }
