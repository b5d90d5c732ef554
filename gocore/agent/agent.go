package agent

import (
	"fmt"
	"net"
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Reply codes of the agent itself (the executor's codes are below 1000).
const (
	CodePeerLost   int32 = 1000 // the owner node is lost
	CodeNoSuchNode int32 = 1001 // the address names a node the run does not have
)

// Executor runs a request on this node and returns its reply (Kind, ReqID
// and Origin are filled in by the agent). It may block up to req.Timeout.
// undo, when not nil, takes the operation back (puts a received message
// back, releases an acquired lock): the agent calls it if the reply cannot
// reach the requesting process because its node is lost first.
type Executor func(req *wire.Frame) (rep wire.Frame, undo func())

// ackWanted marks (in Op) a reply whose requester's agent must answer with
// KindAck: until then the owner keeps the operation's undo.
const ackWanted uint16 = 0x8000

// Mesh is what the agent needs of the transport (transport.Mesh).
type Mesh interface {
	Send(node uint16, lane uint64, msg []byte) error
}

// SocketName is the abstract Unix socket name of a run's agent.
func SocketName(localRunID string) string { return "@dragon_mp." + localRunID + ".agent" }

// NodeOf is the node an address (or a node-only target node<<48) names.
func NodeOf(addr uint64) uint16 { return uint16(addr >> 48) }

// Agent is one node's agent. The zero value is not usable; use New.
type Agent struct {
	node uint16
	exec Executor

	mu       sync.Mutex
	mesh     Mesh                  // nil until SetMesh
	conns    map[uint64]*localConn // local processes, by origin token
	nextConn uint64
	pending  map[pendingKey]uint16 // forwarded requests awaiting a reply -> owner node
	unacked  map[ackKey]func()     // replies sent to other nodes, not yet taken -> undo
	lost     map[uint16]error      // nodes that are gone
	ln       *net.UnixListener
	closed   bool
}

type pendingKey struct{ origin, req uint64 }

type ackKey struct {
	node        uint16
	origin, req uint64
}

// New makes the agent of node `node`; Serve starts taking local requests.
func New(node uint16, exec Executor) *Agent {
	return &Agent{node: node, exec: exec, conns: map[uint64]*localConn{},
		pending: map[pendingKey]uint16{}, unacked: map[ackKey]func(){}, lost: map[uint16]error{}}
}

// SetMesh connects the agent to the other nodes.
func (a *Agent) SetMesh(m Mesh) {
	a.mu.Lock()
	a.mesh = m
	a.mu.Unlock()
}

// Serve listens on the abstract socket `name` and serves local processes in
// the background until Close.
func (a *Agent) Serve(name string) error {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return fmt.Errorf("agent: listen %s: %w", name, err)
	}
	a.mu.Lock()
	a.ln = ln
	a.mu.Unlock()
	go a.accept(ln)
	return nil
}

func (a *Agent) accept(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		if !sameUser(c) {
			c.Close() // abstract sockets are visible to every user of the namespace
			continue
		}
		socketBuffers(c)
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			c.Close()
			return
		}
		a.nextConn++
		lc := &localConn{id: a.nextConn, conn: c}
		a.conns[lc.id] = lc
		a.mu.Unlock()
		go a.serveConn(lc)
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

// Close stops serving local processes (the mesh is closed by its owner).
func (a *Agent) Close() error {
	a.mu.Lock()
	a.closed = true
	ln := a.ln
	conns := a.conns
	a.conns = map[uint64]*localConn{}
	a.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for _, lc := range conns {
		lc.conn.Close()
	}
	return nil
}
