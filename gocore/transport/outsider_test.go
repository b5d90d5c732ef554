package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dragon-mp/dragon_mp/gocore/transport/internal/ctl"
)

// badLane marks every message an outsider tries to inject.
const badLane = 0xBAD

// outsider is a hand-made QUIC client that tries to get a message into a
// mesh: it dials, says hello, and pushes data on a stream without waiting.
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

func TestOutsidersRejected(t *testing.T) {
	c := newCluster(t, 3)
	c.roundTrip(t, 1, 2, 0) // node 2 is a live member the outsiders may impersonate
	run := c.ca.RunID()
	honest := func(from uint16) func(*cluster, uint16) ctl.Msg {
		return func(c *cluster, to uint16) ctl.Msg {
			return ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: from, To: to, RunID: run}
		}
	}
	tests := []outsider{
		{"no client certificate",
			func(c *cluster, to uint16) *tls.Config { return clientTLSFor(t, c, nil, to, []string{ALPN}) },
			honest(5)},
		{"rogue CA with the same run id",
			func(c *cluster, to uint16) *tls.Config {
				rogue, _ := NewCA(run)
				return clientTLSFor(t, c, issue(t, run, 5, rogue), to, []string{ALPN})
			},
			honest(5)},
		{"rogue CA certificate claiming a member",
			func(c *cluster, to uint16) *tls.Config {
				rogue, _ := NewCA(run)
				return clientTLSFor(t, c, issue(t, run, 2, rogue), to, []string{ALPN})
			},
			honest(2)},
		{"another run's CA",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, "otherrun", 5, nil), to, []string{ALPN})
			},
			honest(5)},
		{"valid certificate, hello claims another node",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{ALPN})
			},
			honest(2)},
		{"valid certificate, hello for another run",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{ALPN})
			},
			func(c *cluster, to uint16) ctl.Msg {
				return ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: 5, To: to, RunID: "otherrun"}
			}},
		{"valid certificate, hello to another node",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{ALPN})
			},
			func(c *cluster, to uint16) ctl.Msg {
				return ctl.Msg{Type: ctl.THello, Version: ctl.Version, From: 5, To: to + 1, RunID: run}
			}},
		{"valid certificate, no hello at all",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{ALPN})
			},
			nil},
		{"wrong ALPN",
			func(c *cluster, to uint16) *tls.Config {
				return clientTLSFor(t, c, issue(t, run, 5, c.ca), to, []string{"h3"})
			},
			honest(5)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			attack(t, c, tc, 1)
		})
	}
	// The members never saw the outsiders' data and keep working.
	for id, r := range c.recs {
		r.mu.Lock()
		for k := range r.msgs {
			if k.lane == badLane {
				t.Errorf("node %d delivered an outsider's message (from %d)", id, k.from)
			}
		}
		r.mu.Unlock()
	}
	c.roundTrip(t, 1, 2, 1)
	c.roundTrip(t, 1, 3, 1)
	c.roundTrip(t, 2, 3, 1)
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
		if us, err := conn.OpenUniStream(); err == nil {
			msg := []byte("let me in")
			frame := binary.LittleEndian.AppendUint32(nil, uint32(len(msg)))
			frame = binary.LittleEndian.AppendUint64(frame, badLane)
			us.Write(append(frame, msg...))
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
// (a valid member of the run). The dial must fail certificate pinning, the
// peer be reported lost, and node 3 receive nothing.
func TestImpostorServer(t *testing.T) {
	c := newCluster(t, 3)
	c.meshes[1].SetPeers(map[uint16]string{2: c.meshes[3].Addr().String()})
	err := c.meshes[1].Send(2, badLane, []byte("for node 2 only"))
	if !errors.Is(err, ErrPeerLost) {
		t.Fatalf("Send to the impostor: %v, want ErrPeerLost", err)
	}
	if lerr := c.recs[1].waitLost(t, 2); !errors.Is(lerr, ErrPeerLost) {
		t.Fatalf("PeerLost error %v", lerr)
	}
	c.roundTrip(t, 1, 3, 0) // node 3 itself is fine
	if got := c.recs[3].get(1, badLane); len(got) != 0 {
		t.Fatalf("impostor node 3 received %q", got)
	}
}
