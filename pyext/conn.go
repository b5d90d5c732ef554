package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/proc"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// Pipes (dragon_mp/connection.py): a pipe is one or two channels plus a
// pipe state object that counts the open handles of each end, so that the
// peer of a closed end sees EOF (and its sends fail) as with a real pipe.
//
// A handle is one open Connection object in one process. The state records
// the handles of each end per holder process (pid + start time), plus those
// pickled but not yet unpickled (in flight). When the last handle of an end
// is closed, every channel of the pipe is closed: the peer drains what is
// queued, then gets EOF; its sends fail. A process that dies without
// closing its handles (SIGKILL, os._exit) is noticed by PipePeerGone: once
// every holder of an end is dead and none of its handles is in flight, the
// end counts as closed.
//
// The state is a runtime object (runtime.NewObject) of its own kind with its
// own magic, counted with SyncRetain/SyncRelease like the sync objects.

const (
	// kindPipe is the runtime object kind of a pipe state: far from the
	// small numbers of runtime's own kinds (objects.go).
	kindPipe    uint32 = 0x45504950 // "PIPE"
	pipeMagic          = 0x45504950
	pipeHolders        = 12 // holder processes tracked per end

	pipeOpPickle = 1 // a handle is being pickled: one more in flight
	pipeOpAdopt  = 2 // a pickled handle was unpickled here
	pipeOpClose  = 3 // a handle of this process was closed
)

type pipeHolder struct {
	pid   uint32
	count uint32 // open handles of this process
	start uint64 // process start time (0: unknown)
}

type pipeEnd struct {
	inflight  uint32 // handles pickled and not yet unpickled
	untracked uint32 // handles of processes that did not fit in holders
	holders   [pipeHolders]pipeHolder
}

type pipeState struct {
	magic  uint32
	mu     shmsync.Mutex
	closed uint32 // 1 once an end lost its last handle: the channels are closed
	_      uint32
	ch     [2]uint64 // the pipe's channels (ch[1] is 0 for a one-way pipe)
	ends   [2]pipeEnd
}

var errNotPipe = fmt.Errorf("%w: not a pipe", runtime.ErrBadObject)

var (
	pipeSelfOnce  sync.Once
	pipeSelfStart uint64
)

// pipeSelf is this process as a holder.
func pipeSelf() (uint32, uint64) {
	pipeSelfOnce.Do(func() {
		if st, err := proc.StartTime(os.Getpid()); err == nil {
			pipeSelfStart = st
		}
	})
	return uint32(os.Getpid()), pipeSelfStart
}

func pipeAt(addr int64) (*runtime.Runtime, *pipeState, error) {
	r, err := current()
	if err != nil {
		return nil, nil, err
	}
	p, err := r.Object(runtime.Address(addr), kindPipe)
	if err != nil {
		return nil, nil, err
	}
	s := (*pipeState)(p)
	if atomic.LoadUint32(&s.magic) != pipeMagic {
		return nil, nil, errNotPipe
	}
	return r, s, nil
}

func (e *pipeEnd) total() uint64 {
	n := uint64(e.inflight) + uint64(e.untracked)
	for i := range e.holders {
		n += uint64(e.holders[i].count)
	}
	return n
}

// addSelf records one more handle of this process.
func (e *pipeEnd) addSelf() {
	pid, start := pipeSelf()
	free := -1
	for i := range e.holders {
		h := &e.holders[i]
		if h.count > 0 && h.pid == pid && h.start == start {
			h.count++
			return
		}
		if h.count == 0 && free < 0 {
			free = i
		}
	}
	if free < 0 {
		e.untracked++
		return
	}
	e.holders[free] = pipeHolder{pid: pid, count: 1, start: start}
}

// dropSelf forgets one handle of this process.
func (e *pipeEnd) dropSelf() {
	pid, start := pipeSelf()
	for i := range e.holders {
		h := &e.holders[i]
		if h.count > 0 && h.pid == pid && h.start == start {
			h.count--
			return
		}
	}
	if e.untracked > 0 {
		e.untracked--
	}
}

// closeChannels closes the pipe's channels (the caller set s.closed).
func (s *pipeState) closeChannels(r *runtime.Runtime) {
	for _, a := range s.ch {
		if a == 0 {
			continue
		}
		if c, err := r.Channel(runtime.Address(a)); err == nil {
			c.Close()
		}
	}
}

// PipeCreate makes the state of a pipe over channels ch0 and ch1 (0 for a
// one-way pipe); this process holds one handle of each end.
func PipeCreate(ch0, ch1 int64) (addr int64, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	if ch0 == 0 {
		return 0, pyErr(errInvalid)
	}
	a, p, err := r.NewObject(kindPipe, unsafe.Sizeof(pipeState{}))
	if err != nil {
		return 0, pyErr(err)
	}
	s := (*pipeState)(p)
	s.ch = [2]uint64{uint64(ch0), uint64(ch1)}
	s.ends[0].addSelf()
	s.ends[1].addSelf()
	atomic.StoreUint32(&s.magic, pipeMagic)
	return int64(a), nil
}

