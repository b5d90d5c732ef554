package channel

import (
	"encoding/binary"
	"errors"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
	"github.com/dragon-mp/dragon_mp/gocore/pool"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// Heap is the shared-memory allocator a channel lives in (a pool). Offsets
// are the same in every process that maps it.
//
// Alloc returns a block of at least size bytes, 64-byte aligned, whose
// content is undefined; Free takes the size that was passed to Alloc; Bytes
// returns the n bytes at off in this process's mapping. A Heap must never
// call back into a channel (lock order: channel mutex → heap).
//
// If the Heap also has a method Size() uint64 (the mapped length), Attach
// uses it to reject out-of-range offsets without touching memory.
type Heap interface {
	Alloc(size uint64) (off uint64, err error)
	Free(off, size uint64) error
	Bytes(off, n uint64) []byte
}

// Errors returned by channel operations.
var (
	ErrFull        = errors.New("channel: full")
	ErrEmpty       = errors.New("channel: empty")
	ErrClosed      = errors.New("channel: closed")
	ErrBadHandle   = errors.New("channel: bad handle")
	ErrShortBuffer = errors.New("channel: buffer too short for message")
	ErrInvalid     = errors.New("channel: invalid argument")
)

const (
	// DefaultInline is the inline payload size used when Create gets 0.
	DefaultInline = 256
	// MaxInline is the largest inline payload size a channel accepts.
	MaxInline = 1 << 20

	magicLive   = 0x314e4148435f4d44 // "DM_CHAN1" little-endian
	version     = 1
	headerSize  = 128
	chunkHeader = 64
	slotHeader  = 16
	flagLarge   = 1

	// targetChunkBytes is the automatic chunk size: as many slots as fit.
	targetChunkBytes = 64 << 10
	minChunkSlots    = 4

	spinRounds = 50                     // sched_yield rounds before sleeping: a few µs
	maxSleep   = 100 * time.Millisecond // longest single futex sleep
	offsetMask = 1<<48 - 1              // offsets live in bits 47..0 of an address
)

var le = binary.LittleEndian

// header is the channel header at the channel's offset; see doc.go.
//
// KEEP IN SYNC with pyext/fastpath.c: its Chan methods run the uncontended
// send and receive of an inline message on this header themselves (no call
// into Go), touching every field marked "C:" below with the same protocol as
// putLocked/takeLocked/send/recv here (shmsync.Mutex's CAS and unlock, the
// spare chunk, the sequence words and waiter counts). C checks the offsets
// and constants of Layout at startup and goes through Go for everything when
// they differ; changing a field's meaning (not just its place) needs the C
// side changed too.
type header struct {
	magic      uint64        // +0   magicLive while alive, 0 once destroyed. C: checked under mu
	version    uint32        // +8
	mu         shmsync.Mutex // +12  guards everything below not marked atomic. C: CAS 0->pid, swap-0 unlock + wake if contended
	capacity   uint64        // +16  max queued messages, 0 = unbounded. C: read
	count      uint64        // +24  queued messages (written under mu, read atomically). C: atomic add under mu
	inline     uint32        // +32  largest inline payload. C: read
	slotSize   uint32        // +36  bytes per slot (multiple of 64). C: read
	chunkSlots uint32        // +40  slots per chunk. C: read
	closed     uint32        // +44  1 once closed (written under mu, read atomically). C: read (falls back to Go when set)
	neSeq      uint32        // +48  notEmpty futex word: bumped on put and Close. C: bumped on put
	neWaiters  uint32        // +52  receivers sleeping or about to. C: read after put, wake 1 if != 0
	nfSeq      uint32        // +56  notFull futex word: bumped on get and Close. C: bumped on get
	nfWaiters  uint32        // +60  senders sleeping or about to. C: read after get, wake 1 if != 0 (bounded)
	refs       uint64        // +64  references across processes
	head       uint64        // +72  offset of the chunk read next, 0 = no chunk. C: read/written under mu
	headIdx    uint64        // +80  slot index read next in head. C: read/written under mu
	tail       uint64        // +88  offset of the chunk written next, 0 = no chunk. C: read/written under mu
	tailIdx    uint64        // +96  slot index written next in tail. C: read/written under mu
	spare      uint64        // +104 cached empty chunk, 0 = none. C: taken/refilled under mu (never allocates or frees)
	chunks     uint64        // +112 chunks owned (list + spare)
	tag        uint64        // +120 Options.Tag, set before the magic. C: compared with the handle's, as the magic
}

// Layout words, in this order, for a C mirror of the hot path (KEEP IN SYNC
// with pyext/fastpath.c, which compares them with its own constants and
// refuses its fast path on any difference).
const (
	LayoutHeaderSize = iota
	LayoutChunkHeader
	LayoutSlotHeader
	LayoutFlagLarge
	LayoutMagic
	LayoutVersion
	LayoutOffMagic
	LayoutOffVersion
	LayoutOffMu
	LayoutOffCapacity
	LayoutOffCount
	LayoutOffInline
	LayoutOffSlotSize
	LayoutOffChunkSlots
	LayoutOffClosed
	LayoutOffNeSeq
	LayoutOffNeWaiters
	LayoutOffNfSeq
	LayoutOffNfWaiters
	LayoutOffHead
	LayoutOffHeadIdx
	LayoutOffTail
	LayoutOffTailIdx
	LayoutOffSpare
	LayoutMutexContended
	LayoutOffTag
	LayoutWords // number of words
)

// Layout returns the header size, chunk and slot header sizes, the large
// flag, magic, version, the offset of every header field a C mirror touches
// and shmsync.Mutex's contended bit, indexed by the Layout* constants.
func Layout() [LayoutWords]uint64 {
	var h header
	return [LayoutWords]uint64{
		LayoutHeaderSize:     uint64(unsafe.Sizeof(h)),
		LayoutChunkHeader:    chunkHeader,
		LayoutSlotHeader:     slotHeader,
		LayoutFlagLarge:      flagLarge,
		LayoutMagic:          magicLive,
		LayoutVersion:        version,
		LayoutOffMagic:       uint64(unsafe.Offsetof(h.magic)),
		LayoutOffVersion:     uint64(unsafe.Offsetof(h.version)),
		LayoutOffMu:          uint64(unsafe.Offsetof(h.mu)),
		LayoutOffCapacity:    uint64(unsafe.Offsetof(h.capacity)),
		LayoutOffCount:       uint64(unsafe.Offsetof(h.count)),
		LayoutOffInline:      uint64(unsafe.Offsetof(h.inline)),
		LayoutOffSlotSize:    uint64(unsafe.Offsetof(h.slotSize)),
		LayoutOffChunkSlots:  uint64(unsafe.Offsetof(h.chunkSlots)),
		LayoutOffClosed:      uint64(unsafe.Offsetof(h.closed)),
		LayoutOffNeSeq:       uint64(unsafe.Offsetof(h.neSeq)),
		LayoutOffNeWaiters:   uint64(unsafe.Offsetof(h.neWaiters)),
		LayoutOffNfSeq:       uint64(unsafe.Offsetof(h.nfSeq)),
		LayoutOffNfWaiters:   uint64(unsafe.Offsetof(h.nfWaiters)),
		LayoutOffHead:        uint64(unsafe.Offsetof(h.head)),
		LayoutOffHeadIdx:     uint64(unsafe.Offsetof(h.headIdx)),
		LayoutOffTail:        uint64(unsafe.Offsetof(h.tail)),
		LayoutOffTailIdx:     uint64(unsafe.Offsetof(h.tailIdx)),
		LayoutOffSpare:       uint64(unsafe.Offsetof(h.spare)),
		LayoutMutexContended: 1 << 31, // shmsync.Mutex: bit 31 of the word (the rest: holder pid)
		LayoutOffTag:         uint64(unsafe.Offsetof(h.tag)),
	}
}

// Options configure CreateOptions.
type Options struct {
	Capacity   uint64 // max queued messages, 0 = unbounded
	Inline     uint32 // largest inline payload, 0 = DefaultInline
	ChunkSlots uint32 // slots per chunk, 0 = automatic (~64 KiB chunks; at most Capacity)
	// Tag is stored in the header for the channel's life; Attach must
	// name it, and a handle stops working when the header's tag is no
	// longer its own (another channel reuses the memory). The runtime
	// passes the channel's Address, whose generation tells reuses apart.
	Tag uint64
}

// Message describes a received message. An inline message was copied into
// the caller's buffer (its first Len bytes). A Large message was handed
// over: its payload is the heap block (Off, Len), which the receiver reads
// with Heap.Bytes(Off, Len) and must give back with ReleaseMessage.
type Message struct {
	Len   uint64
	Large bool
	Off   uint64
}

// Channel is one process's handle on a channel in a Heap. A Channel may be
// used by many goroutines at once.
type Channel struct {
	heap       Heap
	off        uint64
	h          *header
	capacity   uint64
	inline     uint32
	slotSize   uint64
	slots      uint64
	chunkBytes uint64
	tag        uint64      // the header's tag when this handle was made
	dead       atomic.Bool // set once this handle destroyed the channel
	// lastLarge is the size of the last message this handle received if it
	// was large, 0 otherwise (the zero value: no stream of large messages
	// seen). A receiver of such a stream spins longer before sleeping; see
	// largeSpin.
	lastLarge atomic.Uint64
	// paceSeq is the receivers' progress (header nfSeq) at this handle's
	// last paced large send; see paceLarge. The zero value: none seen yet.
	paceSeq atomic.Uint32
}

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// Create makes a new channel in h holding at most capacity messages (0 =
// unbounded) with inline payloads up to inline bytes (0 = DefaultInline).
// The new channel has one reference.
func Create(h Heap, capacity uint64, inline uint32) (*Channel, error) {
	return CreateOptions(h, Options{Capacity: capacity, Inline: inline})
}

// CreateOptions is Create with the chunk size chosen too.
func CreateOptions(hp Heap, o Options) (*Channel, error) {
	inline := o.Inline
	if inline == 0 {
		inline = DefaultInline
	}
	if inline > MaxInline {
		return nil, ErrInvalid
	}
	slotSize := roundUp(slotHeader+uint64(inline), 64)
	slots := uint64(o.ChunkSlots)
	if slots == 0 {
		slots = max((targetChunkBytes-chunkHeader)/slotSize, minChunkSlots)
		if o.Capacity != 0 && o.Capacity < slots {
			slots = o.Capacity
		}
	}
	off, err := hp.Alloc(headerSize)
	if err != nil {
		return nil, err
	}
	b := hp.Bytes(off, headerSize)
	clear(b)
	h := (*header)(unsafe.Pointer(&b[0]))
	h.version = version
	h.tag = o.Tag
	h.capacity = o.Capacity
	h.inline = inline
	h.slotSize = uint32(slotSize)
	h.chunkSlots = uint32(slots)
	h.refs = 1
	c := newChannel(hp, off, h)
	// One chunk up front, as the spare: the first Send does not allocate,
	// and a heap that cannot hold a chunk fails here.
	spare, err := hp.Alloc(c.chunkBytes)
	if err != nil {
		hp.Free(off, headerSize)
		return nil, err
	}
	h.spare = spare
	h.chunks = 1
	atomic.StoreUint64(&h.magic, magicLive) // publish last
	return c, nil
}

func newChannel(hp Heap, off uint64, h *header) *Channel {
	return &Channel{
		heap:       hp,
		off:        off,
		h:          h,
		capacity:   h.capacity,
		inline:     h.inline,
		slotSize:   uint64(h.slotSize),
		slots:      uint64(h.chunkSlots),
		chunkBytes: chunkHeader + uint64(h.chunkSlots)*uint64(h.slotSize),
		tag:        h.tag,
	}
}

// Attach returns a handle on the channel at off in h made with tag
// (Options.Tag). It returns ErrBadHandle when off does not hold a live
// channel with that tag (garbage, out of range, destroyed, or another
// channel since) instead of crashing. Attach takes no reference: a process
// that keeps the channel calls Retain.
func Attach(hp Heap, off, tag uint64) (c *Channel, err error) {
	if off == 0 || off%8 != 0 || off&^offsetMask != 0 {
		return nil, ErrBadHandle
	}
	if s, ok := hp.(interface{ Size() uint64 }); ok {
		if size := s.Size(); off >= size || size-off < headerSize {
			return nil, ErrBadHandle
		}
	}
	// A bad offset may make Bytes panic or point at unmapped memory.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			c, err = nil, ErrBadHandle
		}
	}()
	b := hp.Bytes(off, headerSize)
	if len(b) < headerSize {
		return nil, ErrBadHandle
	}
	h := (*header)(unsafe.Pointer(&b[0]))
	if atomic.LoadUint64(&h.magic) != magicLive || h.tag != tag || h.version != version ||
		h.inline == 0 || h.inline > MaxInline || h.chunkSlots == 0 ||
		uint64(h.slotSize) != roundUp(slotHeader+uint64(h.inline), 64) {
		return nil, ErrBadHandle
	}
	return newChannel(hp, off, h), nil
}

