package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Objects of other nodes: every operation on a handle whose address names
// another node goes over this process's connection to that node's agent
// (gocore/agent), which runs it there (gocore/remoteop), as the Python
// extension does. Long waits are sliced (remoteop.Slice) so that one this
// process abandons (killed, or its timeout ran out) ends on the owner soon.
// The reference a remote handle holds is recorded in this process's ledger
// like a local one: if this process is killed, this node's head releases
// it on the owner's node.

var (
	clientMu sync.Mutex
	client   *agent.Client // made on first use; closed by dmp_detach
)

var errLost = errors.New("node lost")

func agentClient(r *runtime.Runtime) *agent.Client {
	clientMu.Lock()
	defer clientMu.Unlock()
	if client == nil {
		client = agent.NewClient(agent.ClientConfig{
			Control: agent.SocketName(r.ID),
			Lost:    r.NodeLost,
			Name:    runtime.NodeName,
		})
	}
	return client
}

// closeClient closes the client made by agentClient, if any (dmp_detach).
func closeClient() {
	clientMu.Lock()
	c := client
	client = nil
	clientMu.Unlock()
	if c != nil {
		c.Close()
	}
}

// call runs op on the object at a (on its node), waiting at most timeout
// there; sink as in agent.Client.Call.
func call(r *runtime.Runtime, op uint16, a runtime.Address, timeout time.Duration, payload []byte,
	sink func(int) ([]byte, error), args ...int64) (wire.Frame, error) {
	var parts [][]byte
	if payload != nil {
		parts = [][]byte{payload}
	}
	rep, err := agentClient(r).Call(wire.Frame{Op: op, Addr: uint64(a), Timeout: int64(timeout), Args: args},
		parts, sink)
	return rep, remoteErr(err)
}

// remoteErr gives an error from another node the error this library
// classifies (codeOf) as the same failure on this node would be.
func remoteErr(err error) error {
	var re *agent.RemoteError
	var lost *agent.LostError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &re):
		if cause, ok := replyErrors[int(re.Code)]; ok {
			return fmt.Errorf("%w: %s", cause, re.Msg)
		}
		return fmt.Errorf("internal error on the object's node: %s", re.Msg)
	case errors.As(err, &lost):
		return fmt.Errorf("%w: %v", errLost, err)
	case errors.Is(err, agent.ErrNoAgent), errors.Is(err, agent.ErrNoSuchNode):
		return fmt.Errorf("%w: %v", runtime.ErrRemote, err)
	}
	return err
}

// replyErrors: the error each remoteop reply code stands for here.
var replyErrors = map[int]error{
	remoteop.CodeTimeout:         errTimedOut,
	remoteop.CodeFull:            errFull,
	remoteop.CodeClosed:          errClosed,
	remoteop.CodeBadHandle:       errBadDesc,
	remoteop.CodeNoSpace:         errNoSpace,
	remoteop.CodeTooLarge:        errTooLarge,
	remoteop.CodeInvalid:         errInvalid,
	remoteop.CodeTooManyReleases: errRelease,
	remoteop.CodeNotOwner:        errRelease,
	remoteop.CodeOS:              errOS,
	remoteop.CodeNodeLost:        errLost,
}

// Causes of failures reported by another node (codeOf maps them).
var (
	errTimedOut = errors.New("timed out")
	errFull     = errors.New("the queue stayed full")
	errClosed   = errors.New("closed")
	errNoSpace  = errors.New("the pool is full")
	errTooLarge = errors.New("too large for the pool")
	errRelease  = errors.New("released too many times")
	errOS       = errors.New("operating system error")
)

// remoteSend sends msg to a queue of another node.
func remoteSend(h *handle, msg []byte, timeout time.Duration) error {
	if msg == nil {
		msg = []byte{}
	}
	return remoteop.Sliced(timeout, func(t time.Duration) (bool, error) {
		_, err := call(h.r, remoteop.ChanSend, h.addr, t, msg, nil)
		return errors.Is(err, errFull), err
	})
}

// remoteRecv takes the next message of a queue of another node into a
// malloc'ed buffer (the reply is read straight into it).
func remoteRecv(h *handle, timeout time.Duration) (unsafe.Pointer, int, error) {
	var buf unsafe.Pointer
	n := 0
	sink := func(m int) ([]byte, error) {
		C.free(buf) // (nil: no earlier one)
		buf = C.malloc(C.size_t(m + 1))
		if buf == nil {
			return nil, errNoMem // the owner puts the message back
		}
		n = m
		return unsafe.Slice((*byte)(buf), m), nil
	}
	err := remoteop.Sliced(timeout, func(t time.Duration) (bool, error) {
		_, err := call(h.r, remoteop.ChanRecv, h.addr, t, nil, sink)
		return errors.Is(err, errTimedOut), err
	})
	if err != nil {
		C.free(buf)
		return nil, 0, err
	}
	if buf == nil { // an empty message: no payload, so no sink call
		buf = C.malloc(1)
		if buf == nil {
			return nil, 0, errNoMem
		}
	}
	return buf, n, nil
}

// remoteAcquire waits for a semaphore of another node.
func remoteAcquire(h *handle, timeout time.Duration) error {
	got := false
	err := remoteop.Sliced(timeout, func(t time.Duration) (bool, error) {
		rep, err := call(h.r, remoteop.SemAcquire, h.addr, t, nil, nil)
		got = err == nil && len(rep.Args) > 0 && rep.Args[0] == 1
		return err == nil && !got, err
	})
	if err == nil && !got {
		err = errTimeout
	}
	return err
}

// remoteInt runs an operation whose reply is one number.
func remoteInt(h *handle, op uint16) (int64, error) {
	rep, err := call(h.r, op, h.addr, 0, nil, nil)
	if err != nil || len(rep.Args) == 0 {
		return 0, err
	}
	return rep.Args[0], nil
}
