package agent

import (
	"bufio"
	"io"
	"sync"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// The agent's side of one data connection: a process of node `peer` sends
// requests, posts, syncs and acks; the agent runs them here and answers.
//
// One goroutine reads the connection at a time and runs, in the order they
// arrive, every post and every request that cannot block, so a process's
// operations start in the order it made them (the promise of doc.go). A
// request that would block is kept by the goroutine that read it, which
// first starts a new reader: the wait begins at once on a thread that is
// already running, and only the next read, which is rarely urgent, waits
// for a thread to be woken (a ping-pong over a Pipe spends one thread
// wake-up less per message than with a goroutine started for the wait).

// smallWrite is the largest frame written as one buffer (one TLS record,
// one system call); a larger payload is written from where it lies.
const smallWrite = 16 << 10

// readBuffer is the reader's buffer: it holds frame headers and small
// payloads; a large payload is read past it, straight to its memory.
const readBuffer = 32 << 10

type session struct {
	a    *Agent
	c    *transport.DataConn
	peer uint16
	br   *bufio.Reader // the reader's (one goroutine reads at a time)
	hdr  []byte        // the reader's header buffer

	wmu  sync.Mutex // one frame at a time on the connection
	wbuf []byte

	mu      sync.Mutex
	unacked map[uint64]Result // replies sent with ackWanted, by ReqID
	done    bool              // the connection is finished: undo instead of keeping
}

func (a *Agent) serveSession(c *transport.DataConn) {
	s := &session{a: a, c: c, peer: c.Peer, br: bufio.NewReaderSize(c, readBuffer),
		unacked: map[uint64]Result{}}
	a.mu.Lock()
	if a.closed || a.lost[c.Peer] != nil {
		a.mu.Unlock()
		c.Close()
		return
	}
	a.sessions[s] = struct{}{}
	a.mu.Unlock()
	// Know when the process's node is lost, to take back what its
	// processes took and never acknowledged.
	a.watch(c.Peer)
	s.serve()
}

// serve reads and runs frames until the connection ends (then it finishes
// the session) or until it keeps a request that waits (another serve
// reads on).
func (s *session) serve() {
	exec := s.a.cfg.Exec
	for {
		req := &Request{}
		n, err := wire.ReadHeader(s.br, &s.hdr, &req.Frame)
		if err != nil {
			s.finish()
			return
		}
		if n > 0 {
			var buf []byte
			if req.Kind == wire.KindRequest || req.Kind == wire.KindPost {
				buf, req.Block = exec.Alloc(&req.Frame, n)
			}
			if buf == nil {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(s.br, buf); err != nil {
				if req.Block != nil {
					exec.Free(req.Block)
				}
				s.finish()
				return
			}
			req.Payload = buf
		}
		switch req.Kind {
		case wire.KindPost:
			r, _ := exec.Exec(req, true) // a post is a quick operation by contract
			if r.Reply.Code != 0 {
				f := r.Reply
				f.Kind, f.Op, f.ReqID, f.Addr = wire.KindPostFailed, req.Op, req.ReqID, req.Addr
				s.write(&f)
			}
			if r.Done != nil {
				r.Done()
			}
		case wire.KindRequest:
			if r, ok := exec.Exec(req, false); ok {
				s.reply(req, r)
				continue
			}
			// The next reader (none if the agent is closing: the
			// connection is being closed anyway); this goroutine waits.
			next := s.a.spawn(s.serve)
			r, _ := exec.Exec(req, true)
			s.reply(req, r)
			if !next {
				s.finish()
			}
			return
		case wire.KindSync:
			// Every earlier post has run: they run on this goroutine.
			s.write(&wire.Frame{Kind: wire.KindReply, ReqID: req.ReqID, Addr: req.Addr})
		case wire.KindAck:
			s.acked(req.ReqID, req.Code == 0)
		default:
			s.finish() // not something a process sends: drop the connection
			return
		}
	}
}

// reply answers req with r; a reply that took something waits for the
// process's ack with its undo.
func (s *session) reply(req *Request, r Result) {
	rep := r.Reply
	rep.Kind, rep.Op, rep.ReqID, rep.Addr = wire.KindReply, req.Op, req.ReqID, req.Addr
	keep := r.Undo != nil
	if keep {
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			r.Undo()
			return
		}
		rep.Op |= ackWanted
		s.unacked[req.ReqID] = r
		s.mu.Unlock()
	}
	err := s.write(&rep)
	switch {
	case keep && err != nil:
		if u, ok := s.take(req.ReqID); ok {
			u.Undo()
		}
	case !keep && r.Done != nil:
		r.Done()
	}
}

func (s *session) take(req uint64) (Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.unacked[req]
	delete(s.unacked, req)
	return r, ok
}

func (s *session) acked(req uint64, taken bool) {
	r, ok := s.take(req)
	switch {
	case !ok:
	case taken:
		if r.Done != nil {
			r.Done()
		}
	default:
		r.Undo()
	}
}

// write sends one frame: a small one as one buffer, a large payload from
// where it lies.
func (s *session) write(f *wire.Frame) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var err error
	s.wbuf, err = writeFrame(s.c, s.wbuf, nil, f, nil)
	return err
}

// writeFrame writes, on w, the encoded frames in head (if any), then f with
// parts as its payload (f.Payload first, if any), using buf for the header
// (and for small frames: one write); it returns buf for reuse.
func writeFrame(w io.Writer, buf, head []byte, f *wire.Frame, parts [][]byte) ([]byte, error) {
	n := len(f.Payload)
	for _, p := range parts {
		n += len(p)
	}
	buf = f.AppendHeader(append(buf[:0], head...), n)
	if len(buf)+n <= smallWrite {
		buf = append(buf, f.Payload...)
		for _, p := range parts {
			buf = append(buf, p...)
		}
		_, err := w.Write(buf)
		return buf, err
	}
	if _, err := w.Write(buf); err != nil {
		return buf, err
	}
	if len(f.Payload) > 0 {
		if _, err := w.Write(f.Payload); err != nil {
			return buf, err
		}
	}
	for _, p := range parts {
		if len(p) > 0 {
			if _, err := w.Write(p); err != nil {
				return buf, err
			}
		}
	}
	return buf, nil
}

// finish ends the session: the connection is closed and everything the
// process took without acknowledging it is taken back (its process died, or
// its node is lost, or we are closing). Requests still running find the
// session done when they reply and undo themselves.
func (s *session) finish() {
	s.c.Close()
	s.mu.Lock()
	s.done = true
	pending := s.unacked
	s.unacked = nil
	s.mu.Unlock()
	for _, r := range pending {
		r.Undo()
	}
	s.a.mu.Lock()
	delete(s.a.sessions, s)
	s.a.mu.Unlock()
}
