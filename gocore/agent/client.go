package agent

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
	"golang.org/x/sys/unix"
)

// ErrAgentGone reports that the connection to the node's agent ended.
var ErrAgentGone = errors.New("agent: connection to the node agent lost")

// Client is a process's connection to its node's agent.
//
// Fast path: a call takes an idle connection, writes its request and reads
// the reply on the calling goroutine, with blocking system calls on a
// blocking socket. A call from Python runs on a goroutine locked to its OS
// thread: a reply handed over by a reader goroutine, or by Go's network
// poller, would cost a thread wake-up per call; blocked in read(2), the
// thread wakes directly. Concurrent calls use more connections (one per
// call in flight); they are kept for reuse.
type Client struct {
	name string
	next atomic.Uint64

	mu     sync.Mutex
	idle   []*conn
	closed bool

	postMu   sync.Mutex // one connection carries every post, in order
	postConn *conn
}

// conn is a blocking Unix stream socket (see the fast path above).
type conn struct{ fd int }

func (c *conn) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(c.fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, errEOF
		}
		return n, nil
	}
}

func (c *conn) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := unix.Write(c.fd, b[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (c *conn) Close() error { return unix.Close(c.fd) }

var errEOF = errors.New("EOF")

// Dial connects to the agent serving abstract socket `name`.
func Dial(name string) (*Client, error) {
	c := &Client{name: name}
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	c.idle = append(c.idle, conn)
	return c, nil
}

func (c *Client) dial() (*conn, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: socket: %v", ErrAgentGone, err)
	}
	// A leading '@' names the abstract namespace, as in package net.
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: c.name}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: dial %s: %v", ErrAgentGone, c.name, err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
	return &conn{fd: fd}, nil
}

func (c *Client) get() (*conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: client closed", ErrAgentGone)
	}
	if n := len(c.idle); n > 0 {
		conn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	return c.dial()
}

func (c *Client) put(conn *conn) {
	c.mu.Lock()
	if !c.closed {
		c.idle = append(c.idle, conn)
		conn = nil
	}
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// Call sends req (its Kind and ReqID are set here) and waits for the reply.
func (c *Client) Call(req wire.Frame) (wire.Frame, error) {
	conn, err := c.get()
	if err != nil {
		return wire.Frame{}, err
	}
	req.Kind = wire.KindRequest
	req.ReqID = c.next.Add(1)
	if _, err := conn.Write(req.AppendTo(nil)); err != nil {
		conn.Close()
		return wire.Frame{}, fmt.Errorf("%w: %v", ErrAgentGone, err)
	}
	var buf []byte // the reply's payload aliases it: a fresh one per call
	rep, err := wire.ReadFrame(conn, &buf)
	if err != nil || rep.ReqID != req.ReqID || rep.Kind != wire.KindReply {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("reply %d (%v) to request %d", rep.ReqID, rep.Kind, req.ReqID)
		}
		return wire.Frame{}, fmt.Errorf("%w: %v", ErrAgentGone, err)
	}
	c.put(conn)
	return rep, nil
}

// Post sends req as a post (no reply; see the package doc): it returns once
// the request is on its way, in order after this process's earlier posts.
func (c *Client) Post(req wire.Frame) error {
	req.Kind = wire.KindPost
	c.postMu.Lock()
	defer c.postMu.Unlock()
	if c.postConn == nil {
		conn, err := c.get()
		if err != nil {
			return err
		}
		c.postConn = conn
	}
	if _, err := c.postConn.Write(req.AppendTo(nil)); err != nil {
		c.postConn.Close()
		c.postConn = nil
		return fmt.Errorf("%w: %v", ErrAgentGone, err)
	}
	return nil
}

// Close ends the idle connections and the post connection (posts already
// written are still carried out); calls in flight finish, later ones fail
// with ErrAgentGone.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, conn := range idle {
		conn.Close()
	}
	c.postMu.Lock()
	if c.postConn != nil {
		c.postConn.Close()
		c.postConn = nil
	}
	c.postMu.Unlock()
	return nil
}
