package shmsync

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func TestSyncLayouts(t *testing.T) {
	tests := []struct {
		name      string
		size, got uintptr
	}{
		{"Semaphore", 16, unsafe.Sizeof(Semaphore{})},
		{"RecursiveLock", 24, unsafe.Sizeof(RecursiveLock{})},
		{"RecursiveLock.owner", 16, unsafe.Offsetof(RecursiveLock{}.owner)},
		{"Event", 8, unsafe.Sizeof(Event{})},
	}
	for _, tc := range tests {
		if tc.got != tc.size {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.size)
		}
	}
}

func TestSemaphoreZeroValue(t *testing.T) {
	var s Semaphore
	if s.Value() != 0 || s.Max() != 0 {
		t.Fatalf("zero value: value %d max %d", s.Value(), s.Max())
	}
	if s.Acquire(0) {
		t.Fatal("acquired a zero semaphore")
	}
	for i := 0; i < 5; i++ { // unbounded
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if s.Value() != 5 {
		t.Fatalf("value = %d", s.Value())
	}
}

func TestSemaphoreTable(t *testing.T) {
	tests := []struct {
		name       string
		value, max uint32
		acquires   int // successful try-acquires expected
		releases   int // successful releases from empty
	}{
		{"lock", 1, 1, 1, 1},
		{"bounded3", 3, 3, 3, 3},
		{"value>max raises max", 4, 2, 4, 4},
		{"unbounded", 2, 0, 2, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Semaphore
			s.Init(tc.value, tc.max)
			n := 0
			for s.Acquire(0) {
				n++
			}
			if n != tc.acquires {
				t.Fatalf("acquired %d, want %d", n, tc.acquires)
			}
			for i := 0; i < tc.releases; i++ {
				if err := s.Release(); err != nil {
					t.Fatalf("release %d: %v", i, err)
				}
			}
			if tc.max != 0 {
				if err := s.Release(); err != ErrTooManyReleases {
					t.Fatalf("over-release = %v", err)
				}
				if s.Value() != tc.releases {
					t.Fatalf("value after over-release = %d", s.Value())
				}
			}
		})
	}
}

func TestSemaphoreTimeout(t *testing.T) {
	var s Semaphore
	s.Init(0, 1)
	for _, d := range []time.Duration{0, 10 * time.Millisecond, 150 * time.Millisecond} {
		start := time.Now()
		if s.Acquire(d) {
			t.Fatalf("acquired with timeout %v", d)
		}
		if el := time.Since(start); el < d || el > d+time.Second {
			t.Fatalf("timeout %v took %v", d, el)
		}
	}
}

func TestSemaphoreWakesBlocked(t *testing.T) {
	var s Semaphore
	s.Init(0, 0)
	const n = 8
	var got int32
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.Acquire(5 * time.Second) {
				atomic.AddInt32(&got, 1)
			}
		}()
	}
	time.Sleep(30 * time.Millisecond)
	for i := 0; i < n; i++ {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if got != n || s.Value() != 0 {
		t.Fatalf("woken %d/%d, value %d", got, n, s.Value())
	}
	if w := atomic.LoadUint32(&s.waiters); w != 0 {
		t.Fatalf("waiters = %d after all returned", w)
	}
}

// TestSemaphoreCounts runs many goroutines through a Semaphore(k): never
// more than k inside, and every release balanced.
func TestSemaphoreCounts(t *testing.T) {
	for _, k := range []uint32{1, 3} {
		var s Semaphore
		s.Init(k, k)
		var inside, peak int32
		var total int64
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 3000; i++ {
					if !s.Acquire(-1) {
						t.Error("Acquire(-1) failed")
						return
					}
					in := atomic.AddInt32(&inside, 1)
					for {
						p := atomic.LoadInt32(&peak)
						if in <= p || atomic.CompareAndSwapInt32(&peak, p, in) {
							break
						}
					}
					atomic.AddInt64(&total, 1)
					atomic.AddInt32(&inside, -1)
					if err := s.Release(); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if peak > int32(k) || total != 16*3000 || s.Value() != int(k) {
			t.Fatalf("k=%d: peak %d total %d value %d", k, peak, total, s.Value())
		}
	}
}

func TestSemaphoreOverReleaseConcurrent(t *testing.T) {
	var s Semaphore
	s.Init(0, 5)
	var ok, tooMany int32
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch s.Release() {
			case nil:
				atomic.AddInt32(&ok, 1)
			case ErrTooManyReleases:
				atomic.AddInt32(&tooMany, 1)
			}
		}()
	}
	wg.Wait()
	if ok != 5 || tooMany != 15 || s.Value() != 5 {
		t.Fatalf("ok %d tooMany %d value %d", ok, tooMany, s.Value())
	}
}