// Header returns the address of the channel header in this process's
// mapping of the heap, or nil once the channel is destroyed or its memory
// holds another channel (another tag). It is for a C mirror of the hot path
// (pyext/fastpath.c, see header): valid while the caller holds a reference
// and the heap stays mapped.
func (c *Channel) Header() unsafe.Pointer {
	if c.dead.Load() || atomic.LoadUint64(&c.h.magic) != magicLive || atomic.LoadUint64(&c.h.tag) != c.tag {
		return nil
	}
	return unsafe.Pointer(c.h)
}

// Tag returns the channel's tag (Options.Tag) as this handle knows it.
func (c *Channel) Tag() uint64 { return c.tag }

// Offset returns the channel's offset in its heap: its handle in every
// process.
func (c *Channel) Offset() uint64 { return c.off }

// Cap returns the capacity, 0 for an unbounded channel.
func (c *Channel) Cap() uint64 { return c.capacity }

// Inline returns the largest payload stored inside a slot.
func (c *Channel) Inline() uint32 { return c.inline }

// Len returns the number of queued messages.
func (c *Channel) Len() uint64 {
	if c.dead.Load() {
		return 0
	}
	return atomic.LoadUint64(&c.h.count)
}

// Closed reports whether the channel was closed (or destroyed).
func (c *Channel) Closed() bool {
	return c.dead.Load() || atomic.LoadUint32(&c.h.closed) != 0
}

