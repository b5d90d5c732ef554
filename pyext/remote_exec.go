package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"encoding/json"
	"errors"
	goruntime "runtime"
	"strconv"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// The operations and their codes are gocore/remoteop's.

// spawnEnv overrides entries of a remote spawn's environment with this
// node's own (its run id, node index): set by AgentStart.
var spawnEnv []string

func arg(f *wire.Frame, i int) int64 {
	if i < len(f.Args) {
		return f.Args[i]
	}
	return 0
}

// replyInt makes the reply of an entry point that returned (v, err).
func replyInt(v int64, err error) wire.Frame {
	if err != nil {
		code, msg := codeOfReply(err)
		return wire.Frame{Code: code, Payload: []byte(msg)}
	}
	return wire.Frame{Args: []int64{v}}
}

// replyRC makes the reply of an //export entry point's result: call runs
// it on a thread of its own for the while, so that its error message (kept
// per thread, see cCode) is the one read back.
func replyRC(call func() int64) wire.Frame {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	rc := call()
	if rc < 0 {
		return wire.Frame{Code: int32(-rc), Payload: []byte(takeLastErr())}
	}
	return wire.Frame{Args: []int64{rc}}
}

// executor runs other nodes' operations on this node (agent.Executor):
// with the entry points a local caller uses (executeOp). What takes
// something away (a message, a lock) comes with its undo, run by the agent
// if the reply cannot reach the requester: a message goes back into its
// channel (at the end: a node was lost, order is the lesser harm), a lock
// is released.
type executor struct{}

// msgBlock is a large message's pool block that a send's payload was read
// into (Alloc), queued as it is by Exec.
type msgBlock struct {
	c   *channel.Channel
	off uint64
	n   uint64
}

// Alloc puts the payload of a large send straight into a block of the
// target channel: the message is written once, where its receiver reads it.
func (executor) Alloc(req *wire.Frame, n int) ([]byte, any) {
	if req.Op != remoteop.ChanSend {
		return nil, nil
	}
	c, err := channelAt(int64(req.Addr))
	if err != nil || uint64(n) <= uint64(c.Inline()) {
		return nil, nil
	}
	// Timeout 0: no pacing on the agent's reader (and a full bounded
	// channel falls back to an ordinary buffer, then waits as usual).
	off, err := c.AllocMessage(uint64(n), 0)
	if err != nil {
		return nil, nil
	}
	r, _ := current()
	return r.Pool.Bytes(off, uint64(n)), &msgBlock{c: c, off: off, n: uint64(n)}
}

func (executor) Free(b any) {
	if mb, ok := b.(*msgBlock); ok {
		mb.c.ReleaseMessage(channel.Message{Len: mb.n, Large: true, Off: mb.off})
	}
}

// Exec runs req; without wait, an operation that would have to wait is
// left for a goroutine (ok false), with nothing done.
func (e executor) Exec(req *agent.Request, wait bool) (agent.Result, bool) {
	f := &req.Frame
	try := !wait && f.Timeout != 0 // a try first, then a wait if need be
	if try {
		g := *f
		g.Timeout = 0
		f = &g
	}
	switch f.Op {
	case remoteop.ChanSend:
		return e.send(req, f, try)
	case remoteop.ChanRecv:
		return execRecv(f, try)
	case remoteop.SemAcquire, remoteop.RLockAcquire:
		rep := executeOp(f)
		if rep.Code == 0 && result0(rep) == 1 {
			addr := C.uint64_t(f.Addr)
			if f.Op == remoteop.SemAcquire {
				return agent.Result{Reply: rep, Undo: func() { dmp_sem_release(addr) }}, true
			}
			owner := C.uint64_t(arg(f, 0))
			return agent.Result{Reply: rep, Undo: func() { dmp_rlock_release(addr, owner) }}, true
		}
		return agent.Result{Reply: rep}, !try || rep.Code != 0
	case remoteop.EventWait, remoteop.CondWait, remoteop.ChanReady:
		if try {
			return agent.Result{}, false
		}
	}
	return agent.Result{Reply: executeOp(f)}, true
}

func (executor) send(req *agent.Request, f *wire.Frame, try bool) (agent.Result, bool) {
	c, err := channelAt(int64(f.Addr))
	if err == nil {
		if mb, ok := req.Block.(*msgBlock); ok {
			err = c.SendBlock(mb.off, mb.n, time.Duration(f.Timeout))
			if err != nil && !(try && errors.Is(err, channel.ErrFull)) {
				executor{}.Free(mb) // the block stays ours until it is queued
			}
		} else {
			err = c.Send(f.Payload, time.Duration(f.Timeout))
		}
	}
	if try && errors.Is(err, channel.ErrFull) {
		return agent.Result{}, false
	}
	return agent.Result{Reply: replyInt(0, errOr(err))}, true
}