func TestRecursiveLock(t *testing.T) {
	var l RecursiveLock
	const a, b = 1<<32 | 7, 2<<32 | 7
	if l.Owner() != 0 || l.Count() != 0 {
		t.Fatal("zero value not free")
	}
	if err := l.Release(a); err != ErrNotOwner {
		t.Fatalf("release of free lock = %v", err)
	}
	for i := 1; i <= 3; i++ {
		if !l.Acquire(a, 0) || l.Count() != i || l.Owner() != a {
			t.Fatalf("recursive acquire %d: count %d owner %x", i, l.Count(), l.Owner())
		}
	}
	if l.Acquire(b, 20*time.Millisecond) {
		t.Fatal("other owner acquired a held lock")
	}
	if err := l.Release(b); err != ErrNotOwner {
		t.Fatalf("foreign release = %v", err)
	}
	if l.Acquire(0, 0) {
		t.Fatal("owner 0 accepted")
	}
	done := make(chan bool)
	go func() { done <- l.Acquire(b, 5*time.Second) }()
	for i := 3; i >= 1; i-- {
		select {
		case <-done:
			t.Fatal("acquired before the last release")
		case <-time.After(5 * time.Millisecond):
		}
		if err := l.Release(a); err != nil {
			t.Fatal(err)
		}
	}
	if !<-done {
		t.Fatal("waiter did not get the lock")
	}
	if l.Owner() != b || l.Count() != 1 {
		t.Fatalf("owner %x count %d", l.Owner(), l.Count())
	}
	if err := l.Release(b); err != nil || l.Owner() != 0 || l.Count() != 0 {
		t.Fatalf("final release: %v owner %x count %d", err, l.Owner(), l.Count())
	}
}

func TestRecursiveLockExcludes(t *testing.T) {
	var l RecursiveLock
	var inside int32
	total := 0
	var wg sync.WaitGroup
	for g := 1; g <= 8; g++ {
		wg.Add(1)
		go func(id uint64) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				l.Acquire(id, -1)
				l.Acquire(id, -1)
				if atomic.AddInt32(&inside, 1) != 1 {
					t.Error("two holders")
				}
				total++
				atomic.AddInt32(&inside, -1)
				if l.Release(id) != nil || l.Release(id) != nil {
					t.Error("release failed")
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	if total != 8*2000 || l.Owner() != 0 {
		t.Fatalf("total %d owner %x", total, l.Owner())
	}
	if !l.Acquire(1, 100*time.Millisecond) {
		t.Fatal("lock not free at the end")
	}
}

func TestEvent(t *testing.T) {
	var e Event
	if e.IsSet() || e.Wait(0) || e.Wait(20*time.Millisecond) {
		t.Fatal("zero Event is set")
	}
	const n = 10
	results := make(chan bool, n)
	for i := 0; i < n; i++ {
		go func() { results <- e.Wait(5 * time.Second) }()
	}
	time.Sleep(30 * time.Millisecond)
	e.Set()
	for i := 0; i < n; i++ {
		if !<-results {
			t.Fatal("a waiter was not released by Set")
		}
	}
	if !e.IsSet() || !e.Wait(0) || !e.Wait(-1) {
		t.Fatal("set Event not reported set")
	}
	e.Set() // idempotent
	e.Clear()
	e.Clear()
	if e.IsSet() || e.Wait(10*time.Millisecond) {
		t.Fatal("cleared Event reported set")
	}
	if w := atomic.LoadUint32(&e.waiters); w != 0 {
		t.Fatalf("waiters = %d", w)
	}
}

// TestEventPulse: a Set immediately followed by a Clear still releases the
// waiters that were waiting at the time.
func TestEventPulse(t *testing.T) {
	var e Event
	results := make(chan bool, 4)
	for i := 0; i < 4; i++ {
		go func() { results <- e.Wait(5 * time.Second) }()
	}
	time.Sleep(30 * time.Millisecond)
	e.Set()
	e.Clear()
	for i := 0; i < 4; i++ {
		if !<-results {
			t.Fatal("waiter missed a Set/Clear pulse")
		}
	}
}
