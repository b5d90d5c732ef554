// Package shm creates, maps and removes named shared-memory segments.
//
// A segment is a regular file in Dir() (a tmpfs: /dev/shm, or
// $DRAGON_MP_SHM_DIR) mapped MAP_SHARED, read-write, whole, by every process
// that uses it; the name is the file name. Every segment of a run is named
// "dragon_mp.<runid>.<what>" (the callers choose the names; this package only
// rejects names that are not plain file names).
//
// Contract:
//
//   - Create makes the file with O_EXCL and mode 0600 (set with fchmod, so the
//     umask neither widens nor narrows it), sets its size with ftruncate and
//     maps it. The size is sparse: a tmpfs lets a file be larger than the
//     filesystem, and pages only cost memory once they exist.
//   - Touching a page that does not exist yet makes the kernel allocate it;
//     when the tmpfs is full that is a SIGBUS, which would kill the process.
//     So users Commit (fallocate) a range before touching it: a full tmpfs
//     then gives a *FullError (errors.Is(err, syscall.ENOSPC) holds) that
//     names the fix, instead of a crash.
//   - Release punches a hole (fallocate PUNCH_HOLE): the pages go back to the
//     kernel, every mapping reads zeros there, and they must be Committed
//     again before they are touched. Tight says whether the filesystem is
//     short of room (less than a quarter of it, or 64 MiB, free).
//   - Open maps an existing segment whole (its size from fstat).
//   - Close unmaps and closes; it is idempotent. After Close, Bytes returns
//     nil and Base returns nil; slices obtained before must not be used.
//     Close never removes the file: Unlink does (the mapping stays valid
//     until Close, as with any unlinked file).
//
// A *Segment may be used by several goroutines; Commit, Release, Tight and
// Close are serialized internally so that none runs on a closed (and perhaps
// reused) file descriptor.
//
// The zero value of Segment is not usable; get one from Create or Open.
package shm
