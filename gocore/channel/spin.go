package channel

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// spin yields a few times until cond holds; it reports whether it did.
func spin(cond func() bool) bool {
	for i := 0; i < spinRounds; i++ {
		futex.Yield()
		if cond() {
			return true
		}
	}
	return false
}

// Large-message streams: a receiver that finds the channel empty right after
// taking a large message is most likely waiting for the sender's copy of
// the next one, which takes about the message's size at memory bandwidth.
// Sleeping instead costs a futex wake-up on both sides per message (the
// sender's syscall, the receiver's wake-up latency), a large share of a
// 64 KiB-1 MiB message's time. So such a receiver keeps yielding for about
// that copy time before it sleeps.
const (
	largeSpinBytesPerUs = 4 << 10 // ~4 GB/s: a copy this fast or faster is covered
	largeSpinMin        = 20 * time.Microsecond
	largeSpinMax        = time.Millisecond
)

// largeSpin is how long a receiver keeps spinning after the short spin
// failed: 0 unless the last message this handle took was large.
func (c *Channel) largeSpin() time.Duration {
	n := c.lastLarge.Load()
	if n == 0 {
		return 0
	}
	return copyTime(n)
}

// copyTime is about how long a copy of n bytes takes, clamped to
// [largeSpinMin, largeSpinMax].
func copyTime(n uint64) time.Duration {
	d := time.Duration(n/largeSpinBytesPerUs) * time.Microsecond
	return min(max(d, largeSpinMin), largeSpinMax)
}

// Pacing a stream of large messages: a sender far ahead of its receiver
// spreads the stream over many blocks, and each has left the caches by the
// time it is read. Measured with 1 MiB messages: 20-60 queued, 88 µs a
// message; at most 2 queued, ~10% faster (bench/xcopy.c shows the same in
// plain C: 32 slots against 2-3). So a large send finding paceDepth or more
// messages queued, while a receiver has taken one since this handle's
// previous large send, first yields for up to one copy time (copyTime)
// until one is taken. A sender whose receiver is not taking (a queue filled
// for later) never waits: nfSeq has not moved. Nor does a send ever wait
// longer than that, so it still never blocks on an unbounded channel, and
// a send that must not wait at all (timeout 0) is not paced.
const (
	paceMinBytes = 256 << 10
	paceDepth    = 2
)

// paceLarge is that wait, before a large message of n bytes is allocated
// (allocLarge); it reports whether it waited.
func (c *Channel) paceLarge(n uint64) bool {
	if n < paceMinBytes {
		return false
	}
	h := c.h
	seq := atomic.LoadUint32(&h.nfSeq)
	if c.paceSeq.Swap(seq) == seq || atomic.LoadUint64(&h.count) < paceDepth {
		return false
	}
	spinFor(func() bool {
		return atomic.LoadUint64(&h.count) < paceDepth || atomic.LoadUint32(&h.closed) != 0
	}, copyTime(n))
	return true
}

// spinFor yields until cond holds or d has passed; it reports whether cond held.
func spinFor(cond func() bool, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		for i := 0; i < 16; i++ {
			futex.Yield()
			if cond() {
				return true
			}
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// sleepFor is the next futex sleep: the time left, capped at maxSleep; 0
// once the deadline has passed.
func sleepFor(deadline time.Time) time.Duration {
	left := futex.Remaining(deadline)
	if left < 0 || left > maxSleep {
		return maxSleep
	}
	return left
}

// noteTaken records whether m, just taken by this handle, was large (for largeSpin).
func (c *Channel) noteTaken(m Message) {
	var n uint64
	if m.Large {
		n = m.Len
	}
	if c.lastLarge.Load() != n {
		c.lastLarge.Store(n)
	}
}
