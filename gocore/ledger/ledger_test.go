package ledger

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/pool"
)

var prefix = fmt.Sprintf("dragon_mp.ltest%d.", os.Getpid())

func newPool(t *testing.T) (*pool.Pool, *uint64) {
	t.Helper()
	p, err := pool.Create(prefix+strings.ReplaceAll(t.Name(), "/", "_"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Destroy(); err != nil {
			t.Error(err)
		}
	})
	return p, &p.UserWords()[7]
}

func inUse(p *pool.Pool) uint64 { return p.Stats().InUse }

func TestReapFreesWhatTheDeadHeld(t *testing.T) {
	p, word := newPool(t)
	d, err := Open(p, word)
	if err != nil {
		t.Fatal(err)
	}
	base := inUse(p)
	dead := map[int]bool{}
	alive := func(pid int, start uint64) bool { return !dead[pid] }
	var released []uint64 // addr<<2 | kind of each reference the reaper released
	release := func(addr uint64, kind int) { released = append(released, addr<<2|uint64(kind)) }

	tests := []struct {
		name  string
		steps func(l *Ledger) // what the process does before it dies
		freed int             // blocks the reaper must give back
		refs  []uint64        // references it must release (addr<<2 | kind)
	}{
		{"holds two blocks", func(l *Ledger) {
			for _, n := range []uint64{1 << 20, 100} {
				off, _ := p.Alloc(n)
				l.Reserve().Hold(off, n)
			}
		}, 2, nil},
		{"held then cleared and freed", func(l *Ledger) {
			off, _ := p.Alloc(4096)
			e := l.Reserve()
			e.Hold(off, 4096)
			e.Clear()
			p.Free(off, 4096)
		}, 0, nil},
		{"reserved, never held", func(l *Ledger) { l.Reserve(); l.ReserveRef() }, 0, nil},
		{"recorded by the pool as it allocates", func(l *Ledger) {
			e := l.Reserve()
			off, err := p.AllocHeld(3<<20, e)
			if err != nil || l.Held() != 1 {
				t.Fatalf("AllocHeld: off %d err %v held %d", off, err, l.Held())
			}
		}, 1, nil},
		{"handed to a channel (cleared, not freed)", func(l *Ledger) {
			off, _ := p.Alloc(8192)
			e := l.Reserve()
			e.Hold(off, 8192)
			e.Clear()
			t.Cleanup(func() { p.Free(off, 8192) }) // the "channel" frees it
		}, 0, nil},
		{"holds references to a channel and an object", func(l *Ledger) {
			l.ReserveRef().HoldRef(0x40, RefChannel)
			l.ReserveRef().HoldRef(0x40, RefChannel) // two handles, two references
			l.ReserveRef().HoldRef(1<<48|0x80, RefObject)
		}, 0, []uint64{0x40<<2 | RefChannel, 0x40<<2 | RefChannel, (1<<48|0x80)<<2 | RefObject}},
		{"a reference dropped by the process itself", func(l *Ledger) {
			e := l.ReserveRef()
			e.HoldRef(0x100, RefChannel)
			e.Clear()
		}, 0, nil},
		{"a block and a reference", func(l *Ledger) {
			off, _ := p.Alloc(4096)
			l.Reserve().Hold(off, 4096)
			l.ReserveRef().HoldRef(0x200, RefObject)
			if l.Held() != 1 || l.Refs() != 1 {
				t.Fatalf("held %d refs %d, want 1 and 1", l.Held(), l.Refs())
			}
		}, 1, []uint64{0x200<<2 | RefObject}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid := 1000 + i
			l, err := d.Register(pid, 77)
			if err != nil {
				t.Fatal(err)
			}
			tt.steps(l)
			released = nil
			if r := d.Reap(alive, release); r.Blocks != 0 || r.Refs != 0 || released != nil || d.Refs() < len(tt.refs) {
				t.Fatalf("reaped %+v of a live process", r)
			}
			dead[pid] = true
			r := d.Reap(alive, release)
			if r.Blocks != tt.freed || r.Refs != len(tt.refs) {
				t.Fatalf("reaped %+v, want %d blocks and %d references", r, tt.freed, len(tt.refs))
			}
			slices.Sort(released)
			want := slices.Clone(tt.refs)
			slices.Sort(want)
			if !slices.Equal(released, want) {
				t.Fatalf("released %x, want %x", released, want)
			}
			if r := d.Reap(alive, release); r.Blocks != 0 || r.Refs != 0 {
				t.Fatalf("second reap gave back %+v more", r)
			}
		})
	}
	// the "channel" still holds one block (freed by the subtest's cleanup, after this)
	if got := inUse(p); got != base+8192 {
		t.Fatalf("in use %d after reaping, want %d", got, base+8192)
	}
}

