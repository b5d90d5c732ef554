package agent

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// fakeMesh connects agents in memory: Send queues a copy of the message for
// the target agent's Deliver, called by one goroutine per target, so
// messages arrive in order (as the real mesh keeps each lane in order).
type fakeMesh struct {
	self   uint16
	mu     sync.Mutex
	agents map[uint16]*Agent
	block  map[uint16]chan struct{} // sends to these nodes hang until closed
	queues map[uint16]chan []byte
}

func (m *fakeMesh) Send(node uint16, lane uint64, msg []byte) error {
	m.mu.Lock()
	a := m.agents[node]
	blk := m.block[node]
	q := m.queues[node]
	if a != nil && q == nil {
		q = make(chan []byte, 1<<16)
		m.queues[node] = q
		go func() {
			for msg := range q {
				a.Deliver(m.self, 0, msg)
			}
		}()
	}
	m.mu.Unlock()
	if a == nil {
		return fmt.Errorf("%w: %d", transport.ErrNoAddress, node)
	}
	if blk != nil {
		return nil // the message is lost with its node
	}
	q <- append([]byte(nil), msg...)
	return nil
}

// posted records the payloads of op-50 posts per node, in execution order.
var posted sync.Map // node -> *[]string (guarded by postedMu)
var postedMu sync.Mutex

// echoExec answers with the request's op, node and payload.
func echoExec(node uint16) Executor {
	plain := plainExec(node)
	return func(req *wire.Frame) (wire.Frame, func()) {
		if req.Op == 60 { // "take": undone when the reply does not reach the process
			return wire.Frame{Payload: req.Payload}, func() {
				undone.Store(string(req.Payload), true)
			}
		}
		return plain(req), nil
	}
}

// undone records the payloads of op-60 requests whose undo ran.
var undone sync.Map

func plainExec(node uint16) func(req *wire.Frame) wire.Frame {
	return func(req *wire.Frame) wire.Frame {
		switch req.Op {
		case 99:
			return wire.Frame{Code: 7, Payload: []byte("bad op")}
		case 50:
			postedMu.Lock()
			v, _ := posted.LoadOrStore(node, new([]string))
			l := v.(*[]string)
			*l = append(*l, string(req.Payload))
			postedMu.Unlock()
			return wire.Frame{}
		case 51:
			postedMu.Lock()
			defer postedMu.Unlock()
			if v, ok := posted.Load(node); ok {
				return wire.Frame{Args: []int64{int64(len(*v.(*[]string)))}}
			}
			return wire.Frame{Args: []int64{0}}
		}
		return wire.Frame{Args: []int64{int64(req.Op), int64(node)}, Payload: req.Payload}
	}
}

