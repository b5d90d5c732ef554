package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// ALPN is the only application protocol a mesh speaks; a connection that
// does not negotiate it fails the handshake.
const ALPN = "dragon_mp/1"

// serverTLS accepts any node of this run except ourselves. Which node it is
// and whether that node may talk to us is settled by the hello; here we
// only refuse certificates that are not of the run. The chain itself is
// checked by crypto/tls against the run's CA (RequireAndVerifyClientCert).
func (m *Mesh) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.id.cert},
		ClientCAs:    m.id.roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{ALPN},
		// VerifyConnection, unlike VerifyPeerCertificate, also runs on
		// resumed sessions.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("transport: no client certificate")
			}
			n, err := nodeOf(cs.PeerCertificates[0], m.run)
			if err != nil {
				return err
			}
			if n == m.self {
				return fmt.Errorf("transport: client claims to be this node (%d)", n)
			}
			return nil
		},
	}
}

// clientTLS dials node `to` and accepts only that node's certificate.
func (m *Mesh) clientTLS(to uint16) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{m.id.cert},
		RootCAs:      m.id.roots,
		ServerName:   NodeName(m.run, to), // hostname check pins the node...
		NextProtos:   []string{ALPN},
		// ...and so does this, explicitly, in case names ever get aliases.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("transport: no server certificate")
			}
			n, err := nodeOf(cs.PeerCertificates[0], m.run)
			if err != nil {
				return err
			}
			if n != to {
				return fmt.Errorf("transport: dialed node %d, server is node %d", to, n)
			}
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("transport: ALPN %q", cs.NegotiatedProtocol)
			}
			return nil
		},
	}
}

// peerNode is the node of a handshaken connection's peer certificate.
func (m *Mesh) peerNode(cs tls.ConnectionState) (uint16, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, errors.New("transport: no peer certificate")
	}
	return nodeOf(cs.PeerCertificates[0], m.run)
}
