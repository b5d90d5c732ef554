package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EnvDir names the environment variable that overrides the segment directory.
const EnvDir = "DRAGON_MP_SHM_DIR"

// DefaultDir is the segment directory when EnvDir is not set.
const DefaultDir = "/dev/shm"

// ErrBadName reports a segment name that is not a plain file name.
var ErrBadName = errors.New("shm: invalid segment name")

// ErrClosed reports an operation on a closed Segment.
var ErrClosed = errors.New("shm: segment is closed")

// Dir returns the directory that holds the segments: $DRAGON_MP_SHM_DIR if
// set, else /dev/shm.
func Dir() string {
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	return DefaultDir
}

// Segment is one mapped shared-memory segment.
type Segment struct {
	name string
	path string // Dir()/name at Create/Open time
	size uint64

	mu   sync.RWMutex // guards fd and data against Close
	fd   int          // -1 once closed
	data []byte       // the whole mapping; nil once closed
}

// checkName rejects names that are not a single plain path element.
func checkName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: %q", ErrBadName, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %q contains '/' or NUL", ErrBadName, name)
	case len(name) > 255:
		return fmt.Errorf("%w: %d bytes long (at most 255)", ErrBadName, len(name))
	}
	return nil
}

// Create makes a new segment of size bytes (sparse) and maps it. It fails if
// a segment of that name exists.
func Create(name string, size uint64) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if size == 0 || size > 1<<62 {
		return nil, fmt.Errorf("shm: create %s: invalid size %d", name, size)
	}
	dir := Dir()
	path := filepath.Join(dir, name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "shm: create", Path: path, Err: err}
	}
	fail := func(op string, err error) (*Segment, error) {
		unix.Close(fd)
		unix.Unlink(path)
		if err == unix.ENOSPC {
			return nil, newFullError(dir, size)
		}
		return nil, &os.PathError{Op: "shm: " + op, Path: path, Err: err}
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return fail("fchmod", err)
	}
	if err := ignoringEINTR(func() error { return unix.Ftruncate(fd, int64(size)) }); err != nil {
		return fail("ftruncate", err)
	}
	data, err := mmap(fd, size)
	if err != nil {
		return fail("mmap", err)
	}
	return &Segment{name: name, path: path, size: size, fd: fd, data: data}, nil
}

// Open maps the existing segment name whole.
func Open(name string) (*Segment, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(Dir(), name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "shm: open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "shm: fstat", Path: path, Err: err}
	}
	if st.Size <= 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: open %s: segment is empty (still being created?)", path)
	}
	size := uint64(st.Size)
	data, err := mmap(fd, size)
	if err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "shm: mmap", Path: path, Err: err}
	}
	return &Segment{name: name, path: path, size: size, fd: fd, data: data}, nil
}

func mmap(fd int, size uint64) ([]byte, error) {
	if size > uint64(^uint(0)>>1) {
		return nil, unix.ENOMEM
	}
	return unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

// Name returns the segment's name (its file name in Dir()).
func (s *Segment) Name() string { return s.name }

// Path returns the segment's file path.
func (s *Segment) Path() string { return s.path }

// Size returns the mapped size in bytes.
func (s *Segment) Size() uint64 { return s.size }

// Bytes returns the whole mapping (nil after Close).
func (s *Segment) Bytes() []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.data
}

// Base returns the address of the mapping's first byte (nil after Close).
func (s *Segment) Base() unsafe.Pointer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.data == nil {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(s.data))
}

// Commit makes the pages of [off, off+n) exist (fallocate), so that touching
// them later cannot SIGBUS. It fails with a *FullError when the tmpfs is full.
// Committing already existing pages is harmless.
func (s *Segment) Commit(off, n uint64) error {
	err := s.fallocate("commit", 0, off, n)
	if errors.Is(err, unix.ENOSPC) {
		return newFullError(filepath.Dir(s.path), n)
	}
	return err
}

// Release gives the pages of [off, off+n) back to the kernel (a hole is
// punched in the file: every process's mapping of them reads zeros from then
// on, and touching them again allocates new pages, which may SIGBUS on a full
// tmpfs: Commit them first).
func (s *Segment) Release(off, n uint64) error {
	return s.fallocate("release", unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
}

// fallocate runs fallocate(2) with mode on [off, off+n) of the open segment.
func (s *Segment) fallocate(what string, mode uint32, off, n uint64) error {
	if n == 0 {
		return nil
	}
	if off > s.size || n > s.size-off {
		return fmt.Errorf("shm: %s %s: range [%d, +%d) outside the segment (size %d)",
			what, s.name, off, n, s.size)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.fd < 0 {
		return ErrClosed
	}
	err := ignoringEINTR(func() error { return unix.Fallocate(s.fd, mode, int64(off), int64(n)) })
	if err != nil {
		return &os.PathError{Op: "shm: fallocate (" + what + ")", Path: s.path, Err: err}
	}
	return nil
}

// Tight reports whether the filesystem holding the segment has less than a
// quarter of its size or 64 MiB free, whichever is more (or cannot say): the
// point from which memory that is committed but unused is worth giving back
// at once. A small tmpfs (Docker's 64 MB /dev/shm) is always tight.
func (s *Segment) Tight() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var st unix.Statfs_t
	if s.fd < 0 || unix.Fstatfs(s.fd, &st) != nil {
		return true
	}
	free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	return free < max(total/4, 64<<20)
}

// Close unmaps the segment and closes its file descriptor. It is idempotent.
func (s *Segment) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	var err error
	if s.data != nil {
		err = unix.Munmap(s.data)
		s.data = nil
	}
	if cerr := unix.Close(s.fd); err == nil {
		err = cerr
	}
	s.fd = -1
	if err != nil {
		return &os.PathError{Op: "shm: close", Path: s.path, Err: err}
	}
	return nil
}

// Unlink removes the segment's file (from the directory it was created or
// opened in). The mapping stays usable until Close.
func (s *Segment) Unlink() error {
	if err := os.Remove(s.path); err != nil {
		return fmt.Errorf("shm: %w", err)
	}
	return nil
}

// Unlink removes the segment name from Dir().
func Unlink(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(Dir(), name)); err != nil {
		return fmt.Errorf("shm: %w", err)
	}
	return nil
}

// List returns the sorted names in Dir() that start with prefix.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(Dir())
	if err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}
