package channel

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// Send queues msg, waiting at most timeout (negative: no limit; 0: never)
// while a bounded channel is full. It returns ErrFull when the time ran
// out, ErrClosed on a closed channel, ErrBadHandle on a destroyed one, and
// the heap's error unchanged when a block for a large payload or a chunk
// cannot be allocated. A payload longer than Inline() is copied into a heap
// block before the channel lock is taken. Zero-length messages are valid.
func (c *Channel) Send(msg []byte, timeout time.Duration) error {
	return c.SendParts(timeout, msg)
}

// SendParts sends the concatenation of parts as one message, copying each
// part once, straight into the slot or the message's heap block (gather:
// a caller can frame a payload without first building a joined copy).
func (c *Channel) SendParts(timeout time.Duration, parts ...[]byte) error {
	return c.SendPartsHeld(timeout, nil, parts...)
}

// SendPartsHeld is SendParts that records a large message's block in h
// while it is filled (h.Hold), until it is queued (h.Clear, under the
// channel lock) or freed after an error. Every error clears h too, so the
// entry the caller reserved is never left reserved. A nil h is none.
func (c *Channel) SendPartsHeld(timeout time.Duration, holder Holder, parts ...[]byte) error {
	if c.dead.Load() {
		clearHolder(holder)
		return ErrBadHandle
	}
	h := c.h
	if atomic.LoadUint32(&h.closed) != 0 {
		clearHolder(holder)
		return ErrClosed
	}
	var n uint64
	for _, p := range parts {
		n += uint64(len(p))
	}
	large := n > uint64(c.inline)
	var msg []byte
	var boff uint64
	switch {
	case large:
		off, err := c.allocLarge(n, timeout, holder)
		if err != nil {
			clearHolder(holder) // no block: the entry the caller reserved is free again
			return err
		}
		dst := c.heap.Bytes(off, n)
		for _, p := range parts {
			dst = dst[copy(dst, p):]
		}
		boff = off
	case len(parts) == 1:
		msg = parts[0]
	default:
		msg = make([]byte, 0, n) // small multi-part messages are rare
		for _, p := range parts {
			msg = append(msg, p...)
		}
	}
	if !large {
		clearHolder(holder) // an inline message holds no block
		holder = nil
	}
	err := c.send(msg, n, boff, large, timeout, holder)
	if err != nil && large {
		if holder != nil {
			holder.Clear()
		}
		c.heap.Free(boff, n)
	}
	return err
}

func clearHolder(h Holder) {
	if h != nil {
		h.Clear()
	}
}

// send queues msg (inline) or the block boff (large), waiting while a
// bounded channel is full; it never frees the block.
// KEEP IN SYNC with pyext/fastpath_chan.c: C wakes a sleeping receiver the same
// way (neWaiters read under the lock, one futex wake on neSeq), and Go
// waiters register before their last check under the lock, so a C put
// always wakes them.
func (c *Channel) send(msg []byte, n, boff uint64, large bool, timeout time.Duration, holder Holder) error {
	h := c.h
	deadline := futex.Deadline(timeout)
	spun := false
	for {
		if err := c.lock(); err != nil {
			return err
		}
		if h.closed != 0 {
			h.mu.Unlock()
			return ErrClosed
		}
		if c.capacity == 0 || h.count < c.capacity {
			if err := c.putLocked(msg, n, boff, large); err != nil {
				h.mu.Unlock()
				return err
			}
			if holder != nil {
				holder.Clear()
			}
			wake := atomic.LoadUint32(&h.neWaiters) != 0
			h.mu.Unlock()
			if wake {
				futex.Wake(&h.neSeq, 1)
			}
			return nil
		}
		if timeout == 0 {
			h.mu.Unlock()
			return ErrFull
		}
		if !spun {
			h.mu.Unlock()
			spun = true
			spin(func() bool {
				return atomic.LoadUint64(&h.count) < c.capacity || atomic.LoadUint32(&h.closed) != 0
			})
			continue
		}
		d := sleepFor(deadline)
		if d == 0 {
			h.mu.Unlock()
			return ErrFull
		}
		atomic.AddUint32(&h.nfWaiters, 1)
		seq := atomic.LoadUint32(&h.nfSeq)
		h.mu.Unlock()
		futex.Wait(&h.nfSeq, seq, d)
		atomic.AddUint32(&h.nfWaiters, ^uint32(0))
	}
}