// lock takes the channel mutex and checks that the channel is still alive.
func (c *Channel) lock() error {
	if c.dead.Load() {
		return ErrBadHandle
	}
	c.h.mu.Lock()
	if atomic.LoadUint64(&c.h.magic) != magicLive || c.h.tag != c.tag {
		c.h.mu.Unlock()
		return ErrBadHandle
	}
	return nil
}

// spin yields a few times until cond holds; it reports whether it did.
func spin(cond func() bool) bool {
	for i := 0; i < spinRounds; i++ {
		futex.Yield()
		if cond() {
			return true
		}
	}
	return false
}

// Large-message streams: a receiver that finds the channel empty right after
// taking a large message is most likely waiting for the sender's copy of
// the next one, which takes about the message's size at memory bandwidth.
// Sleeping instead costs a futex wake-up on both sides per message (the
// sender's syscall, the receiver's wake-up latency), a large share of a
// 64 KiB-1 MiB message's time. So such a receiver keeps yielding for about
// that copy time before it sleeps.
const (
	largeSpinBytesPerUs = 4 << 10 // ~4 GB/s: a copy this fast or faster is covered
	largeSpinMin        = 20 * time.Microsecond
	largeSpinMax        = time.Millisecond
)

// largeSpin is how long a receiver keeps spinning after the short spin
// failed: 0 unless the last message this handle took was large.
func (c *Channel) largeSpin() time.Duration {
	n := c.lastLarge.Load()
	if n == 0 {
		return 0
	}
	return copyTime(n)
}

