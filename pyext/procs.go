package pyext

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/events"
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
	exitTracer().Watch(p.Pid())
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
		// Nothing if ProcExitReason was asked; else nobody will ask.
		exitTracer().Forget(p.Pid())
		p.Release()
	}
	return nil
}

// The exit-reason tracer (gocore/events) of this runtime: loaded at the
// first process start, eBPF when it loads, the fallback otherwise (the
// error is kept for ExitTracerMode). DRAGON_MP_TEST_NO_BPF=1 forces the
// fallback; it exists for tests only.
var (
	tracerOnce sync.Once
	tracer     *events.Tracer
)

func exitTracer() *events.Tracer {
	tracerOnce.Do(func() {
		tracer = events.New(events.Options{NoBPF: os.Getenv("DRAGON_MP_TEST_NO_BPF") == "1"})
	})
	return tracer
}

// ExitTracerMode is "ebpf", or "fallback: <why eBPF is not used>".
func ExitTracerMode() string {
	t := exitTracer()
	if err := t.LoadError(); err != nil {
		return t.Mode() + ": " + err.Error()
	}
	return t.Mode()
}

// ProcWatch watches pid, a child started another way than ProcStart (a
// fork of the zygote), for ProcExitReason.
func ProcWatch(pid int64) {
	exitTracer().Watch(int(pid))
}

// ProcForget stops watching pid (a child released before it ended).
func ProcForget(pid int64) {
	exitTracer().Forget(int(pid))
}

// ProcExitReason says why pid ended, given its status in Python's
// convention (ExitStatus.Code), as JSON (gocore/events.Reason). Call it
// once, after the child was reaped.
func ProcExitReason(pid, code int64) (string, error) {
	b, err := json.Marshal(exitTracer().Reason(int(pid), int(code)))
	return string(b), err
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
