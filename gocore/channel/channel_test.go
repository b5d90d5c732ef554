package channel

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

const testHeapSize = 256 << 20

// payload returns the deterministic message n of producer id: a 12-byte
// (id, seq) prefix followed by bytes derived from both.
func payload(id uint32, seq uint64, n int) []byte {
	if n < 12 {
		n = 12
	}
	b := make([]byte, n)
	le.PutUint32(b[0:4], id)
	le.PutUint64(b[4:12], seq)
	for j := 12; j < n; j++ {
		b[j] = byte(uint64(id)*31 + seq*7 + uint64(j))
	}
	return b
}

// checkPayload verifies a message made by payload and returns (id, seq).
func checkPayload(b []byte) (uint32, uint64, error) {
	if len(b) < 12 {
		return 0, 0, fmt.Errorf("message of %d bytes", len(b))
	}
	id, seq := le.Uint32(b[0:4]), le.Uint64(b[4:12])
	for j := 12; j < len(b); j++ {
		if b[j] != byte(uint64(id)*31+seq*7+uint64(j)) {
			return id, seq, fmt.Errorf("producer %d seq %d: byte %d corrupt", id, seq, j)
		}
	}
	return id, seq, nil
}

// msgLen is the length of message seq in the MPMC tests: mostly inline of
// varying size, every 97th large.
func msgLen(seq uint64, inline int) int {
	if seq%97 == 0 {
		return inline + 1 + int(seq%5000)
	}
	return 12 + int(seq*7)%(inline-12+1)
}

func mustCreate(t testing.TB, hp Heap, o Options) *Channel {
	t.Helper()
	c, err := CreateOptions(hp, o)
	if err != nil {
		t.Fatalf("Create(%+v): %v", o, err)
	}
	return c
}

func TestHeaderLayout(t *testing.T) {
	var h header
	tests := []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(h), headerSize},
		{"mu", unsafe.Offsetof(h.mu), 12},
		{"capacity", unsafe.Offsetof(h.capacity), 16},
		{"count", unsafe.Offsetof(h.count), 24},
		{"inline", unsafe.Offsetof(h.inline), 32},
		{"closed", unsafe.Offsetof(h.closed), 44},
		{"neSeq", unsafe.Offsetof(h.neSeq), 48},
		{"nfWaiters", unsafe.Offsetof(h.nfWaiters), 60},
		{"refs", unsafe.Offsetof(h.refs), 64},
		{"head", unsafe.Offsetof(h.head), 72},
		{"tailIdx", unsafe.Offsetof(h.tailIdx), 96},
		{"spare", unsafe.Offsetof(h.spare), 104},
		{"chunks", unsafe.Offsetof(h.chunks), 112},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s at %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestCreateParameters(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	tests := []struct {
		o                    Options
		inline, slots, slotB uint64
	}{
		{Options{}, DefaultInline, (64<<10 - 64) / 320, 320},
		{Options{Inline: 1}, 1, (64<<10 - 64) / 64, 64},
		{Options{Inline: 48}, 48, (64<<10 - 64) / 64, 64},
		{Options{Inline: 49}, 49, (64<<10 - 64) / 128, 128},
		{Options{Capacity: 1}, DefaultInline, 1, 320},
		{Options{Capacity: 10, ChunkSlots: 3}, DefaultInline, 3, 320},
		{Options{Inline: 1 << 20}, 1 << 20, minChunkSlots, 1<<20 + 64},
	}
	for _, tc := range tests {
		c := mustCreate(t, hp, tc.o)
		if uint64(c.Inline()) != tc.inline || c.slots != tc.slots || c.slotSize != tc.slotB || c.Cap() != tc.o.Capacity {
			t.Errorf("%+v: inline %d slots %d slot %d cap %d", tc.o, c.Inline(), c.slots, c.slotSize, c.Cap())
		}
		if d, err := c.Release(); !d || err != nil {
			t.Fatalf("Release: %v %v", d, err)
		}
	}
	if _, err := Create(hp, 0, MaxInline+1); err != ErrInvalid {
		t.Fatalf("huge inline: %v", err)
	}
	if u, n := hp.Used(); u != 0 || n != 0 {
		t.Fatalf("leak: %d bytes in %d blocks", u, n)
	}
}

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

