// Package ledger records the pool blocks each process of a run holds outside
// any channel, and the references it holds to the run's objects, so that
// what a process that died held is given back.
//
// A large message lives in a pool block. While it is in a channel, the
// channel owns it (destroying the channel frees it). Before that, while its
// sender fills it, and after, while its receiver reads it, the block belongs
// to one process only, and a process killed at that moment would leave it
// allocated until the run ends (a 64 MiB message takes a 128 MiB block). The
// ledger is where a process writes down such blocks, and where a survivor
// finds them.
//
// References. A channel or a lock lives until the last of its counted
// references is dropped; every handle a process holds is one (see
// dragon_mp/_shared.py). A process killed with handles in hand never drops
// them, and its channels (64 KiB and more each) would stay until the run
// ends. So a process records each reference it adopts, and the reaper
// releases those of a dead process.
//
// # Contract
//
//   - Open(p, word) finds the run's directory through *word (a pool user
//     word) and makes it on first use (one CAS publishes it). The directory
//     has Slots slots; a slot names a process (pid, start time) and its
//     ledger: a block of Entries entries {off, len}.
//   - Directory.Register(pid, start) gives a process its Ledger. A process
//     registers once; ErrFull when every slot is taken (the process then
//     runs without a ledger: its blocks are given back only by itself). The
//     slot records the ledger's block as the pool hands it out, and start
//     is stored once the entries are cleared: a process killed while it
//     registers leaves a slot whose block the reaper frees without reading
//     it.
//   - Ledger.Reserve returns a free Entry (nil when all are in use: the block
//     goes unrecorded). Entry.Hold(off, n) records a block, Entry.Clear says
//     the block is no longer this process's (freed, or in a channel) and
//     frees the entry; Entry.Unreserve frees an entry that never held one.
//     Hold stores len before off and Clear clears off first, so a reaper
//     reading off then len sees either no block or the whole record.
//   - Channel code calls Hold (a receiver taking a large message) and Clear
//     (a sender's block queued) while it holds the channel lock: at every
//     lock boundary a block is in exactly one place, a channel or a ledger.
//     The process frees a block after Clear, never before: a block freed
//     while still recorded could be reallocated and then freed again.
//   - Ledger.ReserveRef returns a free entry for a reference (nil when
//     MaxRefs entries already hold references: the other Entries-MaxRefs
//     stay for blocks). Entry.HoldRef(addr, kind) records a reference to the
//     object at addr, of kind RefChannel or RefObject; Entry.Clear forgets it.
//     A process clears the record before it drops the reference, never after:
//     killed in between, the reference leaks (as before this record existed)
//     instead of being released twice.
//   - Directory.Reap(alive, release) frees every block recorded by every
//     registered process that alive reports dead, calls release(addr, kind)
//     for every reference it recorded, then frees its ledger and empties its
//     slot. Any number of processes may reap at once: a slot is claimed by a
//     CAS of its pid word.
//
// # Limits
//
// The pool records a block as it hands it out (pool.AllocHeld: Hold under
// the pool mutex, before the block's pages are committed, which can take
// milliseconds), and the channel as it hands one over, so no instant leaves a
// block unrecorded. A process killed while holding the pool's or a channel's
// lock in the middle of an update leaves what that lock's takeover leaves.
//
// # Layout (in the pool)
//
//	directory: Slots x {pid u64 (high bit: being reaped), start u64, ledger u64, pad u64}
//	ledger:    Entries x {off u64, len u64}; len == reserved: reserved, no block yet;
//	           len == 1<<62 | kind: a reference to the object at address off
//
// # Lock order
//
// None of its own: every step is an atomic on a word; Register and Reap call
// the pool's Alloc/Free (a leaf lock). Reap calls release with no lock of its
// own held (release takes the object's lock).
package ledger
