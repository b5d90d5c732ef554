package agent

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// The process's side: a Client reaches the objects of other nodes over one
// data connection per node (clientconn.go), dialed on first use with the
// node identity its own agent hands it. See doc.go for the guarantees.

// DefaultStep is how long a blocked call goes at most without looking at
// whether its node was marked lost.
const DefaultStep = 100 * time.Millisecond

// ErrNoSuchNode reports an address naming a node the run does not have.
var ErrNoSuchNode = errors.New("agent: no such node in this run")

// ErrClosed reports a call on a closed Client.
var ErrClosed = errors.New("agent: client closed")

// LostError reports an operation on, or waiting for, a lost node.
type LostError struct {
	Node   uint16
	Name   string // the node's host name, if known
	Reason string
}

func (e *LostError) Error() string {
	name := ""
	if e.Name != "" {
		name = " (" + e.Name + ")"
	}
	return fmt.Sprintf("node %d%s is lost: %s", e.Node, name, e.Reason)
}

// RemoteError is an error reply: the owner's code and message.
type RemoteError struct {
	Code int32
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// ClientConfig configures a Client.
type ClientConfig struct {
	// Control is the abstract socket of this node's agent (SocketName).
	Control string
	// Lost reports whether this node's agent marked node lost (a look at
	// shared memory). nil: nodes are only found lost by their connection.
	Lost func(node uint16) bool
	// Name is a node's host name, for messages (nil: none).
	Name func(node uint16) string
	// Step is how long a blocked call goes at most without looking at
	// Lost (default DefaultStep).
	Step time.Duration
}

// Client is a process's access to the objects of other nodes. Safe for
// concurrent use.
type Client struct {
	cfg  ClientConfig
	next atomic.Uint64
	ctl  controlConn

	mu      sync.Mutex
	creds   *transport.Creds
	conns   map[uint16]*clientConn
	dialing map[uint16]*dialing
	lost    map[uint16]*LostError // final for this process
	posted  map[uint16]uint64     // per node: the last post not yet covered by a sync
	postSeq uint64
	failed  map[uint64][]error // per address: posts that failed, not reported yet
	closed  bool
}

type dialing struct {
	done chan struct{}
	cc   *clientConn
	err  error
}

// NewClient makes a process's client; nothing is dialed until it is used.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Step <= 0 {
		cfg.Step = DefaultStep
	}
	return &Client{cfg: cfg, ctl: controlConn{name: cfg.Control}, conns: map[uint16]*clientConn{},
		dialing: map[uint16]*dialing{}, lost: map[uint16]*LostError{}, posted: map[uint16]uint64{},
		failed: map[uint64][]error{}}
}

// Call runs req (Op, Addr, Timeout, Args) on the node its Addr names, with
// parts as its payload, and returns the reply. sink, if not nil, gives the
// memory for a reply's payload of n bytes (a large message goes straight
// where it will be used); an error from it fails the call and the
// operation is taken back. An error reply is a *RemoteError; a lost node a
// *LostError.
func (c *Client) Call(req wire.Frame, parts [][]byte, sink func(n int) ([]byte, error)) (wire.Frame, error) {
	node := NodeOf(req.Addr)
	if err := c.reported(req.Addr); err != nil {
		return wire.Frame{}, err
	}
	if err := c.fence(node); err != nil {
		return wire.Frame{}, err
	}
	cc, err := c.conn(node)
	if err != nil {
		return wire.Frame{}, err
	}
	req.Kind, req.ReqID = wire.KindRequest, c.next.Add(1)
	rep, err := cc.call(&req, parts, sink)
	if err != nil {
		return rep, err
	}
	if rep.Code != 0 {
		return rep, &RemoteError{Code: rep.Code, Msg: string(rep.Payload)}
	}
	return rep, nil
}

