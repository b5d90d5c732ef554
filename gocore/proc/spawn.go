package proc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// spawnRequest is one fork+exec for the spawner thread.
type spawnRequest struct {
	spec     *Spec
	argv     []string
	env      []string
	usePidfd bool
	reply    chan spawnResult
}

type spawnResult struct {
	pid   int
	pidfd int // -1 if the kernel gave none
	err   error
}

var (
	spawnOnce sync.Once
	spawnReqs chan spawnRequest
)

// spawner forks every child of the process. It locks itself to its OS thread
// and never returns, so the thread never exits and PR_SET_PDEATHSIG (tied to
// the forking thread, not the process) fires only when the whole process
// dies. Returning, or unlocking, would break that: the runtime would destroy
// or reuse the thread.
func spawner() {
	runtime.LockOSThread()
	for req := range spawnReqs { // never closed
		req.reply <- forkExec(req)
	}
}

// forkExec runs on the spawner thread.
func forkExec(req spawnRequest) spawnResult {
	files, closeDevnull, err := childFiles(req.spec.Files)
	defer closeDevnull()
	if err != nil {
		return spawnResult{err: err}
	}
	pidfd := -1
	sys := &syscall.SysProcAttr{Setsid: req.spec.NewSession}
	if req.spec.KillWithParent {
		sys.Pdeathsig = syscall.SIGKILL
	}
	if req.usePidfd {
		sys.PidFD = &pidfd // CLONE_PIDFD; stays -1 on kernels without it
	}
	attr := &syscall.ProcAttr{Dir: req.spec.Dir, Env: req.env, Files: files, Sys: sys}
	pid, err := syscall.ForkExec(req.spec.Path, req.argv, attr)
	if err != nil {
		return spawnResult{err: err}
	}
	return spawnResult{pid: pid, pidfd: pidfd}
}

// usePidfd is false only in tests that exercise the no-pidfd fallback.
var usePidfd = true

// Start starts the program described by spec and returns once it has been
// exec'd (or failed to be). It may be called from any goroutine or thread;
// the fork itself happens on the package's spawner thread.
func Start(spec Spec) (*Process, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnRequest)
		go spawner()
	})
	req := spawnRequest{
		spec:     &spec,
		argv:     spec.argv(),
		env:      spec.env(),
		usePidfd: usePidfd,
		reply:    make(chan spawnResult, 1),
	}
	spawnReqs <- req
	res := <-req.reply
	if res.err != nil {
		return nil, startError(&spec, res.err)
	}
	p, err := newProcess(res.pid, res.pidfd, req.usePidfd)
	if err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", spec.Path, err)
	}
	return p, nil
}

// startError names the program and, when the working directory is the
// culprit, the directory: the child reports a failed chdir with the same
// errno as a failed execve, which would otherwise blame the program.
func startError(spec *Spec, err error) error {
	var errno syscall.Errno
	if spec.Dir != "" && errors.As(err, &errno) {
		if st, serr := os.Stat(spec.Dir); serr != nil || !st.IsDir() {
			return fmt.Errorf("proc: start %s: chdir %s: %w", spec.Path, spec.Dir, err)
		}
	}
	return fmt.Errorf("proc: start %s: %w", spec.Path, err)
}
