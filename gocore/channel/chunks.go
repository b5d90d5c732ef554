package channel

import (
	"sync/atomic"
)

func (c *Channel) chunk(off uint64) []byte { return c.heap.Bytes(off, c.chunkBytes) }

func (c *Channel) slot(chunk []byte, i uint64) []byte {
	base := chunkHeader + i*c.slotSize
	return chunk[base : base+c.slotSize : base+c.slotSize]
}

// newChunkLocked takes the spare chunk or allocates one.
// KEEP IN SYNC with pyext/fastpath_chan.c (chan_try_send takes the spare the same
// way, zeroing its next word; it leaves allocation to Go).
func (c *Channel) newChunkLocked() (uint64, error) {
	h := c.h
	off := h.spare
	if off != 0 {
		h.spare = 0
	} else {
		var err error
		if off, err = c.heap.Alloc(c.chunkBytes); err != nil {
			return 0, err
		}
		h.chunks++
	}
	le.PutUint64(c.chunk(off)[0:8], 0)
	return off, nil
}

// retireChunkLocked keeps a consumed chunk as the spare or frees it.
// KEEP IN SYNC with pyext/fastpath_chan.c (chan_try_recv keeps it as the spare when
// there is none, and leaves a retirement that frees to Go).
func (c *Channel) retireChunkLocked(off uint64) {
	h := c.h
	if h.spare == 0 {
		h.spare = off
		return
	}
	// A failing Free means a corrupt heap; the message is already taken
	// and must not be lost, so there is nobody to report it to.
	_ = c.heap.Free(off, c.chunkBytes)
	h.chunks--
}

// putLocked appends a message: msg inline, or the large block boff.
// KEEP IN SYNC with pyext/fastpath_chan.c: chan_try_send does these steps for an
// inline message (slot {len, flags 0, payload}, tailIdx, count, neSeq).
func (c *Channel) putLocked(msg []byte, n, boff uint64, large bool) error {
	h := c.h
	if h.tail == 0 || h.tailIdx == c.slots {
		off, err := c.newChunkLocked()
		if err != nil {
			return err
		}
		if h.tail == 0 {
			h.head, h.headIdx = off, 0
		} else {
			le.PutUint64(c.chunk(h.tail)[0:8], off)
		}
		h.tail, h.tailIdx = off, 0
	}
	s := c.slot(c.chunk(h.tail), h.tailIdx)
	le.PutUint64(s[0:8], n)
	if large {
		le.PutUint32(s[8:12], flagLarge)
		le.PutUint64(s[slotHeader:slotHeader+8], boff)
	} else {
		le.PutUint32(s[8:12], 0)
		copy(s[slotHeader:], msg)
	}
	h.tailIdx++
	atomic.AddUint64(&h.count, 1)
	atomic.AddUint32(&h.neSeq, 1)
	return nil
}

// takeLocked removes the head message (count > 0). An inline payload goes
// into dst, or into a new slice when alloc is set; when dst is too short
// the message stays queued and ErrShortBuffer is returned with its Len.
// KEEP IN SYNC with pyext/fastpath_chan.c: chan_try_recv does these steps for an
// inline message (headIdx, count, retirement, nfSeq).
func (c *Channel) takeLocked(dst []byte, alloc bool) (Message, []byte, error) {
	h := c.h
	s := c.slot(c.chunk(h.head), h.headIdx)
	m := Message{Len: le.Uint64(s[0:8])}
	var out []byte
	if le.Uint32(s[8:12])&flagLarge != 0 {
		m.Large = true
		m.Off = le.Uint64(s[slotHeader : slotHeader+8])
	} else {
		if m.Len > uint64(c.inline) {
			return Message{}, nil, ErrBadHandle // corrupt slot
		}
		payload := s[slotHeader : slotHeader+m.Len]
		if alloc {
			out = append(make([]byte, 0, m.Len), payload...)
		} else if uint64(len(dst)) < m.Len {
			return m, nil, ErrShortBuffer
		} else {
			copy(dst, payload)
		}
	}
	h.headIdx++
	n := atomic.AddUint64(&h.count, ^uint64(0))
	switch {
	case n == 0:
		// Empty: head == tail. Keep the chunk as the spare (or free it).
		c.retireChunkLocked(h.head)
		h.head, h.headIdx, h.tail, h.tailIdx = 0, 0, 0, 0
	case h.headIdx == c.slots:
		next := le.Uint64(c.chunk(h.head)[0:8])
		c.retireChunkLocked(h.head)
		h.head, h.headIdx = next, 0
	}
	atomic.AddUint32(&h.nfSeq, 1)
	return m, out, nil
}