// PipeHandle counts a handle of end (0 or 1) being pickled, unpickled or
// closed (op: see pipeOp*). It returns 1 when the pipe is closed.
func PipeHandle(addr, end, op int64) (closed int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.PipeHandle, addr, end, op)
	}
	defer recovered(&err)
	r, s, err := pipeAt(addr)
	if err != nil {
		return 0, pyErr(err)
	}
	if end != 0 && end != 1 {
		return 0, pyErr(errInvalid)
	}
	e := &s.ends[end]
	closeNow := false
	s.mu.Lock()
	switch op {
	case pipeOpPickle:
		e.inflight++
	case pipeOpAdopt:
		if e.inflight > 0 {
			e.inflight--
		}
		e.addSelf()
	case pipeOpClose:
		e.dropSelf()
		if e.total() == 0 && s.closed == 0 {
			atomic.StoreUint32(&s.closed, 1)
			closeNow = true
		}
	default:
		s.mu.Unlock()
		return 0, pyErr(errInvalid)
	}
	closed = int64(s.closed)
	s.mu.Unlock()
	if closeNow {
		s.closeChannels(r)
	}
	return closed, nil
}

// PipePeerGone reports (1) whether the end opposite to end is gone: closed,
// or every process holding one of its handles is dead and none is in
// flight. In the second case it closes the pipe, as the last close would
// have.
func PipePeerGone(addr, end int64) (gone int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.PipePeerGone, addr, end)
	}
	defer recovered(&err)
	r, s, err := pipeAt(addr)
	if err != nil {
		return 0, pyErr(err)
	}
	if end != 0 && end != 1 {
		return 0, pyErr(errInvalid)
	}
	peer := &s.ends[1-end]
	s.mu.Lock()
	if s.closed != 0 {
		s.mu.Unlock()
		return 1, nil
	}
	if peer.inflight != 0 || peer.untracked != 0 {
		s.mu.Unlock()
		return 0, nil
	}
	holders := peer.holders
	s.mu.Unlock()

	// Look at /proc without the lock.
	var dead [pipeHolders]bool
	for i, h := range holders {
		if h.count > 0 {
			if proc.Alive(int(h.pid), h.start) {
				return 0, nil
			}
			dead[i] = true
		}
	}
	closeNow := false
	s.mu.Lock()
	for i, h := range holders {
		if cur := &peer.holders[i]; dead[i] && cur.pid == h.pid && cur.start == h.start {
			cur.count = 0
		}
	}
	if peer.total() == 0 && s.closed == 0 {
		atomic.StoreUint32(&s.closed, 1)
		closeNow = true
	}
	gone = int64(s.closed)
	s.mu.Unlock()
	if closeNow {
		s.closeChannels(r)
	}
	return gone, nil
}

// dmp_wait waits until one of n channels (addresses at addrs, wait modes at
// modes: 0 message or closed, 1 closed) is ready or one of nfds descriptors
// (int32 at fds) polls readable, at most timeoutNs (<0: no limit). It sets
// ready[i] (channels first, then descriptors) to 1 for each ready one and
// returns how many are ready (0: timed out), or a negative code.
//
//export dmp_wait
func dmp_wait(addrs unsafe.Pointer, modes unsafe.Pointer, n C.uint64_t,
	fds unsafe.Pointer, nfds C.uint64_t, timeoutNs C.int64_t, ready unsafe.Pointer) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	// Channels of other nodes are watched by remoteWaiters (remote_data.go)
	// through an eventfd added to the descriptors.
	var chans []*channel.Channel
	var ms []channel.WaitMode
	var localIdx, remoteIdx []int
	var remoteAddrs []int64
	var remoteModes []channel.WaitMode
	if n > 0 {
		as := unsafe.Slice((*uint64)(addrs), int(n))
		mb := unsafe.Slice((*uint8)(modes), int(n))
		for i := range as {
			mode := channel.WaitMode(0)
			if mb[i] == 1 {
				mode = channel.WaitClose
			}
			if isRemote(int64(as[i])) {
				remoteIdx = append(remoteIdx, i)
				remoteAddrs = append(remoteAddrs, int64(as[i]))
				remoteModes = append(remoteModes, mode)
				continue
			}
			c, err := channelAt(int64(as[i]))
			if err != nil {
				return cCode(err)
			}
			chans = append(chans, c)
			ms = append(ms, mode)
			localIdx = append(localIdx, i)
		}
	}
	var fdList []int
	if nfds > 0 {
		fs := unsafe.Slice((*int32)(fds), int(nfds))
		fdList = make([]int, len(fs))
		for i, fd := range fs {
			fdList[i] = int(fd)
		}
	}
	var waiters *remoteWaiters
	if len(remoteAddrs) > 0 {
		w, err := startRemoteWaiters(remoteAddrs, remoteModes)
		if err != nil {
			return cCode(err)
		}
		waiters = w
		fdList = append(fdList, w.efd)
	}
	cr, fr, err := channel.WaitAny(chans, ms, fdList, duration(timeoutNs))
	var remoteReady []int
	if waiters != nil {
		remoteReady = waiters.stop()
		if len(fr) > 0 {
			fr = fr[:len(fr)-1]
		}
	}
	if err != nil {
		return cCode(err)
	}
	if n+nfds == 0 {
		return 0
	}
	out := unsafe.Slice((*uint8)(ready), int(n+nfds))
	clear(out)
	count := int64(0)
	for j, ok := range cr {
		if ok {
			out[localIdx[j]] = 1
			count++
		}
	}
	for _, j := range remoteReady {
		out[remoteIdx[j]] = 1
		count++
	}
	for i, ok := range fr {
		if ok {
			out[int(n)+i] = 1
			count++
		}
	}
	return count
}
