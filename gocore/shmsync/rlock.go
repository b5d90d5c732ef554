package shmsync

import (
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// ErrNotOwner reports a Release of a RecursiveLock by a party that does not
// hold it (Python: "cannot release un-acquired lock").
var ErrNotOwner = errors.New("shmsync: cannot release un-acquired lock")

// KEEP IN SYNC WITH pyext/fastpath_sync.c (RLock: rlock_acquire, rlock_release):
// it runs the steps of this type that never wait as C atomics on the same
// words (layout, CAS steps, and the rule "futex-wake only when waiters !=
// 0"), mixed freely with these methods.
//
// RecursiveLock is a cross-process reentrant lock (multiprocessing.RLock).
// Its holder is identified by a non-zero uint64 chosen by the caller, unique
// per thread across processes (e.g. pid<<32 | thread id); the holder may
// acquire it again and must release it as many times.
//
// Layout (24 bytes, 8-byte aligned):
//
//	+0  state   uint32  0 free, 1 held; the futex word sleepers wait on
//	+4  waiters uint32  parties registered as (about to be) sleeping
//	+8  count   uint32  recursion depth, 0 when free
//	+12 spin    uint32  adaptive spin hint
//	+16 owner   uint64  holder identity, 0 when free
//
// The zero value is an unlocked RecursiveLock. A holder that dies keeps it
// locked (as CPython's RLock on a POSIX semaphore does).
type RecursiveLock struct {
	state   uint32
	waiters uint32
	count   uint32
	spin    uint32
	owner   uint64
}

// Acquire takes l for owner, waiting at most timeout (negative: no limit;
// 0: just try), and reports whether owner now holds it. An owner that
// already holds l just increments the recursion count. Owner 0 is invalid
// (it means "nobody") and is always refused.
func (l *RecursiveLock) Acquire(owner uint64, timeout time.Duration) bool {
	if owner == 0 {
		return false
	}
	// Only owner itself stores owner into l.owner, so equality here means
	// this very thread holds l.
	if atomic.LoadUint64(&l.owner) == owner {
		n := atomic.LoadUint32(&l.count)
		if n == math.MaxUint32 {
			return false
		}
		atomic.StoreUint32(&l.count, n+1)
		return true
	}
	if !l.lock(timeout) {
		return false
	}
	atomic.StoreUint64(&l.owner, owner)
	atomic.StoreUint32(&l.count, 1)
	return true
}

func (l *RecursiveLock) lock(timeout time.Duration) bool {
	if atomic.CompareAndSwapUint32(&l.state, 0, 1) {
		return true
	}
	if timeout == 0 {
		return false
	}
	deadline := futex.Deadline(timeout)
	if adaptiveSpin(&l.spin, func() bool { return atomic.LoadUint32(&l.state) == 0 }) &&
		atomic.CompareAndSwapUint32(&l.state, 0, 1) {
		return true
	}
	atomic.AddUint32(&l.waiters, 1)
	defer atomic.AddUint32(&l.waiters, ^uint32(0))
	for {
		if atomic.CompareAndSwapUint32(&l.state, 0, 1) {
			return true
		}
		d := sleepSlice(deadline)
		if d == 0 {
			return false
		}
		futex.Wait(&l.state, 1, d)
	}
}

// Release undoes one Acquire by owner, unlocking l when the count reaches
// 0. It returns ErrNotOwner when owner does not hold l.
func (l *RecursiveLock) Release(owner uint64) error {
	if owner == 0 || atomic.LoadUint64(&l.owner) != owner {
		return ErrNotOwner
	}
	n := atomic.LoadUint32(&l.count)
	if n > 1 {
		atomic.StoreUint32(&l.count, n-1)
		return nil
	}
	atomic.StoreUint32(&l.count, 0)
	atomic.StoreUint64(&l.owner, 0)
	atomic.StoreUint32(&l.state, 0)
	if atomic.LoadUint32(&l.waiters) != 0 {
		futex.Wake(&l.state, 1)
	}
	return nil
}

// Count returns the recursion depth of the current holder, 0 when free.
func (l *RecursiveLock) Count() int { return int(atomic.LoadUint32(&l.count)) }

// Owner returns the current holder's identity, 0 when free.
func (l *RecursiveLock) Owner() uint64 { return atomic.LoadUint64(&l.owner) }
