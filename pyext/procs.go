package pyext

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/proc"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

var errBadProcess = errors.New("unknown process handle")

var (
	procMu     sync.Mutex
	procs      = map[int64]*proc.Process{}
	nextHandle int64
)

// procSpec is ProcStart's JSON argument.
type procSpec struct {
	Argv           []string `json:"argv"`
	Env            []string `json:"env"`
	Dir            string   `json:"dir"`
	Files          []int    `json:"files"`
	KillWithParent bool     `json:"kill_with_parent"`
	NewSession     bool     `json:"new_session"`
}

// ProcStart starts a process described by a JSON spec and returns a handle.
func ProcStart(specJSON string) (h int64, err error) {
	defer recovered(&err)
	var s procSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil || len(s.Argv) == 0 {
		return 0, pyErr(fmt.Errorf("%w: bad process spec", errInvalid))
	}
	p, err := proc.Start(proc.Spec{Path: s.Argv[0], Args: s.Argv, Env: s.Env, Dir: s.Dir,
		Files: s.Files, KillWithParent: s.KillWithParent, NewSession: s.NewSession})
	if err != nil {
		return 0, pyErr(err)
	}
	procMu.Lock()
	nextHandle++
	h = nextHandle
	procs[h] = p
	procMu.Unlock()
	return h, nil
}

func procAt(h int64) (*proc.Process, error) {
	procMu.Lock()
	defer procMu.Unlock()
	if p := procs[h]; p != nil {
		return p, nil
	}
	return nil, errBadProcess
}

// ProcPid is the process's pid.
func ProcPid(h int64) (pid int64, err error) {
	defer recovered(&err)
	p, err := procAt(h)
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(p.Pid()), nil
}

// ProcPidFD returns a new descriptor (the caller closes it) that becomes
// readable when the process exits.
func ProcPidFD(h int64) (fd int64, err error) {
	defer recovered(&err)
	p, err := procAt(h)
	if err != nil {
		return 0, pyErr(err)
	}
	nfd, err := syscall.Dup(p.PidFD())
	if err != nil {
		return 0, pyErr(err)
	}
	syscall.CloseOnExec(nfd)
	return int64(nfd), nil
}

// ProcWait waits up to timeoutNs (<0: forever) and returns the exit code
// (-signal when killed); an E1 (timeout) error when still running.
func ProcWait(h, timeoutNs int64) (code int64, err error) {
	defer recovered(&err)
	p, err := procAt(h)
	if err != nil {
		return 0, pyErr(err)
	}
	timeout := time.Duration(timeoutNs)
	if timeoutNs < 0 {
		timeout = -1
	}
	st, done := p.Wait(timeout)
	if !done {
		return 0, fmt.Errorf("E%d: process %d still running", codeTimeout, p.Pid())
	}
	return int64(st.Code), nil
}

// ProcSignal sends sig to the process (nothing if it has exited).
func ProcSignal(h, sig int64) (err error) {
	defer recovered(&err)
	p, err := procAt(h)
	if err != nil {
		return pyErr(err)
	}
	return pyErr(p.Signal(syscall.Signal(sig)))
}

// ProcRelease forgets the handle; a running process keeps running and is
// still reaped when it exits.
func ProcRelease(h int64) (err error) {
	defer recovered(&err)
	procMu.Lock()
	p := procs[h]
	delete(procs, h)
	procMu.Unlock()
	if p != nil {
		p.Release()
	}
	return nil
}

// KillRun terminates every process of run id (SIGTERM, then SIGKILL after
// graceMs) and returns how many were signalled.
func KillRun(runid string, graceMs int64) int64 {
	return int64(proc.KillByEnv(runtime.EnvRun, runid, time.Duration(graceMs)*time.Millisecond))
}

// SignalRun sends sig to every process of run id (found by its environment)
// and returns how many there were: a node passes the terminal's Ctrl-C on to
// the processes of a multi-node run that live on it.
func SignalRun(runid string, sig int64) int64 {
	n := int64(0)
	for _, pid := range proc.FindByEnv(runtime.EnvRun, runid) {
		if syscall.Kill(pid, syscall.Signal(sig)) == nil {
			n++
		}
	}
	return n
}
