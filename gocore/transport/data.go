package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dragon-mp/dragon_mp/gocore/transport/internal/ctl"
)

// Data connections: TLS 1.3 over kernel TCP, from a process of one node to
// the agent of another (see doc.go, "Data"). They carry the remote
// operations; the QUIC mesh carries trust and liveness between agents.

// DataALPN is the only application protocol of a data connection.
const DataALPN = "dragon_mp-data/1"

// TCP keep-alive of a data connection: a backstop only. A lost node is
// normally noticed by the mesh (~IdleTimeout) and acted on by the agents;
// these bound the wait of a connection whose peer vanished otherwise.
const (
	tcpKeepIdle    = 2 // s of silence before the first probe
	tcpKeepIntvl   = 1 // s between probes
	tcpKeepCnt     = 3 // unanswered probes before the connection fails
	tcpUserTimeout = 6 * time.Second
)

// Creds is an Identity made ready for TLS (Identity.Load).
type Creds struct {
	run  string
	node uint16
	cert tls.Certificate
	// roots holds the run's CA only.
	roots *x509.CertPool
}

// Load checks the identity (as ParseIdentity does) and prepares it for TLS.
func (id Identity) Load() (*Creds, error) {
	l, err := id.load()
	if err != nil {
		return nil, err
	}
	return &Creds{run: id.RunID, node: id.Node, cert: l.cert, roots: l.roots}, nil
}

// Node is the node the credentials name.
func (c *Creds) Node() uint16 { return c.node }

// DataConn is a trusted data connection: records (records.go) keyed by
// its TLS 1.3 handshake. Reads and Writes block the calling thread (see
// fdConn); Read and Write may be called from different goroutines at once,
// but each only from one at a time.
type DataConn struct {
	// Peer is the node at the other end (its certificate's, checked
	// against its hello).
	Peer uint16
	raw  *fdConn
	rec  *recordConn
}

// Read reads plaintext; a Read with room for a whole record gets it
// straight into b.
func (c *DataConn) Read(b []byte) (int, error) { return c.rec.Read(b) }

// Write writes b, sealed straight from b; it returns len(b) or an error
// (the connection is then unusable).
func (c *DataConn) Write(b []byte) (int, error) { return c.rec.Write(b) }

// records switches a connection whose handshake and hello are done to
// records, keyed by the handshake.
func records(tc *tls.Conn, raw *fdConn, client bool) (*recordConn, error) {
	cs := tc.ConnectionState()
	c2s, s2c, err := recordKeys(cs.ExportKeyingMaterial)
	if err != nil {
		return nil, err
	}
	if client {
		return newRecordConn(raw, s2c, c2s)
	}
	return newRecordConn(raw, c2s, s2c)
}

// TryOnce(true) makes the next read of the underlying socket return
// ErrWouldBlock instead of waiting when nothing has arrived: a caller that
// only wants what is already there sets it around a Read (or a Peek of a
// bufio.Reader on top), and clears it after (the Read may have answered
// from what it had buffered without reading the socket at all). A Read
// that has a record's header finishes that record, waiting if need be.
func (c *DataConn) TryOnce(on bool) { c.raw.tryOnce.Store(on) }

// Close shuts the connection down at once, waking every blocked call. It
// sends nothing first: that could block on a peer that stopped reading,
// and the protocol on top says when it is done.
func (c *DataConn) Close() error { return c.raw.Close() }

// DialConfig says where and how a process dials a node's agent.
type DialConfig struct {
	Creds   *Creds
	Node    uint16 // the node to reach: only its certificate is accepted
	Addr    string // its agent's data address, "ip:port"
	Timeout time.Duration
	// Step and Check bound every blocked read and write of the
	// connection: every Step, Check is asked; its error ends the call.
	Step  time.Duration
	Check func() error
}

// DialData connects to a node's agent, checks its certificate, says hello
// and returns the connection once the agent has accepted it.
func DialData(cfg DialConfig) (*DataConn, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := net.Dialer{Control: setCongestion}
	nc, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	raw, err := newFdConn(nc.(*net.TCPConn), cfg.Step, cfg.Check)
	if err != nil {
		return nil, err
	}
	tuneTCP(raw.fd)
	tc := tls.Client(raw, dataClientTLS(cfg.Creds, cfg.Node))
	fail := func(err error) (*DataConn, error) {
		raw.Close()
		return nil, err
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return fail(fmt.Errorf("transport: data connection to node %d: %w", cfg.Node, err))
	}
	// As on the mesh: the handshake may end before the agent has checked
	// our certificate, so only its answer to the hello makes us trusted.
	if err := ctl.Write(tc, ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: cfg.Creds.node,
		To: cfg.Node, RunID: cfg.Creds.run}); err != nil {
		return fail(err)
	}
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	reply, err := ctl.Read(tc)
	if !stop() {
		return fail(fmt.Errorf("transport: data connection to node %d: hello timed out", cfg.Node))
	}
	if err != nil {
		return fail(fmt.Errorf("transport: data connection to node %d: hello: %w", cfg.Node, err))
	}
	if reply.Type != ctl.TReply || reply.From != cfg.Node || reply.Status != ctl.StatusOK {
		return fail(fmt.Errorf("transport: data connection to node %d refused (%v)", cfg.Node, reply.Status))
	}
	// Nothing else comes through crypto/tls: the agent sends nothing before
	// a request, and session tickets are off.
	rec, err := records(tc, raw, true)
	if err != nil {
		return fail(err)
	}
	return &DataConn{Peer: cfg.Node, raw: raw, rec: rec}, nil
}

