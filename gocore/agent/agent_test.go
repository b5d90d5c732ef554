package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// deadline bounds every wait: it turns a hang into a failure; it is not a
// performance threshold.
const deadline = 30 * time.Second

// Operations of the test executor.
const (
	opEcho   uint16 = 1 // -> Args [op, node], the payload back
	opFail   uint16 = 2 // -> error code 7
	opAppend uint16 = 3 // payload appended to this node's log (postable)
	opCount  uint16 = 4 // (node) -> length of that node's log
	opTake   uint16 = 5 // -> payload "taken"; undone if the reply does not reach the process
	opBlock  uint16 = 6 // waits for release (or its timeout) -> 1 released / 0
	opBig    uint16 = 7 // (n) -> n bytes of a pattern, from executor memory freed by Done
	opSink   uint16 = 8 // payload dropped (benchmarks)
	opSource uint16 = 9 // (n) -> n bytes of a buffer made once (benchmarks)
)

var source = make([]byte, 16<<20)

// logs holds every node's opAppend log: the executors of one test run
// share it, so node X's executor can count node Y's log (fences).
type logs struct {
	mu sync.Mutex
	m  map[uint16][][]byte
}

func (l *logs) add(node uint16, b []byte) {
	l.mu.Lock()
	l.m[node] = append(l.m[node], b)
	l.mu.Unlock()
}

func (l *logs) get(node uint16) [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[node]
}

type testExec struct {
	node    uint16
	logs    *logs
	release chan struct{}
	undone  atomic.Int64
	done    atomic.Int64
	blocks  atomic.Int64 // payloads read into Alloc memory
	freed   atomic.Int64 // Done of opBig
}

type block struct{ buf []byte }

func (e *testExec) Alloc(req *wire.Frame, n int) ([]byte, any) {
	if req.Op == opAppend && n > 1024 {
		b := &block{buf: make([]byte, n)}
		return b.buf, b
	}
	return nil, nil
}

func (e *testExec) Free(any) {}

func (e *testExec) Exec(req *Request, wait bool) (Result, bool) {
	switch req.Op {
	case opEcho:
		return Result{Reply: wire.Frame{Args: []int64{int64(req.Op), int64(e.node)}, Payload: req.Payload}}, true
	case opFail:
		return Result{Reply: wire.Frame{Code: 7, Payload: []byte("bad op")}}, true
	case opAppend:
		if req.Block != nil {
			e.blocks.Add(1)
		}
		e.logs.add(e.node, append([]byte(nil), req.Payload...))
		return Result{}, true
	case opCount:
		return Result{Reply: wire.Frame{Args: []int64{int64(len(e.logs.get(uint16(req.Args[0]))))}}}, true
	case opTake:
		return Result{Reply: wire.Frame{Payload: []byte("taken")},
			Undo: func() { e.undone.Add(1) }, Done: func() { e.done.Add(1) }}, true
	case opBlock:
		if !wait {
			return Result{}, false
		}
		select {
		case <-e.release:
			return Result{Reply: wire.Frame{Args: []int64{1}}, Undo: func() { e.undone.Add(1) },
				Done: func() { e.done.Add(1) }}, true
		case <-time.After(time.Duration(req.Timeout)):
			return Result{Reply: wire.Frame{Args: []int64{0}}}, true
		}
	case opBig:
		return Result{Reply: wire.Frame{Payload: pattern(int(req.Args[0]))}, Done: func() { e.freed.Add(1) }}, true
	case opSink:
		return Result{}, true
	case opSource:
		return Result{Reply: wire.Frame{Payload: source[:req.Args[0]]}}, true
	}
	return Result{Reply: wire.Frame{Code: 1, Payload: []byte("unknown op")}}, true
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13 + i>>12)
	}
	return b
}

// fakeMesh records what the agent watches; losses are injected by calling
// Agent.PeerLost, as the real mesh would.
type fakeMesh struct {
	mu      sync.Mutex
	watched map[uint16]int
}

func (m *fakeMesh) Watch(node uint16) error {
	m.mu.Lock()
	m.watched[node]++
	m.mu.Unlock()
	return nil
}

// node is one agent of a test run, with the shared-memory lost marks its
// processes would see.
type node struct {
	id   uint16
	a    *Agent
	exec *testExec
	mesh *fakeMesh
	ctl  string
	lost [1 << 10]atomic.Bool
}

