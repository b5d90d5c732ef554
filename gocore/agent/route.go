package agent

import (
	"errors"
	"fmt"
	"os"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// The agent's side toward the other nodes: forwarding requests and posts,
// running other nodes' requests, replies, acks and lost peers.

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