// copyTime is about how long a copy of n bytes takes, clamped to
// [largeSpinMin, largeSpinMax].
func copyTime(n uint64) time.Duration {
	d := time.Duration(n/largeSpinBytesPerUs) * time.Microsecond
	return min(max(d, largeSpinMin), largeSpinMax)
}

// Pacing a stream of large messages: a sender far ahead of its receiver
// spreads the stream over many blocks, and each has left the caches by the
// time it is read. Measured with 1 MiB messages: 20-60 queued, 88 µs a
// message; at most 2 queued, ~10% faster (bench/xcopy.c shows the same in
// plain C: 32 slots against 2-3). So a large send finding paceDepth or more
// messages queued, while a receiver has taken one since this handle's
// previous large send, first yields for up to one copy time (copyTime)
// until one is taken. A sender whose receiver is not taking (a queue filled
// for later) never waits: nfSeq has not moved. Nor does a send ever wait
// longer than that, so it still never blocks on an unbounded channel, and
// a send that must not wait at all (timeout 0) is not paced.
const (
	paceMinBytes = 256 << 10
	paceDepth    = 2
)

// paceLarge is that wait, before a large message of n bytes is allocated
// (allocLarge); it reports whether it waited.
func (c *Channel) paceLarge(n uint64) bool {
	if n < paceMinBytes {
		return false
	}
	h := c.h
	seq := atomic.LoadUint32(&h.nfSeq)
	if c.paceSeq.Swap(seq) == seq || atomic.LoadUint64(&h.count) < paceDepth {
		return false
	}
	spinFor(func() bool {
		return atomic.LoadUint64(&h.count) < paceDepth || atomic.LoadUint32(&h.closed) != 0
	}, copyTime(n))
	return true
}

