package transport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

const (
	defaultIdleTimeout = 3 * time.Second
	defaultKeepAlive   = 500 * time.Millisecond
	defaultDialTimeout = 10 * time.Second
	// goodbyeTimeout bounds how long Close waits for a live peer to
	// acknowledge its goodbye.
	goodbyeTimeout = 5 * time.Second
)

// Application error codes in CONNECTION_CLOSE.
const (
	codeGoodbye   quic.ApplicationErrorCode = 0 // orderly, after goodbye/ack
	codeRejected  quic.ApplicationErrorCode = 1 // hello did not check out
	codeDuplicate quic.ApplicationErrorCode = 2 // lost the tie-break
	codeLost      quic.ApplicationErrorCode = 3 // we declared the peer lost
	codeProtocol  quic.ApplicationErrorCode = 4 // peer broke the control protocol
	codeClosing   quic.ApplicationErrorCode = 5 // mesh closing, no goodbye possible
)

var (
	// ErrPeerLost is wrapped by every error that means a peer is gone.
	ErrPeerLost = errors.New("transport: peer lost")
	// ErrPeerClosed means the peer said goodbye; it wraps ErrPeerLost.
	ErrPeerClosed = fmt.Errorf("%w (peer closed)", ErrPeerLost)
	// ErrClosed is returned by Watch after Close started.
	ErrClosed = errors.New("transport: mesh closed")
	// ErrNoAddress: Watch of a node with no connection and no known address.
	ErrNoAddress = errors.New("transport: no address for node")
)

func lostErr(node uint16, cause error) error {
	if errors.Is(cause, ErrPeerLost) {
		return cause
	}
	return fmt.Errorf("%w: node %d: %w", ErrPeerLost, node, cause)
}

// Config configures a Mesh.
type Config struct {
	Identity    Identity
	Listen      string            // UDP "ip:port" this node listens on (port 0 allowed; Mesh.Addr tells)
	Peers       map[uint16]string // node -> "ip:port" of every OTHER node (may be given later via SetPeers)
	IdleTimeout time.Duration     // default 3 s: a silent peer is declared lost after this
	KeepAlive   time.Duration     // default 500 ms
	DialTimeout time.Duration     // default 10 s: a dial (handshake + hello) that takes longer fails
	// PeerLost is called once when a peer is lost (timeout, closed, failed
	// hello). It must not call Close. Not called once Close has started.
	PeerLost func(node uint16, err error)
}

// Mesh is one node's set of connections to the other nodes of a run.
type Mesh struct {
	cfg   Config
	id    *loaded
	run   string
	self  uint16
	udp   *net.UDPConn
	tr    *quic.Transport
	ln    *quic.Listener
	qconf *quic.Config

	ctx    context.Context // cancelled by Close once goodbyes are done
	cancel context.CancelFunc

	mu       sync.Mutex // guards everything below; see doc.go for the lock order
	peers    map[uint16]*peer
	addrs    map[uint16]string
	conns    map[*quic.Conn]struct{} // every live connection, trusted or not
	closing  bool
	closingC chan struct{} // closed when Close starts
	closedC  chan struct{} // closed when Close is done

	goMu    sync.Mutex // leaf lock: gates wg.Add against Close's wg.Wait
	stopped bool
	wg      sync.WaitGroup
}

// Start opens the UDP socket, starts listening and returns the mesh.
// Connections are made by Watch, or by peers dialing in.
func Start(cfg Config) (*Mesh, error) {
	id, err := cfg.Identity.load()
	if err != nil {
		return nil, err
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = defaultIdleTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = defaultKeepAlive
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	laddr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("transport: listen address: %w", err)
	}
	udp, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mesh{
		cfg:  cfg,
		id:   id,
		run:  cfg.Identity.RunID,
		self: cfg.Identity.Node,
		udp:  udp,
		// One Transport (one socket, one port) both listens and dials, so
		// a node is reachable at one address whichever side dialed.
		tr: &quic.Transport{Conn: udp},
		qconf: &quic.Config{
			HandshakeIdleTimeout: cfg.DialTimeout,
			MaxIdleTimeout:       cfg.IdleTimeout,
			KeepAlivePeriod:      cfg.KeepAlive,
			// The control stream is the only stream (data travels on
			// DataConns).
			MaxIncomingStreams:    1,
			MaxIncomingUniStreams: -1,
			// Without this a 1280-byte path MTU costs ~200 ms per
			// handshake (notes); PMTU discovery still grows packets.
			InitialPacketSize: 1200,
		},
		ctx:      ctx,
		cancel:   cancel,
		peers:    map[uint16]*peer{},
		addrs:    maps.Clone(cfg.Peers),
		conns:    map[*quic.Conn]struct{}{},
		closingC: make(chan struct{}),
		closedC:  make(chan struct{}),
	}
	if m.addrs == nil {
		m.addrs = map[uint16]string{}
	}
	m.ln, err = m.tr.Listen(m.serverTLS(), m.qconf)
	if err != nil {
		m.tr.Close()
		udp.Close()
		cancel()
		return nil, fmt.Errorf("transport: %w", err)
	}
	m.spawn(m.acceptLoop)
	return m, nil
}