func TestOpenTwiceSharesOneDirectory(t *testing.T) {
	p, word := newPool(t)
	var wg sync.WaitGroup
	dirs := make([]*Directory, 8)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := Open(p, word)
			if err != nil {
				t.Error(err)
				return
			}
			dirs[i] = d
		}()
	}
	wg.Wait()
	for _, d := range dirs[1:] {
		if d.slots != dirs[0].slots {
			t.Fatal("two directories")
		}
	}
	if got := inUse(p); got != dirBytes {
		t.Fatalf("in use %d, want one directory (%d)", got, dirBytes)
	}
}

func TestReserveAllThenFull(t *testing.T) {
	p, word := newPool(t)
	d, _ := Open(p, word)
	l, err := d.Register(5, 1)
	if err != nil {
		t.Fatal(err)
	}
	var es []*Entry
	for i := 0; i < Entries; i++ {
		e := l.Reserve()
		if e == nil {
			t.Fatalf("reserve %d: nil", i)
		}
		es = append(es, e)
	}
	if l.Reserve() != nil {
		t.Fatal("reserved past Entries")
	}
	es[17].Unreserve()
	if l.Reserve() == nil {
		t.Fatal("a freed entry is not reused")
	}
	var nilLedger *Ledger
	nilLedger.Reserve().Hold(1, 2) // a process without a ledger: no-ops
	nilLedger.ReserveRef().HoldRef(1, RefChannel)
}

// References may take MaxRefs entries, never the ones kept for blocks;
// clearing one makes room for the next.
func TestReferencesLeaveRoomForBlocks(t *testing.T) {
	p, word := newPool(t)
	d, _ := Open(p, word)
	l, err := d.Register(6, 1)
	if err != nil {
		t.Fatal(err)
	}
	var refs []*Entry
	for i := 0; i < MaxRefs; i++ {
		e := l.ReserveRef()
		if e == nil {
			t.Fatalf("reference %d: nil", i)
		}
		e.HoldRef(uint64(64*(i+1)), RefObject)
		refs = append(refs, e)
	}
	if l.ReserveRef() != nil {
		t.Fatal("a reference took an entry kept for blocks")
	}
	for i := 0; i < Entries-MaxRefs; i++ {
		if l.Reserve() == nil {
			t.Fatalf("block entry %d: nil with MaxRefs references recorded", i)
		}
	}
	refs[3].Clear()
	if l.Refs() != MaxRefs-1 {
		t.Fatalf("refs %d after one cleared, want %d", l.Refs(), MaxRefs-1)
	}
	if l.ReserveRef() == nil { // the cleared entry is free again
		t.Fatal("a cleared reference's entry is not reused")
	}
	if l.ReserveRef() != nil || l.Reserve() != nil {
		t.Fatal("reserved past Entries")
	}
}

