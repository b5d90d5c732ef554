package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// clientConn is a process's data connection to one node's agent, shared by
// all its threads.
//
// Fast path: a call writes its request and then reads the connection
// itself, on its own thread, until its reply arrives: no reader goroutine,
// no hand-over (transport.fdConn says why). Replies of other calls it meets
// on the way are handed to their callers; one thread reads at a time, and
// when it is done the next waiting caller takes over.
//
// What comes back without being asked for is the report of a failed post;
// a process that only posts looks for such reports at most every
// drainEvery, without waiting (tryDrain).
//
// Acks ride on the next frame the process writes (one record, one system
// call, and no extra wake-up of the agent's reader), or go alone after
// ackDelay: a ping-pong or a stream of gets acknowledges for free.
type clientConn struct {
	cl   *Client
	node uint16
	c    *transport.DataConn
	br   *bufio.Reader
	hdr  []byte // the reader's header buffer

	wmu      sync.Mutex // guards the writing side: wbuf, acks, ackTimer
	wbuf     []byte
	acks     []byte      // encoded acks not written yet
	ackTimer *time.Timer // writes them if nothing else does first

	mu         sync.Mutex
	pending    map[uint64]*pendingCall
	reading    bool          // a thread is reading the connection
	readerFree chan struct{} // closed (and replaced) when it stops
	err        error         // the connection is dead: why

	lastDrain atomic.Int64 // unix ns of the last look for failed posts
}

// drainEvery bounds how long a failed post of a process that only posts
// goes unnoticed (and so how much the agent's reports can pile up).
const drainEvery = time.Millisecond

// ackDelay bounds how long an ack waits for a frame to ride on. It widens,
// by as much, the window in which a node lost right after its process took
// a message gets the message put back as if it had not.
const ackDelay = time.Millisecond

type pendingCall struct {
	sink func(n int) ([]byte, error)
	rep  wire.Frame
	err  error
	done chan struct{}
}

func newClientConn(cl *Client, node uint16, c *transport.DataConn) *clientConn {
	return &clientConn{cl: cl, node: node, c: c, br: bufio.NewReaderSize(c, readBuffer),
		pending: map[uint64]*pendingCall{}, readerFree: make(chan struct{})}
}

// call sends req (a request or a sync) and waits for its reply.
func (cc *clientConn) call(req *wire.Frame, parts [][]byte, sink func(int) ([]byte, error)) (wire.Frame, error) {
	p := &pendingCall{sink: sink, done: make(chan struct{})}
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return wire.Frame{}, cc.err
	}
	cc.pending[req.ReqID] = p
	cc.mu.Unlock()
	if err := cc.write(req, parts); err != nil {
		cc.broken(err)
	}
	return cc.await(p)
}

// post sends req without waiting for anything.
func (cc *clientConn) post(req *wire.Frame, parts [][]byte) error {
	cc.mu.Lock()
	err := cc.err
	cc.mu.Unlock()
	if err != nil {
		return err
	}
	if err := cc.write(req, parts); err != nil {
		return cc.broken(err)
	}
	now := time.Now().UnixNano()
	if last := cc.lastDrain.Load(); now-last > int64(drainEvery) && cc.lastDrain.CompareAndSwap(last, now) {
		cc.tryDrain()
	}
	return nil
}

// write sends one frame, after the acks waiting for a ride.
func (cc *clientConn) write(f *wire.Frame, parts [][]byte) error {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	var err error
	cc.wbuf, err = writeFrame(cc.c, cc.wbuf, cc.acks, f, parts)
	cc.acks = cc.acks[:0]
	return err
}

// ack queues the ack of a reply, to go with the next frame.
func (cc *clientConn) ack(f *wire.Frame) {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	cc.acks = f.AppendTo(cc.acks)
	if cc.ackTimer == nil {
		cc.ackTimer = time.AfterFunc(ackDelay, cc.flushAcks)
	} else {
		cc.ackTimer.Reset(ackDelay)
	}
}

// flushAcks writes the acks that found no frame to ride on.
func (cc *clientConn) flushAcks() {
	cc.wmu.Lock()
	defer cc.wmu.Unlock()
	if len(cc.acks) == 0 {
		return
	}
	if _, err := cc.c.Write(cc.acks); err != nil {
		go cc.broken(err) // not under wmu: failing takes other locks
	}
	cc.acks = cc.acks[:0]
}

// await waits for p's reply, reading the connection when nobody else is.
func (cc *clientConn) await(p *pendingCall) (wire.Frame, error) {
	for {
		select {
		case <-p.done:
			return p.rep, p.err
		default:
		}
		cc.mu.Lock()
		if !cc.reading {
			cc.reading = true
			cc.mu.Unlock()
			cc.readUntil(p.done)
			cc.releaseReader()
			continue
		}
		free := cc.readerFree
		cc.mu.Unlock()
		select {
		case <-p.done:
		case <-free:
		}
	}
}

func (cc *clientConn) releaseReader() {
	cc.mu.Lock()
	cc.reading = false
	close(cc.readerFree)
	cc.readerFree = make(chan struct{})
	cc.mu.Unlock()
}

