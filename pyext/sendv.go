package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/ledger"
)

// dmp_sendv sends the concatenation of nparts buffers as one message,
// copying each once into the channel (Python frames a large payload with a
// few header bytes without joining them into a new object first).
//
//export dmp_sendv
func dmp_sendv(addr C.uint64_t, bufs *unsafe.Pointer, lens *C.uint64_t, nparts C.uint64_t,
	timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if nparts > 64 {
		return cCode(errInvalid)
	}
	parts := cParts(bufs, lens, nparts)
	if isRemote(int64(addr)) {
		return remoteSend(int64(addr), parts, duration(timeoutNs))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	c, err := channelAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	var n uint64
	for _, p := range parts {
		n += uint64(len(p))
	}
	var e *ledger.Entry
	if n > uint64(c.Inline()) {
		// A large message's block is recorded while it is filled; the
		// channel clears the entry when it queues the block.
		e = reserveEntry(r)
	}
	if err := c.SendPartsHeld(duration(timeoutNs), holder(e), parts...); err != nil {
		return cCode(err)
	}
	return 0
}

// dmp_msg_alloc reserves a pool block for a large message of n bytes
// (n > the channel's inline size) on the channel at addr and stores its
// offset in *outOff: the caller copies the payload to pool base + offset
// itself (with libc's memcpy: Go's copy uses non-temporal stores from 1 MiB
// on, so a message that fits in the cache would reach the receiver from
// memory), then queues it with dmp_send_block or frees it with
// dmp_release_msg. 0; -FULL when timeoutNs is 0 (the send will not wait)
// and a bounded channel is full, so the copy would be thrown away; another
// <0 code otherwise (then use dmp_send/dmp_sendv instead).
//
//export dmp_msg_alloc
func dmp_msg_alloc(addr, n C.uint64_t, timeoutNs C.int64_t, outOff *C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	c, err := channelAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	// The block is recorded in this process's ledger as the pool hands it
	// out (before its pages are committed), until dmp_send_block queues it.
	e := reserveEntry(r)
	off, err := c.AllocMessageHeld(uint64(n), duration(timeoutNs), holder(e))
	if err != nil {
		e.Unreserve()
		return cCode(err)
	}
	remember(off, e)
	*outOff = C.uint64_t(off)
	return 0
}

// dmp_send_block queues the block (off, n) from dmp_msg_alloc as one
// message, waiting as dmp_send does. On error (-FULL when the time ran out)
// the block is still the caller's: send it again or free it with
// dmp_release_msg.
//
//export dmp_send_block
func dmp_send_block(addr, off, n C.uint64_t, timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	c, err := channelAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	e := heldEntry(uint64(off))
	if err := c.SendBlockHeld(uint64(off), uint64(n), duration(timeoutNs), holder(e)); err != nil {
		return cCode(err)
	}
	forget(uint64(off), e) // the channel cleared the entry as it queued the block
	return 0
}

// cParts views nparts C buffers (pointers at bufs, lengths at lens) as slices.
func cParts(bufs *unsafe.Pointer, lens *C.uint64_t, nparts C.uint64_t) [][]byte {
	ptrs := unsafe.Slice(bufs, int(nparts))
	sizes := unsafe.Slice(lens, int(nparts))
	parts := make([][]byte, nparts)
	for i := range parts {
		parts[i] = cBytes(ptrs[i], sizes[i])
	}
	return parts
}
