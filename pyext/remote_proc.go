package pyext

import (
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// Processes on other nodes: started and signalled by the agent of their node
// (remote_exec.go), addressed by (node, handle of that agent). Their exit
// code is sent to a channel of the starting node (the spec's "notify"), so
// nobody waits for it remotely.

func nodeTarget(node int64) (int64, error) {
	if node < 0 || node >= 1<<15 {
		return 0, errInvalid
	}
	return node << 48, nil
}

// RemoteProcStart starts a process on node from a ProcStart spec (the node
// puts its own run environment in); returns the handle on that node.
func RemoteProcStart(node int64, specJSON string) (h int64, err error) {
	defer recovered(&err)
	target, err := nodeTarget(node)
	if err != nil {
		return 0, pyErr(err)
	}
	rep, err := remoteCall(remoteop.ProcStart, target, 0, []byte(specJSON))
	if err != nil {
		return 0, pyErr(err)
	}
	h = result0(rep)
	if len(rep.Args) > 1 {
		remotePids.Store(remoteProc{node, h}, rep.Args[1])
	}
	return h, nil
}

// remotePids: the pid of each process started by RemoteProcStart and not
// released yet, from the start's reply (no round trip to ask for it).
var remotePids sync.Map // remoteProc -> int64

type remoteProc struct{ node, h int64 }

// RemoteProcPid is the pid (on its node) of a process started by RemoteProcStart.
func RemoteProcPid(node, h int64) (int64, error) {
	if pid, ok := remotePids.Load(remoteProc{node, h}); ok {
		return pid.(int64), nil
	}
	target, err := nodeTarget(node)
	if err != nil {
		return 0, pyErr(err)
	}
	return remoteInt(remoteop.ProcPid, target, h)
}

// RemoteProcSignal sends sig to a process on node.
func RemoteProcSignal(node, h, sig int64) error {
	target, err := nodeTarget(node)
	if err != nil {
		return pyErr(err)
	}
	return remoteErr(remoteop.ProcSignal, target, h, sig)
}

// RemoteProcRelease forgets a process handle on node.
func RemoteProcRelease(node, h int64) error {
	remotePids.Delete(remoteProc{node, h})
	target, err := nodeTarget(node)
	if err != nil {
		return pyErr(err)
	}
	return remoteErr(remoteop.ProcRelease, target, h)
}

// NodeLost reports whether this node's agent found node lost (one look at
// shared memory; false in a run of one node).
func NodeLost(node int64) bool {
	r, err := current()
	if err != nil || node < 0 || node >= runtime.MaxNodes {
		return false
	}
	return r.NodeLost(uint16(node))
}
