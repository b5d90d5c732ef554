package transport

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestOrderPerLane: 3 nodes all send to each other at once (so dials
// race and the tie-break is exercised), several lanes each, one goroutine
// per (destination, lane); every (source, lane) must arrive complete and
// in order.
func TestOrderPerLane(t *testing.T) {
	const (
		nodes = 3
		lanes = 6
		per   = 2000
	)
	c := newCluster(t, nodes)
	var wg sync.WaitGroup
	errs := make(chan error, nodes*nodes*lanes)
	for from := uint16(1); from <= nodes; from++ {
		for to := uint16(1); to <= nodes; to++ {
			if from == to {
				continue
			}
			for lane := uint64(0); lane < lanes; lane++ {
				wg.Go(func() {
					for i := range per {
						// Sizes vary so batches split messages at odd places.
						msg := make([]byte, 8+(i*37)%300)
						binary.LittleEndian.PutUint64(msg, uint64(i))
						if err := c.meshes[from].Send(to, lane, msg); err != nil {
							errs <- fmt.Errorf("%d->%d lane %d #%d: %w", from, to, lane, i, err)
							return
						}
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for to := uint16(1); to <= nodes; to++ {
		c.recs[to].waitCount(t, (nodes-1)*lanes*per)
		for from := uint16(1); from <= nodes; from++ {
			if from == to {
				continue
			}
			for lane := uint64(0); lane < lanes; lane++ {
				got := c.recs[to].get(from, lane)
				if len(got) != per {
					t.Fatalf("%d->%d lane %d: %d messages, want %d", from, to, lane, len(got), per)
				}
				for i, m := range got {
					if seq := binary.LittleEndian.Uint64(m); seq != uint64(i) || len(m) != 8+(i*37)%300 {
						t.Fatalf("%d->%d lane %d: message %d is #%d (len %d)", from, to, lane, i, seq, len(m))
					}
				}
			}
		}
		if !c.meshes[to].Connected(to%nodes + 1) {
			t.Errorf("node %d not connected to %d", to, to%nodes+1)
		}
	}
	c.noLoss(t)
}

// TestSimultaneousDial: two fresh nodes send to each other at the same
// moment, many times over; exactly one connection must survive and both
// messages arrive.
func TestSimultaneousDial(t *testing.T) {
	for i := range 10 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := newCluster(t, 2)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, d := range [][2]uint16{{1, 2}, {2, 1}} {
				wg.Go(func() {
					<-start
					if err := c.meshes[d[0]].Send(d[1], 1, []byte("hi")); err != nil {
						t.Errorf("%d->%d: %v", d[0], d[1], err)
					}
				})
			}
			close(start)
			wg.Wait()
			c.recs[1].waitCount(t, 1)
			c.recs[2].waitCount(t, 1)
			c.roundTrip(t, 1, 2, 2) // the surviving link works both ways
			c.noLoss(t)
		})
	}
}

// TestLargeMessages: 16 MiB messages arrive intact and in order with
// small ones on the same lane, in both directions at once.
func TestLargeMessages(t *testing.T) {
	c := newCluster(t, 2)
	const big = 16 << 20
	payload := func(seed byte, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7+i>>13)
		}
		return b
	}
	sizes := []int{big, 10, big, 1, 1 << 20, big}
	var wg sync.WaitGroup
	for _, d := range [][2]uint16{{1, 2}, {2, 1}} {
		wg.Go(func() {
			for i, n := range sizes {
				if err := c.meshes[d[0]].Send(d[1], 5, payload(byte(i), n)); err != nil {
					t.Errorf("send %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	for _, d := range [][2]uint16{{1, 2}, {2, 1}} {
		c.recs[d[1]].waitCount(t, len(sizes))
		got := c.recs[d[1]].get(d[0], 5)
		if len(got) != len(sizes) {
			t.Fatalf("%d messages, want %d", len(got), len(sizes))
		}
		for i, n := range sizes {
			if sha256.Sum256(got[i]) != sha256.Sum256(payload(byte(i), n)) {
				t.Fatalf("%d->%d message %d (%d bytes) corrupted (got %d bytes)", d[0], d[1], i, n, len(got[i]))
			}
		}
	}
}

// TestCloseDeliversEverything: Close right after a burst (ending with a
// large message) returns only once the peer has delivered all of it; the
// peer then sees ErrPeerClosed.
func TestCloseDeliversEverything(t *testing.T) {
	c := newCluster(t, 2)
	const n = 5000
	for i := range n {
		msg := make([]byte, 100)
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if err := c.meshes[1].Send(2, uint64(i%3), msg); err != nil {
			t.Fatal(err)
		}
	}
	last := bytes.Repeat([]byte{0x5a}, 8<<20)
	if err := c.meshes[1].Send(2, 7, last); err != nil {
		t.Fatal(err)
	}
	if err := c.meshes[1].Close(); err != nil {
		t.Fatal(err)
	}
	// No waiting: the goodbye ack means it has all been delivered.
	r := c.recs[2]
	r.mu.Lock()
	count := r.count
	r.mu.Unlock()
	if count != n+1 {
		t.Fatalf("after Close returned, peer delivered %d of %d messages", count, n+1)
	}
	if got := r.get(1, 7); len(got) != 1 || !bytes.Equal(got[0], last) {
		t.Fatal("large last message not delivered intact")
	}
	err := r.waitLost(t, 1)
	if !errors.Is(err, ErrPeerClosed) || !errors.Is(err, ErrPeerLost) {
		t.Fatalf("PeerLost error %v, want ErrPeerClosed", err)
	}
	if err := c.meshes[2].Send(1, 0, []byte("x")); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("Send to closed peer: %v, want ErrPeerLost", err)
	}
	if err := c.meshes[1].Send(2, 0, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send on closed mesh: %v, want ErrClosed", err)
	}
}

// TestBothClose: two connected meshes closing at once must both return.
func TestBothClose(t *testing.T) {
	c := newCluster(t, 2)
	c.roundTrip(t, 1, 2, 0)
	var wg sync.WaitGroup
	for _, m := range c.meshes {
		wg.Go(func() { m.Close() })
	}
	wg.Wait()
}

func TestSendErrors(t *testing.T) {
	c := newCluster(t, 2)
	tests := []struct {
		name string
		node uint16
		want error
	}{
		{"unknown node", 9, ErrNoAddress},
		{"self", 1, nil}, // any error
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := c.meshes[1].Send(tc.node, 0, []byte("x"))
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// An unknown node becomes reachable once SetPeers names it.
	m3 := c.add(t, 3)
	c.meshes[1].SetPeers(map[uint16]string{3: m3.Addr().String()})
	c.roundTrip(t, 1, 3, 0)
}
