package proc

import (
	"fmt"
	"syscall"
)

// ExitStatus is how a process ended, in Python's convention
// (multiprocessing.Process.exitcode, subprocess.Popen.returncode).
// The zero value means "exited with code 0".
type ExitStatus struct {
	// Code is the exit code (0..255) when the process exited, or minus the
	// signal number when a signal killed it (-9 for SIGKILL).
	Code int

	// Lost is true when the status could not be collected because something
	// else reaped the child first (SIGCHLD set to SIG_IGN, or a stray
	// waitpid(-1) in the caller). The process is gone; Code is then 0, as
	// CPython's subprocess reports in the same situation.
	// Zero value false: Code is the real status.
	Lost bool
}

// Exited reports whether the process ended by exiting (exit code in Code),
// as opposed to being killed by a signal.
func (s ExitStatus) Exited() bool { return s.Code >= 0 }

// Signaled reports whether a signal killed the process.
func (s ExitStatus) Signaled() bool { return s.Code < 0 }

// Signal returns the signal that killed the process, or 0 if it exited.
func (s ExitStatus) Signal() syscall.Signal {
	if s.Code < 0 {
		return syscall.Signal(-s.Code)
	}
	return 0
}

func (s ExitStatus) String() string {
	switch {
	case s.Lost:
		return "exit status unknown (reaped elsewhere)"
	case s.Code < 0:
		return fmt.Sprintf("killed by signal %d (%v)", -s.Code, s.Signal())
	default:
		return fmt.Sprintf("exit status %d", s.Code)
	}
}

// statusOf converts a wait status. Stopped/continued states never reach here:
// the child is waited for without WUNTRACED/WCONTINUED.
func statusOf(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: -int(ws.Signal())}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}