// execRecv takes a message for another node: the payload travels in the
// reply, a large one from its block, released once the requester has it.
func execRecv(f *wire.Frame, try bool) (agent.Result, bool) {
	c, err := channelAt(int64(f.Addr))
	if err != nil {
		return agent.Result{Reply: replyInt(0, pyErr(err))}, true
	}
	dst := make([]byte, c.Inline())
	m, err := c.Recv(dst, time.Duration(f.Timeout))
	if err != nil {
		if try && errors.Is(err, channel.ErrEmpty) {
			return agent.Result{}, false
		}
		return agent.Result{Reply: replyInt(0, pyErr(err))}, true
	}
	if !m.Large {
		payload := dst[:m.Len]
		return agent.Result{Reply: wire.Frame{Payload: payload},
			Undo: func() { c.Send(payload, -1) }}, true
	}
	r, _ := current()
	return agent.Result{Reply: wire.Frame{Payload: r.Pool.Bytes(m.Off, m.Len)},
		Undo: func() {
			if c.SendBlock(m.Off, m.Len, -1) != nil {
				c.ReleaseMessage(m)
			}
		},
		Done: func() { c.ReleaseMessage(m) }}, true
}

// executeOp runs one operation with the entry point a local caller would use.
func executeOp(f *wire.Frame) (rep wire.Frame) {
	defer func() {
		if p := recover(); p != nil {
			rep = replyInt(0, pyErr(errInvalid))
		}
	}()
	a, t := int64(f.Addr), C.int64_t(f.Timeout)
	ca := C.uint64_t(f.Addr)
	if isRemote(a) && (f.Op < remoteop.ProcStart || f.Op > remoteop.ProcRelease) {
		return replyInt(0, pyErr(errInvalid)) // never forward twice
	}
	switch f.Op {
	case remoteop.ChanLen:
		return replyInt(ChannelLen(a))
	case remoteop.ChanInline:
		return replyInt(ChannelInline(a))
	case remoteop.ChanCap:
		c, err := channelAt(a)
		if err != nil {
			return replyInt(0, pyErr(err))
		}
		return replyInt(int64(c.Cap()), nil)
	case remoteop.ChanRetain:
		return replyInt(0, ChannelRetain(a))
	case remoteop.ChanRelease:
		return replyInt(0, ChannelRelease(a))
	case remoteop.ChanReady:
		c, err := channelAt(a)
		if err != nil {
			return replyInt(0, pyErr(err))
		}
		mode := channel.WaitMode(0)
		if arg(f, 0) == 1 {
			mode = channel.WaitClose
		}
		ready, _, err := channel.WaitAny([]*channel.Channel{c}, []channel.WaitMode{mode}, nil,
			time.Duration(f.Timeout))
		if err != nil {
			return replyInt(0, pyErr(err))
		}
		return replyInt(flag(ready[0]), nil)
	case remoteop.SemAcquire:
		return replyRC(func() int64 { return dmp_sem_acquire(ca, t) })
	case remoteop.SemRelease:
		return replyRC(func() int64 { return dmp_sem_release(ca) })
	case remoteop.SemValue:
		return replyInt(SemValue(a))
	case remoteop.SyncRetain:
		return replyInt(0, SyncRetain(a))
	case remoteop.SyncRelease:
		return replyInt(0, SyncRelease(a))
	case remoteop.RLockAcquire:
		return replyRC(func() int64 { return dmp_rlock_acquire(ca, C.uint64_t(arg(f, 0)), t) })
	case remoteop.RLockRelease:
		return replyRC(func() int64 { return dmp_rlock_release(ca, C.uint64_t(arg(f, 0))) })
	case remoteop.RLockOwner:
		return replyInt(RLockOwner(a))
	case remoteop.RLockCount:
		return replyInt(RLockCount(a))
	case remoteop.RLockReleaseAll:
		return replyInt(RLockReleaseAll(a, arg(f, 0)))
	case remoteop.EventSet:
		return replyInt(0, EventSet(a))
	case remoteop.EventClear:
		return replyInt(0, EventClear(a))
	case remoteop.EventIsSet:
		return replyInt(EventIsSet(a))
	case remoteop.EventWait:
		return replyRC(func() int64 { return dmp_event_wait(ca, t) })
	case remoteop.CondEnqueue:
		return replyInt(CondEnqueue(a))
	case remoteop.CondFinish:
		return replyInt(CondFinish(a, arg(f, 0)))
	case remoteop.CondNotify:
		return replyInt(CondNotify(a, arg(f, 0)))
	case remoteop.CondWaiting:
		return replyInt(CondWaiting(a))
	case remoteop.CondWait:
		return replyRC(func() int64 { return dmp_cond_wait(ca, C.uint64_t(arg(f, 0)), t) })
	case remoteop.BarrierGet:
		return replyInt(BarrierGet(a, arg(f, 0)))
	case remoteop.BarrierSet:
		return replyInt(0, BarrierSet(a, arg(f, 0), arg(f, 1)))
	case remoteop.PipeHandle:
		return replyInt(PipeHandle(a, arg(f, 0), arg(f, 1)))
	case remoteop.PipePeerGone:
		return replyInt(PipePeerGone(a, arg(f, 0)))
	case remoteop.RawSize:
		return replyInt(RawSize(a))
	case remoteop.RawRead, remoteop.RawWrite:
		return execRaw(f)
	case remoteop.ProcStart:
		return remoteProcStart(f)
	case remoteop.ProcPid:
		return replyInt(ProcPid(arg(f, 0)))
	case remoteop.ProcSignal:
		return replyInt(0, ProcSignal(arg(f, 0), arg(f, 1)))
	case remoteop.ProcRelease:
		return replyInt(0, ProcRelease(arg(f, 0)))
	}
	return replyInt(0, pyErr(errInvalid))
}

