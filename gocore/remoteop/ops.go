package remoteop

import "time"

// Slice is the longest wait a requester asks of the owner in one operation.
const Slice = time.Second

// Operation codes (wire.Frame.Op).
const (
	ChanSend        uint16 = iota + 1 // payload -> ()
	ChanRecv                          // () -> payload
	ChanLen                           // () -> n
	ChanInline                        // () -> n
	ChanRetain                        // () -> ()
	ChanRelease                       // () -> ()
	ChanReady                         // (mode) -> 1 ready / 0
	SemAcquire                        // () -> 1 / 0
	SemRelease                        // () -> ()
	SemValue                          // () -> v
	SyncRetain                        // () -> ()
	SyncRelease                       // () -> ()
	RLockAcquire                      // (owner) -> 1 / 0
	RLockRelease                      // (owner) -> ()
	RLockOwner                        // () -> owner
	RLockCount                        // () -> n
	RLockReleaseAll                   // (owner) -> n
	EventSet                          // () -> ()
	EventClear                        // () -> ()
	EventIsSet                        // () -> 1 / 0
	EventWait                         // () -> 1 / 0
	CondEnqueue                       // () -> waiter
	CondFinish                        // (waiter) -> notified
	CondNotify                        // (n) -> woken
	CondWaiting                       // () -> n
	CondWait                          // (waiter) -> 1 / 0
	BarrierGet                        // (field) -> v
	BarrierSet                        // (field, v) -> ()
	PipeHandle                        // (end, op) -> closed
	PipePeerGone                      // (end) -> gone
	RawSize                           // () -> n
	RawRead                           // (off, n) -> payload
	RawWrite                          // (off), payload -> ()
	ProcStart                         // spec JSON payload -> (handle, pid)   (Addr: node<<48)
	ProcPid                           // (h) -> pid
	ProcSignal                        // (h, sig) -> ()
	ProcRelease                       // (h) -> ()
	ChanCap                           // () -> capacity (0: unbounded)
)

// Codes of error replies (wire.Frame.Code).
const (
	CodeTimeout         = iota + 1 // nothing came, or the wait ran out
	CodeFull                       // a bounded channel stayed full
	CodeClosed                     // the object is closed, or the run is ending
	CodeBadHandle                  // no such object (gone, or never made)
	CodeNoSpace                    // the pool is full
	CodeTooLarge                   // larger than the pool can hold
	CodeInvalid                    // a bad argument
	CodeTooManyReleases            // a semaphore released more than acquired
	CodeNotOwner                   // a lock released by a process that does not hold it
	CodeOS                         // an operating system error
	CodeInternal                   // a bug
	CodeNodeLost                   // the object's node is gone
)

// Sliced runs attempt with waits of at most Slice until it reports done
// (notYet false) or an error, or until timeout has run out (negative: no
// limit; 0: one try without waiting). attempt gets the wait to ask the owner
// for; the last attempt's error is returned.
func Sliced(timeout time.Duration, attempt func(t time.Duration) (notYet bool, err error)) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		t := Slice
		switch {
		case timeout == 0:
			t = 0
		case timeout > 0:
			t = min(t, max(time.Until(deadline), 0))
		}
		notYet, err := attempt(t)
		if !notYet || timeout == 0 || (timeout > 0 && !time.Now().Before(deadline)) {
			return err
		}
	}
}
