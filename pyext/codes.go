package pyext

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/pool"
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
	"golang.org/x/sys/unix"
)

// Error codes shared with dragon_mp/_core.py: gocore/remoteop's, which
// error replies from other nodes carry too.
const (
	codeTimeout         = remoteop.CodeTimeout
	codeFull            = remoteop.CodeFull
	codeClosed          = remoteop.CodeClosed
	codeBadHandle       = remoteop.CodeBadHandle
	codeNoSpace         = remoteop.CodeNoSpace
	codeTooLarge        = remoteop.CodeTooLarge
	codeInvalid         = remoteop.CodeInvalid
	codeTooManyReleases = remoteop.CodeTooManyReleases
	codeNotOwner        = remoteop.CodeNotOwner
	codeOS              = remoteop.CodeOS
	codeInternal        = remoteop.CodeInternal
	codeNodeLost        = remoteop.CodeNodeLost // the object's node is gone (ConnectionError)
)

// codeOf classifies an error for Python.
func codeOf(err error) int {
	var errno syscall.Errno
	var remote *remoteError
	var lost *agent.LostError
	switch {
	case errors.As(err, &remote):
		return remote.code
	case errors.Is(err, errNodeLost), errors.As(err, &lost):
		return codeNodeLost
	case errors.Is(err, channel.ErrEmpty):
		return codeTimeout
	case errors.Is(err, channel.ErrFull):
		return codeFull
	case errors.Is(err, channel.ErrClosed), errors.Is(err, errNoRuntime):
		return codeClosed
	case errors.Is(err, channel.ErrBadHandle), errors.Is(err, runtime.ErrBadObject),
		errors.Is(err, errBadProcess), errors.Is(err, runtime.ErrRemote):
		return codeBadHandle
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, pool.ErrExhausted):
		return codeNoSpace
	case errors.Is(err, pool.ErrTooLarge):
		return codeTooLarge
	case errors.Is(err, channel.ErrInvalid), errors.Is(err, runtime.ErrBadID),
		errors.Is(err, errInvalid):
		return codeInvalid
	case errors.Is(err, shmsync.ErrTooManyReleases):
		return codeTooManyReleases
	case errors.Is(err, shmsync.ErrNotOwner):
		return codeNotOwner
	case errors.As(err, &errno):
		return codeOS
	}
	return codeInternal
}

var errInvalid = errors.New("invalid argument")

// pyErr formats err for a gopy-bound function.
func pyErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("E%d: %w", codeOf(err), err)
}

// recovered turns a panic into an error; use as `defer recovered(&err)`.
func recovered(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("E%d: internal error: %v\n%s", codeInternal, r, debug.Stack())
	}
}

// lastErrs holds the message of the last error an //export entry point
// returned, per OS thread: the caller asks for it right after, on the same
// thread (a cgo call runs on its caller's thread), and another thread's
// error in between must not replace it (it did: a ConnectionError read as
// "channel: empty", another thread's timed-out get).
var lastErrs sync.Map // thread id -> string

// cCode records err for dmp_last_error and returns its negative code.
func cCode(err error) int64 {
	lastErrs.Store(unix.Gettid(), err.Error())
	return -int64(codeOf(err))
}

// takeLastErr returns (and forgets) the calling thread's last error message.
func takeLastErr() string {
	if v, ok := lastErrs.LoadAndDelete(unix.Gettid()); ok {
		return v.(string)
	}
	return ""
}

// cRecover turns a panic in an //export function into codeInternal.
func cRecover(rc *int64) {
	if r := recover(); r != nil {
		*rc = cCode(fmt.Errorf("internal error: %v\n%s", r, debug.Stack()))
	}
}

// SelfTestPanic panics inside a bound function; tests use it to check that
// a Go panic reaches Python as an exception instead of aborting.
func SelfTestPanic() (err error) {
	defer recovered(&err)
	var m map[string]int
	m["boom"]++ // a nil-map write: a real runtime panic
	return nil
}
