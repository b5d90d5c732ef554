package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"math"

	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// RLock, Event, Condition and Barrier (dragon_mp/synchronize.py). Control
// plane through gopy; the blocking calls (acquire, waits) are //export
// functions that Python calls through ctypes in <=100 ms slices. References
// go through SyncRetain / SyncRelease (sync.go), which accept any kind.

// ---- RLock: a shmsync.RecursiveLock; the owner identity (pid<<32 | thread
// number) is chosen by Python.

// RLockCreate makes an unlocked recursive lock and returns its address.
func RLockCreate() (int64, error) {
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		a, err := r.NewRecursiveLock()
		return int64(a), err
	})
}

// RLockOwner is the identity of the lock's holder, 0 when free.
func RLockOwner(addr int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.RLockOwner, addr)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		l, err := r.RecursiveLock(runtime.Address(addr))
		if err != nil {
			return 0, err
		}
		return int64(l.Owner()), nil
	})
}

// RLockCount is the holder's recursion depth, 0 when free.
func RLockCount(addr int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.RLockCount, addr)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		l, err := r.RecursiveLock(runtime.Address(addr))
		if err != nil {
			return 0, err
		}
		return int64(l.Count()), nil
	})
}

// RLockReleaseAll releases every level of the lock held by owner (what a
// Condition wait does first) and returns how many there were; codeNotOwner
// when owner does not hold it.
func RLockReleaseAll(addr, owner int64) (count int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.RLockReleaseAll, addr, owner)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	l, err := r.RecursiveLock(runtime.Address(addr))
	if err != nil {
		return 0, pyErr(err)
	}
	n := l.Count()
	if owner == 0 || l.Owner() != uint64(owner) {
		return 0, pyErr(shmsync.ErrNotOwner)
	}
	for i := 0; i < n; i++ {
		if err := l.Release(uint64(owner)); err != nil {
			return int64(i), pyErr(err)
		}
	}
	return int64(n), nil
}

// dmp_rlock_acquire: 1 acquired (or re-entered), 0 timed out, <0 error.
//
//export dmp_rlock_acquire
func dmp_rlock_acquire(addr, owner C.uint64_t, timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if isRemote(int64(addr)) {
		return remoteWait(remoteop.RLockAcquire, int64(addr), duration(timeoutNs), int64(owner))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	l, err := r.RecursiveLock(runtime.Address(addr))
	if err != nil {
		return cCode(err)
	}
	if owner == 0 {
		return cCode(errInvalid)
	}
	if l.Acquire(uint64(owner), duration(timeoutNs)) {
		return 1
	}
	return 0
}

// dmp_rlock_release: 0, or <0 error (codeNotOwner when owner does not hold it).
//
//export dmp_rlock_release
func dmp_rlock_release(addr, owner C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	if isRemote(int64(addr)) {
		return remoteRC(remoteop.RLockRelease, int64(addr), int64(owner))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	l, err := r.RecursiveLock(runtime.Address(addr))
	if err != nil {
		return cCode(err)
	}
	if err := l.Release(uint64(owner)); err != nil {
		return cCode(err)
	}
	return 0
}

// ---- Event: a shmsync.Event.

// EventCreate makes a clear event and returns its address.
func EventCreate() (int64, error) {
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		a, err := r.NewEvent()
		return int64(a), err
	})
}

func eventAt(addr int64) (*shmsync.Event, error) {
	r, err := current()
	if err != nil {
		return nil, err
	}
	return r.Event(runtime.Address(addr))
}

// EventSet sets the flag and wakes every waiter.
func EventSet(addr int64) error {
	if isRemote(addr) {
		return remoteErr(remoteop.EventSet, addr)
	}
	_, err := onRuntime(func(r *runtime.Runtime) (int64, error) {
		e, err := r.Event(runtime.Address(addr))
		if err == nil {
			e.Set()
		}
		return 0, err
	})
	return err
}

// EventClear clears the flag.
func EventClear(addr int64) error {
	if isRemote(addr) {
		return remoteErr(remoteop.EventClear, addr)
	}
	_, err := onRuntime(func(r *runtime.Runtime) (int64, error) {
		e, err := r.Event(runtime.Address(addr))
		if err == nil {
			e.Clear()
		}
		return 0, err
	})
	return err
}

