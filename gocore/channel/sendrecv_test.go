package channel

import (
	"bytes"
	"fmt"
	"hash/crc32"
	"math/rand"
	"sync"
	"testing"
	"time"
)

func TestFIFO(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	tests := []Options{
		{},
		{Capacity: 1000},
		{Inline: 16, ChunkSlots: 5},
		{Capacity: 2000, Inline: 100, ChunkSlots: 1},
	}
	for _, o := range tests {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			c := mustCreate(t, hp, o)
			defer c.Release()
			const n = 1000
			for i := uint64(0); i < n; i++ {
				if err := c.Send(payload(1, i, int(i%300)), 0); err != nil {
					t.Fatalf("Send %d: %v", i, err)
				}
			}
			if c.Len() != n {
				t.Fatalf("Len = %d", c.Len())
			}
			for i := uint64(0); i < n; i++ {
				b, err := c.RecvBytes(0)
				if err != nil {
					t.Fatalf("Recv %d: %v", i, err)
				}
				id, seq, err := checkPayload(b)
				if err != nil || id != 1 || seq != i || len(b) != max(12, int(i%300)) {
					t.Fatalf("message %d: id %d seq %d len %d err %v", i, id, seq, len(b), err)
				}
			}
			if _, err := c.RecvBytes(0); err != ErrEmpty {
				t.Fatalf("Recv on empty = %v", err)
			}
		})
	}
}

