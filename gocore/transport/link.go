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
// done. Only the peer's cur link counts; a link that lost a tie-break is
// closed without ever being used. Its only stream is the control stream:
// the connection itself, with its keep-alives, is what tells the peer is
// alive.
type link struct {
	m    *Mesh
	p    *peer
	conn *quic.Conn
	ctl  *quic.Stream

	ctlMu sync.Mutex // serialises control-stream writes (hello reply, goodbye, ack)

	ackOnce sync.Once
	ackC    chan struct{} // closed when the peer acks our goodbye
}

func newLink(m *Mesh, p *peer, conn *quic.Conn, st *quic.Stream) *link {
	return &link{m: m, p: p, conn: conn, ctl: st, ackC: make(chan struct{})}
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
}

func (l *link) abort(code quic.ApplicationErrorCode, why string) {
	l.conn.CloseWithError(code, why)
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
	if l.p.isCur(l) {
		l.p.fail(lostErr(l.p.id, cause), false)
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
			l.peerGoodbye()
		case ctl.TAck:
			l.ackOnce.Do(func() { close(l.ackC) })
		default:
			l.abort(codeProtocol, fmt.Sprintf("unexpected control message %d", msg.Type))
			return
		}
	}
}

// peerGoodbye acks the peer's goodbye; the peer is gone, in order.
func (l *link) peerGoodbye() {
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

// goodbye tells the peer we are closing, waits for its ack (so it counts
// this as an orderly close, not a loss) and closes.
func (l *link) goodbye() {
	if l.conn.Context().Err() != nil {
		return
	}
	if l.writeCtl(ctl.Msg{Type: ctl.TGoodbye}) == nil {
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
