package pyext

import (
	"encoding/json"
	"errors"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

var errNoRuntime = errors.New("dragon_mp runtime is not running in this process")

var (
	rtMu     sync.Mutex                      // serialises create/attach/shutdown
	rt       atomic.Pointer[runtime.Runtime] // the process's run; nil outside one
	reapStop chan struct{}                   // closing it stops the head's tendPool (nil: not running)
	reapDone chan struct{}                   // closed when tendPool has returned
)

func current() (*runtime.Runtime, error) {
	if r := rt.Load(); r != nil {
		return r, nil
	}
	return nil, errNoRuntime
}

// RuntimeCreate makes a new run with this process as head.
func RuntimeCreate(runid string, reserve int64) (err error) {
	return RuntimeCreateNode(runid, 0, reserve)
}

// RuntimeCreateNode makes node `node`'s part of a multi-node run, with this
// process (the node's agent) as its head.
func RuntimeCreateNode(runid string, node, reserve int64) (err error) {
	defer recovered(&err)
	rtMu.Lock()
	defer rtMu.Unlock()
	if rt.Load() != nil {
		return pyErr(errors.New("a run is already active in this process"))
	}
	if reserve < 0 || node < 0 || node >= 1<<15 {
		return pyErr(errInvalid)
	}
	r, err := runtime.CreateNode(runid, uint16(node), uint64(reserve))
	if err != nil {
		return pyErr(err)
	}
	if _, err := r.Ledgers(); err != nil { // made now: part of the run's fixed cost
		r.Destroy()
		return pyErr(err)
	}
	rt.Store(r)
	registerLedger(r)
	reapStop, reapDone = make(chan struct{}), make(chan struct{})
	go func(stop, done chan struct{}) {
		defer close(done)
		tendPool(r, stop)
	}(reapStop, reapDone)
	return nil
}

// RuntimeAttach joins an existing run.
func RuntimeAttach(runid string) (err error) {
	defer recovered(&err)
	rtMu.Lock()
	defer rtMu.Unlock()
	if rt.Load() != nil {
		return pyErr(errors.New("a run is already active in this process"))
	}
	r, err := runtime.Attach(runid)
	if err != nil {
		return pyErr(err)
	}
	rt.Store(r)
	registerLedger(r)
	return nil
}

// RuntimeShutdown leaves the run; with destroy (head only) it also removes
// the run's shared memory.
func RuntimeShutdown(destroy bool) (err error) {
	defer recovered(&err)
	rtMu.Lock()
	defer rtMu.Unlock()
	r := rt.Swap(nil)
	if r == nil {
		return nil
	}
	if reapStop != nil {
		close(reapStop)
		<-reapDone // it reads the pool: gone before the pool is unmapped
		reapStop, reapDone = nil, nil
	}
	clientMu.Lock()
	if client != nil {
		client.Close()
		client = nil
	}
	clientMu.Unlock()
	waitInside()
	forgetRun()
	if destroy {
		return pyErr(r.Destroy())
	}
	return pyErr(r.Close())
}

// RuntimeNode is the node index of this process's run (0 on one node).
func RuntimeNode() (int64, error) {
	return onRuntime(func(r *runtime.Runtime) (int64, error) { return int64(r.Node), nil })
}

// RuntimeStats describes the run's pool as JSON.
func RuntimeStats() (s string, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return "", pyErr(err)
	}
	st := r.Pool.Stats()
	stats := map[string]any{
		"run": r.ID, "head": r.Head, "pool": r.Pool.Name(),
		"reserve": st.Reserve, "committed": st.Committed, "in_use": st.InUse,
		"allocs": st.Allocs, "frees": st.Frees,
	}
	if d, err := r.Ledgers(); err == nil {
		// blocks processes hold outside channels (gocore/ledger)
		stats["ledgers"], stats["held_blocks"], stats["held_bytes"] = d.Stats()
		stats["held_refs"] = d.Refs()
	}
	b, _ := json.Marshal(stats)
	return string(b), nil
}

// onRuntime runs f on this process's run for a gopy-bound function: a panic
// becomes an error, "no run" and f's error get their E<code> prefix.
func onRuntime[T any](f func(r *runtime.Runtime) (T, error)) (v T, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return v, pyErr(err)
	}
	v, err = f(r)
	return v, pyErr(err)
}

// flag is 1 for true, 0 for false (gopy functions return ints).
func flag(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// inside marks an entry point that waits (or may run long) as running on
// the runtime, until the func it returns is called: RuntimeShutdown waits
// for such calls to return before it unmaps the pool (a daemon thread
// blocked in a get when the program exits used to wake up into unmapped
// memory: SIGSEGV, abort). Call it before current(), so that a call that
// finds the runtime still there is always counted.
//
// It also lets the Go scheduler see the calling thread at least every
// tickEvery. Why: a Python thread calling into Go runs on a locked M that
// keeps its P between calls (the cgo call back to Python counts as a system
// call), and that P's scheduling tick never moves. After 10 ms sysmon takes
// such a P by force at every pass; from then on it passes every 20 us
// instead of backing off to 10 ms, and each pass wakes an M that finds
// nothing to do: tens of thousands of thread wake-ups a second in a process
// that calls into Go often (measured: a remote Pipe ping-pong, 20 us
// nanosleeps of sysmon and a futex wake each). A yield through the
// scheduler every few milliseconds moves the tick, and sysmon backs off.
func inside() (leave func()) {
	insideCalls.Add(1)
	now := time.Now().UnixNano()
	if l := lastTick.Load(); now-l > int64(tickEvery) && lastTick.CompareAndSwap(l, now) {
		goruntime.Gosched()
	}
	return leaveInside
}

func leaveInside() { insideCalls.Add(-1) }

const tickEvery = 5 * time.Millisecond

var (
	lastTick    atomic.Int64
	insideCalls atomic.Int64
)

// shutdownWait bounds how long RuntimeShutdown waits for calls inside the
// runtime: their waits are sliced (100 ms from C, remoteSlice from Go).
const shutdownWait = 2 * time.Second

// waitInside waits (boundedly) until no call is inside the runtime.
func waitInside() {
	deadline := time.Now().Add(shutdownWait)
	for insideCalls.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}
