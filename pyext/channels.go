package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"time"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// ChannelCreate makes a channel (capacity 0: unbounded) and returns its address.
func ChannelCreate(capacity, inlineSize int64) (addr int64, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	if capacity < 0 || inlineSize < 0 || inlineSize > 1<<20 {
		return 0, pyErr(errInvalid)
	}
	a, err := r.NewChannel(uint64(capacity), uint32(inlineSize))
	return int64(a), pyErr(err)
}

func channelAt(addr int64) (*channel.Channel, error) {
	r, err := current()
	if err != nil {
		return nil, err
	}
	return r.Channel(runtime.Address(addr))
}

// ChannelInline is the largest payload stored inside a slot.
func ChannelInline(addr int64) (n int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.ChanInline, addr)
	}
	defer recovered(&err)
	c, err := channelAt(addr)
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(c.Inline()), nil
}

// ChannelLen is the number of queued messages.
func ChannelLen(addr int64) (n int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.ChanLen, addr)
	}
	defer recovered(&err)
	c, err := channelAt(addr)
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(c.Len()), nil
}

// ChannelRetain adds a reference (taken when a handle is pickled).
func ChannelRetain(addr int64) (err error) {
	if isRemote(addr) {
		return remoteErr(remoteop.ChanRetain, addr)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return pyErr(err)
	}
	return pyErr(r.RetainChannel(runtime.Address(addr)))
}

// ChannelRelease drops a reference; the last one destroys the channel.
func ChannelRelease(addr int64) (err error) {
	if isRemote(addr) {
		return remoteErr(remoteop.ChanRelease, addr)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return pyErr(err)
	}
	return pyErr(r.ReleaseChannel(runtime.Address(addr)))
}

func duration(ns C.int64_t) time.Duration {
	if ns < 0 {
		return -1
	}
	return time.Duration(ns)
}

// dmp_send copies n bytes at buf into the channel at addr.
//
//export dmp_send
func dmp_send(addr C.uint64_t, buf unsafe.Pointer, n C.uint64_t, timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if isRemote(int64(addr)) {
		return remoteSend(int64(addr), [][]byte{cBytes(buf, n)}, duration(timeoutNs))
	}
	c, err := channelAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	var msg []byte
	if n > 0 {
		msg = unsafe.Slice((*byte)(buf), int(n))
	}
	if err := c.Send(msg, duration(timeoutNs)); err != nil {
		return cCode(err)
	}
	return 0
}

// dmp_recv takes the next message: 0 when an inline payload was copied into
// buf (length in *outLen); 1 when a large payload is handed over at pool
// offset *outOff (the caller reads it, then calls dmp_release_msg).
//
//export dmp_recv
func dmp_recv(addr C.uint64_t, buf unsafe.Pointer, capacity C.uint64_t, timeoutNs C.int64_t,
	outLen, outOff *C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if isRemote(int64(addr)) {
		return remoteRecv(int64(addr), cBytes(buf, capacity), duration(timeoutNs), outLen, outOff)
	}
	c, err := channelAt(int64(addr))
	if err != nil {
		return cCode(err)
	}
	var dst []byte
	if capacity > 0 {
		dst = unsafe.Slice((*byte)(buf), int(capacity))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	// A large message's block is recorded in this process's ledger as the
	// channel hands it over, until dmp_release_msg frees it.
	e := reserveEntry(r)
	m, err := c.RecvHeld(dst, duration(timeoutNs), holder(e))
	if err != nil || !m.Large {
		e.Unreserve()
	}
	if err != nil {
		return cCode(err)
	}
	*outLen = C.uint64_t(m.Len)
	if m.Large {
		remember(m.Off, e)
		*outOff = C.uint64_t(m.Off)
		return 1
	}
	return 0
}

// dmp_release_msg frees a large message handed over by dmp_recv. The block
// belongs to the receiver, not to the channel (nor, for another node's
// channel, to the connection it came through), so this is valid after the
// channel is gone; addr is not used.
//
//export dmp_release_msg
func dmp_release_msg(addr, off, n C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	return releaseMsg(uint64(off), uint64(n))
}

// releaseMsg frees the pool block of a large message a receiver took, from
// this node's channel or another's (remoteRecv puts it in a local block).
func releaseMsg(off, n uint64) int64 {
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	takeEntry(off).Clear() // forgotten before it is freed: never freed twice
	if err := r.Pool.Free(off, n); err != nil {
		return cCode(err)
	}
	return 0
}

// dmp_pool_base is the address of this process's mapping of the run's pool.
//
//export dmp_pool_base
func dmp_pool_base() C.uint64_t {
	r, err := current()
	if err != nil {
		return 0
	}
	return C.uint64_t(r.Pool.Base())
}

// dmp_last_error copies the last error message of a data-plane call into buf.
//
//export dmp_last_error
func dmp_last_error(buf unsafe.Pointer, capacity C.uint64_t) int64 {
	n := copy(unsafe.Slice((*byte)(buf), int(capacity)), takeLastErr())
	return int64(n)
}
