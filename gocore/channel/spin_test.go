package channel

import (
	"bytes"
	"testing"
	"time"
)

func TestLargeSpinFollowsTheLastMessage(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	tests := []struct {
		name string
		size int
		want time.Duration
	}{
		{"inline", 10, 0},
		{"just large", DefaultInline + 1, largeSpinMin},
		{"1 MiB", 1 << 20, 256 * time.Microsecond},
		{"16 MiB", 16 << 20, largeSpinMax},
		{"inline again", 1, 0},
	}
	for _, tc := range tests {
		msg := bytes.Repeat([]byte{7}, tc.size)
		if err := c.Send(msg, 0); err != nil {
			t.Fatalf("%s: Send: %v", tc.name, err)
		}
		got, err := c.RecvBytes(0)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: RecvBytes: %v (%d bytes)", tc.name, err, len(got))
		}
		if d := c.largeSpin(); d != tc.want {
			t.Errorf("%s: largeSpin = %v, want %v", tc.name, d, tc.want)
		}
	}
}

// A receiver spinning after a large message still honours its timeout and
// still takes a message that comes during or after the spin.
func TestRecvAfterLargeMessage(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	big := bytes.Repeat([]byte{1}, 16<<20) // the longest spin
	if err := c.Send(big, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RecvBytes(0); err != nil {
		t.Fatal(err)
	}
	// The best of three: a loaded machine can hold a thread off the CPU for
	// tens of ms once (54 ms seen with two test suites beside this one); a
	// spin that ignores the timeout overruns every time.
	best := time.Hour
	for i := 0; i < 3; i++ {
		start := time.Now()
		if _, err := c.Recv(make([]byte, DefaultInline), 100*time.Microsecond); err != ErrEmpty {
			t.Fatalf("Recv on an empty channel: %v, want ErrEmpty", err)
		}
		best = min(best, time.Since(start))
	}
	if best > 50*time.Millisecond {
		t.Errorf("a 100µs timeout took %v (best of 3)", best)
	}
	if d := c.largeSpin(); d != largeSpinMax {
		t.Fatalf("a wait cut short by its timeout forgot the stream: largeSpin = %v", d)
	}
	if _, err := c.Recv(make([]byte, DefaultInline), 10*time.Millisecond); err != ErrEmpty {
		t.Fatalf("Recv on an empty channel: %v, want ErrEmpty", err)
	}
	if d := c.largeSpin(); d != 0 {
		t.Errorf("after a whole spin found nothing, largeSpin = %v, want 0 (the stream paused)", d)
	}
	if err := c.Send(big, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RecvBytes(0); err != nil {
		t.Fatal(err)
	}
	for _, delay := range []time.Duration{0, 200 * time.Microsecond, 5 * time.Millisecond} {
		go func() {
			time.Sleep(delay)
			c.Send([]byte("next"), 0)
		}()
		got, err := c.RecvBytes(5 * time.Second)
		if err != nil || string(got) != "next" {
			t.Fatalf("after %v: %q %v", delay, got, err)
		}
	}
}

// A large send waits for an active receiver only: never for small messages,
// never while nobody takes (a queue filled for later), and once a receiver
// took a message since the last large send with paceDepth still queued.
func TestPaceLargeOnlyForAnActiveReceiver(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	big := bytes.Repeat([]byte{3}, 1<<20)
	steps := []struct {
		name string
		do   func()
		size uint64
		want bool
	}{
		{"empty channel", nil, 1 << 20, false},
		{"filled, nobody takes", func() { mustSend(t, c, big); mustSend(t, c, big); mustSend(t, c, big) }, 1 << 20, false},
		{"still nobody takes", nil, 1 << 20, false},
		{"a receiver took one, 2 queued", func() { mustRecv(t, c) }, 1 << 20, true},
		{"no take since the last send", nil, 1 << 20, false},
		{"small message after a take", func() { mustSend(t, c, big); mustRecv(t, c) }, paceMinBytes - 1, false},
		{"large after that take", nil, 1 << 20, true},
		{"a take leaving 1 queued", func() { mustRecv(t, c) }, 1 << 20, false},
		// a send that must not wait is not paced, nor does it count as the last large send
		{"non-blocking send after a take", func() {
			mustSend(t, c, big)
			mustSend(t, c, big)
			mustRecv(t, c)
			mustSend(t, c, big)
		}, 1 << 20, true},
	}
	for _, st := range steps {
		if st.do != nil {
			st.do()
		}
		if got := c.paceLarge(st.size); got != st.want {
			t.Errorf("%s (%d queued): paceLarge = %v, want %v", st.name, c.Len(), got, st.want)
		}
	}
}

// A paced sender goes on once the receiver brings the queue below paceDepth,
// and every message of a paced stream arrives, in order.
func TestPacedStreamDeliversEverything(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	const n = 40
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := c.Send(bytes.Repeat([]byte{byte(i)}, 512<<10), -1); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < n; i++ {
		got, err := c.RecvBytes(-1)
		if err != nil || len(got) != 512<<10 || got[0] != byte(i) || got[len(got)-1] != byte(i) {
			t.Fatalf("message %d: %v (%d bytes)", i, err, len(got))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func mustSend(t *testing.T, c *Channel, msg []byte) {
	t.Helper()
	if err := c.Send(msg, 0); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

func mustRecv(t *testing.T, c *Channel) {
	t.Helper()
	if _, err := c.RecvBytes(0); err != nil {
		t.Fatalf("RecvBytes: %v", err)
	}
}
