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
	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
	"golang.org/x/sys/unix"
)

// The data plane of remote channels: a message travels in the request
// (send) or the reply (recv), written from and read into where it lies: a
// received message larger than the caller's buffer goes straight into a
// block of this node's pool, as a local large message would be.

func cBytes(buf unsafe.Pointer, n C.uint64_t) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(buf), int(n))
}

// isCode reports whether err is an error reply with the given code.
func isCode(err error, code int) bool {
	var re *remoteError
	return errors.As(err, &re) && re.code == code
}

func remoteSend(addr int64, parts [][]byte, timeout time.Duration) int64 {
	if _, sync := synchronous.Load(addr); !sync && unbounded(addr) {
		// Fast path: a send to an unbounded channel cannot block, so it
		// is posted (no reply awaited), as stdlib's Queue.put hands its
		// object to a feeder thread; it runs on the owner before any
		// later operation of this process there (gocore/agent).
		if err := remotePost(remoteop.ChanSend, addr, parts); err != nil {
			return cCode(err)
		}
		return 0
	}
	err := remoteop.Sliced(timeout, func(t time.Duration) (bool, error) {
		_, err := remoteCallParts(remoteop.ChanSend, addr, t, parts, nil)
		return isCode(err, codeFull), err
	})
	if err != nil {
		return cCode(err)
	}
	return 0
}

// synchronous holds the channels of other nodes whose sends from this
// process must wait for the owner's reply (a Pool's result queue: its
// accounting of lost workers needs a result in place when the put returns).
var synchronous sync.Map // int64 address -> struct{}

// ChannelAllowPost lets (allow) or stops sends of this process to the
// channel at addr (when it lives on another node and is unbounded) be
// posted. Posting is the default.
func ChannelAllowPost(addr int64, allow bool) {
	if allow {
		synchronous.Delete(addr)
	} else {
		synchronous.Store(addr, struct{}{})
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
	rep, err := remoteCall(remoteop.ChanCap, addr, 0, nil)
	if err != nil {
		return false
	}
	capacity := uint64(result0(rep))
	capacities.Store(addr, capacity)
	return capacity == 0
}

func remoteRecv(addr int64, dst []byte, timeout time.Duration, outLen, outOff *C.uint64_t) int64 {
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	var block, blockLen uint64 // offset+1 and size of the local block a large message went into
	var e *ledger.Entry        // where that block is recorded (see held.go)
	sink := func(n int) ([]byte, error) {
		if n <= len(dst) {
			return dst[:n], nil
		}
		if e == nil {
			e = reserveEntry(r)
		}
		off, err := r.Pool.AllocHeld(uint64(n), holder(e))
		if err != nil {
			return nil, err // the owner puts the message back
		}
		block, blockLen = off+1, uint64(n)
		return r.Pool.Bytes(off, uint64(n)), nil
	}
	var n int
	err = remoteop.Sliced(timeout, func(t time.Duration) (bool, error) {
		rep, err := remoteCallParts(remoteop.ChanRecv, addr, t, nil, sink)
		n = len(rep.Payload)
		return isCode(err, codeTimeout), err
	})
	if err != nil || block == 0 {
		e.Unreserve()
		if block != 0 {
			r.Pool.Free(block-1, blockLen)
		}
		if err != nil {
			return cCode(err)
		}
	}
	*outLen = C.uint64_t(n)
	if block == 0 {
		return 0
	}
	remember(block-1, e)
	*outOff = C.uint64_t(block - 1)
	return 1
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
				rep, err := remoteCall(remoteop.ChanReady, a, remoteSlice, nil, mode)
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
	dst := cBytes(buf, n)
	if isRemote(int64(addr)) {
		_, err := remoteCallParts(remoteop.RawRead, int64(addr), 0, nil,
			func(m int) ([]byte, error) { return dst[:min(m, len(dst))], nil }, int64(off), int64(n))
		if err != nil {
			return cCode(err)
		}
		return 0
	}
	rep := execRaw(&wire.Frame{Op: remoteop.RawRead, Addr: uint64(addr), Args: []int64{int64(off), int64(n)}})
	if err := replyError(rep); err != nil {
		return cCode(err)
	}
	copy(dst, rep.Payload)
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
		_, err = remoteCall(remoteop.RawWrite, int64(addr), 0, data, int64(off))
	} else {
		err = replyError(execRaw(&wire.Frame{Op: remoteop.RawWrite, Addr: uint64(addr), Args: []int64{int64(off)}, Payload: data}))
	}
	if err != nil {
		return cCode(err)
	}
	return 0
}

// replyError is the error a reply made by executeOp carries, if any.
func replyError(f wire.Frame) error {
	if f.Code != 0 {
		return &remoteError{code: int(f.Code), msg: string(f.Payload)}
	}
	return nil
}
