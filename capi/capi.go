package main

/*
#include <stdint.h>
#include <stdlib.h>
void dmp_set_error_(const char *msg);
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/pool"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

func main() {} // a c-shared library: never run

// Return codes: KEEP IN SYNC with include/dragon_mp.h.
const (
	codeTimeout     = -1
	codeFull        = -2
	codeClosed      = -3
	codeBadDesc     = -4
	codeNotAttached = -5
	codeNoSpace     = -6
	codeTooLarge    = -7
	codeInvalid     = -8
	codeRelease     = -9
	codeRemote      = -10
	codeOS          = -11
	codeNoMem       = -12
	codeInternal    = -13
	codeLost        = -14
)

var (
	errNotAttached = errors.New("not attached to a run (call dmp_attach first)")
	errInvalid     = errors.New("invalid argument")
	errBadDesc     = errors.New("bad descriptor")
	errNoMem       = errors.New("out of memory")
	errTimeout     = errors.New("timed out: the lock is still held")
)

// codeOf classifies err as a DMP_E* code.
func codeOf(err error) C.int {
	var errno syscall.Errno
	switch {
	case errors.Is(err, errNotAttached):
		return codeNotAttached
	case errors.Is(err, errLost):
		return codeLost
	case errors.Is(err, channel.ErrEmpty), errors.Is(err, errTimeout), errors.Is(err, errTimedOut):
		return codeTimeout
	case errors.Is(err, channel.ErrFull), errors.Is(err, errFull):
		return codeFull
	case errors.Is(err, channel.ErrClosed), errors.Is(err, errClosed):
		return codeClosed
	case errors.Is(err, runtime.ErrRemote):
		return codeRemote
	case errors.Is(err, errBadDesc), errors.Is(err, channel.ErrBadHandle), errors.Is(err, runtime.ErrBadObject):
		return codeBadDesc
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, pool.ErrExhausted), errors.Is(err, errNoSpace):
		return codeNoSpace
	case errors.Is(err, pool.ErrTooLarge), errors.Is(err, errTooLarge):
		return codeTooLarge
	case errors.Is(err, errInvalid), errors.Is(err, channel.ErrInvalid), errors.Is(err, runtime.ErrBadID):
		return codeInvalid
	case errors.Is(err, shmsync.ErrTooManyReleases), errors.Is(err, errRelease):
		return codeRelease
	case errors.Is(err, errNoMem):
		return codeNoMem
	case errors.As(err, &errno), errors.Is(err, errOS):
		return codeOS
	}
	return codeInternal
}

// fail records err as the calling thread's last error and returns its code.
func fail(err error) C.int {
	msg := C.CString(err.Error())
	C.dmp_set_error_(msg)
	C.free(unsafe.Pointer(msg))
	return codeOf(err)
}

// recovered turns a panic in an exported function into DMP_EINTERNAL (a
// C program must not be aborted by a bug here): use as `defer recovered(&rc)`.
func recovered(rc *C.int) {
	if r := recover(); r != nil {
		*rc = fail(fmt.Errorf("internal error: %v\n%s", r, debug.Stack()))
	}
}

// The process's attachment: its run, its ledger, its open handles.
var state struct {
	mu     sync.Mutex
	r      *runtime.Runtime
	ledger *ledger.Ledger // nil: the run's ledger directory is full (refs then go unrecorded)
	next   uint64         // the last handle given out
	queues map[uint64]*handle
	locks  map[uint64]*handle
}

// handle is one open queue or lock: its object and the ledger entry that
// records the reference it holds.
type handle struct {
	addr runtime.Address
	ref  *ledger.Entry
	ch   *channel.Channel   // a queue's
	sem  *shmsync.Semaphore // a lock's
	r    *runtime.Runtime
	// remote: the object is on another node (remote.go); ch and sem are nil.
	remote bool
}

// dmp_attach joins the run named by DRAGON_MP_RUN.
//
//export dmp_attach
func dmp_attach() (rc C.int) {
	defer recovered(&rc)
	state.mu.Lock()
	defer state.mu.Unlock()
	if state.r != nil {
		return 0
	}
	id := os.Getenv(runtime.EnvRun)
	if id == "" {
		return fail(fmt.Errorf("%w: %s is not set (start this program from a process of a dragon_mp run)",
			errNotAttached, runtime.EnvRun))
	}
	r, err := runtime.Attach(id)
	if err != nil {
		return fail(err)
	}
	// A ledger, as every process of the run has one: the head gives back
	// what it records when this process dies (pyext/held.go does the same).
	l, _ := r.RegisterLedger()
	state.r, state.ledger = r, l
	state.queues, state.locks = make(map[uint64]*handle), make(map[uint64]*handle)
	return 0
}

// dmp_detach closes every open handle and leaves the run.
//
//export dmp_detach
func dmp_detach() (rc C.int) {
	defer recovered(&rc)
	state.mu.Lock()
	r, queues, locks := state.r, state.queues, state.locks
	state.r, state.ledger, state.queues, state.locks = nil, nil, nil, nil
	state.mu.Unlock()
	if r == nil {
		return 0
	}
	for _, h := range queues {
		h.drop(true)
	}
	for _, h := range locks {
		h.drop(false)
	}
	closeClient() // (after the remote handles' releases above, which use it)
	if err := r.Close(); err != nil {
		return fail(err)
	}
	return 0
}

// open parses descriptor (see doc.go), checks that it names an object of
// kind of this process's run, takes one reference with retain and records
// it in the ledger; an object of another node: remoteRetain, recorded too.
func open(descriptor *C.char, kind string, channelRef bool,
	retain func(*runtime.Runtime, runtime.Address) error,
	remoteRetain func(*runtime.Runtime, runtime.Address) error) (*handle, error) {
	if descriptor == nil {
		return nil, errInvalid
	}
	state.mu.Lock()
	r, l := state.r, state.ledger
	state.mu.Unlock()
	if r == nil {
		return nil, errNotAttached
	}
	desc := C.GoString(descriptor)
	f := strings.Split(desc, ":")
	if len(f) != 4 || f[0] != "dmp1" {
		return nil, fmt.Errorf("%w: %q is not a dragon_mp descriptor (dmp1:<kind>:<run>:<address>)", errBadDesc, desc)
	}
	if f[1] != kind {
		return nil, fmt.Errorf("%w: %q is a descriptor of kind %q, not %q", errBadDesc, desc, f[1], kind)
	}
	if runOf(f[2]) != runOf(r.ID) {
		return nil, fmt.Errorf("%w: %q belongs to run %s; this process is attached to run %s", errBadDesc, desc, f[2], r.ID)
	}
	v, err := strconv.ParseUint(f[3], 16, 64)
	if err != nil || v == 0 {
		return nil, fmt.Errorf("%w: %q: bad address", errBadDesc, desc)
	}
	a := runtime.Address(v)
	if a.Node() != r.Node {
		if err := remoteRetain(r, a); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", errBadDesc, desc, err)
		}
	} else if err := retain(r, a); err != nil {
		return nil, fmt.Errorf("%w: %q: %v", errBadDesc, desc, err)
	}
	refKind := ledger.RefObject
	if channelRef {
		refKind = ledger.RefChannel
	}
	// Recorded for an object of another node too: this node's head releases
	// it there if this process is killed (pyext's releaseRef).
	e := l.ReserveRef() // nil (unrecorded) when none is left
	e.HoldRef(uint64(a), refKind)
	return &handle{addr: a, ref: e, r: r, remote: a.Node() != r.Node}, nil
}

// runOf is the run a process's run id names: node k > 0 of a run has the
// run's id followed by "n<k>" (dragon_mp/node.py); the run's ids are made of
// digits, hex digits and dashes, so a trailing "n<digits>" is that suffix.
func runOf(id string) string {
	i := strings.LastIndexByte(id, 'n')
	if i <= 0 || i == len(id)-1 {
		return id
	}
	for _, c := range id[i+1:] {
		if c < '0' || c > '9' {
			return id
		}
	}
	return id[:i]
}

// add puts h into table and returns its new handle number.
func add(table func() map[uint64]*handle, h *handle) (C.uint64_t, error) {
	state.mu.Lock()
	defer state.mu.Unlock()
	t := table()
	if t == nil || state.r != h.r { // detached meanwhile
		return 0, errNotAttached
	}
	state.next++
	t[state.next] = h
	return C.uint64_t(state.next), nil
}

// lookup finds an open handle; with remove it also takes it out.
func lookup(table func() map[uint64]*handle, id C.uint64_t, remove bool) (*handle, error) {
	state.mu.Lock()
	defer state.mu.Unlock()
	t := table()
	if t == nil {
		return nil, errNotAttached
	}
	h := t[uint64(id)]
	if h == nil {
		return nil, fmt.Errorf("%w: no open handle %d", errInvalid, uint64(id))
	}
	if remove {
		delete(t, uint64(id))
	}
	return h, nil
}

// drop forgets h's reference record, then drops the reference (in this
// order: killed in between, the reference leaks instead of being dropped
// twice; see gocore/ledger).
func (h *handle) drop(channelRef bool) error {
	h.ref.Clear()
	if h.remote {
		op := remoteop.SyncRelease
		if channelRef {
			op = remoteop.ChanRelease
		}
		_, err := call(h.r, op, h.addr, 0, nil, nil)
		return err
	}
	if channelRef {
		return h.r.ReleaseChannel(h.addr)
	}
	return h.r.ReleaseObject(h.addr)
}

func queues() map[uint64]*handle { return state.queues }
func locks() map[uint64]*handle  { return state.locks }

// duration is a C timeout in ns as Go's convention (negative: forever).
func duration(ns C.int64_t) time.Duration {
	if ns < 0 {
		return -1
	}
	return time.Duration(ns)
}

// holder is e as a channel.Holder (a nil entry is no holder at all).
func holder(e *ledger.Entry) channel.Holder {
	if e == nil {
		return nil
	}
	return e
}
