package events

import (
	"fmt"
	"sync"
	"time"
)

// Options configure a Tracer.
type Options struct {
	// NoBPF skips eBPF and uses the fallback alone (tests force the
	// fallback with it). Zero value false: eBPF is tried first.
	NoBPF bool
}

// Tracer watches processes and tells why they ended. All methods are safe
// for concurrent use; a nil *Tracer answers Reason from the status alone.
type Tracer struct {
	bpf     *bpfTracer // nil: the fallback
	loadErr error      // why eBPF is not used (nil when it is)

	mu      sync.Mutex
	watched map[int]watchInfo
}

// watchInfo is what Watch reads while the process lives.
type watchInfo struct {
	start time.Duration // CLOCK_MONOTONIC at Watch, to skip older log lines
	cg    memCgroup
	ooms  int64  // the cgroup's OOM kill count at Watch (-1: unknown)
	limit uint64 // the cgroup's memory limit at Watch (0: none, unknown)
}

// New returns a Tracer. eBPF is loaded now unless opts.NoBPF; if that fails
// (not root, no BPF, a locked-down kernel) the Tracer uses the fallback and
// LoadError says why. New never fails.
func New(opts Options) *Tracer {
	t := &Tracer{watched: map[int]watchInfo{}}
	if opts.NoBPF {
		t.loadErr = fmt.Errorf("events: eBPF not requested")
		return t
	}
	t.bpf, t.loadErr = loadBPF()
	if t.loadErr != nil {
		t.loadErr = fmt.Errorf("events: eBPF: %w", t.loadErr)
	}
	return t
}

// Mode is "ebpf" or "fallback".
func (t *Tracer) Mode() string {
	if t != nil && t.bpf != nil {
		return "ebpf"
	}
	return "fallback"
}

// LoadError is why eBPF is not in use (nil when it is).
func (t *Tracer) LoadError() error {
	if t == nil {
		return fmt.Errorf("events: no tracer")
	}
	return t.loadErr
}

// Watch starts watching pid, a process that was just started. Call it as
// soon as the pid is known: a signal sent before Watch has no sender.
func (t *Tracer) Watch(pid int) {
	if t == nil || pid <= 0 {
		return
	}
	w := watchInfo{start: monotonicNow(), ooms: -1}
	if t.bpf != nil {
		// The programs see the OOM kill, the kernel log names its cgroup:
		// a start costs one map update and no file reads.
		t.bpf.watch(pid)
	} else {
		w.cg = memCgroupOf(pid)
		w.ooms, w.limit = w.cg.oomKills(), w.cg.limit()
	}
	t.mu.Lock()
	t.watched[pid] = w
	t.mu.Unlock()
}

// Forget stops watching pid without asking for a reason (a process
// released unwaited). Reason forgets by itself.
func (t *Tracer) Forget(pid int) {
	if t == nil {
		return
	}
	if _, ok := t.take(pid); ok && t.bpf != nil {
		t.bpf.forget(pid)
		t.bpf.collect(pid, 0, 0)
	}
}

func (t *Tracer) take(pid int) (watchInfo, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.watched[pid]
	delete(t.watched, pid)
	return w, ok
}

// Reason says why pid ended, given its exit status in Python's convention
// (the exit code, or minus the signal number), and stops watching it. Call
// it once, after the process was reaped; a pid that was not watched gets a
// reason from the status alone.
func (t *Tracer) Reason(pid, code int) Reason {
	if code >= 0 {
		t.Forget(pid)
		return exited(code)
	}
	sig := -code
	if t == nil {
		return signaled(sig, nil)
	}
	w, watched := t.take(pid)
	var s *sigValue
	var o *oomValue
	if !watched {
		return signaled(sig, nil)
	}
	if t.bpf != nil {
		t.bpf.forget(pid)
		s, o = t.bpf.collect(pid, sig, w.start)
	}
	if sig == sigKILL {
		// The kernel log names the OOM victim's cgroup (and its size when
		// eBPF is not there to). Only lines since Watch count: an older
		// line may be about an earlier process that had the same pid.
		var k kmsgOOM
		if o != nil || t.bpf == nil {
			k = readKmsgOOM(pid, w.start)
		}
		switch {
		case o != nil:
			return oomKilled(w, k, o.AnonRSS+o.FileRSS+o.ShmemRSS)
		case k.found:
			return oomKilled(w, k, k.rssKB)
		}
	}
	r := signaled(sig, s)
	if s == nil && sig == sigKILL && w.ooms >= 0 && w.cg.oomKills() > w.ooms {
		// The counter says the OOM killer acted in its cgroup, not whom it
		// chose: said as such, not as a verdict.
		r.Cgroup = w.cg.path
		r.Text += fmt.Sprintf("; the OOM killer acted in its cgroup %s meanwhile", w.cg.path)
	}
	return r
}

// Close detaches the programs and frees the maps.
func (t *Tracer) Close() {
	if t != nil && t.bpf != nil {
		t.bpf.close()
		t.bpf = nil
	}
}