// Post sends req with parts as its payload and does not wait: it runs on
// the owner after every earlier operation of this process there, and
// before any later one (doc.go). Only an operation that cannot block may be
// posted. If it fails there, the error is reported by the next Call or
// Post on the same address, or by the next Sync.
func (c *Client) Post(req wire.Frame, parts [][]byte) error {
	node := NodeOf(req.Addr)
	if err := c.reported(req.Addr); err != nil {
		return err
	}
	cc, err := c.conn(node)
	if err != nil {
		return err
	}
	req.Kind, req.ReqID = wire.KindPost, c.next.Add(1)
	c.mu.Lock()
	c.postSeq++
	c.posted[node] = c.postSeq
	c.mu.Unlock()
	return cc.post(&req, parts)
}

// Sync waits until every post this process made to node has run there,
// and reports the posts that failed (see Post).
func (c *Client) Sync(node uint16) error {
	c.mu.Lock()
	seq, any := c.posted[node]
	c.mu.Unlock()
	if !any {
		return c.takeFailed(node)
	}
	cc, err := c.conn(node)
	if err != nil {
		return err
	}
	if _, err := cc.call(&wire.Frame{Kind: wire.KindSync, ReqID: c.next.Add(1), Addr: uint64(node) << 48}, nil, nil); err != nil {
		return err
	}
	c.mu.Lock()
	if c.posted[node] == seq { // no post since ours went out
		delete(c.posted, node)
	}
	c.mu.Unlock()
	return c.takeFailed(node)
}

// SyncAll is Sync for every node this process posted to: called when a
// process ends, so that what it put is in place before its exit is seen.
func (c *Client) SyncAll() error {
	c.mu.Lock()
	var nodes []uint16
	for n := range c.posted {
		nodes = append(nodes, n)
	}
	for addr := range c.failed {
		nodes = append(nodes, NodeOf(addr))
	}
	c.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		if err := c.Sync(n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fence makes every post to another node than `node` run before an
// operation on node starts (posts to node itself are ordered by their
// connection).
func (c *Client) fence(node uint16) error {
	c.mu.Lock()
	var others []uint16
	for n := range c.posted {
		if n != node {
			others = append(others, n)
		}
	}
	c.mu.Unlock()
	for _, n := range others {
		if err := c.Sync(n); err != nil {
			var le *LostError
			if errors.As(err, &le) {
				continue // a lost node's posts are lost with it; not this call's business
			}
			return err
		}
	}
	return nil
}

// failedPost records an error a post met on its owner.
func (c *Client) failedPost(addr uint64, err error) {
	c.mu.Lock()
	c.failed[addr] = append(c.failed[addr], err)
	c.mu.Unlock()
}

// reported returns (and forgets) the errors of failed posts to addr.
func (c *Client) reported(addr uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failed) == 0 {
		return nil
	}
	errs := c.failed[addr]
	delete(c.failed, addr)
	return joinPostErrors(errs)
}

func (c *Client) takeFailed(node uint16) error {
	c.mu.Lock()
	var errs []error
	for addr, e := range c.failed {
		if NodeOf(addr) == node {
			errs = append(errs, e...)
			delete(c.failed, addr)
		}
	}
	c.mu.Unlock()
	return joinPostErrors(errs)
}

// joinPostErrors keeps the first error as it is (its code tells Python
// which exception to raise) and counts the others.
func joinPostErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	if re, ok := errs[0].(*RemoteError); ok {
		return &RemoteError{Code: re.Code, Msg: fmt.Sprintf("%s (and %d more failed puts)", re.Msg, len(errs)-1)}
	}
	return errs[0]
}

