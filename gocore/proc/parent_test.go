package proc

import (
	"os"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKillWithParent: a helper process starts `sleep 60`, then the helper is
// SIGKILLed. With KillWithParent the grandchild must die with it; without,
// it must survive (so the test sees the flag's effect, not a side effect).
func TestKillWithParent(t *testing.T) {
	for _, tt := range []struct {
		kwp      bool
		wantDead bool
	}{{true, true}, {false, false}} {
		t.Run("KillWithParent="+strconv.FormatBool(tt.kwp), func(t *testing.T) {
			kwp := "KWP=0"
			if tt.kwp {
				kwp = "KWP=1"
			}
			w, next := lineReader(t)
			helper := start(t, helperSpec("grandchild", w, kwp))
			gpid := atoi(t, next())
			gstart, err := StartTime(gpid)
			if err != nil {
				t.Fatal(err)
			}
			// The grandchild is reparented to us (child subreaper, see
			// TestMain) when the helper dies: reap it whatever happens.
			defer reapOrphan(t, gpid)

			helper.Kill()
			if st := wait(t, helper); st.Code != -9 {
				t.Fatalf("helper status %v, want -9", st)
			}
			dead := waitDead(gpid, gstart, 2*time.Second)
			if dead != tt.wantDead {
				t.Fatalf("grandchild dead=%v 2s after its parent was killed, want %v", dead, tt.wantDead)
			}
		})
	}
}

// waitDead polls until pid (of that start time) is gone or a zombie.
func waitDead(pid int, start uint64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for Alive(pid, start) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// reapOrphan kills and reaps a grandchild that was reparented to us.
func reapOrphan(t *testing.T, pid int) {
	st, err := readStat(pid)
	if err != nil || st.ppid != os.Getpid() {
		t.Errorf("grandchild %d was not reparented to the test process (ppid %d, %v)", pid, st.ppid, err)
		return
	}
	syscall.Kill(pid, syscall.SIGKILL) // unreaped child of ours: the pid cannot be recycled
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Errorf("reaping grandchild %d: %v", pid, err)
	}
}

// onExitingThread runs f on a goroutine locked to an OS thread that is
// destroyed when f returns (never the main thread, which the runtime keeps),
// and waits until the thread is gone.
func onExitingThread(t *testing.T, f func()) {
	t.Helper()
	for range 10 {
		tidc := make(chan int, 1)
		go func() {
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				runtime.UnlockOSThread()
				tidc <- 0
				return
			}
			f()
			tidc <- unix.Gettid()
			// Return while locked: the runtime terminates the thread.
		}()
		tid := <-tidc
		if tid == 0 {
			continue // landed on the main thread; try again
		}
		task := "/proc/self/task/" + strconv.Itoa(tid)
		deadline := time.Now().Add(2 * time.Second)
		for {
			if _, err := os.Stat(task); os.IsNotExist(err) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("thread %d still exists after its locked goroutine returned", tid)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Fatal("could not get a goroutine off the main thread")
}

// TestPdeathsigFollowsForkingThread is the control for the next test: a child
// forked with Pdeathsig directly from a thread dies when that thread exits,
// although the process lives on. This is the hazard Start's spawner avoids.
func TestPdeathsigFollowsForkingThread(t *testing.T) {
	var pid, pidfd int
	var err error
	onExitingThread(t, func() {
		pidfd = -1
		pid, err = syscall.ForkExec(sleepPath, []string{"sleep", "60"}, &syscall.ProcAttr{
			Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, PidFD: &pidfd},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, _ := unix.Poll(fds, 2000)
	if n == 0 {
		unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	}
	var ws syscall.WaitStatus
	syscall.Wait4(pid, &ws, 0, nil)
	if n == 0 {
		t.Fatal("child survived the exit of the thread that forked it; the premise of TestStartFromExitingThread does not hold here")
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child status %v, want killed by SIGKILL", ws)
	}
}

// TestStartFromExitingThread: Start called from a thread that then exits (a
// short-lived Python thread calling through cgo) must not take a
// KillWithParent child with it, because the fork happened on the spawner.
func TestStartFromExitingThread(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		var p *Process
		var err error
		onExitingThread(t, func() {
			p, err = Start(Spec{Path: sleepPath, Args: []string{"sleep", "60"}, KillWithParent: true})
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Kill(); p.Wait(-1); p.Release() })
		if st, done := p.Wait(300 * time.Millisecond); done {
			t.Fatalf("child died (%v) when the thread that called Start exited", st)
		}
	})
}
