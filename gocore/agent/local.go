package agent

import (
	"fmt"
	"net"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// The agent's control socket for this node's processes: an abstract Unix
// socket, served to processes of the agent's own user only. A process asks
// it, once, for the node's identity (to dial other nodes' agents), and for
// where each other node's agent listens (which also has this agent watch
// that node, so that its loss is noticed here); and, when it finds a node
// marked lost, why.
//
// Requests and replies are wire frames (KindRequest / KindReply).
const (
	ctlIdentity uint16 = 1 // () -> payload: this node's identity (JSON)
	ctlPeer     uint16 = 2 // (node) -> payload: its agent's data address
	ctlWhyLost  uint16 = 3 // (node) -> payload: why it is lost ("" if it is not)
)

// ServeLocal serves this node's processes on the abstract socket name
// (SocketName) until Close.
func (a *Agent) ServeLocal(name string) error {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return fmt.Errorf("agent: listen %s: %w", name, err)
	}
	a.mu.Lock()
	if a.closed || a.ctl != nil {
		a.mu.Unlock()
		ln.Close()
		return fmt.Errorf("agent: closed, or already serving")
	}
	a.ctl = ln
	a.mu.Unlock()
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			if !sameUser(c) {
				c.Close()
				continue
			}
			go a.serveLocal(c)
		}
	}()
	return nil
}

func (a *Agent) serveLocal(c *net.UnixConn) {
	defer c.Close()
	var buf, out []byte
	for {
		f, err := wire.ReadFrame(c, &buf)
		if err != nil || f.Kind != wire.KindRequest {
			return
		}
		rep := a.control(&f)
		rep.Kind, rep.Op, rep.ReqID = wire.KindReply, f.Op, f.ReqID
		out = rep.AppendTo(out[:0])
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

func (a *Agent) control(f *wire.Frame) wire.Frame {
	node := uint16(0)
	if len(f.Args) > 0 {
		node = uint16(f.Args[0])
	}
	switch f.Op {
	case ctlIdentity:
		return wire.Frame{Args: []int64{int64(a.cfg.Node)}, Payload: a.idJSON}
	case ctlPeer:
		if err := a.lostErr(node); err != nil {
			return wire.Frame{Code: CodePeerLost, Payload: []byte(err.Error())}
		}
		a.mu.Lock()
		addr, ok := a.peers[node]
		a.mu.Unlock()
		if !ok {
			return wire.Frame{Code: CodeNoSuchNode, Payload: fmt.Appendf(nil, "no node %d in this run", node)}
		}
		a.watch(node)
		return wire.Frame{Payload: []byte(addr)}
	case ctlWhyLost:
		if err := a.lostErr(node); err != nil {
			return wire.Frame{Payload: []byte(err.Error())}
		}
		return wire.Frame{}
	}
	return wire.Frame{Code: 1, Payload: []byte("unknown control request")}
}