// conn returns the connection to node, dialing it on first use.
func (c *Client) conn(node uint16) (*clientConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if le := c.lost[node]; le != nil {
		c.mu.Unlock()
		return nil, le
	}
	if cc := c.conns[node]; cc != nil {
		c.mu.Unlock()
		if c.cfg.Lost != nil && c.cfg.Lost(node) {
			return nil, c.nodeFailed(node, cc, errors.New("marked lost by this node's agent"))
		}
		return cc, nil
	}
	if d := c.dialing[node]; d != nil {
		c.mu.Unlock()
		<-d.done
		return d.cc, d.err
	}
	d := &dialing{done: make(chan struct{})}
	c.dialing[node] = d
	c.mu.Unlock()
	d.cc, d.err = c.dial(node)
	c.mu.Lock()
	delete(c.dialing, node)
	if d.err == nil {
		if c.closed {
			d.cc.c.Close()
			d.cc, d.err = nil, ErrClosed
		} else {
			c.conns[node] = d.cc
		}
	}
	c.mu.Unlock()
	close(d.done)
	return d.cc, d.err
}

func (c *Client) dial(node uint16) (*clientConn, error) {
	if c.cfg.Lost != nil && c.cfg.Lost(node) {
		return nil, c.nodeFailed(node, nil, errors.New("marked lost by this node's agent"))
	}
	creds, err := c.credentials()
	if err != nil {
		return nil, err
	}
	rep, err := c.ctl.call(ctlPeer, int64(node))
	if err != nil {
		return nil, err
	}
	switch rep.Code {
	case 0:
	case CodePeerLost:
		return nil, c.nodeFailed(node, nil, errors.New(string(rep.Payload)))
	case CodeNoSuchNode:
		return nil, fmt.Errorf("%w: %s", ErrNoSuchNode, rep.Payload)
	default:
		return nil, fmt.Errorf("agent: %s", rep.Payload)
	}
	dc, err := transport.DialData(transport.DialConfig{
		Creds: creds, Node: node, Addr: string(rep.Payload), Step: c.cfg.Step,
		Check: func() error {
			if c.cfg.Lost != nil && c.cfg.Lost(node) {
				return errMarkedLost
			}
			return nil
		},
	})
	if err != nil {
		return nil, c.nodeFailed(node, nil, fmt.Errorf("cannot reach its agent: %w", err))
	}
	return newClientConn(c, node, dc), nil
}

var errMarkedLost = errors.New("marked lost by this node's agent")

// credentials gets this node's identity from its agent, once.
func (c *Client) credentials() (*transport.Creds, error) {
	c.mu.Lock()
	creds := c.creds
	c.mu.Unlock()
	if creds != nil {
		return creds, nil
	}
	rep, err := c.ctl.call(ctlIdentity)
	if err != nil {
		return nil, err
	}
	id, err := transport.ParseIdentity(rep.Payload)
	if err != nil {
		return nil, err
	}
	if creds, err = id.Load(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.creds = creds
	c.mu.Unlock()
	return creds, nil
}

// nodeFailed makes node lost for this process for good (its connection,
// if any, is closed: what was posted on it may be lost, so nothing may go
// on as if it were not) and returns the error naming it, with this node's
// agent's reason if it has one.
func (c *Client) nodeFailed(node uint16, cc *clientConn, cause error) *LostError {
	reason := ""
	if rep, err := c.ctl.call(ctlWhyLost, int64(node)); err == nil {
		reason = string(rep.Payload)
	}
	if reason == "" && cause != nil {
		reason = cause.Error()
	}
	name := ""
	if c.cfg.Name != nil {
		name = c.cfg.Name(node)
	}
	le := &LostError{Node: node, Name: name, Reason: strings.TrimSpace(reason)}
	c.mu.Lock()
	if old := c.lost[node]; old != nil {
		le = old
	} else {
		c.lost[node] = le
	}
	if cc != nil && c.conns[node] == cc {
		delete(c.conns, node)
	}
	delete(c.posted, node)
	c.mu.Unlock()
	if cc != nil {
		cc.fail(le)
	}
	return le
}

// Close ends every connection; calls in progress fail.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = map[uint16]*clientConn{}
	c.mu.Unlock()
	for _, cc := range conns {
		cc.fail(ErrClosed)
	}
	c.ctl.close()
	return nil
}
