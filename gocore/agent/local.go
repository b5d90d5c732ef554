package agent

import (
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// The agent's side toward this node's processes: one connection per
// process (or per call in flight), requests and posts in, replies out.

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
