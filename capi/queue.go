package main

/*
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
*/
import "C"

import (
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// dmp_queue_open opens the channel a queue descriptor names.
//
//export dmp_queue_open
func dmp_queue_open(descriptor *C.char, out *C.uint64_t) (rc C.int) {
	defer recovered(&rc)
	if out == nil {
		return fail(errInvalid)
	}
	*out = 0
	h, err := open(descriptor, "q", true, (*runtime.Runtime).RetainChannel,
		func(r *runtime.Runtime, a runtime.Address) error {
			_, err := call(r, remoteop.ChanRetain, a, 0, nil, nil)
			return err
		})
	if err != nil {
		return fail(err)
	}
	if !h.remote {
		h.ch, err = h.r.Channel(h.addr)
	}
	if err == nil {
		*out, err = add(queues, h)
	}
	if err != nil {
		h.drop(true)
		return fail(err)
	}
	return 0
}

// dmp_queue_close drops a queue handle and its reference.
//
//export dmp_queue_close
func dmp_queue_close(q C.uint64_t) (rc C.int) {
	defer recovered(&rc)
	h, err := lookup(queues, q, true)
	if err == nil {
		err = h.drop(true)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// dmp_queue_send sends n bytes at buf as one message.
//
//export dmp_queue_send
func dmp_queue_send(q C.uint64_t, buf unsafe.Pointer, n C.size_t, timeoutNs C.int64_t) (rc C.int) {
	defer recovered(&rc)
	h, err := lookup(queues, q, false)
	if err != nil {
		return fail(err)
	}
	if buf == nil && n != 0 {
		return fail(errInvalid)
	}
	var msg []byte
	if n > 0 {
		msg = unsafe.Slice((*byte)(buf), int(n))
	}
	if h.remote {
		if err := remoteSend(h, msg, duration(timeoutNs)); err != nil {
			return fail(err)
		}
		return 0
	}
	// A large message's block is recorded in this process's ledger while
	// it is filled (a kill mid-copy leaks nothing); the channel clears the
	// record as it queues the block.
	var e *ledger.Entry
	if uint64(n) > uint64(h.ch.Inline()) {
		e = h.blockEntry()
	}
	if err := h.ch.SendPartsHeld(duration(timeoutNs), holder(e), msg); err != nil {
		return fail(err) // SendPartsHeld cleared the entry
	}
	return 0
}

// dmp_queue_recv takes the next message into a malloc'ed buffer.
//
//export dmp_queue_recv
func dmp_queue_recv(q C.uint64_t, out *unsafe.Pointer, outLen *C.size_t, timeoutNs C.int64_t) (rc C.int) {
	defer recovered(&rc)
	if out == nil || outLen == nil {
		return fail(errInvalid)
	}
	*out, *outLen = nil, 0
	h, err := lookup(queues, q, false)
	if err != nil {
		return fail(err)
	}
	if h.remote {
		buf, n, err := remoteRecv(h, duration(timeoutNs))
		if err != nil {
			return fail(err)
		}
		*out, *outLen = buf, C.size_t(n)
		return 0
	}
	// An inline message is copied straight into a buffer of the channel's
	// inline size; a large one is handed over in its pool block (recorded
	// in the ledger until it is freed) and copied out once.
	inline := C.size_t(h.ch.Inline())
	buf := C.malloc(inline + 1)
	if buf == nil {
		return fail(errNoMem)
	}
	e := h.blockEntry()
	m, err := h.ch.RecvHeld(unsafe.Slice((*byte)(buf), int(inline)), duration(timeoutNs), holder(e))
	if err != nil || !m.Large {
		e.Unreserve()
	}
	if err != nil {
		C.free(buf)
		return fail(err)
	}
	if m.Large {
		C.free(buf)
		buf = C.malloc(C.size_t(m.Len))
		if buf != nil {
			src := h.r.Pool.Bytes(m.Off, m.Len)
			C.memcpy(buf, unsafe.Pointer(&src[0]), C.size_t(m.Len))
		}
		e.Clear() // forgotten before it is freed: never freed twice
		if err := h.r.Pool.Free(m.Off, m.Len); err != nil && buf != nil {
			C.free(buf)
			return fail(err)
		}
		if buf == nil {
			return fail(errNoMem) // the message is lost: it was taken
		}
	}
	*out, *outLen = buf, C.size_t(m.Len)
	return 0
}

// dmp_queue_len reports how many messages are queued.
//
//export dmp_queue_len
func dmp_queue_len(q C.uint64_t, n *C.size_t) (rc C.int) {
	defer recovered(&rc)
	if n == nil {
		return fail(errInvalid)
	}
	h, err := lookup(queues, q, false)
	if err != nil {
		return fail(err)
	}
	if h.remote {
		v, err := remoteInt(h, remoteop.ChanLen)
		if err != nil {
			return fail(err)
		}
		*n = C.size_t(v)
		return 0
	}
	*n = C.size_t(h.ch.Len())
	return 0
}

// blockEntry reserves a ledger entry for a large message's block (nil when
// the ledger has none left: the block then goes unrecorded).
func (h *handle) blockEntry() *ledger.Entry {
	state.mu.Lock()
	l := state.ledger
	state.mu.Unlock()
	return l.Reserve()
}
