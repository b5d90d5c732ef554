package agent

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// ErrAgentGone reports that the connection to the node's agent ended.
var ErrAgentGone = errors.New("agent: connection to the node agent lost")

// Client is a process's connection to its node's agent.
//
// Fast path: a call takes an idle connection, writes its request and reads
// the reply on the calling goroutine. A call from Python runs on a locked OS
// thread; handing the reply over from a reader goroutine would cost a thread
// wake-up per call, so there is none. Concurrent calls use more connections
// (one per call in flight); they are kept for reuse.
type Client struct {
	name string
	next atomic.Uint64

	mu     sync.Mutex
	idle   []*net.UnixConn
	closed bool

	postMu   sync.Mutex // one connection carries every post, in order
	postConn *net.UnixConn
}

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

func (c *Client) dial() (*net.UnixConn, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: c.name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %v", ErrAgentGone, c.name, err)
	}
	socketBuffers(conn)
	return conn, nil
}

func (c *Client) get() (*net.UnixConn, error) {
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

func (c *Client) put(conn *net.UnixConn) {
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
