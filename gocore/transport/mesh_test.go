package transport

import (
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestWatchConnectsEveryPair: 4 nodes all watch each other at once (dials
// race, the tie-break runs); every pair ends up with one trusted link and
// nobody is reported lost.
func TestWatchConnectsEveryPair(t *testing.T) {
	const nodes = 4
	c := newCluster(t, nodes)
	var wg sync.WaitGroup
	for a := uint16(1); a <= nodes; a++ {
		for b := uint16(1); b <= nodes; b++ {
			wg.Go(func() {
				if err := c.meshes[a].Watch(b); err != nil {
					t.Errorf("watch %d->%d: %v", a, b, err)
				}
			})
		}
	}
	wg.Wait()
	for a := uint16(1); a <= nodes; a++ {
		for b := a + 1; b <= nodes; b++ {
			c.waitConnected(t, a, b)
		}
	}
	c.noLoss(t)
}

// TestSimultaneousDial: two fresh nodes watch each other at the same
// moment, many times over; exactly one link survives on both sides.
func TestSimultaneousDial(t *testing.T) {
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := newCluster(t, 2)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, d := range [][2]uint16{{1, 2}, {2, 1}} {
				wg.Go(func() {
					<-start
					if err := c.meshes[d[0]].Watch(d[1]); err != nil {
						t.Errorf("%d->%d: %v", d[0], d[1], err)
					}
				})
			}
			close(start)
			wg.Wait()
			c.waitConnected(t, 1, 2)
			c.noLoss(t)
		})
	}
}

// TestCloseIsOrderly: a node that closes says goodbye; its peers see
// ErrPeerClosed (not a plain loss), and Watch on a closed mesh fails.
func TestCloseIsOrderly(t *testing.T) {
	c := newCluster(t, 3)
	c.connect(t, 1, 2)
	c.connect(t, 1, 3)
	if err := c.meshes[1].Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint16{2, 3} {
		err := c.recs[n].waitLost(t, 1)
		if !errors.Is(err, ErrPeerClosed) || !errors.Is(err, ErrPeerLost) {
			t.Fatalf("node %d: PeerLost error %v, want ErrPeerClosed", n, err)
		}
		if err := c.meshes[n].Watch(1); !errors.Is(err, ErrPeerLost) {
			t.Fatalf("Watch of a closed peer: %v, want ErrPeerLost", err)
		}
		if c.meshes[n].Lost(1) == nil {
			t.Fatalf("node %d: Lost(1) is nil", n)
		}
	}
	if err := c.meshes[1].Watch(2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch on a closed mesh: %v, want ErrClosed", err)
	}
}

// TestBothClose: two connected meshes closing at once must both return.
func TestBothClose(t *testing.T) {
	c := newCluster(t, 2)
	c.connect(t, 1, 2)
	var wg sync.WaitGroup
	for _, m := range c.meshes {
		wg.Go(func() { m.Close() })
	}
	wg.Wait()
}

func TestWatchErrors(t *testing.T) {
	c := newCluster(t, 2)
	if err := c.meshes[1].Watch(9); !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Watch of an unknown node: %v, want ErrNoAddress", err)
	}
	if err := c.meshes[1].Watch(1); err != nil {
		t.Fatalf("Watch of self: %v, want nil (nothing to watch)", err)
	}
	// An unknown node becomes reachable once SetPeers names it.
	m3 := c.add(t, 3)
	c.meshes[1].SetPeers(map[uint16]string{3: m3.Addr().String()})
	c.connect(t, 1, 3)
	c.noLoss(t)
}