// cluster starts n agents wired by fake meshes; the test's name makes the
// socket names unique.
func cluster(t *testing.T, n int) ([]*Agent, []*fakeMesh) {
	t.Helper()
	agents := map[uint16]*Agent{}
	var list []*Agent
	var meshes []*fakeMesh
	for i := 0; i < n; i++ {
		a := New(uint16(i), echoExec(uint16(i)))
		if err := a.Serve(sock(t, i)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		agents[uint16(i)] = a
		list = append(list, a)
	}
	for i, a := range list {
		m := &fakeMesh{self: uint16(i), agents: agents, block: map[uint16]chan struct{}{},
			queues: map[uint16]chan []byte{}}
		a.SetMesh(m)
		meshes = append(meshes, m)
	}
	return list, meshes
}

func sock(t *testing.T, node int) string {
	return SocketName(fmt.Sprintf("test-%d-%s-n%d", os.Getpid(), t.Name(), node))
}

func dial(t *testing.T, node int) *Client {
	t.Helper()
	c, err := Dial(sock(t, node))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCallRoutesByAddress(t *testing.T) {
	cluster(t, 3)
	c := dial(t, 0)
	tests := []struct {
		name     string
		addr     uint64
		op       uint16
		wantCode int32
		wantNode int64
	}{
		{"another node", 2<<48 | 4096, 5, 0, 2},
		{"this node", 0<<48 | 64, 6, 0, 0},
		{"node 1", 1<<48 | 128, 7, 0, 1},
		{"executor error", 1<<48 | 128, 99, 7, 0},
		{"no such node", 9 << 48, 5, CodeNoSuchNode, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := c.Call(wire.Frame{Op: tt.op, Addr: tt.addr, Payload: []byte(tt.name)})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Code != tt.wantCode {
				t.Fatalf("code %d (%s), want %d", rep.Code, rep.Payload, tt.wantCode)
			}
			if tt.wantCode != 0 {
				return
			}
			if len(rep.Args) != 2 || rep.Args[0] != int64(tt.op) || rep.Args[1] != tt.wantNode {
				t.Fatalf("args %v, want [%d %d]", rep.Args, tt.op, tt.wantNode)
			}
			if string(rep.Payload) != tt.name || rep.Kind != wire.KindReply || rep.Addr != tt.addr {
				t.Fatalf("reply %+v", rep)
			}
		})
	}
}

func TestConcurrentCallsGetTheirOwnReplies(t *testing.T) {
	cluster(t, 2)
	c := dial(t, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				want := fmt.Sprintf("g%d-%d", g, i)
				rep, err := c.Call(wire.Frame{Op: 1, Addr: 1 << 48, Payload: []byte(want)})
				if err != nil || string(rep.Payload) != want {
					errs <- fmt.Errorf("call %s: %v, got %q", want, err, rep.Payload)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestPeerLostFailsWaitingAndLaterRequests(t *testing.T) {
	agents, meshes := cluster(t, 2)
	blk := make(chan struct{})
	defer close(blk)
	meshes[0].mu.Lock()
	meshes[0].block[1] = blk // requests to node 1 vanish
	meshes[0].mu.Unlock()
	c := dial(t, 0)
	done := make(chan wire.Frame, 1)
	go func() {
		rep, _ := c.Call(wire.Frame{Op: 1, Addr: 1 << 48})
		done <- rep
	}()
	time.Sleep(50 * time.Millisecond) // the request is on its way
	agents[0].PeerLost(1, errors.New("idle timeout"))
	select {
	case rep := <-done:
		if rep.Code != CodePeerLost {
			t.Fatalf("code %d, want CodePeerLost", rep.Code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request waiting on a lost node was not failed")
	}
	rep, err := c.Call(wire.Frame{Op: 1, Addr: 1<<48 | 64})
	if err != nil || rep.Code != CodePeerLost {
		t.Fatalf("after the loss: %v, code %d", err, rep.Code)
	}
	if lost := agents[0].Lost(); len(lost) != 1 || lost[1] == nil {
		t.Fatalf("Lost() = %v", lost)
	}
	// Node 0 itself still answers.
	if rep, err := c.Call(wire.Frame{Op: 1, Addr: 64}); err != nil || rep.Code != 0 {
		t.Fatalf("local call after a loss: %v %d", err, rep.Code)
	}
}

func TestClientFailsWhenTheAgentCloses(t *testing.T) {
	agents, _ := cluster(t, 1)
	c := dial(t, 0)
	if _, err := c.Call(wire.Frame{Op: 1, Addr: 64}); err != nil {
		t.Fatal(err)
	}
	agents[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Call(wire.Frame{Op: 1, Addr: 64})
		if errors.Is(err, ErrAgentGone) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("call after Close: %v, want ErrAgentGone", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNonRequestFramesEndTheConnection(t *testing.T) {
	cluster(t, 1)
	c := dial(t, 0)
	// A reply sent as if it were a request is a confused client: dropped.
	conn, err := c.get()
	if err != nil {
		t.Fatal(err)
	}
	f := wire.Frame{Kind: wire.KindReply, Op: 1, Addr: 64}
	if _, err := conn.Write(f.AppendTo(nil)); err != nil {
		t.Fatal(err)
	}
	c.put(conn)
	if _, err := c.Call(wire.Frame{Op: 1, Addr: 64}); !errors.Is(err, ErrAgentGone) {
		t.Fatalf("got %v, want ErrAgentGone", err)
	}
}

func TestPostsRunInOrderWithoutReplies(t *testing.T) {
	cluster(t, 2)
	c := dial(t, 0)
	posted.Clear() // -count=N reruns
	const n = 500
	for _, node := range []uint64{1, 0} { // another node, then this one
		for i := 0; i < n; i++ {
			if err := c.Post(wire.Frame{Op: 50, Addr: node << 48, Payload: []byte(fmt.Sprint(i))}); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			rep, err := c.Call(wire.Frame{Op: 51, Addr: node << 48})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Args[0] == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d ran %d of %d posts", node, rep.Args[0], n)
			}
			time.Sleep(time.Millisecond)
		}
		postedMu.Lock()
		v, _ := posted.Load(uint16(node))
		got := *v.(*[]string)
		postedMu.Unlock()
		for i, p := range got {
			if p != fmt.Sprint(i) {
				t.Fatalf("node %d: position %d holds post %s", node, i, p)
			}
		}
	}
}

func TestTakenRepliesAreAckedOrUndone(t *testing.T) {
	agents, meshes := cluster(t, 2)
	undone.Clear()
	c := dial(t, 0)
	// A reply that reaches its process is acked: no undo.
	rep, err := c.Call(wire.Frame{Op: 60, Addr: 1 << 48, Payload: []byte("kept")})
	if err != nil || string(rep.Payload) != "kept" || rep.Op != 60 {
		t.Fatalf("call: %v %+v", err, rep)
	}
	unacked := func() int {
		agents[1].mu.Lock()
		defer agents[1].mu.Unlock()
		return len(agents[1].unacked)
	}
	deadline := time.Now().Add(5 * time.Second)
	for unacked() != 0 { // the ack is on its way
		if time.Now().After(deadline) {
			t.Fatal("a reply that reached its process was never acked")
		}
		time.Sleep(time.Millisecond)
	}
	// The requester's node is lost before the reply gets there: undone.
	blk := make(chan struct{})
	defer close(blk)
	meshes[1].mu.Lock()
	meshes[1].block[0] = blk // replies from node 1 to node 0 vanish
	meshes[1].mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(wire.Frame{Op: 60, Addr: 1 << 48, Payload: []byte("lost")})
		done <- err
	}()
	deadline = time.Now().Add(5 * time.Second)
	for {
		if unacked() == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the owner did not keep the undo of an unacked reply")
		}
		time.Sleep(time.Millisecond)
	}
	agents[1].PeerLost(0, errors.New("cut"))
	agents[0].PeerLost(1, errors.New("cut"))
	<-done
	deadline = time.Now().Add(5 * time.Second)
	for {
		if _, ok := undone.Load("lost"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a reply lost with its node was not undone")
		}
		time.Sleep(time.Millisecond)
	}
	if _, ok := undone.Load("kept"); ok {
		t.Fatal("an acked reply was undone")
	}
}
