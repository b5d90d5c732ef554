// Package futex waits on and wakes 32-bit words that live in memory shared
// between processes.
//
// The words are plain uint32s inside a MAP_SHARED mapping; the kernel keys a
// shared futex by (inode, offset), so two processes that map the same segment
// at different addresses still meet on the same word. That is why this
// package never sets FUTEX_PRIVATE_FLAG.
//
// Wait may return early (a signal, a spurious wake-up, or the word already
// changed): callers always re-check their condition in a loop.
package futex
