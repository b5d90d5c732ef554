package agent

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// ErrAgentGone reports that the connection to the node's agent ended.
var ErrAgentGone = errors.New("agent: connection to the node agent lost")

// Client is a process's connection to its node's agent. Calls from many
// goroutines share it; each waits for its own reply.
type Client struct {
	conn *net.UnixConn

	wmu sync.Mutex // serialises writes
	buf []byte

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan wire.Frame
	err     error // set once the connection is gone
}

// Dial connects to the agent serving abstract socket `name`.
func Dial(name string) (*Client, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent: dial %s: %w", name, err)
	}
	cl := &Client{conn: c, waiting: map[uint64]chan wire.Frame{}}
	go cl.read()
	return cl, nil
}

func (c *Client) read() {
	var buf []byte
	for {
		f, err := wire.ReadFrame(c.conn, &buf)
		if err != nil {
			c.fail(fmt.Errorf("%w: %v", ErrAgentGone, err))
			return
		}
		f.Payload = append([]byte(nil), f.Payload...)
		c.mu.Lock()
		ch := c.waiting[f.ReqID]
		delete(c.waiting, f.ReqID)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	c.err = err
	waiting := c.waiting
	c.waiting = map[uint64]chan wire.Frame{}
	c.mu.Unlock()
	for _, ch := range waiting {
		close(ch)
	}
}

// Call sends req (its ReqID is set here) and waits for the reply.
func (c *Client) Call(req wire.Frame) (wire.Frame, error) {
	ch := make(chan wire.Frame, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return wire.Frame{}, err
	}
	c.next++
	req.ReqID = c.next
	req.Kind = wire.KindRequest
	c.waiting[req.ReqID] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	c.buf = req.AppendTo(c.buf[:0])
	_, err := c.conn.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil
	}
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("%w: %v", ErrAgentGone, err))
	}
	r, ok := <-ch
	if !ok {
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return wire.Frame{}, err
	}
	return r, nil
}

// Close ends the connection; waiting calls fail with ErrAgentGone.
func (c *Client) Close() error { return c.conn.Close() }
