package pyext

/*
#include <stdint.h>
*/
import "C"

import "time"

// Processes on other nodes: started, waited for and signalled by the agent
// of their node (remote_exec.go), addressed by (node, handle of that agent).

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
	rep, err := remoteCall(opProcStart, target, 0, []byte(specJSON))
	if err != nil {
		return 0, pyErr(err)
	}
	return result0(rep), nil
}

// RemoteProcPid is the pid (on its node) of a process started by RemoteProcStart.
func RemoteProcPid(node, h int64) (int64, error) {
	target, err := nodeTarget(node)
	if err != nil {
		return 0, pyErr(err)
	}
	return remoteInt(opProcPid, target, h)
}

// RemoteProcSignal sends sig to a process on node.
func RemoteProcSignal(node, h, sig int64) error {
	target, err := nodeTarget(node)
	if err != nil {
		return pyErr(err)
	}
	return remoteErr(opProcSignal, target, h, sig)
}

// RemoteProcRelease forgets a process handle on node.
func RemoteProcRelease(node, h int64) error {
	target, err := nodeTarget(node)
	if err != nil {
		return pyErr(err)
	}
	return remoteErr(opProcRelease, target, h)
}

// dmp_remote_proc_wait waits up to timeoutNs for a process on node: its exit
// code is stored in *code and 1 returned; 0 when still running; <0 error
// (codeNodeLost when the node is gone). Through ctypes, without the GIL.
//
//export dmp_remote_proc_wait
func dmp_remote_proc_wait(node, h C.int64_t, timeoutNs C.int64_t, code *C.int64_t) (rc int64) {
	defer cRecover(&rc)
	target, err := nodeTarget(int64(node))
	if err != nil {
		return cCode(err)
	}
	var v int64
	err = sliced(duration(timeoutNs), func(t time.Duration) (bool, error) {
		f, err := remoteCall(opProcWait, target, t, nil, int64(h))
		v = result0(f)
		return isCode(err, codeTimeout), err
	})
	if err != nil {
		if isCode(err, codeTimeout) {
			return 0
		}
		return cCode(err)
	}
	*code = C.int64_t(v)
	return 1
}
