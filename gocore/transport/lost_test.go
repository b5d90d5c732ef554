package transport

import (
	"errors"
	"testing"
)

// TestPeerKilled: a node dies without goodbye; the survivors must report it
// through PeerLost (once), refuse to Watch it again, and keep their link
// to each other.
func TestPeerKilled(t *testing.T) {
	tests := []struct {
		name string
		kill func(m *Mesh)
	}{
		// Silent death: no CONNECTION_CLOSE leaves the node, so only the
		// idle timeout can notice.
		{"transport stopped", func(m *Mesh) { m.tr.Close() }},
		// Loud death: connections closed without the goodbye exchange.
		{"connections closed without goodbye", func(m *Mesh) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for c := range m.conns {
				c.CloseWithError(codeClosing, "crash")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3)
			c.connect(t, 1, 3)
			c.connect(t, 2, 3)
			c.connect(t, 1, 2)
			tc.kill(c.meshes[3])
			for _, survivor := range []uint16{1, 2} {
				err := c.recs[survivor].waitLost(t, 3)
				if !errors.Is(err, ErrPeerLost) || errors.Is(err, ErrPeerClosed) {
					t.Fatalf("node %d: PeerLost(3) error %v, want ErrPeerLost but not ErrPeerClosed", survivor, err)
				}
				t.Logf("node %d: %v", survivor, err)
				if err := c.meshes[survivor].Watch(3); !errors.Is(err, ErrPeerLost) {
					t.Fatalf("node %d: Watch of the dead node: %v, want ErrPeerLost", survivor, err)
				}
				if c.meshes[survivor].Connected(3) {
					t.Fatalf("node %d still connected to the dead node", survivor)
				}
			}
			if !c.meshes[1].Connected(2) {
				t.Fatal("nodes 1 and 2 lost their link")
			}
			if _, lost := c.recs[1].lostErr(2); lost {
				t.Fatal("node 1 lost node 2 too")
			}
		})
	}
}

// TestUnreachablePeerIsLost: a node that never answers (nothing listens at
// its address) is reported lost once the dial times out.
func TestUnreachablePeerIsLost(t *testing.T) {
	c := newCluster(t, 2)
	dead := c.meshes[2].Addr().String()
	c.meshes[2].Close()
	c.meshes[1].SetPeers(map[uint16]string{2: dead})
	if err := c.meshes[1].Watch(2); err != nil {
		t.Fatal(err)
	}
	if err := c.recs[1].waitLost(t, 2); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("PeerLost error %v, want ErrPeerLost", err)
	}
}
