package channel

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// Recv takes the oldest message, waiting at most timeout (negative: no
// limit; 0: never) while the channel is empty. An inline payload is copied
// into dst (a dst of len >= Inline() always suffices; a shorter one that
// cannot hold the message gives ErrShortBuffer with m.Len set and leaves
// the message queued). A large payload is handed over (m.Large): read it
// with Heap.Bytes(m.Off, m.Len), then call ReleaseMessage(m). Errors:
// ErrEmpty when the time ran out, ErrClosed once the channel is closed and
// drained, ErrBadHandle on a destroyed channel.
func (c *Channel) Recv(dst []byte, timeout time.Duration) (Message, error) {
	m, _, err := c.recv(dst, false, timeout, nil)
	return m, err
}

// RecvHeld is Recv that records a large message's block in h (h.Hold)
// under the channel lock, as it is taken. A nil h is none.
func (c *Channel) RecvHeld(dst []byte, timeout time.Duration, h Holder) (Message, error) {
	m, _, err := c.recv(dst, false, timeout, h)
	return m, err
}

// RecvBytes is Recv into a new slice, for both kinds of message (a large
// payload is copied out and released).
func (c *Channel) RecvBytes(timeout time.Duration) ([]byte, error) {
	m, out, err := c.recv(nil, true, timeout, nil)
	if err != nil {
		return nil, err
	}
	if m.Large {
		out = append(make([]byte, 0, m.Len), c.heap.Bytes(m.Off, m.Len)...)
		if err := c.ReleaseMessage(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// recv: // KEEP IN SYNC with pyext/fastpath_chan.c (waking senders of a bounded
// channel: nfWaiters read under the lock, one futex wake on nfSeq).
func (c *Channel) recv(dst []byte, alloc bool, timeout time.Duration, holder Holder) (Message, []byte, error) {
	h := c.h
	deadline := futex.Deadline(timeout)
	spun := false
	for {
		if err := c.lock(); err != nil {
			return Message{}, nil, err
		}
		if h.count > 0 {
			m, out, err := c.takeLocked(dst, alloc)
			if err == nil && m.Large && holder != nil {
				holder.Hold(m.Off, m.Len)
			}
			wake := err == nil && c.capacity != 0 && atomic.LoadUint32(&h.nfWaiters) != 0
			h.mu.Unlock()
			if err == nil {
				c.noteTaken(m)
			}
			if wake {
				futex.Wake(&h.nfSeq, 1)
			}
			return m, out, err
		}
		if h.closed != 0 {
			h.mu.Unlock()
			return Message{}, nil, ErrClosed
		}
		if timeout == 0 {
			h.mu.Unlock()
			return Message{}, nil, ErrEmpty
		}
		if !spun {
			h.mu.Unlock()
			spun = true
			ready := func() bool {
				return atomic.LoadUint64(&h.count) != 0 || atomic.LoadUint32(&h.closed) != 0
			}
			if !spin(ready) {
				full := c.largeSpin()
				d := full
				if left := futex.Remaining(deadline); left >= 0 {
					d = min(d, left)
				}
				if d > 0 && !spinFor(ready, d) && d == full {
					// A whole spin found nothing: the stream has paused,
					// and the next waits (a caller waiting in slices)
					// sleep at once.
					c.lastLarge.Store(0)
				}
			}
			continue
		}
		d := sleepFor(deadline)
		if d == 0 {
			h.mu.Unlock()
			return Message{}, nil, ErrEmpty
		}
		atomic.AddUint32(&h.neWaiters, 1)
		seq := atomic.LoadUint32(&h.neSeq)
		h.mu.Unlock()
		futex.Wait(&h.neSeq, seq, d)
		atomic.AddUint32(&h.neWaiters, ^uint32(0))
	}
}
