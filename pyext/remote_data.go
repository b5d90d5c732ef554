package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"errors"
	"sync"
	"time"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
	"golang.org/x/sys/unix"
)

// The data plane of remote channels: messages travel in the request (send)
// or the reply (recv); a received message larger than the caller's buffer is
// put in a block of this node's pool, as a local large message would be.

func cBytes(buf unsafe.Pointer, n C.uint64_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(buf), int(n))
}

// sliced repeats attempt in remoteSlice parts of timeout (<0: forever) while
// it reports "not yet" (the given code).
func sliced(timeout time.Duration, notYet int, attempt func(t time.Duration) error) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		t := remoteSlice
		switch {
		case timeout == 0:
			t = 0
		case timeout > 0:
			t = min(t, max(time.Until(deadline), 0))
		}
		err := attempt(t)
		var re *remoteError
		if err == nil || !errors.As(err, &re) || re.code != notYet || timeout == 0 ||
			(timeout > 0 && !time.Now().Before(deadline)) {
			return err
		}
	}
}

func remoteSend(addr int64, parts [][]byte, timeout time.Duration) int64 {
	var msg []byte
	if len(parts) == 1 {
		msg = parts[0] // Call copies it onto the connection before returning
	} else {
		for _, p := range parts {
			msg = append(msg, p...)
		}
	}
	if _, ok := postable.Load(addr); ok && unbounded(addr) {
		// Fast path: a Queue's put to an unbounded channel cannot block, so
		// it is posted (no reply awaited); posts keep this process's order.
		if err := remotePost(opChanSend, addr, msg); err != nil {
			return cCode(err)
		}
		return 0
	}
	err := sliced(timeout, codeFull, func(t time.Duration) error {
		_, err := remoteCall(opChanSend, addr, t, msg)
		return err
	})
	if err != nil {
		return cCode(err)
	}
	return 0
}

// postable holds the channels of other nodes whose sends may be posted:
// those of a Queue, whose put is asynchronous in stdlib too (its feeder
// thread). A Pipe's or SimpleQueue's send stays synchronous: it is complete,
// and ordered before this process's next operation, when it returns.
var postable sync.Map // int64 address -> struct{}

// ChannelAllowPost lets (allow) or stops sends of this process to the
// channel at addr (when it lives on another node and is unbounded) be posted.
func ChannelAllowPost(addr int64, allow bool) {
	switch {
	case !allow:
		postable.Delete(addr)
	case isRemote(addr):
		postable.Store(addr, struct{}{})
	}
}

// capacities caches the capacity of other nodes' channels (fixed at creation).
var capacities sync.Map // int64 address -> uint64

// unbounded reports whether the channel at addr (another node's) has no
// capacity limit; an error counts as bounded (the synchronous send reports it).
func unbounded(addr int64) bool {
	if v, ok := capacities.Load(addr); ok {
		return v.(uint64) == 0
	}
	rep, err := remoteCall(opChanCap, addr, 0, nil)
	if err != nil {
		return false
	}
	capacity := uint64(result0(rep))
	capacities.Store(addr, capacity)
	return capacity == 0
}

func remoteRecv(addr int64, dst []byte, timeout time.Duration, outLen, outOff *C.uint64_t) int64 {
	var payload []byte
	err := sliced(timeout, codeTimeout, func(t time.Duration) error {
		rep, err := remoteCall(opChanRecv, addr, t, nil)
		payload = rep.Payload
		return err
	})
	if err != nil {
		return cCode(err)
	}
	*outLen = C.uint64_t(len(payload))
	if len(payload) <= len(dst) {
		copy(dst, payload)
		return 0
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	off, err := r.Pool.Alloc(uint64(len(payload)))
	if err != nil {
		return cCode(err)
	}
	copy(r.Pool.Bytes(off, uint64(len(payload))), payload)
	*outOff = C.uint64_t(off)
	return 1
}

// releaseRemoteMsg frees the local block remoteRecv put a large message in.
func releaseRemoteMsg(off, n uint64) int64 {
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	if err := r.Pool.Free(off, n); err != nil {
		return cCode(err)
	}
	return 0
}

// remoteWaiters is dmp_wait's part for channels on other nodes: one
// goroutine per remote channel asks its owner (in slices) until the channel
// is ready, then writes an eventfd that the local wait polls with the other
// descriptors. Readiness is only looked at, never consumed, so a waiter that
// finishes after stop loses nothing.
type remoteWaiters struct {
	efd     int
	results chan int // indexes of ready channels
	done    chan struct{}
	wg      sync.WaitGroup
}

func startRemoteWaiters(addrs []int64, modes []channel.WaitMode) (*remoteWaiters, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, err
	}
	w := &remoteWaiters{efd: efd, results: make(chan int, len(addrs)), done: make(chan struct{})}
	for i, a := range addrs {
		mode := int64(0)
		if modes[i] == channel.WaitClose {
			mode = 1
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				select {
				case <-w.done:
					return
				default:
				}
				rep, err := remoteCall(opChanReady, a, remoteSlice, nil, mode)
				if err != nil || result0(rep) == 1 {
					// An error (node lost, channel gone) counts as ready:
					// the caller's next operation reports it.
					w.results <- i
					unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
					return
				}
			}
		}()
	}
	return w, nil
}

// stop ends the waiters (the eventfd is closed once the last has returned)
// and returns which channels were reported ready.
func (w *remoteWaiters) stop() []int {
	close(w.done)
	go func() {
		w.wg.Wait()
		unix.Close(w.efd)
	}()
	var ready []int
	for {
		select {
		case i := <-w.results:
			ready = append(ready, i)
		default:
			return ready
		}
	}
}

// dmp_raw_read copies n bytes at offset off of the raw object at addr (on
// any node) into buf: 0 or <0 error. Value/Array of another node use it.
//
//export dmp_raw_read
func dmp_raw_read(addr C.uint64_t, off, n C.uint64_t, buf unsafe.Pointer) (rc int64) {
	defer cRecover(&rc)
	f := wire.Frame{Op: opRawRead, Addr: uint64(addr), Args: []int64{int64(off), int64(n)}}
	var rep wire.Frame
	var err error
	if isRemote(int64(addr)) {
		rep, err = remoteCall(opRawRead, int64(addr), 0, nil, int64(off), int64(n))
	} else {
		rep = execRaw(&f)
		err = replyError(rep)
	}
	if err != nil {
		return cCode(err)
	}
	copy(cBytes(buf, n), rep.Payload)
	return 0
}

// dmp_raw_write copies n bytes from buf to offset off of the raw object at
// addr (on any node): 0 or <0 error.
//
//export dmp_raw_write
func dmp_raw_write(addr C.uint64_t, off, n C.uint64_t, buf unsafe.Pointer) (rc int64) {
	defer cRecover(&rc)
	data := cBytes(buf, n)
	var err error
	if isRemote(int64(addr)) {
		_, err = remoteCall(opRawWrite, int64(addr), 0, data, int64(off))
	} else {
		err = replyError(execRaw(&wire.Frame{Op: opRawWrite, Addr: uint64(addr), Args: []int64{int64(off)}, Payload: data}))
	}
	if err != nil {
		return cCode(err)
	}
	return 0
}

// replyError is the error a reply made by execute carries, if any.
func replyError(f wire.Frame) error {
	if f.Code != 0 {
		return &remoteError{code: int(f.Code), msg: string(f.Payload)}
	}
	return nil
}
