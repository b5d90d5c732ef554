package shmsync

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

const (
	// maxSleep bounds one futex sleep of a waiter, so that a lost wake-up
	// (a waker that died between its store and its wake) costs at most this.
	maxSleep = 100 * time.Millisecond

	// minSpin and maxSpin bound the adaptive spin budget (in sched_yield rounds).
	minSpin = 4
	maxSpin = 200
)

// adaptiveSpin yields the processor up to an adaptive number of times until
// ready reports true, and reports whether it did. *hint (a word of the
// primitive, so it adapts for every process) remembers roughly twice the
// number of rounds a successful spin recently needed: it grows when
// spinning pays off and decays when it does not. It is only a hint; racy
// updates are harmless.
func adaptiveSpin(hint *uint32, ready func() bool) bool {
	h := atomic.LoadUint32(hint)
	if h > maxSpin {
		h = maxSpin
	}
	budget := minSpin + h
	for i := uint32(0); i < budget; i++ {
		futex.Yield()
		if ready() {
			want := 2*i + minSpin
			if want > maxSpin {
				want = maxSpin
			}
			atomic.StoreUint32(hint, uint32(int32(h)+(int32(want)-int32(h))/8))
			return true
		}
	}
	atomic.StoreUint32(hint, h-h/8-min(h, 1))
	return false
}

// sleepSlice is the time to sleep next: what is left until deadline, capped
// at maxSleep; 0 means the deadline has passed.
func sleepSlice(deadline time.Time) time.Duration {
	left := futex.Remaining(deadline)
	if left < 0 || left > maxSleep {
		return maxSleep
	}
	return left
}
