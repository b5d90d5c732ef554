package proc

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FindByEnv returns, in increasing order, the pids of the processes other
// than the caller whose environment contains the entry key=value exactly.
// It reads /proc/<pid>/environ, which is the environment the process was
// exec'd with (later setenv calls do not show). Processes it cannot read
// (other users, without privilege), zombies (no memory left) and processes
// in the middle of execve (their new environment is not in place yet, for
// a moment after Start returns) are not found.
func FindByEnv(key, value string) []int {
	entry := []byte(key + "=" + value)
	self := os.Getpid()
	var pids []int
	for _, pid := range allPids() {
		if pid != self && hasEnv(pid, entry) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allPids lists the process (thread group) ids in /proc, sorted.
func allPids() []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var pids []int
	for _, name := range names {
		if pid, err := strconv.Atoi(name); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

func hasEnv(pid int, entry []byte) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for e := range bytes.SplitSeq(b, []byte{0}) {
		if bytes.Equal(e, entry) {
			return true
		}
	}
	return false
}

// KillByEnv ends every process found by FindByEnv(key, value): SIGTERM first,
// then, after at most grace, SIGKILL for those still alive and for matching
// processes that appeared meanwhile (a run's processes may still be starting
// others), sweeping again until none is left (at most about half a second).
// The grace period ends early once every SIGTERMed process is gone; grace <= 0
// sends SIGKILL straight away. It returns the number of distinct processes
// signalled. Processes are pinned with pidfds before being signalled, so a
// recycled pid is never hit.
func KillByEnv(key, value string, grace time.Duration) int {
	entry := []byte(key + "=" + value)
	signalled := map[procID]bool{}
	// sweep signals every live matching process and returns them; found
	// counts them. Targets not kept are closed right away.
	sweep := func(sig syscall.Signal, keep bool) (kept []target, found int) {
		for _, t := range openMatching(entry) {
			if t.signal(sig) {
				signalled[procID{t.pid, t.start}] = true
				found++
			}
			if keep {
				kept = append(kept, t)
			} else {
				t.close()
			}
		}
		return kept, found
	}
	if grace > 0 {
		first, _ := sweep(syscall.SIGTERM, true)
		deadline := time.Now().Add(grace)
		for time.Now().Before(deadline) && slices.ContainsFunc(first, target.alive) {
			time.Sleep(10 * time.Millisecond)
		}
		for _, t := range first {
			// Including any whose environment no longer matches.
			t.signal(syscall.SIGKILL)
			t.close()
		}
	}
	// SIGKILL until a sweep finds nobody alive: this catches processes
	// started meanwhile and processes that were in mid-execve during an
	// earlier sweep (their environment reads empty for a moment). Killed
	// processes take a moment to die, hence a few rounds.
	for range maxKillSweeps {
		if _, found := sweep(syscall.SIGKILL, false); found == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return len(signalled)
}

// maxKillSweeps bounds KillByEnv's final phase (about half a second) against
// a run that forks faster than it can be killed.
const maxKillSweeps = 50

// procID names a process for good: pid plus start time.
type procID struct {
	pid   int
	start uint64
}

// target is a process found by its environment, pinned by a pidfd where the
// kernel has them (fd -1 otherwise).
type target struct {
	pid   int
	start uint64
	fd    int
}

// openMatching finds the processes carrying entry and pins each with a
// pidfd. The environment is checked again after pidfd_open and the pidfd
// checked for exit after that: a process still running then is the one whose
// environment was read, even if its pid was recycled around the scan.
func openMatching(entry []byte) []target {
	self := os.Getpid()
	var ts []target
	for _, pid := range allPids() {
		if pid == self || !hasEnv(pid, entry) {
			continue
		}
		t := target{pid: pid, fd: -1}
		t.start, _ = StartTime(pid)
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			t.fd = fd
			if !hasEnv(pid, entry) || !t.alive() {
				t.close()
				continue
			}
		}
		ts = append(ts, t)
	}
	return ts
}

// alive reports whether the target has not exited (zombies have).
func (t target) alive() bool {
	if t.fd < 0 {
		return Alive(t.pid, t.start)
	}
	return !waitReadable(t.fd, 0)
}

// signal sends sig and reports whether it went to a live process (a zombie
// accepts signals too, but it is already gone for the caller's purpose).
func (t target) signal(sig syscall.Signal) bool {
	if !t.alive() {
		return false
	}
	if t.fd < 0 {
		return unix.Kill(t.pid, sig) == nil
	}
	return unix.PidfdSendSignal(t.fd, sig, nil, 0) == nil
}

func (t target) close() {
	if t.fd >= 0 {
		unix.Close(t.fd)
	}
}
