package shmsync

import (
	"sync/atomic"
	"time"

	"github.com/dragon-mp/dragon_mp/gocore/futex"
)

// Cond is the waiter queue of a cross-process condition variable
// (multiprocessing.Condition), the shared-memory counterpart of the deque of
// per-waiter locks in CPython's threading.Condition.
//
// Every wait has its own CondWaiter node in shared memory, placed by the
// caller (the runtime allocates one per wait from the pool) and named by a
// non-zero handle that a WaiterAt resolves in every process. The protocol,
// with the user's lock L of the condition:
//
//	holding L:  Enqueue(h, w)          // register before releasing L
//	            release L
//	            Wait(w, timeout)...    // in slices; no lock held
//	            Finish(h, w) -> notified
//	            free w, reacquire L
//	holding L:  Notify(n)              // hands notifications to the n oldest waiters
//
// Because a waiter registers while it still holds L and a notifier holds L,
// a notification never misses a waiter that was waiting when it was issued,
// and never goes to one that started waiting after it. A waiter that gives
// up (timeout, Ctrl-C) leaves the queue in Finish, so it absorbs no later
// notification; one notified just as it gave up reports true. Notify skips
// (and reports, for freeing) the nodes of processes that died while waiting,
// so a killed waiter does not swallow a notification; a dead process that is
// still a zombie counts as alive.
//
// Layout (40 bytes, 8-byte aligned):
//
//	+0  mu      Mutex   guards the queue and the nodes' links
//	+4  _       uint32
//	+8  head    uint64  oldest queued waiter's handle, 0 when none
//	+16 tail    uint64  newest queued waiter's handle
//	+24 queued  uint64  waiters in the queue (not yet notified)
//	+32 inWait  uint64  waits enqueued and not yet finished
//
// The zero value is an empty Cond.
type Cond struct {
	mu     Mutex
	_      uint32
	head   uint64
	tail   uint64
	queued uint64
	inWait uint64
}

// CondWaiter is one wait's node.
//
// Layout (32 bytes, 8-byte aligned):
//
//	+0  state  uint32  the futex word the waiter sleeps on: condQueued,
//	                   condNotified, condDropped or condFinished
//	+4  pid    uint32  the waiting process
//	+8  next   uint64  newer waiter's handle, 0 at the tail
//	+16 prev   uint64  older waiter's handle, 0 at the head
//	+24 linked uint32  1 while in the queue
//	+28 _      uint32
type CondWaiter struct {
	state  uint32
	pid    uint32
	next   uint64
	prev   uint64
	linked uint32
	_      uint32
}

// Waiter states.
const (
	condQueued   = 0
	condNotified = 1
	condDropped  = 2 // its process died while queued; Notify unlinked it
	condFinished = 3
)

// WaiterAt resolves a waiter handle to its node. It must succeed for every
// handle in the queue (it may panic otherwise: the queue is corrupt).
type WaiterAt func(handle uint64) *CondWaiter

// Enqueue appends the wait w, named h (non-zero), to the queue. Call it
// while holding the condition's lock, before releasing it.
func (c *Cond) Enqueue(h uint64, w *CondWaiter, at WaiterAt) {
	c.mu.Lock()
	defer c.mu.Unlock()
	atomic.StoreUint32(&w.state, condQueued)
	w.pid = selfPid
	w.next, w.prev = 0, c.tail
	w.linked = 1
	if c.tail != 0 {
		at(c.tail).next = h
	} else {
		c.head = h
	}
	c.tail = h
	atomic.AddUint64(&c.queued, 1)
	atomic.AddUint64(&c.inWait, 1)
}

// Wait sleeps until w is notified, for at most timeout (negative: no
// limit; 0: just check), and reports whether it was. It holds no lock and
// leaves w queued when it times out.
func (c *Cond) Wait(w *CondWaiter, timeout time.Duration) bool {
	s := atomic.LoadUint32(&w.state)
	if s != condQueued || timeout == 0 {
		return s == condNotified
	}
	deadline := futex.Deadline(timeout)
	for {
		d := sleepSlice(deadline)
		if d == 0 {
			return false
		}
		futex.Wait(&w.state, condQueued, d)
		if s := atomic.LoadUint32(&w.state); s != condQueued {
			return s == condNotified
		}
	}
}

// Finish ends the wait w named h: it leaves the queue if still there and
// reports whether it was notified. w may be freed once Finish returns.
func (c *Cond) Finish(h uint64, w *CondWaiter, at WaiterAt) bool {
	// Fast path, without the mutex (a notified waiter must not queue up
	// behind its notifier): Notify unlinked w before it stored condNotified,
	// and nobody else reaches an unlinked node.
	if atomic.LoadUint32(&w.state) == condNotified {
		atomic.AddUint64(&c.inWait, ^uint64(0))
		atomic.StoreUint32(&w.state, condFinished)
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.linked != 0 {
		c.unlink(w, at)
	}
	s := atomic.LoadUint32(&w.state)
	if s != condDropped {
		atomic.AddUint64(&c.inWait, ^uint64(0))
	}
	atomic.StoreUint32(&w.state, condFinished)
	return s == condNotified
}

// Notify notifies the (up to) n oldest waiters and returns how many it
// notified, and the handles of waiters it dropped instead because their
// process has died (the caller frees them). Call it holding the
// condition's lock.
//
// The wake-ups happen after the mutex is released, so a woken waiter does not
// run into it; a node its waiter has meanwhile finished and freed may get a
// futex wake that way. That is harmless: freed pool memory stays mapped, and
// whoever sleeps on a futex word (a reused node, a semaphore...) re-checks
// its condition after any wake-up.
func (c *Cond) Notify(n int, at WaiterAt) (notified int, dropped []uint64) {
	var buf [8]*uint32
	words, dropped := c.grant(n, at, buf[:0])
	for _, word := range words {
		futex.Wake(word, 1)
	}
	return len(words), dropped
}

// grant hands notifications to up to n queued waiters, under the mutex, and
// appends their futex words to words.
func (c *Cond) grant(n int, at WaiterAt, words []*uint32) (_ []*uint32, dropped []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(words) < n && c.head != 0 {
		h := c.head
		w := at(h)
		c.unlink(w, at)
		if w.pid != selfPid && !processAlive(int(w.pid)) {
			atomic.StoreUint32(&w.state, condDropped)
			atomic.AddUint64(&c.inWait, ^uint64(0))
			dropped = append(dropped, h)
			continue
		}
		atomic.StoreUint32(&w.state, condNotified)
		words = append(words, &w.state)
	}
	return words, dropped
}

func (c *Cond) unlink(w *CondWaiter, at WaiterAt) {
	if w.prev != 0 {
		at(w.prev).next = w.next
	} else {
		c.head = w.next
	}
	if w.next != 0 {
		at(w.next).prev = w.prev
	} else {
		c.tail = w.prev
	}
	w.next, w.prev, w.linked = 0, 0, 0
	atomic.AddUint64(&c.queued, ^uint64(0))
}

// Waiting is the number of waits in progress: enqueued and not yet
// finished, notified or not (Python's repr of a Condition shows it).
func (c *Cond) Waiting() int { return int(atomic.LoadUint64(&c.inWait)) }

// Queued is the number of waiters not yet notified.
func (c *Cond) Queued() int { return int(atomic.LoadUint64(&c.queued)) }
