package runtime

import (
	"errors"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func TestRecursiveLockObject(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewRecursiveLock()
	if err != nil {
		t.Fatal(err)
	}
	l, err := r.RecursiveLock(a)
	if err != nil {
		t.Fatal(err)
	}
	const me, other = 1<<32 | 1, 2<<32 | 1
	if !l.Acquire(me, 0) || !l.Acquire(me, 0) || l.Count() != 2 || l.Acquire(other, 0) {
		t.Fatal("recursive acquire")
	}
	if _, err := r.Semaphore(a); !errors.Is(err, ErrBadObject) {
		t.Fatalf("an RLock passed for a semaphore: %v", err)
	}
	if _, err := r.Event(a); !errors.Is(err, ErrBadObject) {
		t.Fatalf("an RLock passed for an event: %v", err)
	}
	if err := r.ReleaseObject(a); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RecursiveLock(a); !errors.Is(err, ErrBadObject) {
		t.Fatalf("freed RLock still usable: %v", err)
	}
	if st := r.Pool.Stats(); st.InUse != 0 {
		t.Fatalf("pool in use after free: %d", st.InUse)
	}
}

func TestEventObject(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	e, err := r.Event(a)
	if err != nil {
		t.Fatal(err)
	}
	if e.IsSet() {
		t.Fatal("new event is set")
	}
	done := make(chan bool)
	go func() { done <- e.Wait(5 * time.Second) }()
	time.Sleep(10 * time.Millisecond)
	e.Set()
	if !<-done {
		t.Fatal("waiter not released")
	}
	if err := r.ReleaseObject(a); err != nil {
		t.Fatal(err)
	}
}

func TestConditionObject(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewCondition()
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Condition(a)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // the condition's lock
	const waiters = 4
	results := make(chan bool, waiters)
	for i := 0; i < waiters; i++ {
		mu.Lock()
		w, err := r.CondEnqueue(a)
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			ok, err := r.CondWait(a, w, 5*time.Second)
			if err != nil {
				t.Error(err)
			}
			n, err := r.CondFinish(a, w)
			if err != nil || n != ok {
				t.Errorf("finish = %v %v after wait = %v", n, err, ok)
			}
			results <- n
		}()
	}
	if c.Waiting() != waiters {
		t.Fatalf("waiting = %d", c.Waiting())
	}
	mu.Lock()
	n, err := r.CondNotify(a, 1)
	mu.Unlock()
	if err != nil || n != 1 || !<-results {
		t.Fatalf("notify(1) = %d %v", n, err)
	}
	mu.Lock()
	n, err = r.CondNotify(a, 1<<62)
	mu.Unlock()
	if err != nil || n != waiters-1 {
		t.Fatalf("notify_all = %d %v", n, err)
	}
	for i := 1; i < waiters; i++ {
		if !<-results {
			t.Fatal("a waiter was not notified")
		}
	}
	// A timed-out wait frees its node and absorbs nothing.
	w, err := r.CondEnqueue(a)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := r.CondWait(a, w, 10*time.Millisecond); ok {
		t.Fatal("notified without a notify")
	}
	if ok, err := r.CondFinish(a, w); ok || err != nil {
		t.Fatalf("finish = %v %v", ok, err)
	}
	if _, err := r.CondFinish(a, w); !errors.Is(err, ErrBadObject) {
		t.Fatalf("second finish of a freed wait = %v", err)
	}
	if _, err := r.CondWait(w, w, 0); !errors.Is(err, ErrBadObject) {
		t.Fatalf("a waiter node passed for a condition: %v", err)
	}
	if n, err := r.CondNotify(a, 1); n != 0 || err != nil {
		t.Fatalf("notify with no waiters = %d %v", n, err)
	}
	if err := r.ReleaseObject(a); err != nil {
		t.Fatal(err)
	}
	if st := r.Pool.Stats(); st.InUse != 0 {
		t.Fatalf("pool in use after everything was freed: %d", st.InUse)
	}
}

func TestConditionFreesDeadWaiters(t *testing.T) {
	r := newTestRun(t)
	a, _ := r.NewCondition()
	w, err := r.CondEnqueue(a)
	if err != nil {
		t.Fatal(err)
	}
	node, _ := r.condWaiter(w)
	*(*uint32)(unsafe.Add(unsafe.Pointer(node), 4)) = 0x3fffff // the pid field: a dead process
	if n, err := r.CondNotify(a, 1); n != 0 || err != nil {
		t.Fatalf("notify of a dead waiter = %d %v", n, err)
	}
	if _, err := r.condWaiter(w); !errors.Is(err, ErrBadObject) {
		t.Fatalf("dead waiter's node not freed: %v", err)
	}
	r.ReleaseObject(a)
	if st := r.Pool.Stats(); st.InUse != 0 {
		t.Fatalf("pool in use: %d", st.InUse)
	}
}

func TestBarrierStateObject(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewBarrierState()
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Barrier(a)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := b.Get(BarrierFieldState); s != 0 || !ok {
		t.Fatalf("state = %d %v", s, ok)
	}
	if !b.Set(BarrierFieldState, -2) || !b.Set(BarrierFieldCount, 3) {
		t.Fatal("set refused")
	}
	if s, _ := b.Get(BarrierFieldState); s != -2 {
		t.Fatalf("state = %d", s)
	}
	if c, _ := b.Get(BarrierFieldCount); c != 3 {
		t.Fatalf("count = %d", c)
	}
	if _, ok := b.Get(2); ok || b.Set(-1, 0) {
		t.Fatal("unknown field accepted")
	}
	r.ReleaseObject(a)
}
