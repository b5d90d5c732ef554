package events

import (
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const sigKILL = int(unix.SIGKILL)

// Reason is why a process ended.
type Reason struct {
	// Kind is "exited" (Code is its exit code), "signal" (a signal killed
	// it: Signal, and the sender when known) or "oom" (the OOM killer).
	Kind string `json:"kind"`
	// Code is the exit status in Python's convention: the exit code, or
	// minus the signal number.
	Code   int `json:"code"`
	Signal int `json:"signal,omitempty"`
	// SenderPID and SenderComm name who sent the signal (0 and "": unknown,
	// or raised by the kernel). A fault the process caused itself has its
	// own pid here.
	SenderPID  int    `json:"sender_pid,omitempty"`
	SenderComm string `json:"sender_comm,omitempty"`
	// Kernel is true when the kernel raised the signal (a fault, the OOM
	// killer) rather than a process calling kill.
	Kernel bool `json:"kernel,omitempty"`
	// RSS is the resident size in bytes when the OOM killer chose it, Limit
	// the memory limit of its cgroup (0: unknown or none), Cgroup the memory
	// cgroup ("" unknown).
	RSS    uint64 `json:"rss,omitempty"`
	Limit  uint64 `json:"limit,omitempty"`
	Cgroup string `json:"cgroup,omitempty"`
	// Text says it in a sentence for users: "exited 3", "killed by SIGKILL
	// from pid 1234 (bash)", "killed by the OOM killer (cgroup /x, rss 3.1
	// GiB, limit 4 GiB)", "SIGSEGV (a memory fault in the process itself)".
	Text string `json:"text"`
}

func exited(code int) Reason {
	return Reason{Kind: "exited", Code: code, Text: fmt.Sprintf("exited %d", code)}
}

// faults are the signals the kernel raises in a process for what its own
// code did, and how to say it.
var faults = map[int]string{
	int(unix.SIGSEGV): "a memory fault in the process itself",
	int(unix.SIGBUS):  "a bus error in the process itself (e.g. a truncated mapped file)",
	int(unix.SIGILL):  "an illegal instruction in the process itself",
	int(unix.SIGFPE):  "an arithmetic fault in the process itself",
}

func signalName(sig int) string {
	if n := unix.SignalName(unix.Signal(sig)); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", sig)
}

// signaled is a death by signal sig; s is what eBPF recorded (nil: nothing).
func signaled(sig int, s *sigValue) Reason {
	r := Reason{Kind: "signal", Code: -sig, Signal: sig}
	name := signalName(sig)
	if s == nil {
		r.Text = fmt.Sprintf("killed by %s (sender unknown)", name)
		return r
	}
	r.SenderPID = int(s.Sender)
	r.SenderComm = strings.TrimRight(string(s.Comm[:]), "\x00")
	r.Kernel = s.Code > 0
	switch {
	case r.Kernel && faults[sig] != "":
		r.Text = fmt.Sprintf("%s (%s)", name, faults[sig])
	case r.Kernel:
		r.Text = fmt.Sprintf("killed by %s from the kernel (while pid %d (%s) ran)", name, r.SenderPID, r.SenderComm)
	default:
		r.Text = fmt.Sprintf("killed by %s from pid %d (%s)", name, r.SenderPID, r.SenderComm)
	}
	return r
}

// oomKilled is an OOM kill; rssKB from the tracepoint or the kernel log.
func oomKilled(w watchInfo, k kmsgOOM, rssKB uint64) Reason {
	r := Reason{Kind: "oom", Code: -sigKILL, Signal: sigKILL, Kernel: true, RSS: rssKB << 10,
		Cgroup: w.cg.path, Limit: w.limit}
	if k.memcg != "" && k.memcg != w.cg.path {
		// The log's cgroup is the one that ran out (eBPF mode reads no
		// cgroup at Watch; or the process moved after it started). Its
		// limit is read now: 0 if the cgroup is gone.
		r.Cgroup = k.memcg
		r.Limit = memCgroup{path: k.memcg, dir: filepath.Join(cgroupRoot, "memory", k.memcg)}.limit()
		if r.Limit == 0 {
			r.Limit = memCgroup{path: k.memcg, dir: filepath.Join(cgroupRoot, k.memcg), v2: true}.limit()
		}
	}
	var parts []string
	if r.Cgroup != "" {
		parts = append(parts, "cgroup "+r.Cgroup)
	}
	if r.RSS > 0 {
		parts = append(parts, "rss "+bytesText(r.RSS))
	}
	if r.Limit > 0 {
		parts = append(parts, "limit "+bytesText(r.Limit))
	}
	r.Text = "killed by the OOM killer"
	if len(parts) > 0 {
		r.Text += " (" + strings.Join(parts, ", ") + ")"
	}
	return r
}

// bytesText is n in binary units, one decimal: "3.1 GiB", "4 GiB", "512 KiB".
func bytesText(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := fmt.Sprintf("%.1f", v)
	s = strings.TrimSuffix(s, ".0")
	return s + " " + units[i]
}
