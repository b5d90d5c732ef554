package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dragon-mp/dragon_mp/gocore/transport/internal/ctl"
)

// outsider is a hand-made client that tries to get into a mesh (QUIC) or
// an agent's data listener (TLS over TCP): it dials, says hello and waits
// for an answer.
type outsider struct {
	name  string
	tls   func(c *cluster, target uint16) *tls.Config
	hello func(c *cluster, target uint16) ctl.Msg
}

func clientTLSFor(t *testing.T, c *cluster, id *Identity, target uint16, alpn []string) *tls.Config {
	t.Helper()
	// The outsider trusts the real run CA, so it gets as far as it can:
	// the server side is what must stop it.
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    mustLoad(t, c.ca, 99).roots,
		ServerName: NodeName(c.ca.RunID(), target),
		NextProtos: alpn,
	}
	if id != nil {
		ld, err := id.load()
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{ld.cert}
	}
	return cfg
}

func mustLoad(t *testing.T, ca *CA, node uint16) *loaded {
	t.Helper()
	id, err := ca.Issue(node)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := id.load()
	if err != nil {
		t.Fatal(err)
	}
	return ld
}

func issue(t *testing.T, run string, node uint16, ca *CA) *Identity {
	t.Helper()
	if ca == nil {
		var err error
		if ca, err = NewCA(run); err != nil {
			t.Fatal(err)
		}
	}
	id, err := ca.Issue(node)
	if err != nil {
		t.Fatal(err)
	}
	return &id
}

// outsiders are the ways in that must fail, for a server speaking alpn.
func outsiders(t *testing.T, c *cluster, alpn string) []outsider {
	run := c.ca.RunID()
	honest := func(from uint16) func(*cluster, uint16) ctl.Msg {
		return func(c *cluster, to uint16) ctl.Msg {
			return ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: from, To: to, RunID: run}
		}
	}
	return []outsider{
		{"no client certificate",
			func(c *cluster, to uint16) *tls.Config { return clientTLSFor(t, c, nil, to, []string{alpn}) },
			honest(5)},
		{"rogue CA with the same run id",
			func(c *cluster, to uint16) *tls.Config {
				rogue, _ := NewCA(run)
				return clientTLSFor(t, c, issue(t, run, 5, rogue), to, []string{alpn})
			},
			honest(5)},
		{"rogue CA certificate claiming a member",
			func(c *cluster, to uint16) *tls.Config {
				rogue, _ := NewCA(run)
				return clientTLSFor(t, c, issue(t, run, 2, rogue), to, []string{alpn})
			},
			honest(2)},
		{"another run's CA",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, "otherrun", 5, nil), to, []string{alpn})
			},
			honest(5)},
		{"valid certificate, hello claims another node",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{alpn})
			},
			honest(2)},
		{"valid certificate, hello for another run",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{alpn})
			},
			func(c *cluster, to uint16) ctl.Msg {
				return ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: 5, To: to, RunID: "otherrun"}
			}},
		{"valid certificate, hello to another node",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{alpn})
			},
			func(c *cluster, to uint16) ctl.Msg {
				return ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: 5, To: to + 1, RunID: run}
			}},
		{"valid certificate, no hello at all",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{alpn})
			},
			nil},
		{"wrong ALPN",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{"h3"})
			},
			honest(5)},
	}
}

func TestOutsidersRejected(t *testing.T) {
	c := newCluster(t, 3)
	c.connect(t, 1, 2) // node 2 is a live member the outsiders may impersonate
	tests := outsiders(t, c, ALPN)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			attack(t, c, tc, 1)
		})
	}
	// The members keep working, and nobody took an outsider for node 2.
	c.connect(t, 1, 3)
	c.connect(t, 2, 3)
	if !c.meshes[1].Connected(2) {
		t.Fatal("the outsiders broke the link of nodes 1 and 2")
	}
	c.noLoss(t)
}

// attack runs one outsider against node target and requires that it ends
// up disconnected without an OK hello reply.
func attack(t *testing.T, c *cluster, o outsider, target uint16) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer udp.Close()
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	conn, err := tr.Dial(ctx, c.meshes[target].Addr(), o.tls(c, target), &quic.Config{MaxIdleTimeout: 5 * time.Second})
	if err != nil {
		t.Logf("rejected in the handshake: %v", err)
		return
	}
	// TLS 1.3: the client's Dial returns before the server has checked its
	// certificate, so push everything without waiting for an answer.
	if st, err := conn.OpenStreamSync(ctx); err == nil {
		if o.hello != nil {
			ctl.Write(st, o.hello(c, target))
		}
		st.SetReadDeadline(time.Now().Add(deadline))
		if reply, err := ctl.Read(st); err == nil {
			if reply.Status == ctl.StatusOK {
				t.Fatalf("outsider got an OK hello reply: %+v", reply)
			}
			t.Logf("hello reply: %v", reply.Status)
		}
	}
	select {
	case <-conn.Context().Done():
		cause := context.Cause(conn.Context())
		var te *quic.TransportError
		var ae *quic.ApplicationError
		switch {
		case errors.As(cause, &te) && te.Remote, errors.As(cause, &ae) && ae.Remote:
			t.Logf("closed by the mesh: %v", cause)
		default:
			t.Fatalf("connection ended, but not by the mesh: %v", cause)
		}
	case <-ctx.Done():
		t.Fatalf("mesh did not close the outsider's connection within %v", deadline)
	}
}

// TestImpostorServer: the address we have for node 2 belongs to node 3
// (a valid member of the run). The dial must fail certificate pinning and
// the peer be reported lost; node 3 itself stays fine.
func TestImpostorServer(t *testing.T) {
	c := newCluster(t, 3)
	c.meshes[1].SetPeers(map[uint16]string{2: c.meshes[3].Addr().String()})
	if err := c.meshes[1].Watch(2); err != nil {
		t.Fatal(err)
	}
	if lerr := c.recs[1].waitLost(t, 2); !errors.Is(lerr, ErrPeerLost) {
		t.Fatalf("PeerLost error %v", lerr)
	}
	c.meshes[1].SetPeers(map[uint16]string{3: c.meshes[3].Addr().String()})
	c.connect(t, 1, 3)
}
