package shmsync

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// KEEP IN SYNC WITH pyext/fastpath_sync.c (Event: event_set, event_clear,
// event_is_set): it runs the steps of this type that never wait as C atomics
// on the same words (layout, CAS steps, and the rule "futex-wake only when
// waiters != 0"), mixed freely with these methods.
//
// Event is a cross-process event flag (multiprocessing.Event).
//
// Layout (8 bytes, 4-byte aligned):
//
//	+0  state   uint32  bit 0: set; bits 31..1: number of Sets (wrapping);
//	                    the futex word sleepers wait on
//	+4  waiters uint32  parties registered as (about to be) sleeping
//
// The zero value is a clear Event. Because every Set that changes the flag
// also bumps the Set count, a waiter that sleeps through a Set quickly
// followed by a Clear still returns true.
type Event struct {
	state   uint32
	waiters uint32
}

// Set sets the flag and wakes every waiter. Setting a set Event does nothing.
func (e *Event) Set() {
	for {
		s := atomic.LoadUint32(&e.state)
		if s&1 != 0 {
			return
		}
		if atomic.CompareAndSwapUint32(&e.state, s, (s+2)|1) {
			break
		}
	}
	if atomic.LoadUint32(&e.waiters) != 0 {
		futex.Wake(&e.state, math.MaxInt32)
	}
}

// Clear clears the flag.
func (e *Event) Clear() {
	for {
		s := atomic.LoadUint32(&e.state)
		if s&1 == 0 || atomic.CompareAndSwapUint32(&e.state, s, s&^1) {
			return
		}
	}
}

// IsSet reports whether the flag is set.
func (e *Event) IsSet() bool { return atomic.LoadUint32(&e.state)&1 != 0 }

// Wait waits until the flag is set, for at most timeout (negative: no
// limit; 0: just check), and reports whether it was set (or was set and
// cleared again meanwhile).
func (e *Event) Wait(timeout time.Duration) bool {
	s := atomic.LoadUint32(&e.state)
	if s&1 != 0 {
		return true
	}
	if timeout == 0 {
		return false
	}
	// From a clear state, the word changes only through a Set.
	changed := func() bool { return atomic.LoadUint32(&e.state) != s }
	deadline := futex.Deadline(timeout)
	var hint uint32 // events wait long: a minimal, fixed spin
	if adaptiveSpin(&hint, changed) {
		return true
	}
	atomic.AddUint32(&e.waiters, 1)
	defer atomic.AddUint32(&e.waiters, ^uint32(0))
	for {
		if changed() {
			return true
		}
		d := sleepSlice(deadline)
		if d == 0 {
			return false
		}
		futex.Wait(&e.state, s, d)
	}
}
