// Package channel implements multi-producer multi-consumer message channels
// that live in a shared-memory heap (the run's pool) and are used by every
// process that maps it. Messages are byte strings, delivered in FIFO order;
// a channel is bounded (at most Capacity queued messages) or unbounded.
// Send and Recv take a timeout: negative waits forever, 0 never waits.
//
// # Handles
//
// A channel is named by the offset of its header in the heap (Offset) and
// its tag (Options.Tag, stored in the header); Attach turns the two into a
// handle in any process and answers ErrBadHandle, never a crash, for
// garbage, a destroyed channel, or another channel made since at the same
// offset (another tag). A handle whose header's tag changed fails likewise
// (its operations check under the lock). Shared memory holds offsets only,
// never pointers: processes map the heap at different addresses.
//
// # Layout
//
// Header (128 bytes, at the channel's offset; integers little-endian):
//
//	+0   magic      uint64  "DM_CHAN1" while alive; 0 once destroyed
//	+8   version    uint32  1
//	+12  mu         uint32  shmsync.Mutex (0 = unlocked)
//	+16  capacity   uint64  max queued messages, 0 = unbounded
//	+24  count      uint64  queued messages
//	+32  inline     uint32  largest payload stored in a slot
//	+36  slotSize   uint32  16 + inline rounded up to 64
//	+40  chunkSlots uint32  slots per chunk
//	+44  closed     uint32  0 open, 1 closed
//	+48  neSeq      uint32  "not empty" futex word, bumped by every put and by Close
//	+52  neWaiters  uint32  receivers sleeping (or about to) on neSeq
//	+56  nfSeq      uint32  "not full" futex word, bumped by every get and by Close
//	+60  nfWaiters  uint32  senders sleeping (or about to) on nfSeq
//	+64  refs       uint64  references; the channel is destroyed when it drops to 0
//	+72  head       uint64  offset of the chunk read next, 0 when the queue is empty
//	+80  headIdx    uint64  next slot to read in head
//	+88  tail       uint64  offset of the chunk written next, 0 when the queue is empty
//	+96  tailIdx    uint64  next slot to write in tail
//	+104 spare      uint64  one cached empty chunk, 0 = none
//	+112 chunks     uint64  chunks owned (queue + spare)
//	+120 tag        uint64  Options.Tag, for the channel's life
//
// Create zeroes the header, so every zero field means what it says:
// unlocked, empty, open, no waiters, no chunk; the magic is stored last.
//
// Chunk (64 + chunkSlots*slotSize bytes, one heap block):
//
//	+0   next       uint64  offset of the next chunk in the queue, 0 = last
//	+8   reserved   56 bytes (keeps slots 64-byte aligned)
//	+64  slots      chunkSlots × slotSize
//
// Slot (slotSize bytes):
//
//	+0   len        uint64  payload length
//	+8   flags      uint32  bit 0: large (payload in its own heap block)
//	+12  reserved   uint32
//	+16  payload    inline: len bytes; large: uint64 offset of a len-byte block
//
// The queue is the chain of chunks from head to tail; messages are written
// at (tail, tailIdx) and read at (head, headIdx). A full tail chunk gets a
// successor (the spare if there is one, else a new block); a fully read
// head chunk is retired: kept as the spare if there is none, else freed.
// When the queue becomes empty its only chunk is retired too, so an idle
// channel owns exactly one chunk (the spare, allocated by Create) and a
// drained unbounded channel gives back everything it grew. A bounded
// channel uses the same mechanism with a count limit (its automatic chunk
// has at most Capacity slots).
//
// # A holder killed inside the lock
//
// The mutex is taken over from a dead holder (shmsync.Mutex.LockRecover),
// and the taker repairs the header before it uses it: count is recomputed
// from the ring positions (a sender writes its slot, moves tailIdx, then
// counts; a receiver moves headIdx, then uncounts: either killed between the
// two left count off by one, and the newest message would have been lost),
// a head chunk read to its end is retired, and every sleeper is woken. The C
// fast path only ever try-locks, so take-overs, and repairs, happen in Go.
//
// # Large messages
//
// A payload longer than inline is copied once, before the channel lock is
// taken, into a block from the heap; the slot holds (offset, len). Recv
// hands the block over (Message.Large): the receiver reads it in place and
// frees it with ReleaseMessage. Destroying a channel frees the blocks of
// the messages still queued.
//
// Outside the channel a block is one process's, and a process can be
// killed. The *Held variants take a Holder (gocore/ledger's Entry) that
// records it: AllocMessageHeld and SendPartsHeld record a sender's block as
// the heap hands it out (pool.AllocHeld, under the pool mutex), SendBlockHeld
// and SendPartsHeld clear the record under the channel lock as they queue
// the block, RecvHeld records the block under the channel lock as it takes
// it. At every lock boundary a block is queued or recorded, never both.
//
// A sender of large messages (256 KiB and more) that finds two or more
// queued while a receiver has taken one since its previous large send
// first yields for up to one copy time until one is taken (pacing): a
// stream spread over dozens of blocks is read after they have left the
// caches (1 MiB: 20-60 queued, 88 µs a message; paced, 40-43% of memcpy
// instead of 39%). A sender whose receiver is not taking
// never waits, no send waits longer than that, and a send with timeout 0
// is not paced, so a send to an unbounded channel still never blocks.
//
// # Waiting
//
// A waiter first spins briefly (sched_yield rounds, a few µs) watching count.
// A receiver whose handle last took a large message keeps spinning for about
// the time a copy of that size takes (size at ~4 GB/s, 20 µs to 1 ms, never
// past its timeout): in a stream of large messages the next one is being
// copied in, and a futex sleep would add a wake-up to every message. A whole
// such spin that finds nothing ends it: the stream has paused.
// Then, under the lock, it increments the waiter count and reads the
// sequence word, unlocks, and futex-waits on that value for at most
// min(time left, 100 ms); it then decrements the waiter count and retries.
// Every put bumps neSeq (every get bumps nfSeq) under the lock, so a change
// after the waiter's read makes its futex wait return at once; wakers call
// futex wake (one waiter per message; all on Close) only when the waiter
// count is non-zero. A process that dies while waiting leaves the count
// too high, which costs only needless wake calls.
//
// # Reference counting
//
// Create returns a channel with one reference; Retain adds one, Release
// drops one, and the last Release destroys the channel (frees queued large
// payloads, chunks and header, clears the magic). Attach takes none.
//
// # Lock order
//
// channel mutex → heap (pool) mutex: chunks are allocated and freed while
// the channel lock is held; the heap never calls back into a channel, and
// nothing takes a channel lock while holding the heap's. Large payload
// blocks are allocated before the channel lock is taken and released by
// the receiver without it.
package channel