func errOr(err error) error {
	if err != nil {
		return pyErr(err)
	}
	return nil
}

// execRaw reads or writes bytes of a raw object (Value/Array on another node).
func execRaw(f *wire.Frame) wire.Frame {
	r, err := current()
	if err != nil {
		return replyInt(0, pyErr(err))
	}
	off, size, err := r.Raw(runtime.Address(f.Addr))
	if err != nil {
		return replyInt(0, pyErr(err))
	}
	start := arg(f, 0)
	n := arg(f, 1)
	if f.Op == remoteop.RawWrite {
		n = int64(len(f.Payload))
	}
	if start < 0 || n < 0 || uint64(start+n) > size {
		return replyInt(0, pyErr(errInvalid))
	}
	b := r.Pool.Bytes(off+uint64(start), uint64(n))
	if f.Op == remoteop.RawWrite {
		copy(b, f.Payload)
		return replyInt(0, nil)
	}
	return wire.Frame{Payload: append([]byte(nil), b...)}
}

// remoteProcStart starts a process for another node and, when the spec
// names a channel of the requester's node ("notify"), sends the process's
// exit code there once it has been reaped, after the spec's "notify_tag"
// if it has one (and then followed by the reason of a non-zero code): the requester learns of the exit
// without asking (popen_remote waits on that channel, a local one for it).
// The reply is (handle, pid): the requester needs both, in one round trip.
func remoteProcStart(f *wire.Frame) wire.Frame {
	var s struct {
		Notify    int64 `json:"notify"`
		NotifyTag int64 `json:"notify_tag"` // sent before the code ("<tag> <code>"): one channel for many
	}
	json.Unmarshal(f.Payload, &s)
	h, err := ProcStart(spawnSpec(f.Payload))
	if err != nil {
		return replyInt(h, err)
	}
	p, err := procAt(h)
	if err != nil {
		return replyInt(h, err)
	}
	if s.Notify != 0 {
		go func() {
			st, _ := p.Wait(-1)
			// A requester that is gone (or whose node is lost) has stopped
			// listening: nothing to do about a failure here.
			var msg []byte
			if s.NotifyTag != 0 {
				msg = append(strconv.AppendInt(nil, s.NotifyTag, 10), ' ')
			}
			msg = strconv.AppendInt(msg, int64(st.Code), 10)
			if s.NotifyTag != 0 && st.Code != 0 {
				// Why it ended, seen by this node's tracer: "<tag> <code> <reason>".
				msg = append(append(msg, ' '), exitTracer().Reason(p.Pid(), st.Code).Text...)
			}
			remotePost(remoteop.ChanSend, s.Notify, [][]byte{msg})
		}()
	}
	return wire.Frame{Args: []int64{h, int64(p.Pid())}}
}

// spawnSpec adapts a spec sent by another node: this node's run environment,
// this agent's standard streams (forwarded to the launcher), tied to the agent.
func spawnSpec(payload []byte) string {
	var s procSpec
	if err := json.Unmarshal(payload, &s); err != nil {
		return "" // ProcStart reports the bad spec
	}
	override := map[string]string{}
	for _, kv := range spawnEnv {
		if k, _, ok := cutEnv(kv); ok {
			override[k] = kv
		}
	}
	env := make([]string, 0, len(s.Env)+len(spawnEnv))
	for _, kv := range s.Env {
		if k, _, ok := cutEnv(kv); ok && override[k] != "" {
			continue
		}
		env = append(env, kv)
	}
	s.Env = append(env, spawnEnv...)
	s.Files = []int{-1, 1, 2}
	s.KillWithParent = true
	s.NewSession = false
	b, _ := json.Marshal(s)
	return string(b)
}

func cutEnv(kv string) (string, string, bool) {
	for i := 0; i < len(kv); i++ {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return "", "", false
}
