package channel

import (
	"encoding/binary"
	"errors"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
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
// KEEP IN SYNC with pyext/fastpath_chan.c: its Chan methods run the uncontended
// send and receive of an inline message on this header themselves (no call
// into Go), touching every field marked "C:" below with the same protocol as
// putLocked/takeLocked (chunks.go), send (send.go) and recv (recv.go)
// (shmsync.Mutex's CAS and unlock, the spare chunk, the sequence words and
// waiter counts). C checks the offsets
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

// Layout words, in this order, for a C mirror of the hot path: written into
// pyext/layout.h by pyext/internal/layoutgen (whose test fails when the header
// is stale), and compared by pyext/fastpath_chan.c at start-up with the
// header it was built with (a library and extension built from different
// sources are refused).
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
// (pyext/fastpath_chan.c, see header): valid while the caller holds a reference
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
	_, tookOver := c.h.mu.LockRecover(-1)
	if atomic.LoadUint64(&c.h.magic) != magicLive || c.h.tag != c.tag {
		c.h.mu.Unlock()
		return ErrBadHandle
	}
	if tookOver {
		c.repairLocked()
	}
	return nil
}

// repairLocked makes the header agree with itself again after the mutex was
// taken over from a process that died holding it (lock). A sender (Go's
// putLocked or C's chan_try_send) writes its slot, moves tailIdx, then
// counts; a receiver moves headIdx, then uncounts: killed between the two,
// it leaves count off by one, and the next receivers would lose the newest
// message (count reaches 0 with one still in the ring) or read a slot
// nobody wrote. The ring positions are the truth (a slot is complete before
// tailIdx passes it), so count is recomputed from them, and every sleeper
// is woken to look again (the dead process may have died before its wake).
// A receiver that died between moving headIdx past a chunk's last slot and
// retiring the chunk is finished here, as takeLocked would have (a chunk it
// had already made the spare is not retired twice).
func (c *Channel) repairLocked() {
	h := c.h
	if h.head != 0 && h.head != h.tail && h.headIdx >= c.slots {
		if next := le.Uint64(c.chunk(h.head)[0:8]); next != 0 {
			if h.spare != h.head {
				c.retireChunkLocked(h.head)
			}
			h.head, h.headIdx = next, 0
		}
	}
	var n uint64
	if h.head != 0 && h.tail != 0 {
		chunk, idx := h.head, h.headIdx
		for steps := uint64(0); ; steps++ {
			if chunk == h.tail {
				if h.tailIdx > idx {
					n += h.tailIdx - idx
				}
				break
			}
			if idx < c.slots {
				n += c.slots - idx
			}
			next := le.Uint64(c.chunk(chunk)[0:8])
			if next == 0 || steps > h.chunks { // a link the dead process had not written yet
				break
			}
			chunk, idx = next, 0
		}
	}
	atomic.StoreUint64(&h.count, n)
	atomic.AddUint32(&h.neSeq, 1)
	atomic.AddUint32(&h.nfSeq, 1)
	if atomic.LoadUint32(&h.neWaiters) != 0 {
		futex.Wake(&h.neSeq, 1<<30)
	}
	if atomic.LoadUint32(&h.nfWaiters) != 0 {
		futex.Wake(&h.nfSeq, 1<<30)
	}
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
