package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Reply codes of the agent itself (an executor's codes are below 1000).
const (
	CodePeerLost   int32 = 1000 // the node is lost
	CodeNoSuchNode int32 = 1001 // the address names a node the run does not have
)

// ackWanted marks (in Op) a reply the requester must answer with KindAck:
// until then the agent keeps the operation's undo.
const ackWanted uint16 = 0x8000

// SocketName is the abstract Unix socket name of a run's agent.
func SocketName(localRunID string) string { return "@dragon_mp." + localRunID + ".agent" }

// NodeOf is the node an address (or a node-only target node<<48) names.
func NodeOf(addr uint64) uint16 { return uint16(addr >> 48) }

// Request is an operation from a process of another node. Block is what
// Executor.Alloc returned for its payload, if anything.
type Request struct {
	wire.Frame
	Block any
}

// Result is what an operation did.
type Result struct {
	// Reply carries Code, Args and Payload (which may alias memory that
	// Done or Undo releases).
	Reply wire.Frame
	// Undo takes the operation back (a received message goes back into
	// its channel, an acquired lock is released); it runs if the reply
	// cannot reach the requesting process. nil: nothing to take back.
	Undo func()
	// Done runs once the reply is written and, with an Undo, acknowledged:
	// what the operation took is the requester's for good. nil: nothing.
	// Exactly one of Undo and Done runs.
	Done func()
}

// Executor runs other nodes' operations on this node.
type Executor interface {
	// Alloc returns memory to read the n-byte payload of req into (a
	// channel's message block, so a large message is written where it
	// will be read) and a handle that Exec gets as Request.Block; nil
	// buf: an ordinary buffer.
	Alloc(req *wire.Frame, n int) (buf []byte, block any)
	// Free gives back a block from Alloc that Exec will never see (the
	// connection ended while the payload was arriving).
	Free(block any)
	// Exec runs req. With wait false it must not block: if the operation
	// would have to wait, it does nothing and returns ok false, and the
	// agent calls it again with wait true on a goroutine of its own (which
	// may block up to req.Timeout).
	Exec(req *Request, wait bool) (r Result, ok bool)
}

// Mesh is what the agent needs of the QUIC mesh (transport.Mesh): a
// connection to every node whose loss matters here.
type Mesh interface {
	Watch(node uint16) error
}

// Config configures an Agent.
type Config struct {
	Node     uint16
	Identity transport.Identity // this node's; its processes get it too
	Exec     Executor
	// MarkLost records a lost node where this node's processes look
	// before and while they wait on another node (shared memory). May be
	// nil.
	MarkLost func(node uint16)
}

// Agent is one node's agent. Use New.
type Agent struct {
	cfg    Config
	creds  *transport.Creds
	idJSON []byte

	mu       sync.Mutex // a leaf: never held while calling out (mesh, executor, network)
	mesh     Mesh
	peers    map[uint16]string // data address of every node
	lost     map[uint16]error
	sessions map[*session]struct{}
	ctl      *net.UnixListener
	data     *transport.DataListener
	closed   bool

	goMu     sync.Mutex // a leaf: gates wg.Add against Close's wg.Wait
	stopping bool
	wg       sync.WaitGroup // session readers and the requests they keep
}

// closeWait bounds how long Close waits for the requests in progress to
// end: their waits are sliced by the requesters (at most about a second).
const closeWait = 3 * time.Second

// New makes the agent of cfg.Node. ServeLocal and ListenData start it.
func New(cfg Config) (*Agent, error) {
	creds, err := cfg.Identity.Load()
	if err != nil {
		return nil, err
	}
	if creds.Node() != cfg.Node {
		return nil, fmt.Errorf("agent: identity of node %d for node %d", creds.Node(), cfg.Node)
	}
	idJSON, err := cfg.Identity.Marshal()
	if err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, creds: creds, idJSON: idJSON, peers: map[uint16]string{},
		lost: map[uint16]error{}, sessions: map[*session]struct{}{}}, nil
}