func (n *node) client(t *testing.T) *Client {
	t.Helper()
	c := NewClient(ClientConfig{Control: n.ctl, Lost: func(x uint16) bool { return n.lost[x].Load() },
		Name: func(x uint16) string { return fmt.Sprintf("h%d", x) }, Step: 20 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

// lose has every agent of the run but the lost one see node x lost.
func lose(nodes []*node, x uint16) {
	for _, n := range nodes {
		if n.id != x {
			n.a.PeerLost(x, fmt.Errorf("%w: node %d: test cut it off", transport.ErrPeerLost, x))
		}
	}
}

var runSeq atomic.Int64

// run starts n agents (nodes 0..n-1) of one run on 127.0.0.1.
func run(t *testing.T, n int) []*node {
	t.Helper()
	ca, err := transport.NewCA(fmt.Sprintf("agenttest%d", runSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	lg := &logs{m: map[uint16][][]byte{}}
	var nodes []*node
	peers := map[uint16]string{}
	for i := range n {
		id, err := ca.Issue(uint16(i))
		if err != nil {
			t.Fatal(err)
		}
		nd := &node{id: uint16(i), exec: &testExec{node: uint16(i), logs: lg, release: make(chan struct{})},
			mesh: &fakeMesh{watched: map[uint16]int{}},
			ctl:  fmt.Sprintf("@dragon_mp-test-%d-%d-%s-%d", os.Getpid(), runSeq.Load(), t.Name(), i)}
		nd.a, err = New(Config{Node: uint16(i), Identity: id, Exec: nd.exec,
			MarkLost: func(x uint16) { nd.lost[x].Store(true) }})
		if err != nil {
			t.Fatal(err)
		}
		nd.a.SetMesh(nd.mesh)
		if err := nd.a.ServeLocal(nd.ctl); err != nil {
			t.Fatal(err)
		}
		addr, err := nd.a.ListenData("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers[uint16(i)] = addr
		t.Cleanup(func() { nd.a.Close() })
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		nd.a.SetPeers(peers)
	}
	return nodes
}

func addr(node uint16, off uint64) uint64 { return uint64(node)<<48 | off }

func TestCallAndErrors(t *testing.T) {
	nodes := run(t, 2)
	c := nodes[0].client(t)
	rep, err := c.Call(wire.Frame{Op: opEcho, Addr: addr(1, 64)}, [][]byte{[]byte("he"), []byte("llo")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(rep.Payload) != "hello" || len(rep.Args) != 2 || rep.Args[1] != 1 {
		t.Fatalf("echo reply %+v", rep)
	}
	_, err = c.Call(wire.Frame{Op: opFail, Addr: addr(1, 64)}, nil, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != 7 || re.Msg != "bad op" {
		t.Fatalf("error reply: %v", err)
	}
	_, err = c.Call(wire.Frame{Op: opEcho, Addr: addr(9, 64)}, nil, nil)
	if !errors.Is(err, ErrNoSuchNode) {
		t.Fatalf("call to a node the run lacks: %v, want ErrNoSuchNode", err)
	}
	// The owner watches the caller's node (to undo what it took if it goes).
	nodes[1].mesh.mu.Lock()
	watched := nodes[1].mesh.watched[0]
	nodes[1].mesh.mu.Unlock()
	if watched == 0 {
		t.Fatal("the owner does not watch the caller's node")
	}
	// A one-node run has no agent: a clear error, not a hang.
	lone := NewClient(ClientConfig{Control: "@dragon_mp-test-no-such-agent"})
	if _, err := lone.Call(wire.Frame{Op: opEcho, Addr: addr(1, 64)}, nil, nil); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("without an agent: %v, want ErrNoAgent", err)
	}
}

// TestOrderAndFences: posts and calls of one process to one node run in
// the order made; a call to another node runs after every earlier post
// (the fence), and SyncAll makes all posts visible.
func TestOrderAndFences(t *testing.T) {
	nodes := run(t, 3)
	c := nodes[0].client(t)
	const n = 3000
	for i := range n {
		size := 8 + (i*37)%300
		if i%500 == 0 {
			size = 100 << 10 // large posts too (read into Alloc memory)
		}
		msg := make([]byte, size)
		copy(msg, fmt.Sprint(i))
		if err := c.Post(wire.Frame{Op: opAppend, Addr: addr(1, 64)}, [][]byte{msg}); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			// Same node: the call sees every post before it.
			rep, err := c.Call(wire.Frame{Op: opCount, Addr: addr(1, 64), Args: []int64{1}}, nil, nil)
			if err != nil || rep.Args[0] != int64(i+1) {
				t.Fatalf("count on node 1 after %d posts: %v %v", i+1, rep.Args, err)
			}
		}
	}
	// Another node: the fence syncs node 1 first.
	rep, err := c.Call(wire.Frame{Op: opCount, Addr: addr(2, 64), Args: []int64{1}}, nil, nil)
	if err != nil || rep.Args[0] != n {
		t.Fatalf("count from node 2 after %d posts to node 1: %v %v", n, rep.Args, err)
	}
	got := nodes[1].exec.logs.get(1)
	for i, m := range got {
		if want := fmt.Sprint(i); string(m[:len(want)]) != want {
			t.Fatalf("post %d arrived as %q", i, m[:len(want)])
		}
	}
	if nodes[1].exec.blocks.Load() != n/500 {
		t.Fatalf("%d large payloads went into Alloc memory, want %d", nodes[1].exec.blocks.Load(), n/500)
	}
	// SyncAll: more posts, to two nodes, all in place when it returns.
	for i := range 100 {
		c.Post(wire.Frame{Op: opAppend, Addr: addr(1, 64)}, [][]byte{[]byte(fmt.Sprint(n + i))})
		c.Post(wire.Frame{Op: opAppend, Addr: addr(2, 64)}, [][]byte{[]byte(fmt.Sprint(i))})
	}
	if err := c.SyncAll(); err != nil {
		t.Fatal(err)
	}
	if a, b := len(nodes[1].exec.logs.get(1)), len(nodes[2].exec.logs.get(2)); a != n+100 || b != 100 {
		t.Fatalf("after SyncAll: %d and %d posts in place, want %d and 100", a, b, n+100)
	}
}

// TestFailedPostIsReported: a post that fails on the owner is raised by the
// process's next operation on the same object, and by Sync.
func TestFailedPostIsReported(t *testing.T) {
	nodes := run(t, 2)
	c := nodes[0].client(t)
	if err := c.Post(wire.Frame{Op: opFail, Addr: addr(1, 64)}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(1); err == nil || err.Error() != "bad op" {
		t.Fatalf("Sync after a failed post: %v", err)
	}
	c.Post(wire.Frame{Op: opFail, Addr: addr(1, 128)}, nil)
	var err error
	limit := time.Now().Add(deadline)
	for err == nil && time.Now().Before(limit) {
		time.Sleep(2 * drainEvery)
		err = c.Post(wire.Frame{Op: opAppend, Addr: addr(1, 128)}, nil) // a producer that only posts
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Code != 7 {
		t.Fatalf("a later post on the same object: %v, want the failure", err)
	}
}

// TestConcurrentCalls: many goroutines share one connection; every reply
// reaches its caller whoever reads it.
func TestConcurrentCalls(t *testing.T) {
	nodes := run(t, 2)
	c := nodes[0].client(t)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 300 {
				msg := fmt.Appendf(nil, "g%d-%d", g, i)
				rep, err := c.Call(wire.Frame{Op: opEcho, Addr: addr(1, 64)}, [][]byte{msg}, nil)
				if err != nil || !bytes.Equal(rep.Payload, msg) {
					t.Errorf("%s: %q %v", msg, rep.Payload, err)
					return
				}
			}
		})
	}
	// A blocked call must not hold the others up.
	wg.Go(func() {
		rep, err := c.Call(wire.Frame{Op: opBlock, Addr: addr(1, 64), Timeout: int64(200 * time.Millisecond)}, nil, nil)
		if err != nil || rep.Args[0] != 0 {
			t.Errorf("blocked call: %v %v", rep.Args, err)
		}
	})
	wg.Wait()
}

// TestLargeReplies: a reply's payload goes into the caller's sink; the
// owner's memory is released (Done) once it is written.
func TestLargeReplies(t *testing.T) {
	nodes := run(t, 2)
	c := nodes[0].client(t)
	for _, n := range []int{0, 1, 16 << 10, 1 << 20, 16 << 20} {
		var sinkCalls int
		buf := make([]byte, 0, n)
		rep, err := c.Call(wire.Frame{Op: opBig, Addr: addr(1, 64), Args: []int64{int64(n)}}, nil,
			func(m int) ([]byte, error) { sinkCalls++; return buf[:m], nil })
		if err != nil {
			t.Fatal(err)
		}
		if sha256.Sum256(rep.Payload) != sha256.Sum256(pattern(n)) {
			t.Fatalf("%d bytes: payload differs", n)
		}
		if n > 0 && (sinkCalls != 1 || &rep.Payload[0] != &buf[:1][0]) {
			t.Fatalf("%d bytes: the payload did not go into the sink", n)
		}
	}
	if f := nodes[1].exec.freed.Load(); f != 5 {
		t.Fatalf("owner memory released %d times, want 5", f)
	}
}

// TestTakenOnceOrGivenBack: a reply that takes something is kept (Done)
// once the process has it, and given back (Undo) when the process cannot
// take it or its node is lost before it got it.
func TestTakenOnceOrGivenBack(t *testing.T) {
	nodes := run(t, 2)
	c := nodes[0].client(t)
	e := nodes[1].exec
	if _, err := c.Call(wire.Frame{Op: opTake, Addr: addr(1, 64)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Done after the ack", func() bool { return e.done.Load() == 1 && e.undone.Load() == 0 })
	// The process has no room for it: it goes back.
	_, err := c.Call(wire.Frame{Op: opTake, Addr: addr(1, 64)}, nil,
		func(int) ([]byte, error) { return nil, errors.New("no room") })
	if err == nil || err.Error() != "no room" {
		t.Fatalf("call with a failing sink: %v", err)
	}
	waitFor(t, "Undo after the refusal", func() bool { return e.undone.Load() == 1 })
	// The caller's node is lost while the operation waits: the reply never
	// reaches it, the owner gives the lock back.
	res := make(chan error, 1)
	go func() {
		_, err := c.Call(wire.Frame{Op: opBlock, Addr: addr(1, 64), Timeout: int64(deadline)}, nil, nil)
		res <- err
	}()
	waitFor(t, "the blocking call to be running", func() bool {
		nodes[1].a.mu.Lock()
		defer nodes[1].a.mu.Unlock()
		return len(nodes[1].a.sessions) == 1
	})
	time.Sleep(50 * time.Millisecond)
	lose(nodes, 0)
	close(e.release) // it is granted now, too late
	waitFor(t, "Undo after the loss", func() bool { return e.undone.Load() == 2 })
	if e.done.Load() != 1 {
		t.Fatalf("Done ran %d times, want 1", e.done.Load())
	}
	select {
	case err := <-res:
		t.Logf("the caller got %v", err)
	case <-time.After(deadline):
		t.Fatal("the caller is still waiting")
	}
}

// TestLossEndsWaitsAndLaterCalls: calls waiting on a node fail with a
// LostError naming it shortly after its loss is marked; later ones at once.
func TestLossEndsWaitsAndLaterCalls(t *testing.T) {
	nodes := run(t, 3)
	c := nodes[0].client(t)
	const waiters = 8
	errs := make(chan error, waiters)
	for range waiters {
		go func() {
			_, err := c.Call(wire.Frame{Op: opBlock, Addr: addr(2, 64), Timeout: int64(deadline)}, nil, nil)
			errs <- err
		}()
	}
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	lose(nodes, 2)
	for range waiters {
		select {
		case err := <-errs:
			var le *LostError
			if !errors.As(err, &le) || le.Node != 2 || le.Name != "h2" {
				t.Fatalf("waiter got %v, want a LostError for node 2", err)
			}
		case <-time.After(deadline):
			t.Fatal("a waiter is still blocked on the lost node")
		}
	}
	t.Logf("waiters released %v after the mark", time.Since(t0))
	_, err := c.Call(wire.Frame{Op: opEcho, Addr: addr(2, 64)}, nil, nil)
	var le *LostError
	if !errors.As(err, &le) || le.Reason == "" {
		t.Fatalf("a call after the loss: %v", err)
	}
	t.Logf("message: %v", err)
	if err := c.Post(wire.Frame{Op: opAppend, Addr: addr(2, 64)}, nil); !errors.As(err, &le) {
		t.Fatalf("a post after the loss: %v", err)
	}
	// The others are fine.
	if _, err := c.Call(wire.Frame{Op: opEcho, Addr: addr(1, 64)}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(limit) {
			t.Fatalf("no %s after %v", what, deadline)
		}
		time.Sleep(time.Millisecond)
	}
}
