// Package pool is a growable heap in one shared-memory segment, used by every
// process of a run at once.
//
// # Contract
//
// Create makes the segment (shm name "dragon_mp.<runid>.pool") and formats
// it; every other process Opens it by name. All handles share one allocator,
// guarded by one shmsync.Mutex in the pool header. A block is addressed by
// its byte offset in the segment, which is the same in every process
// (Pointer/Bytes turn it into this process's address). Offsets are never 0:
// the heap starts at Reserve(), so 0 can mean "no block".
//
//   - Alloc(size) returns a block of size rounded up to a power of two >= 64
//     bytes, aligned to that rounded size relative to the heap start (the heap
//     start is aligned to the largest block in the segment, and the mapping to
//     a page, so every block is at least 64-byte aligned in memory). Its
//     content is undefined: it is not zeroed. Only the size bytes asked for
//     may be used (only they are committed).
//   - AllocHeld(size, h) is Alloc that records the block in h (gocore/ledger's
//     Entry: Hold) under the pool mutex as it takes it, before the block's
//     pages are committed, and clears it (Clear) under the mutex if the block
//     goes back because the commit failed.
//   - Free(off, size) takes the size passed to Alloc (the allocator keeps no
//     per-block header). A Free that does not name a live block of that size
//     (bad offset, wrong size, double free) returns ErrBadFree and changes
//     nothing: the per-order state bitmaps record exactly which blocks are
//     allocated at which size.
//   - Errors of Alloc: ErrBadSize (0 bytes), ErrTooLarge (more than the
//     reservation), ErrExhausted (no free block big enough), a *shm.FullError
//     (errors.Is(err, syscall.ENOSPC)) when the tmpfs cannot hold the pages.
//     A failed Alloc leaves the pool fully usable.
//
// # Lazy commit
//
// The segment is ftruncated to 2*Reserve bytes but sparse. Before the
// allocator writes into a page (free-list links, state words) and before
// Alloc hands out a block, the 64 KiB granules covering it are fallocated and
// recorded in a shared granule bitmap (itself committed lazily, tracked by the
// l2 words of the header). Each granule costs one fallocate ever, across all
// processes. A fresh 64 GiB pool commits about 320 KiB; the first small
// allocation splits the heap down to 64 bytes and commits about 2 MiB more
// (one granule per split level for the buddies' links and state words);
// allocating a 300 MiB block (a 512 MiB buddy block) commits about 300 MiB.
// Free keeps the pages committed: the next Alloc reuses them warm.
//
// A full tmpfs therefore gives an error at Alloc, never a SIGBUS later.
//
// # Giving pages back
//
//   - Scavenge(age) punches out the committed granules of every free block
//     of 128 KiB or more that has stayed free through the last age passes,
//     except the block's first granule, clears their bits, and starts a new
//     pass (a free block is stamped with the pass it was freed in). The run's
//     head calls it every 0.5 s (pyext: after ~1 s of being free where the
//     tmpfs is Tight, ~10 s elsewhere). ScavengeAll takes every free block.
//   - Alloc that cannot commit its pages (ENOSPC) calls ScavengeAll and tries
//     once more; where the tmpfs is Tight, Alloc also gives back the
//     committed granules of its block beyond the size asked for (pages of an
//     earlier, larger use).
//   - A block is taken off its list and marked allocated while its pages go
//     (outside the mutex, one block at a time), then freed again; nothing else
//     can reach it meanwhile. The header counts such blocks (scavOut): an
//     Alloc that finds no free block while one is out waits for it, up to
//     1 s, instead of failing (in an empty pool it is all the free memory).
//     scavenge.go has the details.
//
// # Layout (offsets from the start of the segment; R = reservation)
//
//	0           header (struct header, 1728 bytes; granule 0 is committed by Create)
//	              0  magic "DRGNPOOL" (stored last by Create), 8 version,
//	             12  minShift, 16 granShift, 20 maxOrder, 24 reserve R,
//	             32  heapOff (= R), 40 segSize (= 2R), 48 gbOff, 56 gbBytes
//	             64  shmsync.Mutex guarding the allocator
//	            128  committed, 136 inUse, 144 allocs, 152 frees,
//	            160  epoch (Scavenge passes), 168 released (bytes given back),
//	            176  scavOut (blocks a Scavenge pass holds off the lists)
//	            192  32 user words (the runtime's)
//	            448  32 l2 words: committed granules of the granule bitmap
//	            704  64 per-order state bitmap offsets
//	           1216  64 free-list heads (segment offsets, 0 = empty)
//	64 KiB      granule bitmap: 1 bit per 64 KiB granule of the segment (2R/512 KiB bytes)
//	...         (64 KiB aligned) state bitmaps, order 0 (64 B) .. maxOrder (R),
//	            2 bits per block (0 none/split, 1 free, 2 allocated), 64-byte
//	            aligned each; about R/128 bytes in all, touched only where the
//	            heap is used
//	...         unused (sparse)
//	R           heap: R bytes; block of order k = 64<<k bytes at R + i*(64<<k)
//	2R          end of segment
//
// A free block holds its list links and stamp in its first 24 bytes: next,
// prev (segment offsets, 0 = none), the epoch it was freed in. R is a power of two in [MinReserve, MaxReserve] (Create
// rounds up; 0 means DefaultReserve = 64 GiB), so maxOrder = log2(R) - 6 and
// the largest block is the whole heap.
//
// # Lock order
//
// The pool mutex is a leaf lock: nothing is called while it is held except
// memory accesses and, rarely, the fallocate of a few metadata granules
// (through shm.Segment.Commit). Callers may hold their own locks (runtime.mu,
// a channel mutex) when calling Alloc/Free; the pool never calls back into
// them. The body of a large block is committed after the mutex is released.
//
// A process killed while holding the mutex (a few hundred nanoseconds) leaves
// it to be taken over by the next waiter (shmsync.Mutex), but a list update it
// was in the middle of is not repaired.
//
// # Zero values
//
// The zero Pool is not usable: get one from Create or Open. In the segment, a
// zero header (magic 0) means "not initialized" and Open refuses it; the zero
// mutex is unlocked and zero user words are what Create leaves. After Close,
// Alloc/Free return ErrClosed, Stats returns the zero Stats, and
// Pointer/Bytes panic.
package pool
