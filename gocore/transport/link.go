package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dragon-mp/dragon_mp/gocore/transport/internal/ctl"
)

// link is one QUIC connection to a peer, from the moment its hello is
// done. Only the peer's cur link carries traffic; a link that lost a
// tie-break is closed without ever being used.
type link struct {
	m    *Mesh
	p    *peer
	conn *quic.Conn
	ctl  *quic.Stream

	ctlMu sync.Mutex // serialises control-stream writes (hello reply, goodbye, ack)

	slots [NumStreams]slot

	mu     sync.Mutex    // guards the fields below
	opened int           // data streams we opened (all FIN'd before our goodbye)
	eofs   int           // peer's data streams we read to their FIN
	eofC   chan struct{} // closed (and replaced) on every eof
	dead   error         // why the link can no longer send

	ackOnce sync.Once
	ackC    chan struct{} // closed when the peer acks our goodbye
}

func newLink(m *Mesh, p *peer, conn *quic.Conn, st *quic.Stream) *link {
	l := &link{m: m, p: p, conn: conn, ctl: st, eofC: make(chan struct{}), ackC: make(chan struct{})}
	for i := range l.slots {
		l.slots[i].init()
	}
	return l
}

// slotOf spreads lanes over the stream pool (Fibonacci hashing: dense
// lane numbers still land on different streams).
func slotOf(lane uint64) int { return int((lane * 0x9E3779B97F4A7C15) >> 61) }

func (l *link) send(lane uint64, msg []byte) error {
	return l.slots[slotOf(lane)].put(l, lane, msg)
}

func (l *link) writeCtl(msg ctl.Msg) error {
	l.ctlMu.Lock()
	defer l.ctlMu.Unlock()
	return ctl.Write(l.ctl, msg)
}

// start runs the link's receive side. Call once the link is trusted.
func (l *link) start() {
	l.m.spawn(l.monitor)
	l.m.spawn(l.readCtl)
	l.m.spawn(l.acceptStreams)
}

// kill makes every Send on the link fail with err (the first err wins) and
// stops its writers. It does not close the connection.
func (l *link) kill(err error) {
	l.mu.Lock()
	if l.dead == nil {
		l.dead = err
	}
	l.mu.Unlock()
	for i := range l.slots {
		l.slots[i].kill(err)
	}
}

func (l *link) abort(code quic.ApplicationErrorCode, why string) {
	l.conn.CloseWithError(code, why)
	l.kill(lostErr(l.p.id, errors.New(why)))
}

// monitor turns the end of the connection into the loss of the peer, if
// this link was the peer's trusted one.
func (l *link) monitor() {
	<-l.conn.Context().Done()
	cause := context.Cause(l.conn.Context())
	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && ae.Remote && ae.ErrorCode == codeGoodbye {
		cause = ErrPeerClosed
	}
	err := lostErr(l.p.id, cause)
	l.kill(err)
	if l.p.isCur(l) {
		l.p.fail(err, false)
	}
}

// readCtl handles the control stream after the hello.
func (l *link) readCtl() {
	for {
		msg, err := ctl.Read(l.ctl)
		if err != nil {
			if l.conn.Context().Err() == nil {
				l.abort(codeProtocol, fmt.Sprintf("control stream: %v", err))
			}
			return
		}
		switch msg.Type {
		case ctl.TGoodbye:
			l.peerGoodbye(int(msg.Streams))
		case ctl.TAck:
			l.ackOnce.Do(func() { close(l.ackC) })
		default:
			l.abort(codeProtocol, fmt.Sprintf("unexpected control message %d", msg.Type))
			return
		}
	}
}

// peerGoodbye acks the peer's goodbye once all n of its data streams have
// been read to the end, so everything it sent has been delivered.
func (l *link) peerGoodbye(n int) {
	for {
		l.mu.Lock()
		done, ch := l.eofs >= n, l.eofC
		l.mu.Unlock()
		if done {
			break
		}
		select {
		case <-ch:
		case <-l.conn.Context().Done():
			return
		}
	}
	if l.writeCtl(ctl.Msg{Type: ctl.TAck}) != nil {
		return
	}
	if l.m.isClosing() {
		return // our own goodbye is running on this link; let it finish
	}
	if l.p.isCur(l) {
		// The peer closes the connection once it has our ack.
		l.p.fail(lostErr(l.p.id, ErrPeerClosed), false)
	}
}

func (l *link) acceptStreams() {
	for {
		s, err := l.conn.AcceptUniStream(l.conn.Context())
		if err != nil {
			return
		}
		if !l.m.spawn(func() { l.readStream(s) }) {
			return
		}
	}
}

