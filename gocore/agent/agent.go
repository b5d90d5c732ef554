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

// write sends a frame to the process; false if it could not (it is gone).
func (lc *localConn) write(f *wire.Frame) bool {
	lc.wmu.Lock()
	lc.buf = f.AppendTo(lc.buf[:0])
	_, err := lc.conn.Write(lc.buf) // a dead process: its reader ends the connection
	if cap(lc.buf) > 1<<20 {
		lc.buf = nil
	}
	lc.wmu.Unlock()
	return err == nil
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
		switch f.Kind {
		case wire.KindRequest:
			f.Origin = lc.id
			a.forward(&f)
		case wire.KindPost:
			a.post(&f)
		default:
			return // a confused client: drop it
		}
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

// post sends a request that wants no reply to its owner node, or runs it
// here, in the order the process posted it (one connection is read in
// order, and the mesh keeps a lane in order).
func (a *Agent) post(f *wire.Frame) {
	owner := NodeOf(f.Addr)
	if owner == a.node {
		a.runPost(a.node, f)
		return
	}
	a.mu.Lock()
	mesh := a.mesh
	a.mu.Unlock()
	if mesh == nil {
		return
	}
	if err := mesh.Send(owner, f.Addr, f.AppendTo(nil)); err != nil {
		postFailed(a.node, f, err.Error())
	}
}

// runPost runs a post in the caller's goroutine: posts of one lane stay in
// order (a post is only ever a quick operation, such as a send to an
// unbounded channel).
func (a *Agent) runPost(from uint16, f *wire.Frame) {
	if r, _ := a.exec(f); r.Code != 0 {
		postFailed(from, f, string(r.Payload))
	}
}

// postFailed reports a post that failed: nobody waits for it, so, like an
// error in stdlib's queue feeder thread, it is printed.
func postFailed(from uint16, f *wire.Frame, why string) {
	fmt.Fprintf(os.Stderr, "dragon_mp: operation %d from node %d on object %#x of node %d failed: %s\n",
		f.Op, from, f.Addr, NodeOf(f.Addr), why)
}

func lostReply(f *wire.Frame, node uint16, err error) *wire.Frame {
	return &wire.Frame{Kind: wire.KindReply, Op: f.Op, Code: CodePeerLost, ReqID: f.ReqID,
		Origin: f.Origin, Addr: f.Addr,
		Payload: []byte(fmt.Sprintf("node %d is lost: %v", node, err))}
}

// runLocal executes a request of a process of this node on this node.
func (a *Agent) runLocal(f *wire.Frame, send func(*wire.Frame)) {
	r, _ := a.exec(f) // the process is here: nothing is in flight between nodes
	r.Kind, r.Op, r.ReqID, r.Origin, r.Addr = wire.KindReply, f.Op, f.ReqID, f.Origin, f.Addr
	send(&r)
}

// runRemote executes a request from node `from` and sends the reply back.
// An operation with an undo is kept until the requester's agent acks the
// reply; if `from` is lost first, it is undone (a message taken by a
// receiver whose node vanished goes back into its channel).
func (a *Agent) runRemote(from uint16, lane uint64, f *wire.Frame) {
	r, undo := a.exec(f)
	r.Kind, r.Op, r.ReqID, r.Origin, r.Addr = wire.KindReply, f.Op, f.ReqID, f.Origin, f.Addr
	a.mu.Lock()
	mesh := a.mesh
	_, lost := a.lost[from]
	key := ackKey{from, f.Origin, f.ReqID}
	kept := undo != nil && !lost
	if kept {
		r.Op |= ackWanted
		a.unacked[key] = undo
	}
	a.mu.Unlock()
	sent := !lost && mesh != nil && mesh.Send(from, lane, r.AppendTo(nil)) == nil
	switch {
	case sent || undo == nil:
	case kept:
		if u := a.takeUndo(key); u != nil { // PeerLost may have run it already
			u()
		}
	default:
		undo()
	}
}

func (a *Agent) takeUndo(k ackKey) func() {
	a.mu.Lock()
	defer a.mu.Unlock()
	undo := a.unacked[k]
	delete(a.unacked, k)
	return undo
}

// replyLocal hands a reply to its local process; false if it is gone.
func (a *Agent) replyLocal(r *wire.Frame) bool {
	a.mu.Lock()
	lc := a.conns[r.Origin]
	a.mu.Unlock()
	if lc == nil {
		return false
	}
	return lc.write(r)
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
	case wire.KindPost:
		a.runPost(from, &f)
	case wire.KindRequest:
		go a.runRemote(from, lane, &f)
	case wire.KindReply:
		wantAck := f.Op&ackWanted != 0
		f.Op &^= ackWanted
		a.mu.Lock()
		k := pendingKey{f.Origin, f.ReqID}
		_, ok := a.pending[k]
		delete(a.pending, k)
		mesh := a.mesh
		a.mu.Unlock()
		taken := ok && a.replyLocal(&f)
		if wantAck && mesh != nil {
			ack := wire.Frame{Kind: wire.KindAck, ReqID: f.ReqID, Origin: f.Origin, Addr: f.Addr}
			if !taken {
				ack.Code = 1 // the process is gone (or gave up): take it back
			}
			mesh.Send(from, lane, ack.AppendTo(nil))
		}
	case wire.KindAck:
		if undo := a.takeUndo(ackKey{from, f.Origin, f.ReqID}); undo != nil && f.Code != 0 {
			go undo()
		}
	}
}

// PeerLost marks node lost: requests waiting on it fail now, later ones at once.
func (a *Agent) PeerLost(node uint16, err error) {
	if err == nil {
		err = errors.New("connection lost")
	}
	var failed []*wire.Frame
	var undos []func()
	a.mu.Lock()
	if _, dup := a.lost[node]; !dup {
		a.lost[node] = err
	}
	for k, undo := range a.unacked {
		if k.node == node {
			delete(a.unacked, k)
			undos = append(undos, undo)
		}
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
	for _, undo := range undos {
		go undo()
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
