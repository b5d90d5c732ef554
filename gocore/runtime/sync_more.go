package runtime

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// The sync objects beyond semaphores (multiprocessing.RLock, Event,
// Condition, Barrier), each a generic object (objects.go) of its kind with
// the shmsync primitive as its payload. References are the generic ones
// (RetainObject / ReleaseObject).
//
// A Condition is a KindCondition object holding a shmsync.Cond; every wait
// on it allocates a waiter node (an object of the private kind
// kindCondWaiter, named by its Address) that the waiter frees when its wait
// ends, or the notifier frees when the waiter's process died.

// kindCondWaiter marks the waiter node of one Condition wait. It is private
// to this file, far above the public Kind* values.
const kindCondWaiter uint32 = 0x1c0d

// NewRecursiveLock creates an unlocked recursive lock.
func (r *Runtime) NewRecursiveLock() (Address, error) {
	a, _, err := newObjectOf[shmsync.RecursiveLock](r, KindRLock)
	return a, err
}

// RecursiveLock returns the recursive lock at a.
func (r *Runtime) RecursiveLock(a Address) (*shmsync.RecursiveLock, error) {
	return objectOf[shmsync.RecursiveLock](r, a, KindRLock)
}

// NewEvent creates a clear event.
func (r *Runtime) NewEvent() (Address, error) {
	a, _, err := newObjectOf[shmsync.Event](r, KindEvent)
	return a, err
}

// Event returns the event at a.
func (r *Runtime) Event(a Address) (*shmsync.Event, error) {
	return objectOf[shmsync.Event](r, a, KindEvent)
}

// NewCondition creates a condition variable's waiter queue (the lock of a
// Python Condition is a separate object).
func (r *Runtime) NewCondition() (Address, error) {
	a, _, err := newObjectOf[shmsync.Cond](r, KindCondition)
	return a, err
}

// Condition returns the condition variable at a.
func (r *Runtime) Condition(a Address) (*shmsync.Cond, error) {
	return objectOf[shmsync.Cond](r, a, KindCondition)
}

func (r *Runtime) condWaiter(w Address) (*shmsync.CondWaiter, error) {
	return objectOf[shmsync.CondWaiter](r, w, kindCondWaiter)
}

// waiterAt resolves queued waiter handles; a handle that is not a live
// waiter node means the queue is corrupt, which panics (callers recover).
func (r *Runtime) waiterAt(h uint64) *shmsync.CondWaiter {
	w, err := r.condWaiter(Address(h))
	if err != nil {
		panic("runtime: condition queue holds an invalid waiter")
	}
	return w
}

// CondEnqueue starts a wait on the condition at a: it allocates a waiter
// node, queues it, and returns its address for CondWait and CondFinish.
// Call it while holding the condition's lock.
func (r *Runtime) CondEnqueue(a Address) (Address, error) {
	c, err := r.Condition(a)
	if err != nil {
		return 0, err
	}
	w, node, err := newObjectOf[shmsync.CondWaiter](r, kindCondWaiter)
	if err != nil {
		return 0, err
	}
	c.Enqueue(uint64(w), node, r.waiterAt)
	return w, nil
}

// CondWait waits for the wait w on the condition at a to be notified, for at
// most timeout (negative: no limit; 0: just check), and reports whether it
// was. The wait stays queued when it times out.
func (r *Runtime) CondWait(a, w Address, timeout time.Duration) (bool, error) {
	c, err := r.Condition(a)
	if err != nil {
		return false, err
	}
	n, err := r.condWaiter(w)
	if err != nil {
		return false, err
	}
	return c.Wait(n, timeout), nil
}

// CondFinish ends the wait w on the condition at a, frees its node, and
// reports whether it was notified.
func (r *Runtime) CondFinish(a, w Address) (bool, error) {
	c, err := r.Condition(a)
	if err != nil {
		return false, err
	}
	n, err := r.condWaiter(w)
	if err != nil {
		return false, err
	}
	notified := c.Finish(uint64(w), n, r.waiterAt)
	return notified, r.ReleaseObject(w)
}

// CondNotify notifies up to n of the oldest waits on the condition at a and
// returns how many it notified. Call it holding the condition's lock.
func (r *Runtime) CondNotify(a Address, n int) (int, error) {
	c, err := r.Condition(a)
	if err != nil {
		return 0, err
	}
	woken, dropped := c.Notify(n, r.waiterAt)
	for _, h := range dropped { // nodes of waiters whose process died
		if e := r.ReleaseObject(Address(h)); e != nil && err == nil {
			err = e
		}
	}
	return woken, err
}

// BarrierState is the shared part of a multiprocessing.Barrier (the rest is
// a Condition): the fields of CPython's threading.Barrier that change, read
// and written under the barrier's Condition.
//
// Layout (8 bytes): +0 state int32 (0 filling, 1 draining, -1 resetting,
// -2 broken), +4 count int32 (parties inside wait()).
type BarrierState struct {
	state int32
	count int32
}

// Barrier state fields, for Get and Set.
const (
	BarrierFieldState = 0
	BarrierFieldCount = 1
)

func (b *BarrierState) field(f int) *int32 {
	switch f {
	case BarrierFieldState:
		return &b.state
	case BarrierFieldCount:
		return &b.count
	}
	return nil
}

// Get returns field f (BarrierField*); ok is false for an unknown field.
func (b *BarrierState) Get(f int) (v int32, ok bool) {
	p := b.field(f)
	if p == nil {
		return 0, false
	}
	return atomic.LoadInt32(p), true
}

// Set stores v into field f and reports whether f is a known field.
func (b *BarrierState) Set(f int, v int32) bool {
	p := b.field(f)
	if p == nil {
		return false
	}
	atomic.StoreInt32(p, v)
	return true
}

// NewBarrierState creates a barrier's shared state: filling, no one inside.
func (r *Runtime) NewBarrierState() (Address, error) {
	a, _, err := newObjectOf[BarrierState](r, KindBarrier)
	return a, err
}

// Barrier returns the barrier state at a.
func (r *Runtime) Barrier(a Address) (*BarrierState, error) {
	return objectOf[BarrierState](r, a, KindBarrier)
}
