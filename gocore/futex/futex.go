package futex

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrTimeout reports that Wait slept for its whole timeout.
var ErrTimeout = errors.New("futex: timed out")

const (
	opWait = 0 // FUTEX_WAIT, shared
	opWake = 1 // FUTEX_WAKE, shared
)

// Wait sleeps while *addr == val, for at most timeout (negative: no limit).
// It returns nil when woken, when *addr != val on entry, or on EINTR; and
// ErrTimeout when the time ran out.
func Wait(addr *uint32, val uint32, timeout time.Duration) error {
	var tsp unsafe.Pointer
	var ts unix.Timespec
	if timeout >= 0 {
		ts = unix.NsecToTimespec(int64(timeout))
		tsp = unsafe.Pointer(&ts)
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)),
		opWait, uintptr(val), uintptr(tsp), 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ETIMEDOUT:
		return ErrTimeout
	default:
		return errno
	}
}

// Wake wakes at most n waiters sleeping on addr and returns how many woke.
func Wake(addr *uint32, n int) int {
	r, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)),
		opWake, uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(r)
}

// Deadline turns a timeout into an absolute time; the zero Time means "no limit".
func Deadline(timeout time.Duration) time.Time {
	if timeout < 0 {
		return time.Time{}
	}
	return time.Now().Add(timeout)
}

// Remaining is the time left until deadline: -1 for no limit, 0 once passed.
func Remaining(deadline time.Time) time.Duration {
	if deadline.IsZero() {
		return -1
	}
	d := time.Until(deadline)
	if d < 0 {
		return 0
	}
	return d
}

// Yield gives the CPU to another thread for a moment, for spin loops.
//
// Not runtime.Gosched: when Go runs on a thread that called in from C (a
// Python thread), Gosched hands the goroutine to another OS thread and back,
// two thread wake-ups per round; sched_yield stays on this thread.
func Yield() {
	unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
}