// EventIsSet is 1 when the flag is set, else 0.
func EventIsSet(addr int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.EventIsSet, addr)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		e, err := r.Event(runtime.Address(addr))
		if err != nil {
			return 0, err
		}
		return flag(e.IsSet()), nil
	})
}

// dmp_event_wait: 1 the flag is (or was, meanwhile) set, 0 timed out, <0 error.
//
//export dmp_event_wait
func dmp_event_wait(addr C.uint64_t, timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if isRemote(int64(addr)) {
		return remoteWait(remoteop.EventWait, int64(addr), duration(timeoutNs))
	}
	e, err := eventAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	if e.Wait(duration(timeoutNs)) {
		return 1
	}
	return 0
}

// ---- Condition: a shmsync.Cond waiter queue; its lock is a separate
// Lock or RLock object that Python holds around these calls.

// CondCreate makes a condition variable's waiter queue and returns its address.
func CondCreate() (int64, error) {
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		a, err := r.NewCondition()
		return int64(a), err
	})
}

// CondEnqueue starts a wait (call it holding the lock, before releasing
// it) and returns the wait's handle for dmp_cond_wait and CondFinish.
func CondEnqueue(addr int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.CondEnqueue, addr)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		w, err := r.CondEnqueue(runtime.Address(addr))
		return int64(w), err
	})
}

// CondFinish ends a wait, frees its handle, and returns 1 if it was notified.
func CondFinish(addr, waiter int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.CondFinish, addr, waiter)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		ok, err := r.CondFinish(runtime.Address(addr), runtime.Address(waiter))
		return flag(ok), err
	})
}

// CondNotify notifies up to n of the oldest waits (call it holding the
// lock) and returns how many it notified.
func CondNotify(addr, n int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.CondNotify, addr, n)
	}
	n = max(0, min(n, math.MaxInt32)) // more than there can be waiters
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		woken, err := r.CondNotify(runtime.Address(addr), int(n))
		return int64(woken), err
	})
}

// CondWaiting is the number of waits in progress (enqueued, not finished).
func CondWaiting(addr int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.CondWaiting, addr)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		c, err := r.Condition(runtime.Address(addr))
		if err != nil {
			return 0, err
		}
		return int64(c.Waiting()), nil
	})
}

// dmp_cond_wait: 1 notified, 0 timed out (the wait stays queued), <0 error.
//
//export dmp_cond_wait
func dmp_cond_wait(addr, waiter C.uint64_t, timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if isRemote(int64(addr)) {
		return remoteWait(remoteop.CondWait, int64(addr), duration(timeoutNs), int64(waiter))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	ok, err := r.CondWait(runtime.Address(addr), runtime.Address(waiter), duration(timeoutNs))
	if err != nil {
		return cCode(err)
	}
	if ok {
		return 1
	}
	return 0
}

// ---- Barrier: the shared state (state, count) of a threading.Barrier whose
// logic runs in Python under a Condition.

// BarrierCreate makes a barrier's shared state (filling, empty).
func BarrierCreate() (int64, error) {
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		a, err := r.NewBarrierState()
		return int64(a), err
	})
}

// BarrierGet reads field 0 (state) or 1 (count).
func BarrierGet(addr, field int64) (int64, error) {
	if isRemote(addr) {
		return remoteInt(remoteop.BarrierGet, addr, field)
	}
	return onRuntime(func(r *runtime.Runtime) (int64, error) {
		b, err := r.Barrier(runtime.Address(addr))
		if err != nil {
			return 0, err
		}
		x, ok := b.Get(int(field))
		if !ok {
			return 0, errInvalid
		}
		return int64(x), nil
	})
}

// BarrierSet writes field 0 (state) or 1 (count).
func BarrierSet(addr, field, v int64) error {
	if isRemote(addr) {
		return remoteErr(remoteop.BarrierSet, addr, field, v)
	}
	_, err := onRuntime(func(r *runtime.Runtime) (int64, error) {
		b, err := r.Barrier(runtime.Address(addr))
		if err != nil {
			return 0, err
		}
		if v < math.MinInt32 || v > math.MaxInt32 || !b.Set(int(field), int32(v)) {
			return 0, errInvalid
		}
		return 0, nil
	})
	return err
}
