package pyext

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
	"github.com/dragon-mp/dragon_mp/gocore/pool"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
	"github.com/dragon-mp/dragon_mp/gocore/shm"
	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{channel.ErrEmpty, codeTimeout},
		{channel.ErrFull, codeFull},
		{fmt.Errorf("wrapped: %w", channel.ErrClosed), codeClosed},
		{errNoRuntime, codeClosed},
		{channel.ErrBadHandle, codeBadHandle},
		{runtime.ErrBadObject, codeBadHandle},
		{runtime.ErrRemote, codeBadHandle},
		{&shm.FullError{Dir: "/dev/shm", Total: 64 << 20}, codeNoSpace},
		{pool.ErrExhausted, codeNoSpace},
		{pool.ErrTooLarge, codeTooLarge},
		{channel.ErrInvalid, codeInvalid},
		{shmsync.ErrTooManyReleases, codeTooManyReleases},
		{shmsync.ErrNotOwner, codeNotOwner},
		{syscall.EACCES, codeOS},
		{errors.New("something else"), codeInternal},
	}
	for _, tc := range tests {
		if got := codeOf(tc.err); got != tc.want {
			t.Errorf("codeOf(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestPyErrPrefix(t *testing.T) {
	if pyErr(nil) != nil {
		t.Fatal("pyErr(nil) != nil")
	}
	err := pyErr(channel.ErrFull)
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("E%d: ", codeFull)) || !errors.Is(err, channel.ErrFull) {
		t.Fatalf("pyErr = %q", err)
	}
}

func TestPanicsBecomeErrors(t *testing.T) {
	err := SelfTestPanic()
	if err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("E%d: internal error", codeInternal)) {
		t.Fatalf("SelfTestPanic = %v", err)
	}
}

func TestCallsWithoutRuntimeFail(t *testing.T) {
	if _, err := ChannelCreate(0, 0); err == nil || !strings.HasPrefix(err.Error(), fmt.Sprintf("E%d:", codeClosed)) {
		t.Fatalf("ChannelCreate without a runtime = %v", err)
	}
	if rc := dmp_sem_release(64); rc != -codeClosed {
		t.Fatalf("dmp_sem_release without a runtime = %d", rc)
	}
}
