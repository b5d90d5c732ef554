package pyext

import (
	"github.com/dragon-mp/dragon_mp/gocore/ledger"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// The references this process holds, recorded in its ledger (gocore/ledger)
// so that the run's head releases them when the process is killed: a
// process that never drops its handles would otherwise keep every channel
// and lock it held alive until the run ends (a channel is 64 KiB and more).
//
// Every Python handle holds one counted reference (dragon_mp/_shared.py):
// it calls RefAdopt when it takes one (made, or unpickled) and RefForget
// just before it drops it. A reference to an object of another node is
// recorded here too: the owner's node cannot see this process die, this
// node's head can, and it releases the reference on the owner's node
// through its agent (releaseRef), as a C API process's (capi/).
//
// held.mu (held.go) guards held.refs; it is a leaf lock.

// RefAdopt records a reference this process now holds to the object at
// addr: a channel (channel true) or any other counted object. Best effort:
// without a ledger entry the reference is simply not recorded.
func RefAdopt(addr int64, channel bool) {
	if addr == 0 {
		return
	}
	r, err := current()
	if err != nil {
		return
	}
	kind := ledger.RefObject
	if channel {
		kind = ledger.RefChannel
	}
	e := reserveRefEntry(r)
	if e == nil {
		return
	}
	e.HoldRef(uint64(addr), kind)
	held.mu.Lock()
	if held.r == r {
		held.refs[uint64(addr)] = append(held.refs[uint64(addr)], e)
		e = nil
	}
	held.mu.Unlock()
	if e != nil {
		e.Clear() // the run changed meanwhile: this entry is not ours to keep
	}
}

// RefForget clears one record of a reference to addr (the caller drops the
// reference next: cleared first, a kill in between leaks it rather than
// releasing it twice).
func RefForget(addr int64) {
	held.mu.Lock()
	es := held.refs[uint64(addr)]
	var e *ledger.Entry
	if n := len(es); n > 0 {
		e = es[n-1]
		if n == 1 {
			delete(held.refs, uint64(addr))
		} else {
			held.refs[uint64(addr)] = es[:n-1]
		}
	}
	held.mu.Unlock()
	e.Clear()
}

// releaseRef is the reaper's release: a dead process's reference to the
// object at addr. An object already gone (its address is stale) is left
// alone: ReleaseChannel and ReleaseObject check the address's generation
// (on the owner's node for an object of another node; a lost node took
// its objects with it).
func releaseRef(r *runtime.Runtime) func(addr uint64, kind int) {
	return func(addr uint64, kind int) {
		if runtime.Address(addr).Node() != r.Node {
			op := remoteop.SyncRelease
			if kind == ledger.RefChannel {
				op = remoteop.ChanRelease
			}
			_ = remoteErr(op, int64(addr))
			return
		}
		if kind == ledger.RefChannel {
			_ = r.ReleaseChannel(runtime.Address(addr))
		} else {
			_ = r.ReleaseObject(runtime.Address(addr))
		}
	}
}
