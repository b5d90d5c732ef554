package events

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// What /proc, the memory cgroup and the kernel log say. Both modes use
// these: the cgroup names the OOM killer's scope in the text, and in the
// fallback they are all there is.

// memCgroup is a process's memory cgroup: its path as /proc/<pid>/cgroup
// names it and the directory of its control files ("" if not found).
type memCgroup struct {
	path, dir string
	v2        bool
}

// cgroupRoot is where the hierarchies are mounted (a variable for tests).
var cgroupRoot = "/sys/fs/cgroup"

// memCgroupOf reads /proc/<pid>/cgroup: the v1 "memory" controller line,
// else the v2 "0::" line.
func memCgroupOf(pid int) memCgroup {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return memCgroup{}
	}
	var v2path string
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2path = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				return memCgroup{path: parts[2], dir: filepath.Join(cgroupRoot, "memory", parts[2])}
			}
		}
	}
	if v2path == "" {
		return memCgroup{}
	}
	dir := filepath.Join(cgroupRoot, v2path)
	if _, err := os.Stat(filepath.Join(dir, "memory.events")); err != nil {
		// A hybrid host: the v2 tree is mounted at unified/, without memory.
		return memCgroup{path: v2path}
	}
	return memCgroup{path: v2path, dir: dir, v2: true}
}

// oomKills is the cgroup's count of OOM kills (v1 memory.oom_control's
// oom_kill, v2 memory.events' oom_kill); -1 if unknown.
func (c memCgroup) oomKills() int64 {
	if c.dir == "" {
		return -1
	}
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
			if n, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// limit is the cgroup's memory limit in bytes, 0 if none or unknown.
func (c memCgroup) limit() uint64 {
	if c.dir == "" {
		return 0
	}
	file := "memory.limit_in_bytes"
	if c.v2 {
		file = "memory.max"
	}
	data, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || n >= 1<<62 { // "max", or v1's "unlimited" (page-rounded int64 max)
		return 0
	}
	return n
}

// kmsgOOM is what the kernel log says about an OOM kill of one pid.
type kmsgOOM struct {
	rssKB uint64 // anon + file + shmem
	memcg string // task_memcg of the oom-kill line, "" if absent
	found bool
}

var (
	killedRe = regexp.MustCompile(`Killed process (\d+) \(.*?\).*?anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB`)
	memcgRe  = regexp.MustCompile(`oom-kill:.*task_memcg=([^,]*),.*pid=(\d+),`)
)

// kmsgPath is the kernel log device (a variable for tests).
var kmsgPath = "/dev/kmsg"

// readKmsgOOM looks through the kernel log for an OOM kill of pid logged
// since `since` (CLOCK_MONOTONIC, which is what the log's timestamps count
// in): "oom-kill:... task_memcg=/x,...,pid=N," and "Killed process N (...)".
// Reading /dev/kmsg needs CAP_SYSLOG (or kernel.dmesg_restrict=0); without
// it nothing is found, which the caller reports as "unknown", not "no".
func readKmsgOOM(pid int, since time.Duration) kmsgOOM {
	// Raw syscalls: an *os.File would park the non-blocking device in Go's
	// poller and wait for the next record instead of returning at the end.
	fd, err := unix.Open(kmsgPath, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return kmsgOOM{}
	}
	defer unix.Close(fd)
	var res kmsgOOM
	want := strconv.Itoa(pid)
	buf := make([]byte, 8192)
	for {
		// Each read returns one record: "prio,seq,usec,flags;text\n...".
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE || err == unix.EINTR {
			continue // EPIPE: overwritten while reading, go on with the next
		}
		if err != nil || n <= 0 {
			break // EAGAIN: the end
		}
		rec := string(buf[:n])
		semi := strings.IndexByte(rec, ';')
		if semi < 0 {
			continue
		}
		head := strings.Split(rec[:semi], ",")
		if len(head) < 3 {
			continue
		}
		usec, _ := strconv.ParseInt(head[2], 10, 64)
		if time.Duration(usec)*time.Microsecond < since {
			continue
		}
		text := rec[semi+1:]
		if m := memcgRe.FindStringSubmatch(text); m != nil && m[2] == want {
			res.memcg = m[1]
		}
		if m := killedRe.FindStringSubmatch(text); m != nil && m[1] == want {
			a, _ := strconv.ParseUint(m[2], 10, 64)
			b, _ := strconv.ParseUint(m[3], 10, 64)
			c, _ := strconv.ParseUint(m[4], 10, 64)
			res.rssKB, res.found = a+b+c, true
		}
	}
	return res
}

// monotonicNow is CLOCK_MONOTONIC, the clock of the kernel log.
func monotonicNow() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}
