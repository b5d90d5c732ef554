package channel

import (
	"fmt"
	"math/rand"
	"testing"
)

// TestWraparound pushes and pops 100k messages in random batches through
// channels with tiny chunks.
func TestWraparound(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	tests := []Options{
		{Capacity: 7, Inline: 32, ChunkSlots: 4},
		{Capacity: 1, Inline: 32},
		{Inline: 32, ChunkSlots: 4},
		{Inline: 32, ChunkSlots: 1},
	}
	for _, o := range tests {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			base, _ := hp.Used()
			c := mustCreate(t, hp, o)
			rng := rand.New(rand.NewSource(1))
			const total = 100000
			var sent, recvd uint64
			buf := make([]byte, 32)
			maxChunks := uint64(0)
			for recvd < total {
				for k := rng.Intn(12); k > 0 && sent < total; k-- {
					msg := payload(0, sent, 12+int(sent%40)) // some large (> 32)
					err := c.Send(msg, 0)
					if err == ErrFull {
						if o.Capacity == 0 || c.Len() != o.Capacity {
							t.Fatalf("ErrFull with Len %d", c.Len())
						}
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					sent++
				}
				maxChunks = max(maxChunks, c.h.chunks)
				for k := rng.Intn(12); k > 0 && recvd < sent; k-- {
					m, err := c.Recv(buf, 0)
					if err != nil {
						t.Fatalf("Recv: %v", err)
					}
					var b []byte
					if m.Large {
						b = append(b, hp.Bytes(m.Off, m.Len)...)
						c.ReleaseMessage(m)
					} else {
						b = buf[:m.Len]
					}
					if _, seq, err := checkPayload(b); err != nil || seq != recvd {
						t.Fatalf("got seq %d want %d: %v", seq, recvd, err)
					}
					recvd++
				}
			}
			if o.Capacity != 0 {
				if limit := (o.Capacity+c.slots-1)/c.slots + 2; maxChunks > limit {
					t.Fatalf("bounded channel used %d chunks, limit %d", maxChunks, limit)
				}
			}
			if c.h.chunks != 1 {
				t.Fatalf("idle channel owns %d chunks", c.h.chunks)
			}
			c.Release()
			if u, _ := hp.Used(); u != base {
				t.Fatalf("heap use %d, want %d", u, base)
			}
		})
	}
}

func TestUnboundedGrowsAndShrinks(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	baseBytes, baseBlocks := hp.Used()
	const n = 12000
	for i := uint64(0); i < n; i++ {
		size := 40
		if i%1000 == 0 {
			size = 5000 // some large ones
		}
		if err := c.Send(payload(2, i, size), 0); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if c.Len() != n {
		t.Fatalf("Len = %d", c.Len())
	}
	if want := uint64(n)/c.slots + 1; c.h.chunks < want {
		t.Fatalf("chunks = %d, want >= %d", c.h.chunks, want)
	}
	grown, _ := hp.Used()
	t.Logf("%d queued: %d chunks, heap %d -> %d bytes", n, c.h.chunks, baseBytes, grown)
	for i := uint64(0); i < n; i++ {
		b, err := c.RecvBytes(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, seq, err := checkPayload(b); err != nil || seq != i {
			t.Fatalf("seq %d want %d: %v", seq, i, err)
		}
	}
	if u, blocks := hp.Used(); u != baseBytes || blocks != baseBlocks || c.h.chunks != 1 {
		t.Fatalf("after drain: %d bytes in %d blocks, %d chunks; baseline %d bytes in %d blocks",
			u, blocks, c.h.chunks, baseBytes, baseBlocks)
	}
}
