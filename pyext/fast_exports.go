package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// Where a sync object lives in this process, for dragon_mp._fastpath
// (pyext/fastpath*.c): its C methods run the uncontended steps of
// shmsync.Semaphore, RecursiveLock and Event as atomics on these words (keep
// them in sync with gocore/shmsync), so C never needs the object header's
// layout. Each returns the address of the shmsync struct in this process's
// mapping of the pool, or 0 when addr is not a live object of that kind here
// (the Go calls then report the error). The pointer stays valid while the
// caller holds a reference to the object and the run lives.

func objectPtr(addr C.uint64_t, kind uint32) (p C.uint64_t) {
	defer func() {
		if recover() != nil {
			p = 0
		}
	}()
	r, err := current()
	if err != nil {
		return 0
	}
	ptr, err := r.Object(runtime.Address(addr), kind)
	if err != nil {
		return 0
	}
	return C.uint64_t(uintptr(ptr))
}

// dmp_sem_ptr: the address of the shmsync.Semaphore at addr in this process, 0 if invalid.
//
//export dmp_sem_ptr
func dmp_sem_ptr(addr C.uint64_t) C.uint64_t { return objectPtr(addr, runtime.KindSemaphore) }

// dmp_rlock_ptr: the address of the shmsync.RecursiveLock at addr in this process, 0 if invalid.
//
//export dmp_rlock_ptr
func dmp_rlock_ptr(addr C.uint64_t) C.uint64_t { return objectPtr(addr, runtime.KindRLock) }

// dmp_event_ptr: the address of the shmsync.Event at addr in this process, 0 if invalid.
//
//export dmp_event_ptr
func dmp_event_ptr(addr C.uint64_t) C.uint64_t { return objectPtr(addr, runtime.KindEvent) }

// dmp_event_set sets the Event at addr (waking its waiters): 0 or <0 error.
//
//export dmp_event_set
func dmp_event_set(addr C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	if isRemote(int64(addr)) {
		return remoteRC(remoteop.EventSet, int64(addr))
	}
	e, err := eventAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	e.Set()
	return 0
}

// dmp_event_clear clears the Event at addr: 0 or <0 error.
//
//export dmp_event_clear
func dmp_event_clear(addr C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	if isRemote(int64(addr)) {
		return remoteRC(remoteop.EventClear, int64(addr))
	}
	e, err := eventAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	e.Clear()
	return 0
}

// dmp_event_is_set: 1 set, 0 clear, <0 error.
//
//export dmp_event_is_set
func dmp_event_is_set(addr C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	if isRemote(int64(addr)) {
		return remoteRC(remoteop.EventIsSet, int64(addr))
	}
	e, err := eventAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	if e.IsSet() {
		return 1
	}
	return 0
}

// dmp_chan_ptr: the address of the channel header at addr in this process's
// mapping of the pool, for dragon_mp._fastpath.Chan (and its send/recv), which
// runs the uncontended send and receive of an inline message on it itself
// (KEEP IN SYNC with gocore/channel: channel.go, chunks.go, send.go, recv.go;
// see channel.Layout). 0 when addr is another node's (every operation then
// goes through Go and the agent), not a live channel, or there is no run.
// Valid while the caller holds a reference to the channel and the run lives.
//
//export dmp_chan_ptr
func dmp_chan_ptr(addr C.uint64_t) C.uint64_t {
	if c := liveLocalChannel(addr); c != nil {
		return C.uint64_t(uintptr(c.Header()))
	}
	return 0
}

// liveLocalChannel is this process's handle on the live channel at addr of
// this node, nil for anything else (another node's, not a channel, a stale
// handle, no run, or a panic on a bad address).
func liveLocalChannel(addr C.uint64_t) (c *channel.Channel) {
	defer func() {
		if recover() != nil {
			c = nil
		}
	}()
	if addr == 0 || isRemote(int64(addr)) {
		return nil
	}
	c, err := channelAt(int64(addr))
	if err != nil || c.Header() == nil {
		return nil
	}
	return c
}

// dmp_chan_tag: the tag (channel.Options.Tag) of this process's handle on the
// channel at addr, 0 when dmp_chan_ptr would give 0. pyext/fastpath_chan.c
// compares it with the header's on each operation: another tag there means
// the channel's memory holds another channel since (a stale handle), and the
// operation goes through Go, which raises.
//
//export dmp_chan_tag
func dmp_chan_tag(addr C.uint64_t) C.uint64_t {
	if c := liveLocalChannel(addr); c != nil {
		return C.uint64_t(c.Tag())
	}
	return 0
}

// dmp_object_tag: the tag word (runtime.ObjectTag) of the live sync or raw
// object at addr, 0 if there is none. pyext/fastpath_sync.c compares the word
// dmp_object_tag_offset bytes before the object's payload with it on each
// operation (see runtime.Address).
//
//export dmp_object_tag
func dmp_object_tag(addr C.uint64_t) (t C.uint64_t) {
	defer func() {
		if recover() != nil {
			t = 0
		}
	}()
	r, err := current()
	if err != nil {
		return 0
	}
	a := runtime.Address(addr)
	if _, err := r.Object(a, 0); err != nil {
		return 0
	}
	return C.uint64_t(runtime.ObjectTag(a))
}

// dmp_object_tag_offset: how far before an object's payload its tag word is.
//
//export dmp_object_tag_offset
func dmp_object_tag_offset() C.uint64_t { return C.uint64_t(runtime.ObjectTagOffset) }

// dmp_chan_layout copies min(n, channel.LayoutWords) words of channel.Layout()
// (field offsets and constants of the channel header, in the order of the
// channel.Layout* constants) to out and returns channel.LayoutWords.
// pyext/fastpath_chan.c compares them with its own and uses its channel fast path
// only when they all match.
//
//export dmp_chan_layout
func dmp_chan_layout(out *C.uint64_t, n C.uint64_t) C.uint64_t {
	l := channel.Layout()
	dst := unsafe.Slice(out, int(n))
	for i := 0; i < len(dst) && i < len(l); i++ {
		dst[i] = C.uint64_t(l[i])
	}
	return C.uint64_t(len(l))
}
