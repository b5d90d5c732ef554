// Command layoutgen writes pyext/layout.h, the shared-memory layout that the
// C extension dragon_mp._fastpath (pyext/fastpath*.c) works on, from the Go
// definitions: the Go structs and constants are the only definition, the
// header is generated from them and checked in.
//
// Run it from the repository root after changing a struct or constant it
// reads (TestLayoutHeaderUpToDate fails until then):
//
//	go run ./pyext/internal/layoutgen
//
// or go generate ./pyext/internal/layoutgen. -o names another output file
// ("-" for standard output).
//
// What it reads, and how:
//   - gocore/channel: the channel header struct (reached by reflection
//     through the exported Channel's h field: the type itself is not
//     exported), cross-checked word by word against channel.Layout(), the
//     exported contract that pyext/fastpath.c also compares at start-up
//     (dmp_chan_layout) to refuse a stale build of the extension; the chunk,
//     slot and magic constants and shmsync.Mutex's contended bit come from
//     channel.Layout() too.
//   - gocore/shmsync: Semaphore, RecursiveLock and Event, by reflection on
//     the exported types (their fields are unexported; offsets and widths are
//     Go's own).
//   - gocore/runtime: the bit fields of an Address, from MakeAddress and
//     MaxOffset.
//
// Not exported by gocore/channel and therefore stated here: the place of
// a chunk's next link (+0) and of a slot's length (+0) and flags (+8)
// words, written as slice bounds in channel.go (putLocked, takeLocked,
// newChunkLocked). Adding them to channel.Layout would make this file read
// them too.
//
// Every struct is emitted with C static assertions on its size and field
// offsets, so the C compiler checks the header against itself; the Go test
// checks the header against Go.
package main
