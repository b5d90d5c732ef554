// Package proc starts, waits for, signals and kills the processes of a
// dragon_mp run. It is written for a Go runtime that lives inside a Python
// process (a cgo shared library), which shapes every rule below.
//
// # Contract
//
//   - Start runs a program (fork immediately followed by exec, like
//     posix_spawn). The Go process is never forked except on the way to an
//     exec: a forked copy of a Go runtime has one thread and a heap full of
//     locks held by threads that no longer exist, so it cannot run Go code.
//     (The Python side enforces the same rule for os.fork: a forked child
//     refuses to touch the library.)
//   - Every fork happens on one dedicated goroutine locked to its OS thread
//     that never returns. The reason is Spec.KillWithParent: Linux delivers
//     PR_SET_PDEATHSIG when the *thread* that forked the child exits, not when
//     the process does. Callers reach Start from Python threads through cgo;
//     a short-lived Python thread (or a goroutine that ends while locked to
//     its thread) would take its children with it. The spawner thread lives as
//     long as the process, so "parent died" means what it says.
//   - Only the descriptors listed in Spec.Files reach the child. Go and
//     CPython (PEP 446) create descriptors close-on-exec, but a C library or
//     os.set_inheritable can leave some inheritable; Start closes those in the
//     child (found through /proc/self/fd) without touching the caller's flags.
//   - A Process is identified by a pidfd (Process.PidFD), which becomes
//     readable when the process exits; it is the Python sentinel. Signals go
//     through pidfd_send_signal, so a recycled pid is never hit. Kernels
//     without pidfds (< 5.3) get a pipe that becomes readable on exit
//     instead, and signals are sent only while the child is known unreaped.
//   - Exactly one goroutine reaps each child (wait4 on its pid); the status is
//     cached, so Wait may be called from any number of goroutines, any number
//     of times. Release closes the pidfd once the child is reaped, reaping it
//     in the background if it is still running, so no zombie is left behind.
//   - Exit statuses follow Python: ExitStatus.Code is the exit code (>= 0) or
//     minus the number of the signal that killed the process.
//   - FindByEnv and KillByEnv find a run's processes by an environment entry
//     (DRAGON_MP_RUN=<runid>) in /proc/<pid>/environ; StartTime and Alive
//     detect pid reuse with field 22 of /proc/<pid>/stat.
//
// Errors name the operation and the program ("proc: start /usr/bin/python3:
// no such file or directory") and wrap the underlying errno, so errors.Is
// with fs.ErrNotExist, fs.ErrPermission or a syscall.Errno keeps working.
//
// The package is Linux-only.
package proc
