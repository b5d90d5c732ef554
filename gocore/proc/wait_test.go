package proc

import (
	"errors"
	"io/fs"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestWaitTimeoutThenKill(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		p := start(t, Spec{Path: sleepPath, Args: []string{"sleep", "5"}})
		if st, done := p.Wait(0); done {
			t.Fatalf("Wait(0) on a running process = %v, done", st)
		}
		t0 := time.Now()
		if st, done := p.Wait(150 * time.Millisecond); done {
			t.Fatalf("Wait(150ms) on a running process = %v, done", st)
		}
		if d := time.Since(t0); d < 150*time.Millisecond || d > 2*time.Second {
			t.Fatalf("Wait(150ms) took %v", d)
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		st, done := p.Wait(-1)
		if !done || st.Code != -9 {
			t.Fatalf("after Kill: Wait(-1) = %v, %v; want code -9", st, done)
		}
		// Cached: repeated waits, any timeout, same answer; signals are no-ops.
		for _, timeout := range []time.Duration{0, time.Millisecond, -1} {
			if st2, done := p.Wait(timeout); !done || st2 != st {
				t.Fatalf("Wait(%v) after exit = %v, %v", timeout, st2, done)
			}
		}
		if err := p.Terminate(); err != nil {
			t.Fatalf("Terminate after exit: %v", err)
		}
		p.Release()
		if err := p.Kill(); err != nil {
			t.Fatalf("Kill after Release: %v", err)
		}
		if st2, done := p.Wait(0); !done || st2 != st {
			t.Fatalf("Wait after Release = %v, %v", st2, done)
		}
	})
}

// TestSignalExitedUnreaped: a child that has exited but is not reaped yet is
// still signalled without error.
func TestSignalExitedUnreaped(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		p := start(t, Spec{Path: truePath})
		fds := []unix.PollFd{{Fd: int32(p.PidFD()), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 5000); n != 1 || err != nil {
			t.Fatalf("poll = %d, %v", n, err)
		}
		if err := p.Terminate(); err != nil {
			t.Fatalf("Terminate on a zombie: %v", err)
		}
		if st := wait(t, p); st.Code != 0 {
			t.Fatalf("status %v", st)
		}
	})
}

func TestPidFDReadableOnExit(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		p := start(t, Spec{Path: sleepPath, Args: []string{"sleep", "30"}})
		fd := p.PidFD()
		if fd < 0 {
			t.Fatalf("PidFD() = %d", fd)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 50); n != 0 || err != nil {
			t.Fatalf("poll on a running process's pidfd = %d (%#x), %v", n, fds[0].Revents, err)
		}
		p.Kill()
		if n, err := unix.Poll(fds, 5000); n != 1 || err != nil || fds[0].Revents&(unix.POLLIN|unix.POLLHUP) == 0 {
			t.Fatalf("poll after Kill = %d (%#x), %v", n, fds[0].Revents, err)
		}
		// Readable does not mean reaped: Wait still collects the status.
		if st := wait(t, p); st.Code != -9 {
			t.Fatalf("status %v, want -9", st)
		}
		if p.PidFD() != fd {
			t.Fatalf("PidFD changed: %d then %d", fd, p.PidFD())
		}
	})
}

func TestConcurrentWait(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		p := start(t, Spec{Path: shPath, Args: []string{"sh", "-c", "sleep 0.3; exit 7"}})
		const blocking, polling, signalling = 8, 8, 2
		results := make(chan ExitStatus, blocking+polling)
		var wg sync.WaitGroup
		for range blocking {
			wg.Go(func() {
				st, _ := p.Wait(-1)
				results <- st
			})
		}
		for range polling {
			wg.Go(func() {
				for {
					if st, done := p.Wait(5 * time.Millisecond); done {
						results <- st
						return
					}
				}
			})
		}
		for range signalling {
			wg.Go(func() {
				for {
					if err := p.Signal(0); err != nil {
						t.Errorf("Signal(0): %v", err)
					}
					if _, done := p.Wait(0); done {
						return
					}
					time.Sleep(time.Millisecond)
				}
			})
		}
		// Release in the middle of it all: waiters must still get the status.
		time.Sleep(100 * time.Millisecond)
		p.Release()
		wg.Wait()
		close(results)
		n := 0
		for st := range results {
			n++
			if st.Code != 7 {
				t.Errorf("a waiter got %v, want exit status 7", st)
			}
		}
		if n != blocking+polling {
			t.Fatalf("%d results, want %d", n, blocking+polling)
		}
	})
}

// TestReleaseRunning: Release on a running child leaves it running, then
// reaps it in the background once it exits (no zombie).
func TestReleaseRunning(t *testing.T) {
	bothModes(t, func(t *testing.T) {
		p, err := Start(Spec{Path: sleepPath, Args: []string{"sleep", "0.3"}})
		if err != nil {
			t.Fatal(err)
		}
		pid := p.Pid()
		p.Release()
		p.Release() // twice is harmless
		if !Alive(pid, 0) {
			t.Fatal("Release stopped the process")
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			_, err := readStat(pid)
			if errors.Is(err, fs.ErrNotExist) {
				break // reaped: not even a zombie is left
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d not reaped 3s after Release (stat error %v)", pid, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if st, done := p.Wait(0); !done || st.Code != 0 {
			t.Fatalf("Wait after background reap = %v, %v", st, done)
		}
	})
}
