package channel

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newWaitChannels(t *testing.T, n int) (*shmHeap, []*Channel) {
	t.Helper()
	hp := newShmHeap(t, 4<<20, true)
	chans := make([]*Channel, n)
	for i := range chans {
		chans[i] = mustCreate(t, hp, Options{})
	}
	return hp, chans
}

// noWaiters checks that every waiter went away.
func noWaiters(t *testing.T, chans ...*Channel) {
	t.Helper()
	for i, c := range chans {
		if w := atomic.LoadUint32(&c.h.neWaiters); w != 0 {
			t.Errorf("channel %d: %d notEmpty waiters left", i, w)
		}
	}
}

func TestWaitReadyMessage(t *testing.T) {
	_, cs := newWaitChannels(t, 1)
	c := cs[0]
	if c.WaitReady(WaitMessage, 0) {
		t.Fatal("empty channel ready")
	}
	start := time.Now()
	if c.WaitReady(WaitMessage, 30*time.Millisecond) {
		t.Fatal("empty channel ready after timeout")
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("timed out after %v", el)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Send([]byte("x"), 0)
	}()
	if !c.WaitReady(WaitMessage, -1) {
		t.Fatal("not ready after a send")
	}
	if c.Len() != 1 {
		t.Fatalf("WaitReady took the message: len %d", c.Len())
	}
	noWaiters(t, c)
}

func TestWaitReadyClose(t *testing.T) {
	_, cs := newWaitChannels(t, 1)
	c := cs[0]
	c.Send([]byte("queued"), 0)
	if c.WaitReady(WaitClose, 10*time.Millisecond) {
		t.Fatal("open channel with a message ready for WaitClose")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		c.Close()
	}()
	if !c.WaitReady(WaitClose, time.Second) {
		t.Fatal("closed channel not ready for WaitClose")
	}
	buf := make([]byte, 256)
	c.Recv(buf, 0)
	if !c.WaitReady(WaitMessage, 0) {
		t.Fatal("closed, drained channel not ready (Recv would not block)")
	}
	noWaiters(t, c)
}

func TestWaitReadyDestroyed(t *testing.T) {
	_, cs := newWaitChannels(t, 1)
	c := cs[0]
	if _, err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if !c.WaitReady(WaitMessage, time.Second) {
		t.Fatal("destroyed channel not ready")
	}
}

