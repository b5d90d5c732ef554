package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// fdConn is a TCP connection read and written with blocking system calls
// on the calling thread, under crypto/tls.
//
// Why not a net.TCPConn: Go's network poller hands every arriving reply
// from the thread that polls to the thread that waits, a wake-up of ~7 µs
// per message on this kind of machine (measured: 64 B TCP round trip
// between two network namespaces 78 µs with the poller, 64 µs blocked in
// read(2)). A caller from Python runs on its own OS thread anyway.
//
// Before it blocks, a Read polls the socket for a while, yielding the
// processor in between (spinRead): on a virtual machine a blocked thread
// is woken from a halted processor, which costs more than the whole round
// trip of a small message (measured: Pipe ping-pong between two network
// namespaces, 64 B, 145 µs blocking at once, 35 µs polling first; stdlib's
// Listener/Client 85 µs). How long adapts per connection to how long its
// reads have been waiting: about half again the recent waits when they are
// short (a ping-pong), nothing when they are long (a get that waits for a
// producer, an idle connection), so a waiter burns no processor for long.
//
// A blocked Read or Write wakes every `step` (SO_RCVTIMEO/SO_SNDTIMEO) and
// asks `check`; a non-nil error from it ends the call (a lost node, for
// instance, whose silence TCP alone would notice much later). Close shuts
// the socket down, which wakes every blocked call at once; the descriptor
// itself is closed when the last call in progress has returned, so it is
// never reused under a thread still inside read(2).
type fdConn struct {
	local, remote net.Addr
	check         func() error // may be nil
	tryOnce       atomic.Bool  // the next Read must not wait (TryOnce)
	spinFor       atomic.Int64 // ns spinRead polls before a read blocks (adaptive)

	mu     sync.Mutex
	fd     int
	users  int  // calls in progress on fd
	closed bool // Close was called: fd is shut down, closed by the last user
}

// ErrConnClosed is returned by calls on a closed data connection.
var ErrConnClosed = errors.New("transport: connection closed")

// ErrWouldBlock is returned by a Read after TryOnce that found nothing to
// read. It is a temporary net.Error: crypto/tls keeps the connection
// usable (and what it had read of a record) after it.
var ErrWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "transport: nothing to read yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// newFdConn takes over c's socket (c itself is closed) in blocking mode.
func newFdConn(c *net.TCPConn, step time.Duration, check func() error) (*fdConn, error) {
	f, err := c.File() // a dup, blocking-mode agnostic
	local, remote := c.LocalAddr(), c.RemoteAddr()
	c.Close()
	if err != nil {
		return nil, err
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, os.NewSyscallError("dup", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	if step > 0 {
		tv := unix.NsecToTimeval(step.Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	}
	return &fdConn{local: local, remote: remote, check: check, fd: fd}, nil
}

func (c *fdConn) enter() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return -1, ErrConnClosed
	}
	c.users++
	return c.fd, nil
}

func (c *fdConn) leave() {
	c.mu.Lock()
	c.users--
	last := c.closed && c.users == 0
	fd := c.fd
	if last {
		c.fd = -1
	}
	c.mu.Unlock()
	if last {
		unix.Close(fd)
	}
}

// again reports whether a timed-out call should go on waiting.
func (c *fdConn) again() error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return ErrConnClosed
	}
	if c.check != nil {
		return c.check()
	}
	return nil
}

func (c *fdConn) Read(b []byte) (int, error) {
	fd, err := c.enter()
	if err != nil {
		return 0, err
	}
	defer c.leave()
	if c.tryOnce.Swap(false) {
		n, _, err := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return 0, ErrWouldBlock
		case err != nil:
			return 0, os.NewSyscallError("recv", err)
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
	if n, err, ok := c.spinRead(fd, b); ok {
		return n, err
	}
	start := time.Now()
	defer func() { c.learn(time.Since(start)) }()
	for {
		n, err := unix.Read(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if err := c.again(); err != nil {
				return 0, err
			}
			continue
		case err != nil:
			if c.isClosed() {
				return 0, ErrConnClosed
			}
			return 0, os.NewSyscallError("read", err)
		case n == 0 && len(b) > 0:
			if c.isClosed() {
				return 0, ErrConnClosed
			}
			return 0, io.EOF
		}
		return n, nil
	}
}

// maxSpin bounds the polling of spinRead: a read that waited longer than
// this is not worth polling for.
const maxSpin = 100 * time.Microsecond

// spinRead polls fd for up to the adaptive time; ok reports that it read
// (or failed), not that it should block. read completes a read that had
// to block, so that its wait is learnt too.
func (c *fdConn) spinRead(fd int, b []byte) (n int, err error, ok bool) {
	d := c.spinFor.Load()
	if d <= 0 {
		return 0, nil, false
	}
	start := time.Now()
	for {
		m, _, e := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT)
		switch {
		case e == unix.EAGAIN:
			if time.Since(start) > time.Duration(d) {
				return 0, nil, false
			}
			unix.RawSyscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			continue
		case e == unix.EINTR:
			continue
		case e != nil:
			return 0, nil, false // let the blocking read report it
		case m == 0 && len(b) > 0:
			if c.isClosed() {
				return 0, ErrConnClosed, true
			}
			return 0, io.EOF, true
		}
		c.learn(time.Since(start))
		return m, nil, true
	}
}

// learn moves the polling time a quarter of the way toward 1.5 times the
// last wait when it was short, toward nothing when it was not.
func (c *fdConn) learn(waited time.Duration) {
	want := int64(0)
	if waited <= maxSpin {
		want = min(int64(waited)*3/2, int64(maxSpin))
	}
	old := c.spinFor.Load()
	c.spinFor.Store(old + (want-old)/4)
}

func (c *fdConn) Write(b []byte) (int, error) {
	fd, err := c.enter()
	if err != nil {
		return 0, err
	}
	defer c.leave()
	done := 0
	for done < len(b) {
		n, err := unix.Write(fd, b[done:])
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if n > 0 {
				done += n
			}
			if err := c.again(); err != nil {
				return done, err
			}
			continue
		case err != nil:
			if c.isClosed() {
				return done, ErrConnClosed
			}
			return done, os.NewSyscallError("write", err)
		}
		done += n
	}
	return done, nil
}

func (c *fdConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close shuts the socket down (waking blocked calls); the descriptor is
// closed once no call is inside it.
func (c *fdConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	fd := c.fd
	idle := c.users == 0
	if idle {
		c.fd = -1
	}
	c.mu.Unlock()
	unix.Shutdown(fd, unix.SHUT_RDWR)
	if idle {
		unix.Close(fd)
	}
	return nil
}

func (c *fdConn) LocalAddr() net.Addr  { return c.local }
func (c *fdConn) RemoteAddr() net.Addr { return c.remote }

// Deadlines are not used: waits are bounded by `step` and `check` (and
// crypto/tls's handshake timeout closes the connection).
func (c *fdConn) SetDeadline(time.Time) error      { return nil }
func (c *fdConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fdConn) SetWriteDeadline(time.Time) error { return nil }
