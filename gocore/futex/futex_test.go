package futex

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitValueMismatchReturnsAtOnce(t *testing.T) {
	var w uint32 = 1
	start := time.Now()
	if err := Wait(&w, 0, time.Second); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Fatal("Wait slept although the word differed")
	}
}

func TestWaitTimesOut(t *testing.T) {
	var w uint32
	if err := Wait(&w, 0, 20*time.Millisecond); err != ErrTimeout {
		t.Fatalf("Wait = %v, want ErrTimeout", err)
	}
}

func TestWakeReleasesWaiter(t *testing.T) {
	var w uint32
	done := make(chan struct{})
	go func() {
		for atomic.LoadUint32(&w) == 0 {
			Wait(&w, 0, -1)
		}
		close(done)
	}()
	time.Sleep(20 * time.Millisecond)
	atomic.StoreUint32(&w, 1)
	Wake(&w, 1)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("waiter was not woken")
	}
}

func TestRemaining(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		want    func(time.Duration) bool
	}{
		{"forever", -1, func(d time.Duration) bool { return d == -1 }},
		{"zero", 0, func(d time.Duration) bool { return d == 0 }},
		{"future", time.Hour, func(d time.Duration) bool { return d > 59*time.Minute }},
	}
	for _, tc := range tests {
		if got := Remaining(Deadline(tc.timeout)); !tc.want(got) {
			t.Errorf("%s: Remaining = %v", tc.name, got)
		}
	}
}
