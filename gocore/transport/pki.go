package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// certValidity is how long run certificates live. A run is not expected to
// outlast it; the CA is per run and never reused, so there is no rotation.
const certValidity = 365 * 24 * time.Hour

// nameSuffix ends every node certificate's DNS name.
const nameSuffix = ".dragon_mp"

// CA is a run's certificate authority: an Ed25519 key that only ever signs
// the node certificates of one run. Keep it in the launcher; nodes only get
// an Identity.
type CA struct {
	runID string
	cert  *x509.Certificate
	key   ed25519.PrivateKey
	pem   []byte
}

// Identity is everything a node needs to join the mesh of a run. It is
// JSON-serialisable (Marshal/ParseIdentity) so the launcher can hand it over.
type Identity struct {
	RunID   string
	Node    uint16
	CAPEM   []byte // the run's CA certificate: the only trusted root
	CertPEM []byte // this node's certificate, signed by the CA
	KeyPEM  []byte // this node's Ed25519 private key (PKCS#8)
}

// validRunID keeps run ids usable as one DNS label, so they can sit in a
// certificate's DNS SAN and be checked by ordinary hostname verification.
func validRunID(run string) error {
	if len(run) == 0 || len(run) > 63 {
		return fmt.Errorf("transport: run id %q: want 1..63 characters", run)
	}
	for i, c := range run {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(run)-1
		if !ok {
			return fmt.Errorf("transport: run id %q: only a-z, 0-9 and inner '-' allowed", run)
		}
	}
	return nil
}

// NodeName is the DNS name in the certificate of node n of run.
func NodeName(run string, n uint16) string {
	return "node-" + strconv.Itoa(int(n)) + "." + run + nameSuffix
}

// nodeOf returns the node named by a certificate of the given run.
func nodeOf(cert *x509.Certificate, run string) (uint16, error) {
	suffix := "." + run + nameSuffix
	for _, name := range cert.DNSNames {
		label, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		digits, ok := strings.CutPrefix(label, "node-")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(digits, 10, 16)
		if err != nil || strconv.FormatUint(n, 10) != digits {
			continue // "node-007" or garbage: not a name we issue
		}
		return uint16(n), nil
	}
	return 0, fmt.Errorf("transport: certificate %q names no node of run %q", cert.Subject.CommonName, run)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA makes a fresh CA for one run.
func NewCA(runID string) (*CA, error) {
	if err := validRunID(runID); err != nil {
		return nil, err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "dragon_mp CA " + runID},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between nodes
		NotAfter:              now.Add(certValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // signs leaves only
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{runID: runID, cert: cert, key: key,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// RunID is the run the CA belongs to.
func (ca *CA) RunID() string { return ca.runID }

// Issue makes the identity of node n: a fresh key and a certificate, valid
// for both TLS client and server use, naming NodeName(run, n).
func (ca *CA) Issue(node uint16) (Identity, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	sn, err := serial()
	if err != nil {
		return Identity{}, err
	}
	now := time.Now()
	name := NodeName(ca.runID, node)
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return Identity{}, err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Identity{}, err
	}
	return Identity{
		RunID:   ca.runID,
		Node:    node,
		CAPEM:   append([]byte(nil), ca.pem...),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}),
	}, nil
}

// Marshal encodes the identity as JSON.
func (id Identity) Marshal() ([]byte, error) { return json.Marshal(id) }

// ParseIdentity decodes and checks an identity from Marshal: the key must
// match the certificate, the certificate must chain to the CA and name the
// identity's node of the identity's run.
func ParseIdentity(b []byte) (Identity, error) {
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("transport: identity: %w", err)
	}
	if _, err := id.load(); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// loaded is an identity turned into what crypto/tls needs.
type loaded struct {
	cert  tls.Certificate
	roots *x509.CertPool
}

// load parses and checks the identity (see ParseIdentity).
func (id Identity) load() (*loaded, error) {
	if err := validRunID(id.RunID); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(id.CertPEM, id.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("transport: identity key pair: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(id.CAPEM) {
		return nil, errors.New("transport: identity: no CA certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("transport: identity certificate does not chain to its CA: %w", err)
	}
	n, err := nodeOf(leaf, id.RunID)
	if err != nil {
		return nil, err
	}
	if n != id.Node {
		return nil, fmt.Errorf("transport: identity says node %d, certificate names node %d", id.Node, n)
	}
	return &loaded{cert: cert, roots: roots}, nil
}
