package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// procStat is the part of /proc/<pid>/stat this package uses.
type procStat struct {
	state     byte   // field 3: R, S, D, Z (zombie), X (dead), ...
	ppid      int    // field 4
	session   int    // field 6
	startTime uint64 // field 22: clock ticks after boot
}

// readStat parses /proc/<pid>/stat. A vanished process gives an error
// matching fs.ErrNotExist.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, syscall.ESRCH) { // exited while being read
		err = fs.ErrNotExist
	}
	if err != nil {
		return procStat{}, fmt.Errorf("proc: pid %d: %w", pid, err)
	}
	// Field 2, the command name, is in parentheses and may itself contain
	// spaces and ')'; the last ')' ends it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("proc: pid %d: malformed /proc stat %q", pid, b)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	const startField = 22 - 3
	if len(f) <= startField || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("proc: pid %d: malformed /proc stat %q", pid, b)
	}
	st := procStat{state: f[0][0]}
	st.ppid, err = strconv.Atoi(string(f[4-3]))
	if err == nil {
		st.session, err = strconv.Atoi(string(f[6-3]))
	}
	if err == nil {
		st.startTime, err = strconv.ParseUint(string(f[startField]), 10, 64)
	}
	if err != nil {
		return procStat{}, fmt.Errorf("proc: pid %d: malformed /proc stat: %w", pid, err)
	}
	return st, nil
}

// StartTime returns when pid started (field 22 of /proc/<pid>/stat, in clock
// ticks after boot). Together with the pid it names a process for good: a
// recycled pid comes with a different start time. A missing process gives an
// error matching fs.ErrNotExist.
func StartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.startTime, err
}

// Alive reports whether pid is a running process that started at startTime
// (as returned by StartTime). startTime 0 accepts any start time. Zombies
// count as dead: they have exited and only wait to be reaped.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil || st.state == 'Z' || st.state == 'X' {
		return false
	}
	return startTime == 0 || st.startTime == startTime
}