func TestConcurrentHoldAndReap(t *testing.T) {
	p, word := newPool(t)
	d, _ := Open(p, word)
	base := inUse(p)
	var wg sync.WaitGroup
	var mu sync.Mutex
	dead := map[int]bool{}
	alive := func(pid int, _ uint64) bool { mu.Lock(); defer mu.Unlock(); return !dead[pid] }
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 50; round++ {
				pid := 10_000 + w*1000 + round
				l, err := d.Register(pid, 1)
				if err != nil {
					t.Error(err)
					return
				}
				for k := 0; k < 20; k++ {
					off, err := p.Alloc(256)
					if err != nil {
						t.Error(err)
						return
					}
					e := l.Reserve()
					e.Hold(off, 256)
					if k%2 == 0 { // half given back by the process itself
						e.Clear()
						p.Free(off, 256)
					}
				}
				mu.Lock()
				dead[pid] = true
				mu.Unlock()
				d.Reap(alive, nil)
			}
		}()
	}
	wg.Wait()
	d.Reap(alive, nil)
	if got := inUse(p); got != base {
		t.Fatalf("in use %d after every process was reaped, want %d", got, base)
	}
}

func TestRegisterFull(t *testing.T) {
	p, word := newPool(t)
	d, _ := Open(p, word)
	for i := 0; i < Slots; i++ {
		if _, err := d.Register(i+1, 1); err != nil {
			t.Fatalf("register %d: %v", i, err)
		}
	}
	if _, err := d.Register(Slots+1, 1); err != ErrFull {
		t.Fatalf("err %v, want ErrFull", err)
	}
	if r := d.Reap(func(int, uint64) bool { return false }, nil); r.Blocks != 0 {
		t.Fatal("empty ledgers freed blocks")
	}
	if _, err := d.Register(1, 1); err != nil {
		t.Fatal("slots not reusable after reaping:", err)
	}
}

// A second Clear of an Entry leaves alone the record of whoever reserved
// the same slot since (an allocation that failed clears its entry, and the
// caller may clear it again).
func TestClearTwiceKeepsTheNextRecord(t *testing.T) {
	p, word := newPool(t)
	d, _ := Open(p, word)
	l, err := d.Register(7, 1)
	if err != nil {
		t.Fatal(err)
	}
	first := l.Reserve()
	first.Hold(64, 100)
	first.Clear()
	for i := 0; i < Entries-1; i++ { // every other slot taken: the next Reserve reuses first's
		l.Reserve()
	}
	next := l.Reserve()
	if next == nil || next.e != first.e {
		t.Fatal("the cleared slot was not reused")
	}
	next.Hold(128, 200)
	first.Clear()
	if l.Held() != 1 {
		t.Fatalf("held %d after a second Clear of the old entry, want 1 (the new record)", l.Held())
	}
}

// A process killed while it registers leaves its slot with a ledger block
// (recorded as the pool handed it out) but no start time: the reaper frees
// the block and ignores what it holds (whatever its last user left there).
func TestReapFreesAHalfRegisteredLedgerOnly(t *testing.T) {
	p, word := newPool(t)
	d, _ := Open(p, word)
	base := inUse(p)
	other, _ := p.Alloc(4096) // someone else's block, named by the stale bytes below
	s := &d.slots[3]
	atomic.StoreUint64(&s.pid, 4242)
	off, err := p.AllocHeld(ledgerSize, slotLedger{s})
	if err != nil || atomic.LoadUint64(&s.ledger) != off {
		t.Fatalf("AllocHeld: %v, slot records %d, want %d", err, atomic.LoadUint64(&s.ledger), off)
	}
	d.entries(off)[0] = entry{off: other, n: 4096} // stale content, never cleared: it died first
	r := d.Reap(func(pid int, _ uint64) bool { return pid != 4242 }, nil)
	if r.Blocks != 0 {
		t.Fatalf("reaped %+v: freed a block the dead process never recorded", r)
	}
	if atomic.LoadUint64(&s.pid) != 0 {
		t.Fatal("slot not emptied")
	}
	if err := p.Free(other, 4096); err != nil {
		t.Fatalf("the other block: %v", err)
	}
	if got := inUse(p); got != base {
		t.Fatalf("in use %d, want %d (the ledger block freed)", got, base)
	}
}