func TestWaitAnyChannels(t *testing.T) {
	_, cs := newWaitChannels(t, 3)
	modes := []WaitMode{WaitMessage, WaitMessage, WaitMessage}
	ready, _, err := WaitAny(cs, modes, nil, 0)
	if err != nil || ready[0] || ready[1] || ready[2] {
		t.Fatalf("idle channels: %v %v", ready, err)
	}
	start := time.Now()
	ready, _, err = WaitAny(cs, modes, nil, 40*time.Millisecond)
	if err != nil || ready[0] || ready[1] || ready[2] {
		t.Fatalf("timeout: %v %v", ready, err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > 2*time.Second {
		t.Fatalf("timed out after %v", el)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		cs[1].Send(nil, 0)
	}()
	ready, _, err = WaitAny(cs, modes, nil, -1)
	if err != nil || ready[0] || !ready[1] || ready[2] {
		t.Fatalf("after a send to 1: %v %v", ready, err)
	}
	noWaiters(t, cs...)
	if cs[1].Len() != 1 {
		t.Fatal("WaitAny took the message")
	}
}

func TestWaitAnyModes(t *testing.T) {
	_, cs := newWaitChannels(t, 2)
	cs[0].Send([]byte("mine"), 0) // a writer's own queued message
	modes := []WaitMode{WaitClose, WaitMessage}
	ready, _, _ := WaitAny(cs, modes, nil, 20*time.Millisecond)
	if ready[0] || ready[1] {
		t.Fatalf("nothing should be ready: %v", ready)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		cs[0].Close()
	}()
	ready, _, _ = WaitAny(cs, modes, nil, 5*time.Second)
	if !ready[0] || ready[1] {
		t.Fatalf("after Close: %v", ready)
	}
	if _, _, err := WaitAny(cs, modes[:1], nil, 0); !errors.Is(err, ErrInvalid) {
		t.Fatalf("mismatched modes: %v", err)
	}
	noWaiters(t, cs...)
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestWaitAnyFds(t *testing.T) {
	r1, w1 := pipe(t)
	r2, _ := pipe(t)
	fds := []int{int(r1.Fd()), int(r2.Fd())}
	_, fr, err := WaitAny(nil, nil, fds, 20*time.Millisecond)
	if err != nil || fr[0] || fr[1] {
		t.Fatalf("idle pipes: %v %v", fr, err)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		w1.Write([]byte("x"))
	}()
	_, fr, err = WaitAny(nil, nil, fds, 5*time.Second)
	if err != nil || !fr[0] || fr[1] {
		t.Fatalf("after a write: %v %v", fr, err)
	}
	// A hung-up pipe is ready (as with selectors); a negative fd is ignored.
	w1.Close()
	buf := make([]byte, 1)
	r1.Read(buf)
	_, fr, _ = WaitAny(nil, nil, []int{int(r1.Fd()), -1}, 0)
	if !fr[0] || fr[1] {
		t.Fatalf("hung-up pipe / negative fd: %v", fr)
	}
}

func TestWaitAnyMixed(t *testing.T) {
	_, cs := newWaitChannels(t, 2)
	modes := []WaitMode{WaitMessage, WaitMessage}
	r, w := pipe(t)
	fds := []int{int(r.Fd())}
	start := time.Now()
	cr, fr, err := WaitAny(cs, modes, fds, 40*time.Millisecond)
	if err != nil || cr[0] || cr[1] || fr[0] {
		t.Fatalf("idle: %v %v %v", cr, fr, err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > 2*time.Second {
		t.Fatalf("timed out after %v", el)
	}
	// A descriptor wins: the channel waiters are stopped.
	go func() {
		time.Sleep(20 * time.Millisecond)
		w.Write([]byte("x"))
	}()
	start = time.Now()
	cr, fr, err = WaitAny(cs, modes, fds, 5*time.Second)
	if err != nil || cr[0] || cr[1] || !fr[0] {
		t.Fatalf("fd ready: %v %v %v", cr, fr, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("fd readiness took %v", el)
	}
	noWaiters(t, cs...)
	r.Read(make([]byte, 1))
	// A channel wins: the poller is stopped.
	go func() {
		time.Sleep(20 * time.Millisecond)
		cs[0].Send([]byte("y"), 0)
	}()
	start = time.Now()
	cr, fr, err = WaitAny(cs, modes, fds, 5*time.Second)
	if err != nil || !cr[0] || cr[1] || fr[0] {
		t.Fatalf("channel ready: %v %v %v", cr, fr, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("channel readiness took %v", el)
	}
	noWaiters(t, cs...)
}

// A receiver blocked in Recv on a channel that WaitAny nudges keeps waiting
// and still gets the next message.
func TestWaitAnyNudgeKeepsReceivers(t *testing.T) {
	_, cs := newWaitChannels(t, 2)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		m, err := cs[0].Recv(buf, 5*time.Second)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:m.Len])
	}()
	time.Sleep(20 * time.Millisecond)
	go func() {
		time.Sleep(20 * time.Millisecond)
		cs[1].Send(nil, 0)
	}()
	cr, _, _ := WaitAny(cs, []WaitMode{WaitMessage, WaitMessage}, nil, 5*time.Second)
	if !cr[1] {
		t.Fatalf("ready %v", cr)
	}
	select {
	case s := <-got:
		t.Fatalf("receiver returned early: %q", s)
	case <-time.After(30 * time.Millisecond):
	}
	cs[0].Send([]byte("hello"), 0)
	if s := <-got; s != "hello" {
		t.Fatalf("receiver got %q", s)
	}
}

// Many concurrent waits and sends: every wait returns with something ready
// (or times out), no waiter count is left behind, no goroutine leaks.
func TestWaitAnyStress(t *testing.T) {
	_, cs := newWaitChannels(t, 4)
	modes := make([]WaitMode, len(cs))
	r, w := pipe(t)
	fds := []int{int(r.Fd())}
	before := runtime.NumGoroutine()
	const rounds = 300
	var wg sync.WaitGroup
	var sent atomic.Int64
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cs[i%len(cs)].Send([]byte{byte(i)}, 0)
			sent.Add(1)
			if i%7 == 0 {
				w.Write([]byte{1})
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	buf := make([]byte, 256)
	pb := make([]byte, 64)
	for i := 0; i < rounds; i++ {
		cr, fr, err := WaitAny(cs, modes, fds, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got := fr[0]
		for j, ok := range cr {
			if ok {
				got = true
				cs[j].Recv(buf, 0)
			}
		}
		if fr[0] {
			r.Read(pb)
		}
		if !got {
			t.Fatalf("round %d: nothing ready after 1s", i)
		}
	}
	close(stop)
	wg.Wait()
	noWaiters(t, cs...)
	time.Sleep(10 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before, %d after", before, after)
	}
}
