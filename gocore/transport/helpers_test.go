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

// recorder collects what a mesh delivers and which peers it lost.
type recorder struct {
	mu     sync.Mutex
	msgs   map[key][][]byte
	count  int
	lost   map[uint16]error
	lostC  chan uint16
	wake   chan struct{} // closed and replaced on every delivery
	onRecv func(from uint16, lane uint64, msg []byte)
}

type key struct {
	from uint16
	lane uint64
}

func newRecorder() *recorder {
	return &recorder{msgs: map[key][][]byte{}, lost: map[uint16]error{}, lostC: make(chan uint16, 64), wake: make(chan struct{})}
}

func (r *recorder) deliver(from uint16, lane uint64, msg []byte) {
	if r.onRecv != nil {
		r.onRecv(from, lane, msg)
		return
	}
	r.mu.Lock()
	r.msgs[key{from, lane}] = append(r.msgs[key{from, lane}], msg)
	r.count++
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
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

// waitCount waits until at least n messages arrived.
func (r *recorder) waitCount(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(deadline)
	for {
		r.mu.Lock()
		c, w := r.count, r.wake
		r.mu.Unlock()
		if c >= n {
			return
		}
		select {
		case <-w:
		case <-timeout:
			t.Fatalf("got %d messages, want %d, after %v", c, n, deadline)
		}
	}
}

func (r *recorder) get(from uint16, lane uint64) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[key{from, lane}]
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
	m, err := Start(Config{Identity: id, Listen: "127.0.0.1:0", DialTimeout: 5 * time.Second, Deliver: r.deliver, PeerLost: r.peerLost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	c.meshes[node], c.recs[node] = m, r
	return m
}

// roundTrip checks that a and b can exchange a message both ways.
func (c *cluster) roundTrip(t *testing.T, a, b uint16, lane uint64) {
	t.Helper()
	for _, d := range [][2]uint16{{a, b}, {b, a}} {
		before := len(c.recs[d[1]].get(d[0], lane))
		msg := fmt.Appendf(nil, "rt %d->%d #%d", d[0], d[1], before)
		if err := c.meshes[d[0]].Send(d[1], lane, msg); err != nil {
			t.Fatalf("send %d->%d: %v", d[0], d[1], err)
		}
		timeout := time.After(deadline)
		for len(c.recs[d[1]].get(d[0], lane)) <= before {
			c.recs[d[1]].mu.Lock()
			w := c.recs[d[1]].wake
			c.recs[d[1]].mu.Unlock()
			if len(c.recs[d[1]].get(d[0], lane)) > before {
				break
			}
			select {
			case <-w:
			case <-timeout:
				t.Fatalf("round trip %d->%d: nothing after %v", d[0], d[1], deadline)
			}
		}
		if got := c.recs[d[1]].get(d[0], lane)[before]; string(got) != string(msg) {
			t.Fatalf("round trip %d->%d: got %q want %q", d[0], d[1], got, msg)
		}
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