// A handle stops working when its channel's memory holds another channel
// (another tag), and Attach names the tag it expects.
func TestTagTellsReusesApart(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{Inline: 32, Tag: 7})
	off := c.Offset()
	if _, err := Attach(hp, off, 8); err != ErrBadHandle {
		t.Fatalf("Attach with another tag = %v", err)
	}
	stale, err := Attach(hp, off, 7)
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Retain(); err != nil {
		t.Fatal(err)
	}
	// Over-release: both references dropped through c; stale still thinks it holds one.
	for i := 0; i < 2; i++ {
		if _, err := c.Release(); err != nil {
			t.Fatal(err)
		}
	}
	cur := mustCreate(t, hp, Options{Inline: 32, Tag: 9})
	if cur.Offset() != off {
		t.Fatalf("new channel at %#x, old at %#x: not a reuse", cur.Offset(), off)
	}
	for name, err := range map[string]error{
		"Send":  stale.Send([]byte("x"), 0),
		"Recv":  func() error { _, err := stale.RecvBytes(0); return err }(),
		"Close": stale.Close(),
	} {
		if err != ErrBadHandle {
			t.Errorf("%s on a stale handle = %v, want ErrBadHandle", name, err)
		}
	}
	if !stale.WaitReady(WaitMessage, 0) {
		t.Error("a stale handle waits: it must say ready (the caller then gets ErrBadHandle)")
	}
	if err := cur.Send([]byte("y"), 0); err != nil || cur.Len() != 1 {
		t.Fatalf("new channel: %v, %d queued (the stale handle must not have touched it)", err, cur.Len())
	}
}

