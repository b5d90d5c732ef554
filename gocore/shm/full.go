package shm

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// FullError reports that the shared-memory filesystem had no room for pages
// a segment needed. errors.Is(err, syscall.ENOSPC) holds for it.
type FullError struct {
	Dir   string // the directory (tmpfs) that is full
	Total uint64 // its size in bytes
	Free  uint64 // bytes still free in it when the error was built
	Need  uint64 // bytes the failed request asked for
}

func newFullError(dir string, need uint64) *FullError {
	e := &FullError{Dir: dir, Need: need}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) == nil {
		e.Total = st.Blocks * uint64(st.Bsize)
		e.Free = st.Bavail * uint64(st.Bsize)
	}
	return e
}

func (e *FullError) Error() string {
	return fmt.Sprintf("dragon_mp: shared memory is full: %s has %s in total, %s free, %s more needed. "+
		"Give the machine or container more shared memory (docker run --shm-size=2g, "+
		"or mount -o remount,size=4G %s), or point %s at a larger tmpfs.",
		e.Dir, FormatBytes(e.Total), FormatBytes(e.Free), FormatBytes(e.Need), e.Dir, EnvDir)
}

// Unwrap makes errors.Is(err, syscall.ENOSPC) hold.
func (e *FullError) Unwrap() error { return syscall.ENOSPC }

// FormatBytes renders n as "512 B", "1.2 MiB", "64.0 GiB", ...
func FormatBytes(n uint64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
