package proc

import (
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Process is a started child. All methods are safe for concurrent use.
// Call Release when done with it, or the pidfd leaks and, if nobody waited,
// the child stays a zombie.
type Process struct {
	pid   int
	fd    int  // pidfd, or read end of the exit pipe without pidfds; fixed
	pidfd bool // fd is a real pidfd (signals go through it)

	done   chan struct{} // closed once reaped; status is final from then on
	status ExitStatus

	// mu guards the fields below. It is also held across the signal syscall
	// and across wait4, so a signal never races with the reap that would
	// free the pid for reuse.
	mu       sync.Mutex
	reaped   bool
	released bool
	fdUsers  int // goroutines polling fd without mu
	fdClosed bool
}

// newProcess wraps a freshly started child. pidfd is what clone gave (-1 if
// none); wantPidfd is false only when tests force the pipe fallback.
func newProcess(pid, pidfd int, wantPidfd bool) (*Process, error) {
	p := &Process{pid: pid, fd: pidfd, pidfd: pidfd >= 0, done: make(chan struct{})}
	if p.pidfd {
		return p, nil
	}
	if wantPidfd {
		// clone ignored CLONE_PIDFD (old kernel). The child is ours and not
		// reaped, so its pid cannot have been recycled: pidfd_open is exact.
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			p.fd, p.pidfd = fd, true
			return p, nil
		}
	}
	// No pidfds at all: a pipe whose write end is closed on exit stands in
	// as the pollable sentinel.
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		// Without a sentinel the child could not be waited for; do not leak it.
		unix.Kill(pid, unix.SIGKILL)
		var ws syscall.WaitStatus
		for {
			if _, werr := syscall.Wait4(pid, &ws, 0, nil); werr != syscall.EINTR {
				break
			}
		}
		return nil, fmt.Errorf("exit pipe: %w", err)
	}
	p.fd = fds[0]
	go watchExit(pid, fds[1])
	return p, nil
}

// watchExit waits for pid to exit *without reaping it* (WNOWAIT), then closes
// w so the pipe's read end polls readable. Reaping stays with Process.reap,
// which keeps the pid pinned for Signal's kill(2) until mu says otherwise.
// It costs one blocked thread per child, which is why it is only the
// fallback for kernels without pidfds.
func watchExit(pid, w int) {
	var info unix.Siginfo
	for {
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
			break
		}
	}
	unix.Close(w)
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.pid }

// PidFD returns a descriptor that polls readable once the process has exited
// (a pidfd; a pipe on kernels without pidfds). It is close-on-exec, owned by
// the Process and valid until Release; do not close it or read from it.
func (p *Process) PidFD() int { return p.fd }

// Wait waits for the process to exit and returns its status. timeout < 0
// waits forever, 0 only polls. done is false if the process was still running
// when the timeout expired. Any number of goroutines may wait at once, and
// Wait keeps returning the cached status after the process was reaped, Release
// included.
func (p *Process) Wait(timeout time.Duration) (status ExitStatus, done bool) {
	select {
	case <-p.done:
		return p.status, true
	default:
	}
	if !p.acquireFD() {
		// The fd is closed only after the reap, so the status is there.
		<-p.done
		return p.status, true
	}
	ready := waitReadable(p.fd, timeout)
	p.releaseFD()
	if !ready {
		return ExitStatus{}, false
	}
	p.reap()
	return p.status, true
}

// reap collects the exit status of a process known to have exited. Whoever
// gets mu first does the one wait4; the rest find reaped set.
func (p *Process) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return
	}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(p.pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil { // ECHILD: reaped by someone else
			p.status = ExitStatus{Lost: true}
		} else {
			p.status = statusOf(ws)
		}
		break
	}
	p.reaped = true
	close(p.done)
	p.maybeCloseLocked()
}

// Signal sends sig to the process. It is not an error if the process has
// already exited. Through the pidfd (or, without pidfds, because the child is
// not reaped yet while mu is held) the signal can never reach an unrelated
// process that inherited a recycled pid.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil
	}
	var err error
	if p.pidfd {
		err = unix.PidfdSendSignal(p.fd, sig, nil, 0)
	} else {
		err = unix.Kill(p.pid, sig)
	}
	if err == nil || err == unix.ESRCH {
		return nil
	}
	return fmt.Errorf("proc: signal %v to pid %d: %w", sig, p.pid, err)
}

// Terminate sends SIGTERM.
func (p *Process) Terminate() error { return p.Signal(syscall.SIGTERM) }

// Kill sends SIGKILL.
func (p *Process) Kill() error { return p.Signal(syscall.SIGKILL) }

// Release gives up the pidfd. If the process is still running, a background
// goroutine reaps it when it exits and then closes the pidfd, so neither a
// zombie nor a descriptor is leaked; the process itself is left running.
// Wait still works afterwards. Calling Release more than once is harmless.
func (p *Process) Release() {
	p.mu.Lock()
	if p.released {
		p.mu.Unlock()
		return
	}
	p.released = true
	reaped := p.reaped
	p.maybeCloseLocked()
	p.mu.Unlock()
	if !reaped {
		go p.Wait(-1)
	}
}

// acquireFD pins fd open for polling outside mu; false if already closed.
func (p *Process) acquireFD() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fdClosed {
		return false
	}
	p.fdUsers++
	return true
}

func (p *Process) releaseFD() {
	p.mu.Lock()
	p.fdUsers--
	p.maybeCloseLocked()
	p.mu.Unlock()
}

// maybeCloseLocked closes fd once nothing can need it any more: released,
// reaped (so Signal no longer uses it) and not being polled (closing a
// polled fd could let its number be reused under the poller).
func (p *Process) maybeCloseLocked() {
	if p.released && p.reaped && p.fdUsers == 0 && !p.fdClosed {
		unix.Close(p.fd)
		p.fdClosed = true
	}
}
