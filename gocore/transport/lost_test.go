package transport

import (
	"errors"
	"testing"
)

// TestPeerKilled: a node dies without goodbye; the survivors must report it
// through PeerLost (once), fail Sends to it with ErrPeerLost, and keep
// talking to each other.
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
			c.roundTrip(t, 1, 3, 0)
			c.roundTrip(t, 2, 3, 0)
			c.roundTrip(t, 1, 2, 0)
			tc.kill(c.meshes[3])
			for _, survivor := range []uint16{1, 2} {
				err := c.recs[survivor].waitLost(t, 3)
				if !errors.Is(err, ErrPeerLost) || errors.Is(err, ErrPeerClosed) {
					t.Fatalf("node %d: PeerLost(3) error %v, want ErrPeerLost but not ErrPeerClosed", survivor, err)
				}
				t.Logf("node %d: %v", survivor, err)
				if err := c.meshes[survivor].Send(3, 0, []byte("x")); !errors.Is(err, ErrPeerLost) {
					t.Fatalf("node %d: Send to dead node: %v, want ErrPeerLost", survivor, err)
				}
				if c.meshes[survivor].Connected(3) {
					t.Fatalf("node %d still connected to the dead node", survivor)
				}
			}
			c.roundTrip(t, 1, 2, 1)
			if _, lost := c.recs[1].lostErr(2); lost {
				t.Fatal("node 1 lost node 2 too")
			}
		})
	}
}

// TestSendBlockedOnDeadPeer: a Send waiting for queue space on a silently
// dead peer must return ErrPeerLost once the loss is detected, not hang.
func TestSendBlockedOnDeadPeer(t *testing.T) {
	c := newCluster(t, 2)
	c.roundTrip(t, 1, 2, 0)
	c.meshes[2].tr.Close()
	big := make([]byte, 1<<20)
	var err error
	// Flow control stops the writer after some MiB; then queueLimit blocks
	// Send, until the idle timeout kills the link.
	for i := 0; i < 1000 && err == nil; i++ {
		err = c.meshes[1].Send(2, 0, big)
	}
	if !errors.Is(err, ErrPeerLost) {
		t.Fatalf("Send to a dead peer: %v, want ErrPeerLost", err)
	}
	c.recs[1].waitLost(t, 2)
}