func (l *link) streamEOF() {
	l.mu.Lock()
	l.eofs++
	close(l.eofC)
	l.eofC = make(chan struct{})
	l.mu.Unlock()
}

// goodbye finishes every stream (all queued data written, then FIN), tells
// the peer how many streams to expect, waits for its ack and closes.
func (l *link) goodbye() {
	for i := range l.slots {
		l.slots[i].finishReq()
	}
	for i := range l.slots {
		if d := l.slots[i].doneC(); d != nil {
			select {
			case <-d:
			case <-l.conn.Context().Done():
			}
		}
	}
	l.mu.Lock()
	n := l.opened
	l.mu.Unlock()
	if l.conn.Context().Err() != nil {
		return
	}
	if l.writeCtl(ctl.Msg{Type: ctl.TGoodbye, Streams: uint32(n)}) == nil {
		t := time.NewTimer(goodbyeTimeout)
		select {
		case <-l.ackC:
		case <-l.conn.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	l.conn.CloseWithError(codeGoodbye, "goodbye")
}

// dialHello dials addr expecting node p.id, says hello and returns the
// link with the peer's answer. The link is not started.
func (m *Mesh) dialHello(ctx context.Context, p *peer, addr string) (*link, ctl.Status, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, 0, err
	}
	conn, err := m.tr.Dial(ctx, ua, m.clientTLS(p.id), m.qconf)
	if err != nil {
		return nil, 0, err
	}
	if !m.track(conn) {
		conn.CloseWithError(codeClosing, "closing")
		return nil, 0, ErrClosed
	}
	fail := func(err error) (*link, ctl.Status, error) {
		conn.CloseWithError(codeRejected, "hello failed")
		return nil, 0, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return fail(err)
	}
	if err := ctl.Write(st, ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: m.self, To: p.id, RunID: m.run}); err != nil {
		return fail(err)
	}
	// Our Dial returned before the server checked our certificate: only
	// its reply tells us the connection is trusted.
	dl, _ := ctx.Deadline()
	st.SetReadDeadline(dl)
	reply, err := ctl.Read(st)
	if err != nil {
		return fail(fmt.Errorf("hello reply: %w", err))
	}
	st.SetReadDeadline(time.Time{})
	if reply.Type != ctl.TReply || reply.From != p.id {
		return fail(fmt.Errorf("bad hello reply %+v", reply))
	}
	return newLink(m, p, conn, st), reply.Status, nil
}

// handleIncoming checks an accepted connection's hello and, if the
// connection may carry traffic, makes it the peer's link.
func (m *Mesh) handleIncoming(conn *quic.Conn) {
	if !m.track(conn) {
		conn.CloseWithError(codeClosing, "closing")
		return
	}
	reject := func(why string) { conn.CloseWithError(codeRejected, why) }
	node, err := m.peerNode(conn.ConnectionState().TLS)
	if err != nil {
		reject(err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.DialTimeout)
	defer cancel()
	st, err := conn.AcceptStream(ctx)
	if err != nil {
		reject("no hello")
		return
	}
	st.SetReadDeadline(time.Now().Add(m.cfg.DialTimeout))
	hello, err := ctl.Read(st)
	if err != nil {
		reject("no hello")
		return
	}
	st.SetReadDeadline(time.Time{})
	if hello.Type != ctl.THello || hello.Version != ctl.Version || hello.RunID != m.run ||
		hello.From != node || hello.To != m.self {
		// The certificate is of this run but the hello does not match it:
		// an impostor or a misrouted dial. Never trust it.
		ctl.Write(st, ctl.Msg{Type: ctl.TReply, Status: ctl.StatusRejected, From: m.self})
		reject("hello does not match certificate")
		return
	}
	p, err := m.peer(node)
	if err != nil {
		reject("closing")
		return
	}
	l := newLink(m, p, conn, st)
	status := p.accept(l)
	// A failed write means a dead connection; for an accepted link the
	// monitor reports it.
	l.writeCtl(ctl.Msg{Type: ctl.TReply, Status: status, From: m.self})
	if status == ctl.StatusOK {
		l.start()
		return
	}
	// Let the dialer read the answer and close; close ourselves if it
	// does not.
	t := time.NewTimer(m.cfg.DialTimeout)
	defer t.Stop()
	select {
	case <-conn.Context().Done():
	case <-t.C:
	case <-m.ctx.Done():
	}
	conn.CloseWithError(codeDuplicate, status.String())
}

func (m *Mesh) acceptLoop() {
	for {
		conn, err := m.ln.Accept(m.ctx)
		if err != nil {
			return
		}
		if !m.spawn(func() { m.handleIncoming(conn) }) {
			conn.CloseWithError(codeClosing, "closing")
			return
		}
	}
}
