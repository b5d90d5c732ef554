package pyext

import (
	"sync"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/proc"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// Blocks this process holds outside any channel (a large message it is
// filling, or one it took and has not freed), and the references it holds
// (refs.go), are recorded in its ledger (gocore/ledger), so that when it is
// killed the run's head gives them back (tendPool). held maps each such block to its ledger entry. A process
// may take part in several runs one after the other (each run its own
// pool): held belongs to run r and is dropped when r ends (forgetRun).
var held struct {
	mu     sync.Mutex // a leaf lock
	r      *runtime.Runtime
	ledger *ledger.Ledger // r's ledger for this process; nil: none (directory full)
	byOff  map[uint64]*ledger.Entry
	refs   map[uint64][]*ledger.Entry // references held, by address (refs.go)
}

// ledgerLocked returns this process's ledger of run r, registering it on
// first use. Called with held.mu held.
func ledgerLocked(r *runtime.Runtime) *ledger.Ledger {
	if held.r != r {
		held.r, held.ledger = r, nil
		held.byOff, held.refs = make(map[uint64]*ledger.Entry), make(map[uint64][]*ledger.Entry)
		held.ledger, _ = r.RegisterLedger()
	}
	return held.ledger
}

// registerLedger makes this process's ledger of run r as it joins the run,
// not at its first handle or large message: a fixed cost of every process
// (one 4 KiB pool block), so that the pool's use does not move when a
// program makes its first object.
func registerLedger(r *runtime.Runtime) {
	held.mu.Lock()
	ledgerLocked(r)
	held.mu.Unlock()
}

// reserveEntry returns a ledger entry for a block about to be taken (nil
// when there is none: the block then goes unrecorded).
func reserveEntry(r *runtime.Runtime) *ledger.Entry {
	held.mu.Lock()
	l := ledgerLocked(r)
	held.mu.Unlock()
	return l.Reserve()
}

// reserveRefEntry returns a ledger entry for a reference (nil: none left).
func reserveRefEntry(r *runtime.Runtime) *ledger.Entry {
	held.mu.Lock()
	l := ledgerLocked(r)
	held.mu.Unlock()
	return l.ReserveRef()
}

// forgetRun drops what held knows of the run that is ending (its pool is
// about to be unmapped).
func forgetRun() {
	held.mu.Lock()
	held.r, held.ledger, held.byOff, held.refs = nil, nil, nil, nil
	held.mu.Unlock()
}

// holder is e as a channel.Holder (a nil entry is no holder at all).
func holder(e *ledger.Entry) channel.Holder {
	if e == nil {
		return nil
	}
	return e
}

// remember notes that the block at off is recorded in e.
func remember(off uint64, e *ledger.Entry) {
	if e == nil {
		return
	}
	held.mu.Lock()
	if held.byOff != nil {
		held.byOff[off] = e
	}
	held.mu.Unlock()
}

// forget drops off's note if it is still e's (the block went into a
// channel, and may already be another entry's in this process).
func forget(off uint64, e *ledger.Entry) {
	if e == nil {
		return
	}
	held.mu.Lock()
	if held.byOff[off] == e {
		delete(held.byOff, off)
	}
	held.mu.Unlock()
}

// heldEntry is the entry recording the block at off (nil: none).
func heldEntry(off uint64) *ledger.Entry {
	held.mu.Lock()
	defer held.mu.Unlock()
	return held.byOff[off]
}

// takeEntry removes and returns the entry recording the block at off.
func takeEntry(off uint64) *ledger.Entry {
	held.mu.Lock()
	defer held.mu.Unlock()
	e := held.byOff[off]
	delete(held.byOff, off)
	return e
}

// reapInterval is how often the head looks after the run's pool.
const reapInterval = 500 * time.Millisecond

// How many passes (of reapInterval) a free pool block stays committed before
// its pages go back to the kernel: about 1 s where the shared-memory
// filesystem is tight (pool.Pool.Tight), 10 s elsewhere, so that a program
// that sends large messages every few seconds keeps its pages warm.
const (
	scavengeAgeTight = 2
	scavengeAge      = 20
)

// tendPool, every reapInterval until stop is closed, gives back the blocks
// and references recorded by the run's processes that have died, and gives
// the pages of long-free blocks back to the kernel (the head runs it).
func tendPool(r *runtime.Runtime, stop <-chan struct{}) {
	d, err := r.Ledgers()
	if err != nil {
		return
	}
	release := releaseRef(r)
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d.Reap(proc.Alive, release)
			age := uint64(scavengeAge)
			if r.Pool.Tight() {
				age = scavengeAgeTight
			}
			r.Pool.Scavenge(age)
		}
	}
}
