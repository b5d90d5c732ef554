package pyext

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

var errNoRuntime = errors.New("dragon_mp runtime is not running in this process")

var (
	rtMu sync.Mutex                      // serialises create/attach/shutdown
	rt   atomic.Pointer[runtime.Runtime] // the process's run; nil outside one
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
	rt.Store(r)
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
	clientMu.Lock()
	if client != nil {
		client.Close()
		client = nil
	}
	clientMu.Unlock()
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
	b, _ := json.Marshal(map[string]any{
		"run": r.ID, "head": r.Head, "pool": r.Pool.Name(),
		"reserve": st.Reserve, "committed": st.Committed, "in_use": st.InUse,
		"allocs": st.Allocs, "frees": st.Frees,
	})
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
