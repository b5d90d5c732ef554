package channel

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/pool"
)

// AllocMessage returns a heap block for a large message of n bytes
// (n > Inline()), for a caller that fills it itself (for instance with a
// copy routine better suited to the size than Go's: Go's memmove uses
// non-temporal stores from 1 MiB on, which leave a message that fits in the
// cache outside it for the receiver) and then queues it with SendBlock.
// The block is the caller's until SendBlock succeeds; ReleaseMessage
// (Message{Len: n, Large: true, Off: off}) frees it. timeout is the one
// the caller will give SendBlock: see allocLarge.
func (c *Channel) AllocMessage(n uint64, timeout time.Duration) (uint64, error) {
	return c.AllocMessageHeld(n, timeout, nil)
}

// AllocMessageHeld is AllocMessage that records the block in h (see
// allocLarge); SendBlockHeld with the same h then clears it.
func (c *Channel) AllocMessageHeld(n uint64, timeout time.Duration, h Holder) (uint64, error) {
	if c.dead.Load() {
		return 0, ErrBadHandle
	}
	if atomic.LoadUint32(&c.h.closed) != 0 {
		return 0, ErrClosed
	}
	if n <= uint64(c.inline) {
		return 0, ErrInvalid
	}
	return c.allocLarge(n, timeout, h)
}

// allocLarge takes the heap block of a large message about to be sent with
// timeout. A send that will not wait (timeout 0) gets ErrFull at once from
// a full bounded channel (the copy would be thrown away) and is never
// paced; any other is paced (paceLarge).
// A non-nil h records the block: under the heap's lock when it can, else
// right after.
func (c *Channel) allocLarge(n uint64, timeout time.Duration, h Holder) (uint64, error) {
	if timeout == 0 {
		if c.capacity != 0 && atomic.LoadUint64(&c.h.count) >= c.capacity {
			return 0, ErrFull
		}
	} else {
		c.paceLarge(n)
	}
	if h == nil {
		return c.heap.Alloc(n)
	}
	if ha, ok := c.heap.(heldAllocator); ok {
		return ha.AllocHeld(n, h)
	}
	off, err := c.heap.Alloc(n)
	if err == nil {
		h.Hold(off, n)
	}
	return off, err
}

// SendBlock queues the block (off, n) from AllocMessage, filled by the
// caller, as one large message; waiting, timeout and errors as Send. On
// error the block is still the caller's (so a caller waiting in slices can
// try again with the same block).
func (c *Channel) SendBlock(off, n uint64, timeout time.Duration) error {
	return c.SendBlockHeld(off, n, timeout, nil)
}

// A Holder is where a process records the large message block it holds
// outside any channel (gocore/ledger's Entry): Hold when a receiver takes
// the block, Clear when a sender's block is queued. The channel calls it
// under its lock, so that at every lock boundary a block is either queued
// or recorded, never both and never neither. A heap that has AllocHeld
// (gocore/pool) records a sender's block as it allocates it.
type Holder = pool.Holder

// heldAllocator is a Heap that records a block in a Holder as it allocates it.
type heldAllocator interface {
	AllocHeld(size uint64, h Holder) (uint64, error)
}

// SendBlockHeld is SendBlock for a block recorded in h: h.Clear() is
// called under the channel lock once the block is queued. A nil h is none.
func (c *Channel) SendBlockHeld(off, n uint64, timeout time.Duration, h Holder) error {
	if c.dead.Load() {
		return ErrBadHandle
	}
	if n <= uint64(c.inline) || off == 0 {
		return ErrInvalid
	}
	if atomic.LoadUint32(&c.h.closed) != 0 {
		return ErrClosed
	}
	return c.send(nil, n, off, true, timeout, h)
}

// ReleaseMessage frees the block of a large message received with Recv.
// It does nothing for an inline message. The block belongs to the
// receiver, so this is valid even after the channel is gone.
func (c *Channel) ReleaseMessage(m Message) error {
	if !m.Large {
		return nil
	}
	return c.heap.Free(m.Off, m.Len)
}