// ListenData accepts the data connections of other nodes' processes on
// addr ("ip:port"; port 0: any) and returns the address it listens on.
func (a *Agent) ListenData(addr string) (string, error) {
	ln, err := transport.ListenData(a.creds, addr)
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	if a.closed || a.data != nil {
		a.mu.Unlock()
		ln.Close()
		return "", errors.New("agent: closed, or already listening")
	}
	a.data = ln
	a.mu.Unlock()
	go ln.Serve(func(c *transport.DataConn) {
		if !a.counted(func() { a.serveSession(c) }) {
			c.Close()
		}
	})
	return ln.Addr().String(), nil
}

// SetMesh connects the agent to the mesh that tells when nodes are lost.
func (a *Agent) SetMesh(m Mesh) {
	a.mu.Lock()
	a.mesh = m
	a.mu.Unlock()
}

// SetPeers adds or replaces the data addresses of nodes.
func (a *Agent) SetPeers(peers map[uint16]string) {
	a.mu.Lock()
	for n, addr := range peers {
		a.peers[n] = addr
	}
	a.mu.Unlock()
}

// watch makes sure the mesh tells us if node is lost.
func (a *Agent) watch(node uint16) {
	a.mu.Lock()
	m := a.mesh
	a.mu.Unlock()
	if m != nil && node != a.cfg.Node {
		if err := m.Watch(node); err != nil && errors.Is(err, transport.ErrPeerLost) {
			a.PeerLost(node, err)
		}
	}
}

// PeerLost marks node lost (wire it to transport.Config.PeerLost): this
// node's processes see it at once, the node's processes' connections here
// are closed, and what they took and had not acknowledged is taken back.
func (a *Agent) PeerLost(node uint16, err error) {
	if err == nil {
		err = errors.New("connection lost")
	}
	a.mu.Lock()
	if _, dup := a.lost[node]; !dup {
		a.lost[node] = err
	}
	var gone []*session
	for s := range a.sessions {
		if s.peer == node {
			gone = append(gone, s)
		}
	}
	a.mu.Unlock()
	if a.cfg.MarkLost != nil {
		a.cfg.MarkLost(node)
	}
	for _, s := range gone {
		s.c.Close() // its reader ends and undoes what is unacknowledged
	}
}

// Lost lists the nodes lost so far.
func (a *Agent) Lost() map[uint16]error {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[uint16]error, len(a.lost))
	for n, e := range a.lost {
		out[n] = e
	}
	return out
}

func (a *Agent) lostErr(node uint16) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lost[node]
}

// counted runs f, counted for Close to wait for, unless Close has started.
func (a *Agent) counted(f func()) bool {
	a.goMu.Lock()
	if a.stopping {
		a.goMu.Unlock()
		return false
	}
	a.wg.Add(1)
	a.goMu.Unlock()
	defer a.wg.Done()
	f()
	return true
}

// spawn is counted on a goroutine of its own.
func (a *Agent) spawn(f func()) bool {
	a.goMu.Lock()
	defer a.goMu.Unlock()
	if a.stopping {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
	return true
}

// Close stops serving: no more local requests, no more data connections;
// open ones are closed (what they took and had not acknowledged goes back).
// It returns once the requests in progress have ended (at most closeWait):
// the node's pool may be unmapped after it.
func (a *Agent) Close() error {
	a.goMu.Lock()
	a.stopping = true
	a.goMu.Unlock()
	a.mu.Lock()
	a.closed = true
	ctl, data := a.ctl, a.data
	var open []*session
	for s := range a.sessions {
		open = append(open, s)
	}
	a.mu.Unlock()
	if ctl != nil {
		ctl.Close()
	}
	if data != nil {
		data.Close()
	}
	for _, s := range open {
		s.c.Close()
	}
	done := make(chan struct{})
	go func() {
		a.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
	return nil
}

// sameUser reports whether the process at the other end of c runs as our
// user: abstract sockets are visible to every user of the namespace.
func sameUser(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Geteuid()
}