func (cc *clientConn) readUntil(done chan struct{}) {
	for {
		select {
		case <-done:
			return
		default:
		}
		if err := cc.readOne(); err != nil {
			cc.broken(err)
			return
		}
	}
}

// tryDrain reads whatever has arrived, if nobody is reading, without
// waiting for more.
func (cc *clientConn) tryDrain() {
	cc.mu.Lock()
	if cc.reading || cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.reading = true
	cc.mu.Unlock()
	defer cc.releaseReader()
	for {
		if cc.br.Buffered() == 0 {
			cc.c.TryOnce(true)
			_, err := cc.br.Peek(1)
			cc.c.TryOnce(false)
			if err != nil {
				if !errors.Is(err, transport.ErrWouldBlock) {
					cc.broken(err)
				}
				return
			}
		}
		// Something has arrived: the rest of its frame is on its way.
		if err := cc.readOne(); err != nil {
			cc.broken(err)
			return
		}
	}
}

// readOne reads one frame and hands it to whom it belongs.
func (cc *clientConn) readOne() error {
	var f wire.Frame
	n, err := wire.ReadHeader(cc.br, &cc.hdr, &f)
	if err != nil {
		return err
	}
	switch f.Kind {
	case wire.KindReply:
		wantAck := f.Op&ackWanted != 0
		f.Op &^= ackWanted
		cc.mu.Lock()
		p := cc.pending[f.ReqID]
		delete(cc.pending, f.ReqID)
		cc.mu.Unlock()
		var perr error
		if n > 0 {
			var buf []byte
			if p != nil && p.sink != nil {
				buf, perr = p.sink(n)
			}
			if perr != nil || buf == nil {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(cc.br, buf[:n]); err != nil {
				if p != nil {
					p.err = err
					close(p.done)
				}
				return err
			}
			f.Payload = buf[:n]
		}
		if wantAck {
			// Taken (Code 0) once it is in this process; else the agent
			// puts it back (nobody waits for it, or it found no room).
			ack := wire.Frame{Kind: wire.KindAck, ReqID: f.ReqID, Addr: f.Addr}
			if p == nil || perr != nil {
				ack.Code = 1
			}
			cc.ack(&ack)
		}
		if p != nil {
			p.rep, p.err = f, perr
			close(p.done)
		}
	case wire.KindPostFailed:
		msg := make([]byte, n)
		if _, err := io.ReadFull(cc.br, msg); err != nil {
			return err
		}
		cc.cl.failedPost(f.Addr, &RemoteError{Code: f.Code, Msg: string(msg)})
	default:
		return fmt.Errorf("agent: unexpected %v frame from node %d", f.Kind, cc.node)
	}
	return nil
}

// broken ends the connection after an I/O error: its node is lost for this
// process (see Client.nodeFailed). It returns the error callers get.
func (cc *clientConn) broken(err error) error {
	return cc.cl.nodeFailed(cc.node, cc, err)
}

// fail closes the connection and fails every call waiting on it.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = err
	pend := cc.pending
	cc.pending = nil
	cc.mu.Unlock()
	cc.c.Close()
	for _, p := range pend {
		p.err = err
		close(p.done)
	}
}

// controlConn is the process's connection to its own agent's control
// socket (local.go): a blocking Unix socket, one request at a time.
type controlConn struct {
	name string
	mu   sync.Mutex
	fd   int // -1 or 0 before the first call: not connected
	ok   bool
	buf  []byte
}

// ErrNoAgent reports that this node has no agent: a one-node run.
var ErrNoAgent = errors.New("agent: this node has no agent (a run of one node)")

func (c *controlConn) call(op uint16, args ...int64) (wire.Frame, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if !c.ok {
			if err := c.connect(); err != nil {
				return wire.Frame{}, err
			}
		}
		f := wire.Frame{Kind: wire.KindRequest, Op: op, Args: args}
		c.buf = f.AppendTo(c.buf[:0])
		rep, err := c.exchange()
		if err == nil {
			return rep, nil
		}
		c.closeLocked()
		if attempt == 1 {
			return wire.Frame{}, fmt.Errorf("agent: this node's agent: %w", err)
		}
	}
}

func (c *controlConn) connect() error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: c.name}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ENOENT) {
			return ErrNoAgent
		}
		return fmt.Errorf("agent: this node's agent: %w", err)
	}
	c.fd, c.ok = fd, true
	return nil
}

func (c *controlConn) exchange() (wire.Frame, error) {
	for done := 0; done < len(c.buf); {
		n, err := unix.Write(c.fd, c.buf[done:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return wire.Frame{}, err
		}
		done += n
	}
	var in []byte
	return wire.ReadFrame(fdReader(c.fd), &in)
}

func (c *controlConn) closeLocked() {
	if c.ok {
		unix.Close(c.fd)
		c.ok = false
	}
}

func (c *controlConn) close() {
	c.mu.Lock()
	c.closeLocked()
	c.mu.Unlock()
}

type fdReader int

func (r fdReader) Read(b []byte) (int, error) {
	for {
		n, err := unix.Read(int(r), b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
