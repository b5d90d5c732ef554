package proc

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// waitReadable waits until fd polls readable (or hung up) or timeout expires:
// timeout < 0 waits forever, 0 only checks. It uses poll(2) on the calling
// thread rather than Go's netpoller because pidfds are not readable in the
// read(2) sense, and several goroutines may wait on one fd with different
// deadlines. Callers come from Python threads that block anyway.
func waitReadable(fd int, timeout time.Duration) bool {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		ms := -1
		switch {
		case timeout == 0:
			ms = 0
		case timeout > 0:
			left := time.Until(deadline)
			if left < 0 {
				left = 0
			}
			// Round up: waking a little late beats spinning on 0 ms polls.
			ms = int(min((left+time.Millisecond-1)/time.Millisecond, math.MaxInt32))
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		switch {
		case err == unix.EINTR:
			// A signal (the Go runtime's preemption, or Python's); retry
			// with the time that is left.
			continue
		case err != nil:
			// Not expected for a pinned fd (ENOMEM at worst); back off
			// rather than report an exit that did not happen.
			time.Sleep(10 * time.Millisecond)
		case n > 0:
			return true
		}
		if timeout == 0 || (timeout > 0 && !time.Now().Before(deadline)) {
			return false
		}
	}
}
