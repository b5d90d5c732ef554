package shmsync

import (
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// ErrTooManyReleases reports a Release that would raise a bounded
// Semaphore past its maximum (Python: ValueError("semaphore or lock
// released too many times")).
var ErrTooManyReleases = errors.New("shmsync: semaphore or lock released too many times")

// KEEP IN SYNC WITH pyext/fastpath_sync.c (Sem: try_acquire, sem_release_method):
// it runs the steps of this type that never wait as C atomics on the same
// words (layout, CAS steps, and the rule "futex-wake only when waiters !=
// 0"), mixed freely with these methods.
//
// Semaphore is a cross-process counting semaphore; a multiprocessing Lock is
// a Semaphore initialized with Init(1, 1), a BoundedSemaphore(n) is
// Init(n, n), a Semaphore(n) is Init(n, 0).
//
// Layout (16 bytes, 4-byte aligned):
//
//	+0  count   uint32  current value; the futex word sleepers wait on
//	+4  max     uint32  largest allowed value, 0 = unbounded
//	+8  waiters uint32  processes/threads registered as (about to be) sleeping
//	+12 spin    uint32  adaptive spin hint
//
// The zero value is a Semaphore with value 0 and no maximum. Unlike Mutex, a
// Semaphore may be released by any process, not only by the acquirer, and a
// process that dies holding it does not give it back (as with POSIX
// semaphores). A waiter that dies while sleeping leaves waiters one too
// high, which only costs its wakers a needless futex wake.
type Semaphore struct {
	count   uint32
	max     uint32
	waiters uint32
	spin    uint32
}

// Init sets the value and the maximum (0 = unbounded). When max is not 0
// and value exceeds it, the maximum is raised to value. Init must happen
// before the Semaphore is shared.
func (s *Semaphore) Init(value, max uint32) {
	if max != 0 && value > max {
		max = value
	}
	atomic.StoreUint32(&s.waiters, 0)
	atomic.StoreUint32(&s.spin, 0)
	atomic.StoreUint32(&s.max, max)
	atomic.StoreUint32(&s.count, value)
}

func (s *Semaphore) tryAcquire() bool {
	for {
		c := atomic.LoadUint32(&s.count)
		if c == 0 {
			return false
		}
		if atomic.CompareAndSwapUint32(&s.count, c, c-1) {
			return true
		}
	}
}

// Acquire decrements the value, waiting while it is 0, for at most timeout
// (negative: no limit; 0: just try). It reports whether it decremented.
func (s *Semaphore) Acquire(timeout time.Duration) bool {
	if s.tryAcquire() {
		return true
	}
	if timeout == 0 {
		return false
	}
	deadline := futex.Deadline(timeout)
	if adaptiveSpin(&s.spin, func() bool { return atomic.LoadUint32(&s.count) != 0 }) && s.tryAcquire() {
		return true
	}
	atomic.AddUint32(&s.waiters, 1)
	defer atomic.AddUint32(&s.waiters, ^uint32(0))
	for {
		// Registered as a waiter before this check: a Release that makes the
		// count non-zero after it sees waiters != 0 and wakes us, or our
		// futex wait sees the changed count and does not sleep.
		if s.tryAcquire() {
			return true
		}
		d := sleepSlice(deadline)
		if d == 0 {
			return false
		}
		futex.Wait(&s.count, 0, d)
	}
}

// Release increments the value and wakes one waiter if any. It returns
// ErrTooManyReleases, leaving the value unchanged, when the value is
// already at its maximum.
func (s *Semaphore) Release() error {
	for {
		c := atomic.LoadUint32(&s.count)
		if m := atomic.LoadUint32(&s.max); (m != 0 && c >= m) || c == math.MaxUint32 {
			return ErrTooManyReleases
		}
		if atomic.CompareAndSwapUint32(&s.count, c, c+1) {
			break
		}
	}
	if atomic.LoadUint32(&s.waiters) != 0 {
		futex.Wake(&s.count, 1)
	}
	return nil
}

// Value returns the current value.
func (s *Semaphore) Value() int { return int(atomic.LoadUint32(&s.count)) }

// Max returns the maximum value, 0 when unbounded.
func (s *Semaphore) Max() uint32 { return atomic.LoadUint32(&s.max) }
