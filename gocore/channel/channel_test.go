package channel

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"
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

// TestLayout pins the header layout that pyext/layout.h mirrors (its
// CHAN_LAYOUT must list the same words; the extension refuses to load otherwise).
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
		t.Fatalf("Layout() = %v, want %v (then run go run ./pyext/internal/layoutgen)", got, want)
	}
}
