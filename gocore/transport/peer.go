package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/transport/internal/ctl"
)

// peer is what this node knows about one other node: at most one trusted
// link, at most one dial in flight, and - once lost - why. Loss is final
// for the mesh's lifetime: a node that comes back is a new member of a new
// mesh, so nobody can mistake it for the old one with its old state.
//
// Tie-break when both nodes dial each other at once: the dial of the lower
// node id wins. The lower node answers the higher one's hello with
// StatusDuplicate while it has a dial (or link) of its own; the higher node
// accepts the lower one's dial and abandons its own.
type peer struct {
	m  *Mesh
	id uint16

	mu        sync.Mutex
	cur       *link        // the trusted link, if any
	dialing   *dialAttempt // our dial in flight, if any
	waitTimer *time.Timer  // set while we wait for the peer to dial back
	lost      error        // non-nil once lost; wraps ErrPeerLost
}

type dialAttempt struct {
	cancel context.CancelFunc
}

// watch starts a dial unless there is a link, a dial in flight, or a wait
// for the peer to dial back; an error if the peer is lost already.
func (p *peer) watch() error {
	addr, haveAddr := p.m.addrOf(p.id) // Mesh.mu before peer.mu, never inside
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost != nil {
		return p.lost
	}
	if p.cur != nil || p.dialing != nil || p.waitTimer != nil {
		return nil
	}
	if !haveAddr {
		return fmt.Errorf("%w %d", ErrNoAddress, p.id)
	}
	ctx, cancel := context.WithTimeout(p.m.ctx, p.m.cfg.DialTimeout)
	d := &dialAttempt{cancel: cancel}
	p.dialing = d
	if !p.m.spawn(func() { p.dial(ctx, d, addr) }) {
		cancel()
		p.dialing = nil
		return ErrClosed
	}
	return nil
}

// dial connects to the peer, says hello and installs the link if the peer
// answers OK.
func (p *peer) dial(ctx context.Context, d *dialAttempt, addr string) {
	defer d.cancel()
	l, status, err := p.m.dialHello(ctx, p, addr)
	if err != nil {
		p.dialFailed(d, err)
		return
	}
	switch status {
	case ctl.StatusOK:
		if !p.install(l, d) {
			l.abort(codeDuplicate, "superseded")
			return
		}
		l.start()
	case ctl.StatusDuplicate:
		// The peer has (or is making) the connection that wins; wait for
		// it to arrive, but not forever.
		l.conn.CloseWithError(codeDuplicate, "duplicate")
		p.waitDialBack(d)
	default:
		l.conn.CloseWithError(codeRejected, "hello refused")
		p.dialFailed(d, fmt.Errorf("hello refused: %v", status))
	}
}

// install makes l (from dial d) the trusted link, unless d was superseded
// by an incoming connection or the peer was lost meanwhile.
func (p *peer) install(l *link, d *dialAttempt) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dialing != d {
		return false
	}
	p.dialing = nil
	if p.lost != nil || p.cur != nil {
		return false
	}
	p.cur = l
	return true
}

func (p *peer) dialFailed(d *dialAttempt, err error) {
	p.mu.Lock()
	if p.dialing != d {
		p.mu.Unlock()
		return // superseded: the failure of an abandoned dial means nothing
	}
	p.dialing = nil
	p.mu.Unlock()
	p.fail(lostErr(p.id, fmt.Errorf("dial: %w", err)), true)
}

func (p *peer) waitDialBack(d *dialAttempt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dialing != d {
		return
	}
	p.dialing = nil
	if p.cur != nil || p.lost != nil {
		return
	}
	p.waitTimer = time.AfterFunc(p.m.cfg.DialTimeout, func() {
		p.mu.Lock()
		waiting := p.cur == nil && p.lost == nil
		p.mu.Unlock()
		if waiting {
			p.fail(lostErr(p.id, errors.New("lost the dial tie-break and was never dialed back")), true)
		}
	})
}

// accept decides about an incoming link whose hello checked out.
func (p *peer) accept(l *link) ctl.Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.lost != nil:
		return ctl.StatusLost
	case p.cur != nil:
		return ctl.StatusDuplicate
	case p.dialing != nil && p.m.self < p.id:
		return ctl.StatusDuplicate // our dial wins the tie-break
	}
	if p.dialing != nil {
		p.dialing.cancel() // their dial wins; dial() sees it was superseded
		p.dialing = nil
	}
	if p.waitTimer != nil {
		p.waitTimer.Stop()
		p.waitTimer = nil
	}
	p.cur = l
	return ctl.StatusOK
}

// fail declares the peer lost (once). closeConn=false leaves the
// connection to the peer to close, so our last control message (the ack
// of its goodbye) is not cut off.
func (p *peer) fail(err error, closeConn bool) {
	p.mu.Lock()
	if p.lost != nil {
		p.mu.Unlock()
		return
	}
	p.lost = err
	l := p.cur
	if p.dialing != nil {
		p.dialing.cancel()
	}
	if p.waitTimer != nil {
		p.waitTimer.Stop()
		p.waitTimer = nil
	}
	p.mu.Unlock()
	if l != nil && closeConn {
		l.abort(codeLost, "peer lost")
	}
	p.m.peerLost(p.id, err)
}

// isCur reports whether l is the peer's trusted link.
func (p *peer) isCur(l *link) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur == l
}
