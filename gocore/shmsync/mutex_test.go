package shmsync

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestMutexExcludes(t *testing.T) {
	var m Mutex
	var inside int32
	var total int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				m.Lock()
				if atomic.AddInt32(&inside, 1) != 1 {
					t.Error("two holders at once")
				}
				total++
				atomic.AddInt32(&inside, -1)
				m.Unlock()
			}
		}()
	}
	wg.Wait()
	if total != 8*20000 {
		t.Fatalf("total = %d", total)
	}
	if m.Holder() != 0 {
		t.Fatal("mutex still held")
	}
}

func TestMutexTimeout(t *testing.T) {
	var m Mutex
	m.Lock()
	defer m.Unlock()
	done := make(chan bool)
	go func() { done <- m.LockTimeout(30 * time.Millisecond) }()
	if <-done {
		t.Fatal("LockTimeout acquired a held mutex")
	}
	if m.TryLock() {
		t.Fatal("TryLock acquired a held mutex")
	}
}

func TestMutexTakesOverFromDeadHolder(t *testing.T) {
	// pid 0x3fffff is above any pid_max in use, so it names no live process.
	m := Mutex{state: 0x3fffff}
	start := time.Now()
	if !m.LockTimeout(2 * time.Second) {
		t.Fatal("did not take over a dead holder's lock")
	}
	if d := time.Since(start); d < deadCheckEvery/2 {
		t.Fatalf("took over after %v, before sleeping", d)
	}
	if m.Holder() != int(selfPid) {
		t.Fatalf("holder = %d, want %d", m.Holder(), selfPid)
	}
	m.Unlock()
	// LockRecover says which acquisitions were take-overs (the caller then
	// repairs what the dead holder left half-done).
	if ok, tookOver := m.LockRecover(0); !ok || tookOver {
		t.Fatalf("LockRecover of a free mutex = %v, %v; want true, false", ok, tookOver)
	}
	m.Unlock()
	m.state = 0x3fffff
	if ok, tookOver := m.LockRecover(2 * time.Second); !ok || !tookOver {
		t.Fatalf("LockRecover of a dead holder's mutex = %v, %v; want true, true", ok, tookOver)
	}
}
