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

// fakeMesh connects agents in memory: Send hands a copy of the message to
// the target agent's Deliver on a goroutine (order across messages does not
// matter to these tests: every client call is synchronous).
type fakeMesh struct {
	self   uint16
	mu     sync.Mutex
	agents map[uint16]*Agent
	block  map[uint16]chan struct{} // sends to these nodes hang until closed
}

func (m *fakeMesh) Send(node uint16, lane uint64, msg []byte) error {
	m.mu.Lock()
	a := m.agents[node]
	blk := m.block[node]
	m.mu.Unlock()
	if a == nil {
		return fmt.Errorf("%w: %d", transport.ErrNoAddress, node)
	}
	cp := append([]byte(nil), msg...)
	go func() {
		if blk != nil {
			<-blk
			return // the message is lost with its node
		}
		a.Deliver(m.self, lane, cp)
	}()
	return nil
}

// echoExec answers with the request's op, node and payload.
func echoExec(node uint16) Executor {
	return func(req *wire.Frame) wire.Frame {
		if req.Op == 99 {
			return wire.Frame{Code: 7, Payload: []byte("bad op")}
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
		m := &fakeMesh{self: uint16(i), agents: agents, block: map[uint16]chan struct{}{}}
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