func TestBoundedFull(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{Capacity: 3, Inline: 64})
	defer c.Release()
	for i := 0; i < 3; i++ {
		if err := c.Send([]byte{byte(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	base, _ := hp.Used()
	tests := []struct {
		name    string
		msg     []byte
		timeout time.Duration
	}{
		{"try inline", []byte("x"), 0},
		{"try large", make([]byte, 1000), 0},
		{"timeout inline", []byte("x"), 30 * time.Millisecond},
		{"timeout large", make([]byte, 1000), 30 * time.Millisecond},
		{"timeout >100ms", []byte("x"), 130 * time.Millisecond},
	}
	for _, tc := range tests {
		start := time.Now()
		if err := c.Send(tc.msg, tc.timeout); err != ErrFull {
			t.Fatalf("%s: Send = %v, want ErrFull", tc.name, err)
		}
		if el := time.Since(start); el < tc.timeout || el > tc.timeout+time.Second {
			t.Fatalf("%s: returned after %v", tc.name, el)
		}
		if u, _ := hp.Used(); u != base {
			t.Fatalf("%s: heap use %d, want %d (large block leaked)", tc.name, u, base)
		}
	}
	if c.Len() != 3 || c.Cap() != 3 {
		t.Fatalf("Len %d Cap %d", c.Len(), c.Cap())
	}
	// A blocked sender proceeds when a receiver makes room.
	done := make(chan error)
	go func() { done <- c.Send([]byte{3}, 5*time.Second) }()
	time.Sleep(20 * time.Millisecond)
	buf := make([]byte, 64)
	for want := byte(0); want < 4; want++ {
		m, err := c.Recv(buf, time.Second)
		if err != nil || m.Len != 1 || buf[0] != want {
			t.Fatalf("Recv: %v len %d byte %d, want %d", err, m.Len, buf[0], want)
		}
		if want == 0 {
			if err := <-done; err != nil {
				t.Fatalf("blocked Send: %v", err)
			}
		}
	}
}

func TestEmptyTimeout(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	buf := make([]byte, c.Inline())
	for _, d := range []time.Duration{0, 30 * time.Millisecond, 130 * time.Millisecond} {
		start := time.Now()
		if _, err := c.Recv(buf, d); err != ErrEmpty {
			t.Fatalf("Recv(%v) = %v", d, err)
		}
		if el := time.Since(start); el < d || el > d+time.Second {
			t.Fatalf("Recv(%v) returned after %v", d, el)
		}
	}
	// A blocked receiver is woken by a send.
	got := make(chan []byte)
	go func() {
		b, err := c.RecvBytes(-1)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	time.Sleep(30 * time.Millisecond)
	if err := c.Send([]byte("wake"), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-got:
		if string(b) != "wake" {
			t.Fatalf("got %q", b)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("receiver not woken")
	}
}

func TestMessageSizes(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	for _, inline := range []int{DefaultInline, 64, 1000} {
		c := mustCreate(t, hp, Options{Inline: uint32(inline)})
		base, _ := hp.Used()
		sizes := []int{0, 1, inline - 1, inline, inline + 1, 2*inline + 3, 3 << 20, 8<<20 + 5}
		rng := rand.New(rand.NewSource(int64(inline)))
		for _, n := range sizes {
			msg := make([]byte, n)
			rng.Read(msg)
			sum := crc32.ChecksumIEEE(msg)
			for _, viaBytes := range []bool{false, true} {
				if err := c.Send(msg, 0); err != nil {
					t.Fatalf("inline %d: Send(%d): %v", inline, n, err)
				}
				var got []byte
				if viaBytes {
					var err error
					if got, err = c.RecvBytes(0); err != nil {
						t.Fatalf("inline %d: RecvBytes(%d): %v", inline, n, err)
					}
				} else {
					buf := make([]byte, inline)
					m, err := c.Recv(buf, 0)
					if err != nil || m.Len != uint64(n) || m.Large != (n > inline) {
						t.Fatalf("inline %d: Recv(%d): %v %+v", inline, n, err, m)
					}
					if m.Large {
						got = append([]byte(nil), hp.Bytes(m.Off, m.Len)...)
						if err := c.ReleaseMessage(m); err != nil {
							t.Fatal(err)
						}
					} else {
						got = buf[:m.Len]
					}
				}
				if len(got) != n || crc32.ChecksumIEEE(got) != sum {
					t.Fatalf("inline %d size %d: got %d bytes, checksum mismatch", inline, n, len(got))
				}
			}
		}
		if u, _ := hp.Used(); u != base {
			t.Fatalf("inline %d: heap use %d after, %d before", inline, u, base)
		}
		c.Release()
	}
	if u, n := hp.Used(); u != 0 || n != 0 {
		t.Fatalf("leak: %d bytes in %d blocks", u, n)
	}
}

type mpmcResult struct {
	count uint64
	sum   uint64
}

func TestMPMC(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	tests := []Options{
		{},
		{Capacity: 16},
		{Capacity: 100, Inline: 64, ChunkSlots: 8},
	}
	const producers, consumers, perProducer = 4, 4, 5000
	for _, o := range tests {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			base, _ := hp.Used()
			c := mustCreate(t, hp, o)
			inline := int(c.Inline())
			var sendSum, recvSum, recvCount uint64
			var mu sync.Mutex
			var pwg, cwg sync.WaitGroup
			for p := 0; p < producers; p++ {
				pwg.Add(1)
				go func(id uint32) {
					defer pwg.Done()
					var sum uint64
					for seq := uint64(0); seq < perProducer; seq++ {
						msg := payload(id, seq, msgLen(seq, inline))
						sum += uint64(crc32.ChecksumIEEE(msg))
						if err := c.Send(msg, 10*time.Second); err != nil {
							t.Errorf("producer %d: Send: %v", id, err)
							return
						}
					}
					mu.Lock()
					sendSum += sum
					mu.Unlock()
				}(uint32(p))
			}
			for k := 0; k < consumers; k++ {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					next := make([]uint64, producers) // per producer: seq > last seen
					var r mpmcResult
					buf := make([]byte, inline)
					for {
						m, err := c.Recv(buf, 10*time.Second)
						if err == ErrClosed {
							break
						}
						if err != nil {
							t.Errorf("consumer: Recv: %v", err)
							return
						}
						var b []byte
						if m.Large {
							b = hp.Bytes(m.Off, m.Len)
						} else {
							b = buf[:m.Len]
						}
						id, seq, err := checkPayload(b)
						if err != nil || id >= producers || seq < next[id] {
							t.Errorf("consumer: id %d seq %d (next %v): %v", id, seq, next, err)
							return
						}
						next[id] = seq + 1
						r.sum += uint64(crc32.ChecksumIEEE(b))
						r.count++
						if err := c.ReleaseMessage(m); err != nil {
							t.Error(err)
						}
					}
					mu.Lock()
					recvSum += r.sum
					recvCount += r.count
					mu.Unlock()
				}()
			}
			pwg.Wait()
			c.Close()
			cwg.Wait()
			if recvCount != producers*perProducer || recvSum != sendSum {
				t.Fatalf("received %d messages (want %d), checksum %d vs %d",
					recvCount, producers*perProducer, recvSum, sendSum)
			}
			if nw, fw := c.h.neWaiters, c.h.nfWaiters; nw != 0 || fw != 0 {
				t.Fatalf("waiters left: %d %d", nw, fw)
			}
			c.Release()
			if u, _ := hp.Used(); u != base {
				t.Fatalf("heap use %d, want %d", u, base)
			}
		})
	}
}

func TestClose(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{Capacity: 4, Inline: 16})
	defer c.Release()
	for i := 0; i < 3; i++ {
		if err := c.Send([]byte{byte(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(make([]byte, 100), 0); err != nil { // a large one at the end
		t.Fatal(err)
	}
	// A sender blocked on the full channel is released by Close.
	blocked := make(chan error)
	go func() { blocked <- c.Send([]byte("late"), -1) }()
	time.Sleep(30 * time.Millisecond)
	base, _ := hp.Used()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; err != ErrClosed {
		t.Fatalf("blocked Send after Close = %v", err)
	}
	if !c.Closed() {
		t.Fatal("Closed() = false")
	}
	c.Close() // idempotent
	for _, msg := range [][]byte{{}, []byte("x"), make([]byte, 1000)} {
		if err := c.Send(msg, -1); err != ErrClosed {
			t.Fatalf("Send(%d bytes) after Close = %v", len(msg), err)
		}
	}
	if u, _ := hp.Used(); u != base {
		t.Fatalf("Send after Close leaked: %d vs %d", u, base)
	}
	for i := 0; i < 4; i++ {
		b, err := c.RecvBytes(-1)
		if err != nil {
			t.Fatalf("draining %d: %v", i, err)
		}
		if (i < 3 && !bytes.Equal(b, []byte{byte(i)})) || (i == 3 && len(b) != 100) {
			t.Fatalf("drained %d: %v", i, b)
		}
	}
	for _, d := range []time.Duration{0, -1} {
		if _, err := c.RecvBytes(d); err != ErrClosed {
			t.Fatalf("Recv(%v) after drain = %v", d, err)
		}
	}
	// A receiver blocked on an empty channel is released by Close.
	c2 := mustCreate(t, hp, Options{})
	defer c2.Release()
	waiting := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() { _, err := c2.RecvBytes(-1); waiting <- err }()
	}
	time.Sleep(30 * time.Millisecond)
	c2.Close()
	for i := 0; i < 3; i++ {
		select {
		case err := <-waiting:
			if err != ErrClosed {
				t.Fatalf("blocked Recv after Close = %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("blocked receiver not woken by Close")
		}
	}
}

func TestShortBufferKeepsMessage(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	msg := payload(5, 9, 200)
	c.Send(msg, 0)
	c.Send([]byte("next"), 0)
	for _, n := range []int{0, 10, 199} {
		m, err := c.Recv(make([]byte, n), 0)
		if err != ErrShortBuffer || m.Len != 200 || c.Len() != 2 {
			t.Fatalf("Recv(%d-byte buffer) = %+v %v, Len %d", n, m, err, c.Len())
		}
	}
	buf := make([]byte, 200)
	if m, err := c.Recv(buf, 0); err != nil || !bytes.Equal(buf[:m.Len], msg) {
		t.Fatalf("Recv = %+v %v", m, err)
	}
	if b, err := c.RecvBytes(0); err != nil || string(b) != "next" {
		t.Fatalf("second message %q %v", b, err)
	}
}

func TestSendPartsGathers(t *testing.T) {
	tests := []struct {
		name  string
		parts [][]byte
	}{
		{"none", nil},
		{"one empty", [][]byte{{}}},
		{"small parts", [][]byte{[]byte("ab"), []byte("c"), []byte("def")}},
		{"large parts", [][]byte{[]byte("hdr"), bytes.Repeat([]byte{7}, 300000), []byte(".")}},
	}
	h := newShmHeap(t, 64<<20, true)
	c, err := Create(h, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		if err := c.SendParts(0, tc.parts...); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := c.RecvBytes(0)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := bytes.Join(tc.parts, nil); !bytes.Equal(got, want) {
			t.Fatalf("%s: got %d bytes, want %d", tc.name, len(got), len(want))
		}
	}
}
