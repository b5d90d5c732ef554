package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Reply codes of the agent itself (the executor's codes are below 1000).
const (
	CodePeerLost   int32 = 1000 // the owner node is lost
	CodeNoSuchNode int32 = 1001 // the address names a node the run does not have
)

// Executor runs a request on this node and returns its reply (Kind, ReqID
// and Origin are filled in by the agent). It may block up to req.Timeout.
type Executor func(req *wire.Frame) wire.Frame

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
	lost     map[uint16]error      // nodes that are gone
	ln       *net.UnixListener
	closed   bool
}

type pendingKey struct{ origin, req uint64 }

// New makes the agent of node `node`; Serve starts taking local requests.
func New(node uint16, exec Executor) *Agent {
	return &Agent{node: node, exec: exec, conns: map[uint64]*localConn{},
		pending: map[pendingKey]uint16{}, lost: map[uint16]error{}}
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

// socketBuffer is the kernel buffer of each end of a local connection: a
// large message then crosses in a few writes instead of many small ones,
// each a context switch between the process and the agent.
const socketBuffer = 4 << 20

func socketBuffers(c *net.UnixConn) {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
}

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

// localConn is one local process's connection; writes are serialised.
type localConn struct {
	id   uint64
	conn *net.UnixConn
	wmu  sync.Mutex
	buf  []byte
}

func (lc *localConn) write(f *wire.Frame) {
	lc.wmu.Lock()
	lc.buf = f.AppendTo(lc.buf[:0])
	lc.conn.Write(lc.buf) // a dead process: its reader ends the connection
	if cap(lc.buf) > 1<<20 {
		lc.buf = nil
	}
	lc.wmu.Unlock()
}

func (a *Agent) serveConn(lc *localConn) {
	defer func() {
		a.mu.Lock()
		delete(a.conns, lc.id)
		for k := range a.pending {
			if k.origin == lc.id {
				delete(a.pending, k)
			}
		}
		a.mu.Unlock()
		lc.conn.Close()
	}()
	for {
		var buf []byte // f.Payload aliases it and lives on: a fresh one per frame
		f, err := wire.ReadFrame(lc.conn, &buf)
		if err != nil {
			return
		}
		if f.Kind != wire.KindRequest {
			return // a confused client: drop it
		}
		f.Origin = lc.id
		a.forward(&f)
	}
}

// forward sends a local process's request to its owner node (or runs it here).
func (a *Agent) forward(f *wire.Frame) {
	owner := NodeOf(f.Addr)
	if owner == a.node {
		go a.runLocal(f, func(r *wire.Frame) { a.replyLocal(r) })
		return
	}
	a.mu.Lock()
	lostErr, lost := a.lost[owner]
	mesh := a.mesh
	if !lost && mesh != nil {
		a.pending[pendingKey{f.Origin, f.ReqID}] = owner
	}
	a.mu.Unlock()
	if lost || mesh == nil {
		if !lost {
			lostErr = errors.New("not connected to other nodes")
		}
		a.replyLocal(lostReply(f, owner, lostErr))
		return
	}
	if err := mesh.Send(owner, f.Addr, f.AppendTo(nil)); err != nil {
		a.mu.Lock()
		_, still := a.pending[pendingKey{f.Origin, f.ReqID}]
		delete(a.pending, pendingKey{f.Origin, f.ReqID})
		a.mu.Unlock()
		if !still {
			return
		}
		r := lostReply(f, owner, err)
		if errors.Is(err, transport.ErrNoAddress) {
			r.Code = CodeNoSuchNode
			r.Payload = []byte(fmt.Sprintf("no node %d in this run", owner))
		}
		a.replyLocal(r)
	}
}

func lostReply(f *wire.Frame, node uint16, err error) *wire.Frame {
	return &wire.Frame{Kind: wire.KindReply, Op: f.Op, Code: CodePeerLost, ReqID: f.ReqID,
		Origin: f.Origin, Addr: f.Addr,
		Payload: []byte(fmt.Sprintf("node %d is lost: %v", node, err))}
}

// runLocal executes a request on this node and hands the reply to send.
func (a *Agent) runLocal(f *wire.Frame, send func(*wire.Frame)) {
	r := a.exec(f)
	r.Kind, r.Op, r.ReqID, r.Origin, r.Addr = wire.KindReply, f.Op, f.ReqID, f.Origin, f.Addr
	send(&r)
}

func (a *Agent) replyLocal(r *wire.Frame) {
	a.mu.Lock()
	lc := a.conns[r.Origin]
	a.mu.Unlock()
	if lc != nil {
		lc.write(r)
	}
}

// Deliver takes a message from peer `from` (wire it to transport.Config.Deliver).
func (a *Agent) Deliver(from uint16, lane uint64, msg []byte) {
	if len(msg) < 4 {
		return
	}
	f, err := wire.Decode(msg[4:])
	if err != nil {
		return // the mesh admits only our nodes: a bug, not an attack; drop it
	}
	switch f.Kind {
	case wire.KindRequest:
		go a.runLocal(&f, func(r *wire.Frame) {
			a.mu.Lock()
			mesh := a.mesh
			a.mu.Unlock()
			if mesh != nil {
				mesh.Send(from, lane, r.AppendTo(nil)) // a lost requester: nobody waits
			}
		})
	case wire.KindReply:
		a.mu.Lock()
		k := pendingKey{f.Origin, f.ReqID}
		_, ok := a.pending[k]
		delete(a.pending, k)
		a.mu.Unlock()
		if ok {
			a.replyLocal(&f)
		}
	}
}

// PeerLost marks node lost: requests waiting on it fail now, later ones at once.
func (a *Agent) PeerLost(node uint16, err error) {
	if err == nil {
		err = errors.New("connection lost")
	}
	var failed []*wire.Frame
	a.mu.Lock()
	if _, dup := a.lost[node]; !dup {
		a.lost[node] = err
	}
	for k, n := range a.pending {
		if n == node {
			delete(a.pending, k)
			failed = append(failed, lostReply(&wire.Frame{ReqID: k.req, Origin: k.origin,
				Addr: uint64(node) << 48}, node, err))
		}
	}
	a.mu.Unlock()
	for _, r := range failed {
		a.replyLocal(r)
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
