package shmsync

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// Mutex is a cross-process mutual exclusion lock for short critical sections.
//
// Its one word is 0 when unlocked; otherwise it holds the holder's pid, with
// bit 31 set when another party may be sleeping on it (so Unlock only enters
// the kernel when needed). The zero value is an unlocked Mutex. Mutex is not
// reentrant and, unlike Semaphore, must be unlocked by the process that
// locked it.
type Mutex struct {
	state uint32
}

const (
	contended = 1 << 31
	// deadCheckEvery bounds how long a waiter sleeps before checking that the
	// holder is still alive.
	deadCheckEvery = 100 * time.Millisecond
	spinTries      = 64
)

var selfPid = uint32(os.Getpid())

// Lock acquires m, sleeping as long as needed.
func (m *Mutex) Lock() { m.LockTimeout(-1) }

// TryLock acquires m if it is free and reports whether it did.
func (m *Mutex) TryLock() bool {
	return atomic.CompareAndSwapUint32(&m.state, 0, selfPid)
}

// LockTimeout acquires m within timeout (negative: no limit) and reports
// whether it did.
func (m *Mutex) LockTimeout(timeout time.Duration) bool {
	ok, _ := m.LockRecover(timeout)
	return ok
}

// LockRecover is LockTimeout that also reports whether m was taken over
// from a holder that had died holding it: the state m guards may then be
// half-updated, and the caller repairs it before it relies on it.
func (m *Mutex) LockRecover(timeout time.Duration) (ok, tookOver bool) {
	// Fast path: uncontended.
	if atomic.CompareAndSwapUint32(&m.state, 0, selfPid) {
		return true, false
	}
	// Brief spin: critical sections are a few hundred nanoseconds.
	for i := 0; i < spinTries; i++ {
		if atomic.LoadUint32(&m.state) == 0 &&
			atomic.CompareAndSwapUint32(&m.state, 0, selfPid) {
			return true, false
		}
		futex.Yield()
	}
	deadline := futex.Deadline(timeout)
	for {
		s := atomic.LoadUint32(&m.state)
		if s == 0 {
			// Others may still sleep: keep the contended bit so our Unlock wakes them.
			if atomic.CompareAndSwapUint32(&m.state, 0, selfPid|contended) {
				return true, false
			}
			continue
		}
		if s&contended == 0 && !atomic.CompareAndSwapUint32(&m.state, s, s|contended) {
			continue
		}
		left := futex.Remaining(deadline)
		if left == 0 {
			return false, false
		}
		if left < 0 || left > deadCheckEvery {
			left = deadCheckEvery
		}
		if futex.Wait(&m.state, s|contended, left) == futex.ErrTimeout && m.takeOverIfHolderDied(s|contended) {
			return true, true
		}
	}
}

// takeOverIfHolderDied takes the lock for this process when its holder no
// longer exists (the holder's pid in the word, swapped for ours: among
// several waiters one wins), and reports whether it did.
func (m *Mutex) takeOverIfHolderDied(seen uint32) bool {
	holder := seen &^ contended
	if holder == selfPid || holder == 0 || processAlive(int(holder)) {
		return false
	}
	// Keep the contended bit: other waiters may sleep on the word.
	return atomic.CompareAndSwapUint32(&m.state, seen, selfPid|contended)
}

// Unlock releases m. Unlocking an unlocked Mutex is a no-op.
func (m *Mutex) Unlock() {
	if atomic.SwapUint32(&m.state, 0)&contended != 0 {
		futex.Wake(&m.state, 1)
	}
}

// Holder returns the pid holding m, or 0.
func (m *Mutex) Holder() int { return int(atomic.LoadUint32(&m.state) &^ contended) }

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