// Addr is the UDP address the mesh listens (and dials) on.
func (m *Mesh) Addr() net.Addr { return m.udp.LocalAddr() }

// Node is this mesh's node id.
func (m *Mesh) Node() uint16 { return m.self }

// SetPeers adds or replaces peer addresses. Existing connections are kept.
func (m *Mesh) SetPeers(peers map[uint16]string) {
	m.mu.Lock()
	maps.Copy(m.addrs, peers)
	m.mu.Unlock()
}

// Watch makes sure there is a connection to node, so that its loss is
// noticed: it returns at once, dialing in the background if needed (the
// outcome shows in Connected, or in PeerLost). Errors wrap ErrPeerLost (the
// node is lost already), ErrClosed or ErrNoAddress.
func (m *Mesh) Watch(node uint16) error {
	if node == m.self {
		return nil
	}
	p, err := m.peer(node)
	if err != nil {
		return err
	}
	return p.watch()
}

// Lost reports why node is lost, or nil.
func (m *Mesh) Lost(node uint16) error {
	m.mu.Lock()
	p := m.peers[node]
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// Connected reports whether a trusted connection to node is up.
func (m *Mesh) Connected(node uint16) bool {
	m.mu.Lock()
	p := m.peers[node]
	m.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur != nil && p.lost == nil
}

// peer returns the state of node, creating it.
func (m *Mesh) peer(node uint16) (*peer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return nil, ErrClosed
	}
	p := m.peers[node]
	if p == nil {
		p = &peer{m: m, id: node}
		m.peers[node] = p
	}
	return p, nil
}

func (m *Mesh) addrOf(node uint16) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.addrs[node]
	return a, ok
}

func (m *Mesh) isClosing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closing
}

// track records a live connection so Close can close it; untrack when it
// is done.
func (m *Mesh) track(c *quic.Conn) bool {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return false
	}
	m.conns[c] = struct{}{}
	m.mu.Unlock()
	return m.spawn(func() {
		<-c.Context().Done()
		m.untrack(c)
	})
}

func (m *Mesh) untrack(c *quic.Conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// spawn runs f in a goroutine Close waits for; false once Close is past
// the point of waiting.
func (m *Mesh) spawn(f func()) bool {
	m.goMu.Lock()
	defer m.goMu.Unlock()
	if m.stopped {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// peerLost reports a loss to the user, unless we are closing (then every
// peer goes away and the user asked for it).
func (m *Mesh) peerLost(node uint16, err error) {
	if m.cfg.PeerLost != nil && !m.isClosing() {
		m.cfg.PeerLost(node, err)
	}
}

// Close says goodbye to every connected peer (so they see an orderly close,
// not a loss), then closes all connections and the socket, and waits for
// every goroutine (no PeerLost runs after Close returns).
func (m *Mesh) Close() error {
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		<-m.closedC
		return nil
	}
	m.closing = true
	close(m.closingC)
	var links []*link
	for _, p := range m.peers {
		p.mu.Lock()
		if p.cur != nil && p.lost == nil {
			links = append(links, p.cur)
		}
		p.mu.Unlock()
	}
	m.mu.Unlock()

	m.ln.Close() // no new connections; accepted ones are unaffected
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Go(l.goodbye)
	}
	wg.Wait()

	m.cancel() // abort dials and handshakes in flight
	m.mu.Lock()
	conns := make([]*quic.Conn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(codeClosing, "closing")
	}
	err := m.tr.Close()
	m.udp.Close()
	m.goMu.Lock()
	m.stopped = true
	m.goMu.Unlock()
	m.wg.Wait()
	close(m.closedC)
	return err
}
