package channel

import (
	"errors"
	"fmt"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// deadPid returns the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) uint32 {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return uint32(cmd.Process.Pid)
}

// A process killed inside the channel's critical section leaves the header
// half-updated and the mutex held by a dead pid. The next locker takes the
// mutex over and must repair the header: no message lost, none invented.
func TestTakeoverRepairsTheHeader(t *testing.T) {
	tests := []struct {
		name string
		// die runs with the mutex held, as the dead process did, and returns the
		// messages a receiver must still get, in order.
		die func(c *Channel, sent []string) []string
	}{
		{"sender killed after its slot, before count", func(c *Channel, sent []string) []string {
			msg := []byte("written by the dead sender")
			if err := c.putLocked(msg, uint64(len(msg)), 0, false); err != nil {
				t.Fatal(err)
			}
			atomic.AddUint64(&c.h.count, ^uint64(0)) // its count++ never ran
			return append(sent, string(msg))
		}},
		{"receiver killed after headIdx, before count", func(c *Channel, sent []string) []string {
			c.h.headIdx++ // it took the first message and died
			return sent[1:]
		}},
		{"receiver killed after the last slot of a chunk, before retiring it", func(c *Channel, sent []string) []string {
			// tiny chunks: drain the head chunk as takeLocked would, but stop
			// before retiring it
			for c.h.headIdx < c.slots {
				c.h.headIdx++
				atomic.AddUint64(&c.h.count, ^uint64(0))
				sent = sent[1:]
			}
			return sent
		}},
		{"nothing half-done", func(c *Channel, sent []string) []string { return sent }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCreate(t, newShmHeap(t, testHeapSize, true), Options{Inline: 64, ChunkSlots: 4})
			var sent []string
			for i := 0; i < 6; i++ {
				m := fmt.Sprintf("message %d", i)
				if err := c.Send([]byte(m), 0); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, m)
			}
			c.h.mu.Lock()
			want := tt.die(c, sent)
			// The mutex is left held by a process that no longer exists.
			atomic.StoreUint32((*uint32)(unsafe.Pointer(&c.h.mu)), deadPid(t))
			var got []string
			for {
				b, err := c.RecvBytes(300 * time.Millisecond)
				if errors.Is(err, ErrEmpty) {
					break
				}
				if err != nil {
					t.Fatalf("after %q: %v", got, err)
				}
				got = append(got, string(b))
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("received %q, want %q", got, want)
			}
			if n := c.Len(); n != 0 {
				t.Fatalf("Len %d after draining", n)
			}
			if err := c.Send([]byte("after"), 0); err != nil { // still usable
				t.Fatal(err)
			}
			if b, err := c.RecvBytes(0); err != nil || string(b) != "after" {
				t.Fatalf("RecvBytes = %q, %v", b, err)
			}
		})
	}
}
