package proc

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// childFiles turns Spec.Files into a syscall.ProcAttr.Files table.
//
// syscall.ForkExec dups table[i] onto child fd i and closes i where the entry
// is closeFD, but leaves every other inheritable descriptor of the caller open
// in the child. To make "only Files are inherited" true, the table is
// extended with closeFD entries up to the highest inheritable descriptor found
// in /proc/self/fd. This closes them in the child only: flipping FD_CLOEXEC
// in the caller instead would change descriptors that belong to Python code
// (and race with it closing and reusing them).
//
// The returned closer releases the /dev/null descriptor opened for stdio
// entries; call it once the fork is done.
func childFiles(files []int) (table []uintptr, closer func(), err error) {
	n := max(len(files), 3)
	top := n
	for _, fd := range inheritableFDs(n) {
		top = max(top, fd+1)
	}
	table = make([]uintptr, top)
	for i := range table {
		table[i] = closeFD
	}

	devnull := -1
	closer = func() {
		if devnull >= 0 {
			unix.Close(devnull)
		}
	}
	for i := 0; i < n; i++ {
		fd := -1
		if i < len(files) {
			fd = files[i]
		}
		switch {
		case fd >= 0:
			table[i] = uintptr(fd)
		case i < 3:
			if devnull < 0 {
				devnull, err = unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
				if err != nil {
					return nil, closer, &os.PathError{Op: "open", Path: os.DevNull, Err: err}
				}
			}
			table[i] = uintptr(devnull)
		}
	}
	return table, closer, nil
}

// inheritableFDs lists the caller's descriptors >= from that lack
// FD_CLOEXEC. Without /proc it returns nothing: hygiene then rests on
// everything being opened close-on-exec, which Go and CPython both do.
func inheritableFDs(from int) []int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	dirfd := int(d.Fd())
	var fds []int
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd < from || fd == dirfd {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil { // closed since the listing
			continue
		}
		if flags&unix.FD_CLOEXEC == 0 {
			fds = append(fds, fd)
		}
	}
	d.Close()
	return fds
}
