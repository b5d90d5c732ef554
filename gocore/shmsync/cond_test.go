package shmsync

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// condNodes is an in-process stand-in for waiter nodes in a pool: handle h
// names nodes[h-1].
type condNodes []CondWaiter

func (n condNodes) at(h uint64) *CondWaiter { return &n[h-1] }

func TestCondLayout(t *testing.T) {
	if s := unsafe.Sizeof(Cond{}); s != 40 {
		t.Errorf("Cond = %d bytes, want 40", s)
	}
	if s := unsafe.Sizeof(CondWaiter{}); s != 32 {
		t.Errorf("CondWaiter = %d bytes, want 32", s)
	}
}

func TestCondNotifyOrderAndCounts(t *testing.T) {
	var c Cond
	nodes := make(condNodes, 4)
	if n, d := c.Notify(1, nodes.at); n != 0 || d != nil {
		t.Fatalf("notify with no waiters = %d %v", n, d)
	}
	for h := uint64(1); h <= 4; h++ {
		c.Enqueue(h, nodes.at(h), nodes.at)
	}
	if c.Waiting() != 4 || c.Queued() != 4 {
		t.Fatalf("waiting %d queued %d", c.Waiting(), c.Queued())
	}
	if n, _ := c.Notify(1, nodes.at); n != 1 {
		t.Fatalf("notify(1) = %d", n)
	}
	// FIFO: the oldest (1) was notified, the others not.
	if !c.Wait(nodes.at(1), 0) || c.Wait(nodes.at(2), 0) {
		t.Fatal("notify(1) did not pick the oldest waiter alone")
	}
	// 3 gives up: it must leave the queue and not absorb a notification.
	if c.Wait(nodes.at(3), 20*time.Millisecond) {
		t.Fatal("waiter 3 notified")
	}
	if c.Finish(3, nodes.at(3), nodes.at) {
		t.Fatal("timed-out waiter reported notified")
	}
	if n, _ := c.Notify(5, nodes.at); n != 2 {
		t.Fatalf("notify(5) = %d, want 2 (waiters 2 and 4)", n)
	}
	for _, h := range []uint64{1, 2, 4} {
		if !c.Finish(h, nodes.at(h), nodes.at) {
			t.Fatalf("waiter %d not notified", h)
		}
	}
	if c.Waiting() != 0 || c.Queued() != 0 || c.head != 0 || c.tail != 0 {
		t.Fatalf("not empty: waiting %d queued %d head %d tail %d", c.Waiting(), c.Queued(), c.head, c.tail)
	}
	// A wait that starts after a notify does not see it.
	c.Notify(1, nodes.at)
	c.Enqueue(1, nodes.at(1), nodes.at)
	if c.Wait(nodes.at(1), 10*time.Millisecond) || c.Finish(1, nodes.at(1), nodes.at) {
		t.Fatal("an earlier notify reached a later waiter")
	}
}

func TestCondUnlinkMiddleAndEnds(t *testing.T) {
	var c Cond
	nodes := make(condNodes, 5)
	for h := uint64(1); h <= 5; h++ {
		c.Enqueue(h, nodes.at(h), nodes.at)
	}
	for _, h := range []uint64{3, 1, 5} { // middle, head, tail
		c.Finish(h, nodes.at(h), nodes.at)
	}
	if c.head != 2 || c.tail != 4 || nodes.at(2).next != 4 || nodes.at(4).prev != 2 {
		t.Fatalf("links: head %d tail %d 2.next %d 4.prev %d", c.head, c.tail, nodes.at(2).next, nodes.at(4).prev)
	}
	if n, _ := c.Notify(1, nodes.at); n != 1 || !c.Wait(nodes.at(2), 0) {
		t.Fatal("notify after unlinks missed the oldest")
	}
}

func TestCondDropsDeadWaiters(t *testing.T) {
	var c Cond
	nodes := make(condNodes, 2)
	c.Enqueue(1, nodes.at(1), nodes.at)
	c.Enqueue(2, nodes.at(2), nodes.at)
	nodes.at(1).pid = 0x3fffff // above any pid_max: a dead process
	n, dropped := c.Notify(1, nodes.at)
	if n != 1 || len(dropped) != 1 || dropped[0] != 1 {
		t.Fatalf("notify = %d dropped %v", n, dropped)
	}
	if !c.Finish(2, nodes.at(2), nodes.at) || c.Waiting() != 0 {
		t.Fatalf("live waiter not notified, waiting %d", c.Waiting())
	}
}

// TestCondWakesSleepers: sleeping waiters are woken promptly, notify(n)
// wakes exactly n of them, and notifications are never lost or duplicated
// under concurrent timeouts.
func TestCondWakesSleepers(t *testing.T) {
	var c Cond
	const waiters = 8
	nodes := make(condNodes, waiters)
	var mu sync.Mutex // the condition's lock
	var woken int32
	var wg sync.WaitGroup
	ready := make(chan struct{}, waiters)
	for i := 1; i <= waiters; i++ {
		wg.Add(1)
		go func(h uint64) {
			defer wg.Done()
			mu.Lock()
			c.Enqueue(h, nodes.at(h), nodes.at)
			mu.Unlock()
			ready <- struct{}{}
			c.Wait(nodes.at(h), 5*time.Second)
			if c.Finish(h, nodes.at(h), nodes.at) {
				atomic.AddInt32(&woken, 1)
			}
		}(uint64(i))
	}
	for i := 0; i < waiters; i++ {
		<-ready
	}
	time.Sleep(20 * time.Millisecond) // let them sleep
	start := time.Now()
	mu.Lock()
	n3, _ := c.Notify(3, nodes.at)
	mu.Unlock()
	deadline := time.Now().Add(2 * time.Second)
	for atomic.LoadInt32(&woken) < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n3 != 3 || atomic.LoadInt32(&woken) != 3 {
		t.Fatalf("notify(3) = %d, woken %d", n3, woken)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("wake-up took %v", d)
	}
	mu.Lock()
	rest, _ := c.Notify(1<<62, nodes.at)
	mu.Unlock()
	wg.Wait()
	if rest != waiters-3 || woken != waiters || c.Waiting() != 0 {
		t.Fatalf("notify_all = %d, woken %d, waiting %d", rest, woken, c.Waiting())
	}
}

func TestCondStressExactlyOnce(t *testing.T) {
	var c Cond
	const goroutines, rounds = 8, 300
	nodes := make(condNodes, goroutines)
	var mu sync.Mutex
	var granted, received int64
	var wg sync.WaitGroup
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // notifier
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			n, _ := c.Notify(2, nodes.at)
			mu.Unlock()
			atomic.AddInt64(&granted, int64(n))
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for g := 1; g <= goroutines; g++ {
		wg.Add(1)
		go func(h uint64) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				mu.Lock()
				c.Enqueue(h, nodes.at(h), nodes.at)
				mu.Unlock()
				// Short timeouts race with notifications on purpose.
				c.Wait(nodes.at(h), time.Duration(i%3)*100*time.Microsecond)
				if c.Finish(h, nodes.at(h), nodes.at) {
					atomic.AddInt64(&received, 1)
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	close(stop)
	<-done
	if atomic.LoadInt64(&granted) != atomic.LoadInt64(&received) {
		t.Fatalf("granted %d, received %d", granted, received)
	}
	if c.Waiting() != 0 || c.Queued() != 0 {
		t.Fatalf("waiting %d queued %d", c.Waiting(), c.Queued())
	}
}