func TestReleaseDestroys(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	c := mustCreate(t, hp, Options{Inline: 32, ChunkSlots: 2})
	off := c.Offset()
	other, err := Attach(hp, off, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Retain(); err != nil || c.Refs() != 2 {
		t.Fatalf("Retain: %v refs %d", err, c.Refs())
	}
	for i := uint64(0); i < 9; i++ { // several chunks, some large payloads
		if err := c.Send(payload(0, i, 10+int(i)*10), 0); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := c.Release(); d || err != nil {
		t.Fatalf("first Release: destroyed %v err %v", d, err)
	}
	if b, err := other.RecvBytes(0); err != nil || len(b) != 12 {
		t.Fatalf("channel unusable after a non-final Release: %v", err)
	}
	if d, err := other.Release(); !d || err != nil {
		t.Fatalf("last Release: destroyed %v err %v", d, err)
	}
	if u, n := hp.Used(); u != 0 || n != 0 {
		t.Fatalf("after destroy: %d bytes in %d blocks still allocated", u, n)
	}
	if _, err := Attach(hp, off, 0); err != ErrBadHandle {
		t.Fatalf("Attach after destroy = %v", err)
	}
	if err := other.Send([]byte("x"), 0); err != ErrBadHandle {
		t.Fatalf("Send on destroyed handle = %v", err)
	}
	if _, err := other.RecvBytes(0); err != ErrBadHandle {
		t.Fatalf("Recv on destroyed handle = %v", err)
	}
	if _, err := other.Release(); err != ErrBadHandle {
		t.Fatalf("second last Release = %v", err)
	}
	if err := other.Retain(); err != ErrBadHandle {
		t.Fatalf("Retain on destroyed = %v", err)
	}
	if !other.Closed() || other.Len() != 0 {
		t.Fatal("destroyed channel reports open or non-empty")
	}
}

func TestAttachBadHandles(t *testing.T) {
	hp := newShmHeap(t, 1<<20, true)
	c := mustCreate(t, hp, Options{})
	defer c.Release()
	junk, _ := hp.Alloc(4096)
	rand.New(rand.NewSource(3)).Read(hp.Bytes(junk, 4096))
	zero, _ := hp.Alloc(256)
	clear(hp.Bytes(zero, 256))
	dead := mustCreate(t, hp, Options{})
	deadOff := dead.Offset()
	dead.Release()
	tests := []struct {
		name string
		off  uint64
	}{
		{"zero", 0},
		{"misaligned", c.Offset() + 4},
		{"inside header", c.Offset() + 8},
		{"random bytes", junk},
		{"zeroed block", zero},
		{"destroyed", deadOff},
		{"metadata", 64},
		{"just below end", hp.Size() - 64},
		{"end", hp.Size()},
		{"far", 1 << 40},
		{"node bits", 1<<48 | c.Offset()},
		{"all ones", ^uint64(0) &^ 7},
	}
	for _, tc := range tests {
		for _, h := range []Heap{hp, noSize{hp}} {
			if got, err := Attach(h, tc.off, 0); err != ErrBadHandle || got != nil {
				t.Errorf("%s (%T): Attach(%#x) = %v, %v", tc.name, h, tc.off, got, err)
			}
		}
	}
	if got, err := Attach(noSize{hp}, c.Offset(), 0); err != nil || got.Cap() != 0 {
		t.Fatalf("good handle: %v", err)
	}
}

func TestAttachSharesState(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	a := mustCreate(t, hp, Options{Capacity: 5, Inline: 100})
	defer a.Release()
	b, err := Attach(hp, a.Offset(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Cap() != 5 || b.Inline() != 100 || b.Offset() != a.Offset() {
		t.Fatalf("attached: cap %d inline %d", b.Cap(), b.Inline())
	}
	a.Send([]byte("hello"), 0)
	if b.Len() != 1 {
		t.Fatal("Len not shared")
	}
	if got, err := b.RecvBytes(0); err != nil || string(got) != "hello" {
		t.Fatalf("got %q %v", got, err)
	}
	b.Close()
	if !a.Closed() {
		t.Fatal("Close not shared")
	}
}

func TestAllocErrorsPassThrough(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	errShm := errors.New("shm full: fix it")
	tests := []struct {
		name   string
		allocs int64 // successful Allocs before failures
		run    func(Heap) error
	}{
		{"create header", 0, func(h Heap) error { _, err := Create(h, 0, 0); return err }},
		{"create chunk", 1, func(h Heap) error { _, err := Create(h, 0, 0); return err }},
		{"large payload", 2, func(h Heap) error {
			c, _ := Create(h, 0, 64)
			defer c.Release()
			err := c.Send(make([]byte, 65), 0)
			if c.Len() != 0 {
				return errors.New("message queued")
			}
			return err
		}},
		{"new chunk", 2, func(h Heap) error {
			c, _ := CreateOptions(h, Options{Inline: 8, ChunkSlots: 2})
			defer c.Release()
			for i := 0; ; i++ {
				if err := c.Send([]byte("abc"), 0); err != nil {
					if i != 2 || c.Len() != 2 {
						return fmt.Errorf("failed at message %d, Len %d", i, c.Len())
					}
					return err
				}
			}
		}},
	}
	for _, tc := range tests {
		f := &failHeap{shmHeap: hp, err: errShm}
		f.n.Store(tc.allocs)
		if err := tc.run(f); err != errShm {
			t.Errorf("%s: err = %v, want the heap's error", tc.name, err)
		}
		if u, n := hp.Used(); u != 0 || n != 0 {
			t.Errorf("%s: leaked %d bytes in %d blocks", tc.name, u, n)
		}
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

func TestAllocMessageSendBlock(t *testing.T) {
	hp := newShmHeap(t, 64<<20, true)
	c := mustCreate(t, hp, Options{Capacity: 1, Inline: 64})
	// only large messages go through a caller-filled block
	if _, err := c.AllocMessage(64, -1); err != ErrInvalid {
		t.Fatalf("AllocMessage(inline size) = %v, want ErrInvalid", err)
	}
	fill := func(n uint64, seed byte) uint64 {
		off, err := c.AllocMessage(n, -1)
		if err != nil {
			t.Fatal(err)
		}
		b := hp.Bytes(off, n)
		for i := range b {
			b[i] = seed + byte(i)
		}
		return off
	}
	off1 := fill(1000, 1)
	if err := c.SendBlock(off1, 1000, 0); err != nil {
		t.Fatal(err)
	}
	// full: the block stays the caller's, and can be sent again later
	off2 := fill(300000, 2)
	if err := c.SendBlock(off2, 300000, 10*time.Millisecond); err != ErrFull {
		t.Fatalf("SendBlock on a full channel = %v, want ErrFull", err)
	}
	if err := c.SendBlock(off2, 64, 0); err != ErrInvalid {
		t.Fatalf("SendBlock(inline size) = %v, want ErrInvalid", err)
	}
	for i, want := range []struct {
		n    uint64
		seed byte
	}{{1000, 1}, {300000, 2}} {
		got, err := c.RecvBytes(0)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(got)) != want.n {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got), want.n)
		}
		for j := range got {
			if got[j] != want.seed+byte(j) {
				t.Fatalf("message %d: byte %d corrupt", i, j)
			}
		}
		if i == 0 {
			if err := c.SendBlock(off2, 300000, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	// closed: AllocMessage refuses, SendBlock leaves the block to the caller
	off3 := fill(5000, 3)
	c.Close()
	if _, err := c.AllocMessage(5000, -1); err != ErrClosed {
		t.Fatalf("AllocMessage on a closed channel = %v", err)
	}
	if err := c.SendBlock(off3, 5000, 0); err != ErrClosed {
		t.Fatalf("SendBlock on a closed channel = %v", err)
	}
	if err := c.ReleaseMessage(Message{Len: 5000, Large: true, Off: off3}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if u, n := hp.Used(); u != 0 || n != 0 {
		t.Fatalf("leaked %d bytes in %d blocks", u, n)
	}
}

// TestLayout pins the header layout that pyext/fastpath.c mirrors (its
// CHAN_LAYOUT must list the same words; it refuses its fast path otherwise).
func TestLayout(t *testing.T) {
	want := [LayoutWords]uint64{
		LayoutHeaderSize: 128, LayoutChunkHeader: 64, LayoutSlotHeader: 16, LayoutFlagLarge: 1,
		LayoutMagic: 0x314e4148435f4d44, LayoutVersion: 1,
		LayoutOffMagic: 0, LayoutOffVersion: 8, LayoutOffMu: 12, LayoutOffCapacity: 16,
		LayoutOffCount: 24, LayoutOffInline: 32, LayoutOffSlotSize: 36, LayoutOffChunkSlots: 40,
		LayoutOffClosed: 44, LayoutOffNeSeq: 48, LayoutOffNeWaiters: 52, LayoutOffNfSeq: 56,
		LayoutOffNfWaiters: 60, LayoutOffHead: 72, LayoutOffHeadIdx: 80, LayoutOffTail: 88,
		LayoutOffTailIdx: 96, LayoutOffSpare: 104, LayoutMutexContended: 1 << 31, LayoutOffTag: 120,
	}
	if got := Layout(); got != want {
		t.Fatalf("Layout() = %v, want %v (update pyext/fastpath.c too)", got, want)
	}
}

// holderLog is a Holder that records what the channel told it, and whether
// the channel lock was held at the time.
type holderLog struct {
	c      *Channel
	events []string
}

func (l *holderLog) note(what string) {
	locked := atomic.LoadUint32((*uint32)(unsafe.Pointer(&l.c.h.mu))) != 0
	l.events = append(l.events, fmt.Sprintf("%s locked=%v", what, locked))
}
func (l *holderLog) Hold(off, n uint64) { l.note(fmt.Sprintf("hold %d", n)) }
func (l *holderLog) Clear()             { l.note("clear") }

func TestHolderCalledUnderTheLock(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	big := make([]byte, 1000)
	tests := []struct {
		name string
		run  func(c *Channel, h Holder) error
		want []string
	}{
		{"RecvHeld large", func(c *Channel, h Holder) error {
			if err := c.Send(big, 0); err != nil {
				return err
			}
			m, err := c.RecvHeld(make([]byte, 300), 0, h)
			if err == nil {
				err = c.ReleaseMessage(m)
			}
			return err
		}, []string{"hold 1000 locked=true"}},
		{"RecvHeld inline: nothing held", func(c *Channel, h Holder) error {
			if err := c.Send([]byte("x"), 0); err != nil {
				return err
			}
			_, err := c.RecvHeld(make([]byte, 300), 0, h)
			return err
		}, nil},
		{"SendBlockHeld", func(c *Channel, h Holder) error {
			off, err := c.AllocMessage(1000, 0)
			if err != nil {
				return err
			}
			if err := c.SendBlockHeld(off, 1000, 0, h); err != nil {
				return err
			}
			m, err := c.Recv(make([]byte, 300), 0)
			if err == nil {
				err = c.ReleaseMessage(m)
			}
			return err
		}, []string{"clear locked=true"}},
		{"SendPartsHeld", func(c *Channel, h Holder) error {
			if err := c.SendPartsHeld(0, h, big[:500], big[500:]); err != nil {
				return err
			}
			m, err := c.Recv(make([]byte, 300), 0)
			if err == nil {
				err = c.ReleaseMessage(m)
			}
			return err
		}, []string{"hold 1000 locked=false", "clear locked=true"}},
		{"SendPartsHeld to a full channel: cleared, then freed", func(c *Channel, h Holder) error {
			if err := c.Send([]byte("fills capacity 1"), 0); err != nil {
				return err
			}
			if err := c.SendPartsHeld(time.Millisecond, h, big); err != ErrFull {
				return fmt.Errorf("err %v, want ErrFull", err)
			}
			_, err := c.Recv(make([]byte, 300), 0)
			return err
		}, []string{"hold 1000 locked=false", "clear locked=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCreate(t, hp, Options{Capacity: 1})
			l := &holderLog{c: c}
			if err := tt.run(c, l); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(l.events) != fmt.Sprint(tt.want) {
				t.Fatalf("events %q, want %q", l.events, tt.want)
			}
			if d, err := c.Release(); !d || err != nil {
				t.Fatalf("Release: %v %v", d, err)
			}
			if u, n := hp.Used(); u != 0 || n != 0 {
				t.Fatalf("leak: %d bytes in %d blocks", u, n)
			}
		})
	}
}