// DataListener accepts data connections for a node's agent.
type DataListener struct {
	creds *Creds
	ln    *net.TCPListener

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// ListenData listens for data connections on addr ("ip:port", port 0: any).
func ListenData(creds *Creds, addr string) (*DataListener, error) {
	la, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: data address: %w", err)
	}
	lc := net.ListenConfig{Control: setCongestion} // accepted connections inherit it
	nl, err := lc.Listen(context.Background(), "tcp", la.String())
	if err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	return &DataListener{creds: creds, ln: nl.(*net.TCPListener)}, nil
}

// Addr is the address the listener accepts on.
func (l *DataListener) Addr() net.Addr { return l.ln.Addr() }

// Serve accepts until Close. Each connection is handshaken in a goroutine
// of its own (a slow or hostile client holds up nobody), and handle is
// called there with the trusted connection; handle owns it.
func (l *DataListener) Serve(handle func(*DataConn)) {
	for {
		nc, err := l.ln.AcceptTCP()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			nc.Close()
			return
		}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			c := l.handshake(nc)
			l.wg.Done() // Close waits for handshakes, not for handlers
			if c != nil {
				handle(c)
			}
		}()
	}
}

func (l *DataListener) handshake(nc *net.TCPConn) *DataConn {
	raw, err := newFdConn(nc, 0, nil)
	if err != nil {
		return nil
	}
	tuneTCP(raw.fd)
	ctx, cancel := context.WithTimeout(context.Background(), defaultDialTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	tc := tls.Server(raw, dataServerTLS(l.creds))
	peer, err := func() (uint16, error) {
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, err
		}
		node, err := nodeOf(tc.ConnectionState().PeerCertificates[0], l.creds.run)
		if err != nil {
			return 0, err
		}
		hello, err := ctl.Read(tc)
		if err != nil {
			return 0, err
		}
		if hello.Type != ctl.THello || hello.Version != ctl.Version || hello.RunID != l.creds.run ||
			hello.From != node || hello.To != l.creds.node {
			ctl.Write(tc, ctl.Msg{Type: ctl.TReply, Status: ctl.StatusRejected, From: l.creds.node})
			return 0, errors.New("hello does not match the certificate")
		}
		return node, ctl.Write(tc, ctl.Msg{Type: ctl.TReply, Status: ctl.StatusOK, From: l.creds.node})
	}()
	if !stop() || err != nil {
		raw.Close()
		return nil
	}
	// The process sends nothing before our answer to its hello: from here
	// on, only records.
	rec, err := records(tc, raw, false)
	if err != nil {
		raw.Close()
		return nil
	}
	return &DataConn{Peer: peer, raw: raw, rec: rec}
}

// Close stops accepting and waits for handshakes in progress; connections
// already handed to the handler are its own to close.
func (l *DataListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

// congestion is the congestion control of data connections, when the
// system allows it (net.ipv4.tcp_allowed_congestion_control; otherwise the
// system's default stays). Why not BBR, where it is the default: BBR paces
// a connection at the delivery rate it has measured, and a data connection
// is idle between messages, so its measurements trail what the link can
// carry (measured between two network namespaces, 16 MiB Queue puts:
// 1.1-1.35 GB/s with bbr, 1.72-1.76 GB/s with cubic; TLS streamed without
// pauses: the same with both). It is set before the connection exists: a
// socket that started with BBR keeps pacing after a switch.
const congestion = "cubic"

func setCongestion(_, _ string, c syscall.RawConn) error {
	c.Control(func(fd uintptr) {
		unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, congestion)
	})
	return nil
}

// tuneTCP sets a data connection's socket options: no Nagle delay (a
// request is one write and waits for its reply), and keep-alive probes
// plus a user timeout so that a peer that vanished fails the connection
// even when nobody else notices.
func tuneTCP(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, tcpKeepIdle)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, tcpKeepIntvl)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, tcpKeepCnt)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(tcpUserTimeout.Milliseconds()))
}

func dataServerTLS(c *Creds) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		ClientCAs:    c.roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{DataALPN},
		// Full-size records from the first byte: the connection is long
		// lived and carries bulk data.
		DynamicRecordSizingDisabled: true,
		SessionTicketsDisabled:      true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("transport: no client certificate")
			}
			_, err := nodeOf(cs.PeerCertificates[0], c.run)
			return err
		},
	}
}

func dataClientTLS(c *Creds, to uint16) *tls.Config {
	return &tls.Config{
		MinVersion:                  tls.VersionTLS13,
		Certificates:                []tls.Certificate{c.cert},
		RootCAs:                     c.roots,
		ServerName:                  NodeName(c.run, to),
		NextProtos:                  []string{DataALPN},
		DynamicRecordSizingDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("transport: no server certificate")
			}
			n, err := nodeOf(cs.PeerCertificates[0], c.run)
			if err != nil {
				return err
			}
			if n != to {
				return fmt.Errorf("transport: dialed node %d, server is node %d", to, n)
			}
			if cs.NegotiatedProtocol != DataALPN {
				return fmt.Errorf("transport: ALPN %q", cs.NegotiatedProtocol)
			}
			return nil
		},
	}
}