// spinFor yields until cond holds or d has passed; it reports whether cond held.
func spinFor(cond func() bool, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		for i := 0; i < 16; i++ {
			futex.Yield()
			if cond() {
				return true
			}
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// sleepFor is the next futex sleep: the time left, capped at maxSleep; 0
// once the deadline has passed.
func sleepFor(deadline time.Time) time.Duration {
	left := futex.Remaining(deadline)
	if left < 0 || left > maxSleep {
		return maxSleep
	}
	return left
}

func (c *Channel) chunk(off uint64) []byte { return c.heap.Bytes(off, c.chunkBytes) }

func (c *Channel) slot(chunk []byte, i uint64) []byte {
	base := chunkHeader + i*c.slotSize
	return chunk[base : base+c.slotSize : base+c.slotSize]
}

// newChunkLocked takes the spare chunk or allocates one.
// KEEP IN SYNC with pyext/fastpath.c (chan_try_send takes the spare the same
// way, zeroing its next word; it leaves allocation to Go).
func (c *Channel) newChunkLocked() (uint64, error) {
	h := c.h
	off := h.spare
	if off != 0 {
		h.spare = 0
	} else {
		var err error
		if off, err = c.heap.Alloc(c.chunkBytes); err != nil {
			return 0, err
		}
		h.chunks++
	}
	le.PutUint64(c.chunk(off)[0:8], 0)
	return off, nil
}

// retireChunkLocked keeps a consumed chunk as the spare or frees it.
// KEEP IN SYNC with pyext/fastpath.c (chan_try_recv keeps it as the spare when
// there is none, and leaves a retirement that frees to Go).
func (c *Channel) retireChunkLocked(off uint64) {
	h := c.h
	if h.spare == 0 {
		h.spare = off
		return
	}
	// A failing Free means a corrupt heap; the message is already taken
	// and must not be lost, so there is nobody to report it to.
	_ = c.heap.Free(off, c.chunkBytes)
	h.chunks--
}

// putLocked appends a message: msg inline, or the large block boff.
// KEEP IN SYNC with pyext/fastpath.c: chan_try_send does these steps for an
// inline message (slot {len, flags 0, payload}, tailIdx, count, neSeq).
func (c *Channel) putLocked(msg []byte, n, boff uint64, large bool) error {
	h := c.h
	if h.tail == 0 || h.tailIdx == c.slots {
		off, err := c.newChunkLocked()
		if err != nil {
			return err
		}
		if h.tail == 0 {
			h.head, h.headIdx = off, 0
		} else {
			le.PutUint64(c.chunk(h.tail)[0:8], off)
		}
		h.tail, h.tailIdx = off, 0
	}
	s := c.slot(c.chunk(h.tail), h.tailIdx)
	le.PutUint64(s[0:8], n)
	if large {
		le.PutUint32(s[8:12], flagLarge)
		le.PutUint64(s[slotHeader:slotHeader+8], boff)
	} else {
		le.PutUint32(s[8:12], 0)
		copy(s[slotHeader:], msg)
	}
	h.tailIdx++
	atomic.AddUint64(&h.count, 1)
	atomic.AddUint32(&h.neSeq, 1)
	return nil
}

// takeLocked removes the head message (count > 0). An inline payload goes
// into dst, or into a new slice when alloc is set; when dst is too short
// the message stays queued and ErrShortBuffer is returned with its Len.
// KEEP IN SYNC with pyext/fastpath.c: chan_try_recv does these steps for an
// inline message (headIdx, count, retirement, nfSeq).
func (c *Channel) takeLocked(dst []byte, alloc bool) (Message, []byte, error) {
	h := c.h
	s := c.slot(c.chunk(h.head), h.headIdx)
	m := Message{Len: le.Uint64(s[0:8])}
	var out []byte
	if le.Uint32(s[8:12])&flagLarge != 0 {
		m.Large = true
		m.Off = le.Uint64(s[slotHeader : slotHeader+8])
	} else {
		if m.Len > uint64(c.inline) {
			return Message{}, nil, ErrBadHandle // corrupt slot
		}
		payload := s[slotHeader : slotHeader+m.Len]
		if alloc {
			out = append(make([]byte, 0, m.Len), payload...)
		} else if uint64(len(dst)) < m.Len {
			return m, nil, ErrShortBuffer
		} else {
			copy(dst, payload)
		}
	}
	h.headIdx++
	n := atomic.AddUint64(&h.count, ^uint64(0))
	switch {
	case n == 0:
		// Empty: head == tail. Keep the chunk as the spare (or free it).
		c.retireChunkLocked(h.head)
		h.head, h.headIdx, h.tail, h.tailIdx = 0, 0, 0, 0
	case h.headIdx == c.slots:
		next := le.Uint64(c.chunk(h.head)[0:8])
		c.retireChunkLocked(h.head)
		h.head, h.headIdx = next, 0
	}
	atomic.AddUint32(&h.nfSeq, 1)
	return m, out, nil
}

// noteTaken records whether m, just taken by this handle, was large (for largeSpin).
func (c *Channel) noteTaken(m Message) {
	var n uint64
	if m.Large {
		n = m.Len
	}
	if c.lastLarge.Load() != n {
		c.lastLarge.Store(n)
	}
}

// Send queues msg, waiting at most timeout (negative: no limit; 0: never)
// while a bounded channel is full. It returns ErrFull when the time ran
// out, ErrClosed on a closed channel, ErrBadHandle on a destroyed one, and
// the heap's error unchanged when a block for a large payload or a chunk
// cannot be allocated. A payload longer than Inline() is copied into a heap
// block before the channel lock is taken. Zero-length messages are valid.
func (c *Channel) Send(msg []byte, timeout time.Duration) error {
	return c.SendParts(timeout, msg)
}

// SendParts sends the concatenation of parts as one message, copying each
// part once, straight into the slot or the message's heap block (gather:
// a caller can frame a payload without first building a joined copy).
func (c *Channel) SendParts(timeout time.Duration, parts ...[]byte) error {
	return c.SendPartsHeld(timeout, nil, parts...)
}

// SendPartsHeld is SendParts that records a large message's block in h
// while it is filled (h.Hold), until it is queued (h.Clear, under the
// channel lock) or freed after an error. A nil h is none.
func (c *Channel) SendPartsHeld(timeout time.Duration, holder Holder, parts ...[]byte) error {
	if c.dead.Load() {
		return ErrBadHandle
	}
	h := c.h
	if atomic.LoadUint32(&h.closed) != 0 {
		return ErrClosed
	}
	var n uint64
	for _, p := range parts {
		n += uint64(len(p))
	}
	large := n > uint64(c.inline)
	var msg []byte
	var boff uint64
	switch {
	case large:
		off, err := c.allocLarge(n, timeout, holder)
		if err != nil {
			return err
		}
		dst := c.heap.Bytes(off, n)
		for _, p := range parts {
			dst = dst[copy(dst, p):]
		}
		boff = off
	case len(parts) == 1:
		msg = parts[0]
	default:
		msg = make([]byte, 0, n) // small multi-part messages are rare
		for _, p := range parts {
			msg = append(msg, p...)
		}
	}
	if !large {
		holder = nil
	}
	err := c.send(msg, n, boff, large, timeout, holder)
	if err != nil && large {
		if holder != nil {
			holder.Clear()
		}
		c.heap.Free(boff, n)
	}
	return err
}

// AllocMessage returns a heap block for a large message of n bytes
// (n > Inline()), for a caller that fills it itself (for instance with a
// copy routine better suited to the size than Go's: Go's memmove uses
// non-temporal stores from 1 MiB on, which leave a message that fits in the
// cache outside it for the receiver) and then queues it with SendBlock.
// The block is the caller's until SendBlock succeeds; ReleaseMessage
// (Message{Len: n, Large: true, Off: off}) frees it. timeout is the one
// the caller will give SendBlock: see allocLarge.
func (c *Channel) AllocMessage(n uint64, timeout time.Duration) (uint64, error) {
	return c.AllocMessageHeld(n, timeout, nil)
}

// AllocMessageHeld is AllocMessage that records the block in h (see
// allocLarge); SendBlockHeld with the same h then clears it.
func (c *Channel) AllocMessageHeld(n uint64, timeout time.Duration, h Holder) (uint64, error) {
	if c.dead.Load() {
		return 0, ErrBadHandle
	}
	if atomic.LoadUint32(&c.h.closed) != 0 {
		return 0, ErrClosed
	}
	if n <= uint64(c.inline) {
		return 0, ErrInvalid
	}
	return c.allocLarge(n, timeout, h)
}

// allocLarge takes the heap block of a large message about to be sent with
// timeout. A send that will not wait (timeout 0) gets ErrFull at once from
// a full bounded channel (the copy would be thrown away) and is never
// paced; any other is paced (paceLarge).
// A non-nil h records the block: under the heap's lock when it can, else
// right after.
func (c *Channel) allocLarge(n uint64, timeout time.Duration, h Holder) (uint64, error) {
	if timeout == 0 {
		if c.capacity != 0 && atomic.LoadUint64(&c.h.count) >= c.capacity {
			return 0, ErrFull
		}
	} else {
		c.paceLarge(n)
	}
	if h == nil {
		return c.heap.Alloc(n)
	}
	if ha, ok := c.heap.(heldAllocator); ok {
		return ha.AllocHeld(n, h)
	}
	off, err := c.heap.Alloc(n)
	if err == nil {
		h.Hold(off, n)
	}
	return off, err
}

// SendBlock queues the block (off, n) from AllocMessage, filled by the
// caller, as one large message; waiting, timeout and errors as Send. On
// error the block is still the caller's (so a caller waiting in slices can
// try again with the same block).
func (c *Channel) SendBlock(off, n uint64, timeout time.Duration) error {
	return c.SendBlockHeld(off, n, timeout, nil)
}

// A Holder is where a process records the large message block it holds
// outside any channel (gocore/ledger's Entry): Hold when a receiver takes
// the block, Clear when a sender's block is queued. The channel calls it
// under its lock, so that at every lock boundary a block is either queued
// or recorded, never both and never neither. A heap that has AllocHeld
// (gocore/pool) records a sender's block as it allocates it.
type Holder = pool.Holder

// heldAllocator is a Heap that records a block in a Holder as it allocates it.
type heldAllocator interface {
	AllocHeld(size uint64, h Holder) (uint64, error)
}

// SendBlockHeld is SendBlock for a block recorded in h: h.Clear() is
// called under the channel lock once the block is queued. A nil h is none.
func (c *Channel) SendBlockHeld(off, n uint64, timeout time.Duration, h Holder) error {
	if c.dead.Load() {
		return ErrBadHandle
	}
	if n <= uint64(c.inline) || off == 0 {
		return ErrInvalid
	}
	if atomic.LoadUint32(&c.h.closed) != 0 {
		return ErrClosed
	}
	return c.send(nil, n, off, true, timeout, h)
}

// send queues msg (inline) or the block boff (large), waiting while a
// bounded channel is full; it never frees the block.
// KEEP IN SYNC with pyext/fastpath.c: C wakes a sleeping receiver the same
// way (neWaiters read under the lock, one futex wake on neSeq), and Go
// waiters register before their last check under the lock, so a C put
// always wakes them.
func (c *Channel) send(msg []byte, n, boff uint64, large bool, timeout time.Duration, holder Holder) error {
	h := c.h
	deadline := futex.Deadline(timeout)
	spun := false
	for {
		if err := c.lock(); err != nil {
			return err
		}
		if h.closed != 0 {
			h.mu.Unlock()
			return ErrClosed
		}
		if c.capacity == 0 || h.count < c.capacity {
			if err := c.putLocked(msg, n, boff, large); err != nil {
				h.mu.Unlock()
				return err
			}
			if holder != nil {
				holder.Clear()
			}
			wake := atomic.LoadUint32(&h.neWaiters) != 0
			h.mu.Unlock()
			if wake {
				futex.Wake(&h.neSeq, 1)
			}
			return nil
		}
		if timeout == 0 {
			h.mu.Unlock()
			return ErrFull
		}
		if !spun {
			h.mu.Unlock()
			spun = true
			spin(func() bool {
				return atomic.LoadUint64(&h.count) < c.capacity || atomic.LoadUint32(&h.closed) != 0
			})
			continue
		}
		d := sleepFor(deadline)
		if d == 0 {
			h.mu.Unlock()
			return ErrFull
		}
		atomic.AddUint32(&h.nfWaiters, 1)
		seq := atomic.LoadUint32(&h.nfSeq)
		h.mu.Unlock()
		futex.Wait(&h.nfSeq, seq, d)
		atomic.AddUint32(&h.nfWaiters, ^uint32(0))
	}
}

// Recv takes the oldest message, waiting at most timeout (negative: no
// limit; 0: never) while the channel is empty. An inline payload is copied
// into dst (a dst of len >= Inline() always suffices; a shorter one that
// cannot hold the message gives ErrShortBuffer with m.Len set and leaves
// the message queued). A large payload is handed over (m.Large): read it
// with Heap.Bytes(m.Off, m.Len), then call ReleaseMessage(m). Errors:
// ErrEmpty when the time ran out, ErrClosed once the channel is closed and
// drained, ErrBadHandle on a destroyed channel.
func (c *Channel) Recv(dst []byte, timeout time.Duration) (Message, error) {
	m, _, err := c.recv(dst, false, timeout, nil)
	return m, err
}

// RecvHeld is Recv that records a large message's block in h (h.Hold)
// under the channel lock, as it is taken. A nil h is none.
func (c *Channel) RecvHeld(dst []byte, timeout time.Duration, h Holder) (Message, error) {
	m, _, err := c.recv(dst, false, timeout, h)
	return m, err
}

// RecvBytes is Recv into a new slice, for both kinds of message (a large
// payload is copied out and released).
func (c *Channel) RecvBytes(timeout time.Duration) ([]byte, error) {
	m, out, err := c.recv(nil, true, timeout, nil)
	if err != nil {
		return nil, err
	}
	if m.Large {
		out = append(make([]byte, 0, m.Len), c.heap.Bytes(m.Off, m.Len)...)
		if err := c.ReleaseMessage(m); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// recv: // KEEP IN SYNC with pyext/fastpath.c (waking senders of a bounded
// channel: nfWaiters read under the lock, one futex wake on nfSeq).
func (c *Channel) recv(dst []byte, alloc bool, timeout time.Duration, holder Holder) (Message, []byte, error) {
	h := c.h
	deadline := futex.Deadline(timeout)
	spun := false
	for {
		if err := c.lock(); err != nil {
			return Message{}, nil, err
		}
		if h.count > 0 {
			m, out, err := c.takeLocked(dst, alloc)
			if err == nil && m.Large && holder != nil {
				holder.Hold(m.Off, m.Len)
			}
			wake := err == nil && c.capacity != 0 && atomic.LoadUint32(&h.nfWaiters) != 0
			h.mu.Unlock()
			if err == nil {
				c.noteTaken(m)
			}
			if wake {
				futex.Wake(&h.nfSeq, 1)
			}
			return m, out, err
		}
		if h.closed != 0 {
			h.mu.Unlock()
			return Message{}, nil, ErrClosed
		}
		if timeout == 0 {
			h.mu.Unlock()
			return Message{}, nil, ErrEmpty
		}
		if !spun {
			h.mu.Unlock()
			spun = true
			ready := func() bool {
				return atomic.LoadUint64(&h.count) != 0 || atomic.LoadUint32(&h.closed) != 0
			}
			if !spin(ready) {
				full := c.largeSpin()
				d := full
				if left := futex.Remaining(deadline); left >= 0 {
					d = min(d, left)
				}
				if d > 0 && !spinFor(ready, d) && d == full {
					// A whole spin found nothing: the stream has paused,
					// and the next waits (a caller waiting in slices)
					// sleep at once.
					c.lastLarge.Store(0)
				}
			}
			continue
		}
		d := sleepFor(deadline)
		if d == 0 {
			h.mu.Unlock()
			return Message{}, nil, ErrEmpty
		}
		atomic.AddUint32(&h.neWaiters, 1)
		seq := atomic.LoadUint32(&h.neSeq)
		h.mu.Unlock()
		futex.Wait(&h.neSeq, seq, d)
		atomic.AddUint32(&h.neWaiters, ^uint32(0))
	}
}

// ReleaseMessage frees the block of a large message received with Recv.
// It does nothing for an inline message. The block belongs to the
// receiver, so this is valid even after the channel is gone.
func (c *Channel) ReleaseMessage(m Message) error {
	if !m.Large {
		return nil
	}
	return c.heap.Free(m.Off, m.Len)
}

// Close closes the channel: senders get ErrClosed, receivers drain the
// queued messages and then get ErrClosed. Closing twice is a no-op. All
// sleepers are woken.
func (c *Channel) Close() error {
	if err := c.lock(); err != nil {
		return err
	}
	h := c.h
	if h.closed != 0 {
		h.mu.Unlock()
		return nil
	}
	atomic.StoreUint32(&h.closed, 1)
	atomic.AddUint32(&h.neSeq, 1)
	atomic.AddUint32(&h.nfSeq, 1)
	wakeNE := atomic.LoadUint32(&h.neWaiters) != 0
	wakeNF := atomic.LoadUint32(&h.nfWaiters) != 0
	h.mu.Unlock()
	if wakeNE {
		futex.Wake(&h.neSeq, 1<<30)
	}
	if wakeNF {
		futex.Wake(&h.nfSeq, 1<<30)
	}
	return nil
}

// Retain adds a reference (for another process or owner). It returns
// ErrBadHandle if the channel is already destroyed.
func (c *Channel) Retain() error {
	if err := c.lock(); err != nil {
		return err
	}
	c.h.refs++
	c.h.mu.Unlock()
	return nil
}

// Refs returns the current reference count (0 once destroyed).
func (c *Channel) Refs() uint64 {
	if c.lock() != nil {
		return 0
	}
	n := c.h.refs
	c.h.mu.Unlock()
	return n
}

// Release drops a reference. The last one destroys the channel: every
// queued large payload, every chunk and the header go back to the heap and
// the magic is cleared, so a later Attach gives ErrBadHandle. Destroying
// assumes nobody uses the channel any more (whoever still does holds a
// reference). err reports a heap Free failure met while destroying (the
// channel is destroyed anyway) or ErrBadHandle.
func (c *Channel) Release() (destroyed bool, err error) {
	if err := c.lock(); err != nil {
		return false, err
	}
	h := c.h
	if h.refs > 1 {
		h.refs--
		h.mu.Unlock()
		return false, nil
	}
	h.refs = 0
	atomic.StoreUint64(&h.magic, 0)
	atomic.StoreUint32(&h.closed, 1)
	c.dead.Store(true)
	err = c.destroyLocked()
	h.mu.Unlock()
	if ferr := c.heap.Free(c.off, headerSize); err == nil {
		err = ferr
	}
	return true, err
}

// destroyLocked frees the queued large payloads and all chunks.
func (c *Channel) destroyLocked() error {
	h := c.h
	var first error
	note := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for off := h.head; off != 0; {
		ch := c.chunk(off)
		start, end := uint64(0), c.slots
		if off == h.head {
			start = h.headIdx
		}
		if off == h.tail {
			end = h.tailIdx
		}
		for i := start; i < end; i++ {
			s := c.slot(ch, i)
			if le.Uint32(s[8:12])&flagLarge != 0 {
				note(c.heap.Free(le.Uint64(s[slotHeader:slotHeader+8]), le.Uint64(s[0:8])))
			}
		}
		next := le.Uint64(ch[0:8])
		if off == h.tail {
			next = 0
		}
		note(c.heap.Free(off, c.chunkBytes))
		off = next
	}
	if h.spare != 0 {
		note(c.heap.Free(h.spare, c.chunkBytes))
	}
	h.head, h.headIdx, h.tail, h.tailIdx, h.spare, h.chunks = 0, 0, 0, 0, 0, 0
	atomic.StoreUint64(&h.count, 0)
	return first
}
