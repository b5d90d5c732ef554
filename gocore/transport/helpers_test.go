package transport

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// deadline bounds every wait in the tests. It is generous on purpose: it
// only turns a hang into a failure, it is not a performance threshold.
const deadline = 30 * time.Second

// recorder collects which peers a mesh lost.
type recorder struct {
	mu    sync.Mutex
	lost  map[uint16]error
	lostC chan uint16
}

func newRecorder() *recorder {
	return &recorder{lost: map[uint16]error{}, lostC: make(chan uint16, 64)}
}

func (r *recorder) peerLost(node uint16, err error) {
	r.mu.Lock()
	_, dup := r.lost[node]
	r.lost[node] = err
	r.mu.Unlock()
	if dup {
		panic(fmt.Sprintf("PeerLost called twice for node %d", node))
	}
	r.lostC <- node
}

func (r *recorder) lostErr(node uint16) (error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err, ok := r.lost[node]
	return err, ok
}

// waitLost waits for PeerLost(node).
func (r *recorder) waitLost(t *testing.T, node uint16) error {
	t.Helper()
	timeout := time.After(deadline)
	for {
		if err, ok := r.lostErr(node); ok {
			return err
		}
		select {
		case <-r.lostC:
		case <-timeout:
			t.Fatalf("PeerLost(%d) not called within %v", node, deadline)
		}
	}
}

// cluster is n meshes (nodes 1..n) of one run on 127.0.0.1.
type cluster struct {
	ca     *CA
	meshes map[uint16]*Mesh
	recs   map[uint16]*recorder
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	ca, err := NewCA("testrun")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{ca: ca, meshes: map[uint16]*Mesh{}, recs: map[uint16]*recorder{}}
	for i := uint16(1); i <= uint16(n); i++ {
		c.add(t, i)
	}
	addrs := map[uint16]string{}
	for id, m := range c.meshes {
		addrs[id] = m.Addr().String()
	}
	for _, m := range c.meshes {
		m.SetPeers(addrs) // includes itself: harmless, never dialed
	}
	return c
}

func (c *cluster) add(t *testing.T, node uint16) *Mesh {
	t.Helper()
	id, err := c.ca.Issue(node)
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	// A shorter DialTimeout only speeds up the "no hello" outsider case.
	m, err := Start(Config{Identity: id, Listen: "127.0.0.1:0", DialTimeout: 5 * time.Second, PeerLost: r.peerLost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c.meshes[node], c.recs[node] = m, r
	return m
}

// connect has a watch b and waits until both see the link.
func (c *cluster) connect(t *testing.T, a, b uint16) {
	t.Helper()
	if err := c.meshes[a].Watch(b); err != nil {
		t.Fatalf("watch %d->%d: %v", a, b, err)
	}
	c.waitConnected(t, a, b)
}

func (c *cluster) waitConnected(t *testing.T, a, b uint16) {
	t.Helper()
	limit := time.Now().Add(deadline)
	for !(c.meshes[a].Connected(b) && c.meshes[b].Connected(a)) {
		if time.Now().After(limit) {
			t.Fatalf("%d and %d not connected after %v", a, b, deadline)
		}
		time.Sleep(time.Millisecond)
	}
}

// noLoss fails if any node reported a lost peer.
func (c *cluster) noLoss(t *testing.T) {
	t.Helper()
	for id, r := range c.recs {
		r.mu.Lock()
		lost := fmt.Sprint(r.lost)
		n := len(r.lost)
		r.mu.Unlock()
		if n != 0 {
			t.Errorf("node %d lost peers: %s", id, lost)
		}
	}
}
