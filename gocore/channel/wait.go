package channel

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// Waiting for readiness without receiving: what connection.wait and
// Connection.poll need. A waiter sleeps on the channel's notEmpty futex word
// exactly as a receiver does (same waiter count, same sequence word), so a
// put or a Close wakes it; nothing in the channel layout changes.
//
// WaitAny waits on several channels and file descriptors at once: one
// goroutine per channel sleeps on that channel's word, one goroutine polls
// the descriptors (plus an eventfd used to stop it). The first to see
// readiness stops the others: the channels are nudged (their sequence word
// is bumped and their sleepers woken; a receiver that wakes this way finds
// nothing and sleeps again) and the eventfd is written. WaitAny returns only
// after every goroutine has ended, so nothing touches a channel after it
// returns.

// WaitMode says what a wait on a channel is for.
type WaitMode uint8

const (
	// WaitMessage waits until a Recv would not block: a message is queued,
	// or the channel is closed or destroyed.
	WaitMessage WaitMode = iota
	// WaitClose waits until the channel is closed or destroyed (a writer
	// watching for its readers to go away).
	WaitClose
)

// ready reports whether c is ready for mode (lock-free snapshot).
func (c *Channel) ready(mode WaitMode) bool {
	if c.dead.Load() {
		return true
	}
	h := c.h
	if atomic.LoadUint64(&h.magic) != magicLive || h.tag != c.tag || atomic.LoadUint32(&h.closed) != 0 {
		return true
	}
	return mode == WaitMessage && atomic.LoadUint64(&h.count) != 0
}

// WaitReady waits until c is ready for mode, at most timeout (negative: no
// limit; 0: only check), and reports whether it is. It takes no message.
func (c *Channel) WaitReady(mode WaitMode, timeout time.Duration) bool {
	if c.ready(mode) {
		return true
	}
	if timeout == 0 {
		return false
	}
	deadline := futex.Deadline(timeout)
	if spin(func() bool { return c.ready(mode) }) {
		return true
	}
	return c.waitReady(mode, deadline, nil)
}

// waitReady sleeps on the notEmpty word until c is ready for mode, the
// deadline passes, or stop is set (whoever sets it then nudges c).
func (c *Channel) waitReady(mode WaitMode, deadline time.Time, stop *atomic.Bool) bool {
	h := c.h
	for {
		if c.ready(mode) {
			return true
		}
		d := sleepFor(deadline)
		if d == 0 {
			return false
		}
		if c.lock() != nil {
			return true // destroyed: a Recv would return at once
		}
		if c.ready(mode) {
			h.mu.Unlock()
			return true
		}
		atomic.AddUint32(&h.neWaiters, 1)
		seq := atomic.LoadUint32(&h.neSeq)
		h.mu.Unlock()
		// Checked after reading seq: a nudge that follows the stop flag
		// either finds us counted (and wakes us) or changed seq already.
		if stop != nil && stop.Load() {
			atomic.AddUint32(&h.neWaiters, ^uint32(0))
			return c.ready(mode)
		}
		futex.Wait(&h.neSeq, seq, d)
		atomic.AddUint32(&h.neWaiters, ^uint32(0))
		if stop != nil && stop.Load() {
			return c.ready(mode)
		}
	}
}

// nudge wakes everybody sleeping on c's notEmpty word; they re-check their
// condition and sleep again if nothing changed.
func (c *Channel) nudge() {
	if c.lock() != nil {
		return
	}
	h := c.h
	atomic.AddUint32(&h.neSeq, 1)
	wake := atomic.LoadUint32(&h.neWaiters) != 0
	h.mu.Unlock()
	if wake {
		futex.Wake(&h.neSeq, math.MaxInt32)
	}
}

// WaitAny waits until at least one channel chans[i] is ready for modes[i]
// or one descriptor of fds polls readable, hung up, in error or invalid, at
// most timeout (negative: no limit; 0: only check). It returns the readiness
// of every channel and descriptor as seen when it returns (all false when
// the time ran out). Negative descriptors are ignored, as poll(2) does.
func WaitAny(chans []*Channel, modes []WaitMode, fds []int, timeout time.Duration) (chReady, fdReady []bool, err error) {
	if len(modes) != len(chans) {
		return nil, nil, ErrInvalid
	}
	chReady = make([]bool, len(chans))
	fdReady = make([]bool, len(fds))
	pfds := make([]unix.PollFd, len(fds))
	for i, fd := range fds {
		pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	check := func() (int, error) {
		n := 0
		for i, c := range chans {
			chReady[i] = c.ready(modes[i])
			if chReady[i] {
				n++
			}
		}
		if len(pfds) > 0 {
			if _, err := pollFds(pfds, time.Time{}, true); err != nil {
				return n, err
			}
			for i := range pfds {
				fdReady[i] = pfds[i].Revents != 0
				if fdReady[i] {
					n++
				}
			}
		}
		return n, nil
	}
	if n, err := check(); err != nil || n > 0 || timeout == 0 {
		return chReady, fdReady, err
	}
	deadline := futex.Deadline(timeout)
	switch {
	case len(pfds) == 0 && len(chans) == 1:
		chans[0].WaitReady(modes[0], timeout)
	case len(chans) == 0:
		if _, err := pollFds(pfds, deadline, false); err != nil {
			return chReady, fdReady, err
		}
	default:
		if err := waitMany(chans, modes, pfds, deadline); err != nil {
			return chReady, fdReady, err
		}
	}
	_, err = check()
	return chReady, fdReady, err
}

// waitMany runs one waiter per channel and one poller for the descriptors
// until the first sees readiness or the deadline passes.
func waitMany(chans []*Channel, modes []WaitMode, pfds []unix.PollFd, deadline time.Time) error {
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		pollErr error
	)
	first := make(chan struct{}, 1)
	signal := func() {
		select {
		case first <- struct{}{}:
		default:
		}
	}
	efd := -1
	if len(pfds) > 0 {
		var err error
		if efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
			return err
		}
		defer unix.Close(efd)
	}
	for i, c := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.waitReady(modes[i], deadline, &stop) {
				signal()
			}
		}()
	}
	if efd >= 0 {
		all := append(pfds[:len(pfds):len(pfds)], unix.PollFd{Fd: int32(efd), Events: unix.POLLIN})
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := pollFds(all, deadline, false)
			if err != nil {
				pollErr = err
				signal()
			} else if n > 0 && all[len(all)-1].Revents == 0 {
				signal()
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-first:
	case <-done:
	}
	stop.Store(true)
	for _, c := range chans {
		c.nudge()
	}
	if efd >= 0 {
		one := [8]byte{1}
		unix.Write(efd, one[:])
	}
	<-done
	return pollErr
}

// pollFds polls until a descriptor has an event or the deadline passes (the
// zero deadline: no limit); with once, it only checks. It returns how many
// descriptors have events.
func pollFds(pfds []unix.PollFd, deadline time.Time, once bool) (int, error) {
	for {
		ms := 0
		if !once {
			ms = -1
			if left := futex.Remaining(deadline); left >= 0 {
				// Round up: waking a little late beats spinning on 0 ms polls.
				ms = int(min((left+time.Millisecond-1)/time.Millisecond, math.MaxInt32))
			}
		}
		n, err := unix.Poll(pfds, ms)
		if err == unix.EINTR {
			if once {
				continue
			}
			if futex.Remaining(deadline) == 0 {
				return 0, nil
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		if n > 0 || once || futex.Remaining(deadline) == 0 {
			return n, nil
		}
	}
}
