package shm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// prefix names every segment these tests create in /dev/shm, so TestMain can
// check that none is left behind.
var prefix = fmt.Sprintf("dragon_mp.rtest%d.", os.Getpid())

func TestMain(m *testing.M) {
	os.Unsetenv(EnvDir)
	code := m.Run()
	left, err := List(prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "list:", err)
		code = 1
	}
	for _, n := range left {
		fmt.Fprintln(os.Stderr, "segment left behind:", n)
		Unlink(n)
		code = 1
	}
	os.Exit(code)
}

func TestDir(t *testing.T) {
	t.Setenv(EnvDir, "")
	if d := Dir(); d != "/dev/shm" {
		t.Fatalf("Dir() = %q, want /dev/shm", d)
	}
	t.Setenv(EnvDir, "/some/where")
	if d := Dir(); d != "/some/where" {
		t.Fatalf("Dir() = %q, want /some/where", d)
	}
}

func TestCreateOpenCloseUnlink(t *testing.T) {
	name := prefix + "basic"
	const size = 3<<20 + 100 // not a page multiple
	s, err := Create(name, size)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer Unlink(name)
	if s.Name() != name || s.Size() != size || len(s.Bytes()) != size {
		t.Fatalf("name %q size %d len %d", s.Name(), s.Size(), len(s.Bytes()))
	}
	if s.Path() != filepath.Join("/dev/shm", name) {
		t.Fatalf("path %q", s.Path())
	}
	if err := s.Commit(0, size); err != nil {
		t.Fatal(err)
	}
	copy(s.Bytes()[size-5:], "hello")

	o, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	if o.Size() != size {
		t.Fatalf("opened size %d, want %d", o.Size(), size)
	}
	if got := o.Bytes()[size-5:]; !bytes.Equal(got, []byte("hello")) {
		t.Fatalf("second mapping sees %q", got)
	}
	o.Bytes()[0] = 42
	if s.Bytes()[0] != 42 {
		t.Fatal("write through second mapping not visible in the first")
	}
	if *(*byte)(o.Base()) != 42 {
		t.Fatal("Base does not point at the mapping")
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := o.Close(); err != nil {
			t.Fatalf("close #%d: %v", i, err)
		}
	}
	if o.Bytes() != nil || o.Base() != nil {
		t.Fatal("closed segment still exposes its mapping")
	}
	if err := o.Commit(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}

	if err := s.Unlink(); err != nil {
		t.Fatal(err)
	}
	if s.Bytes()[0] != 42 { // still mapped after unlink
		t.Fatal("mapping lost after unlink")
	}
	if _, err := Open(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open after unlink = %v, want ErrNotExist", err)
	}
	if err := Unlink(name); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("second Unlink = %v, want ErrNotExist", err)
	}
}

func TestCreateIsSparse(t *testing.T) {
	name := prefix + "sparse"
	s, err := Create(name, 64<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unlink()
	defer s.Close()
	if err := s.Commit(1<<30, 100); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.Path(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 64<<30 {
		t.Fatalf("size %d", st.Size)
	}
	if used := st.Blocks * 512; used != 4096 {
		t.Fatalf("%d bytes allocated, want one page", used)
	}
	if err := s.Commit(64<<30-10, 11); err == nil {
		t.Fatal("Commit past the end succeeded")
	}
	if err := s.Commit(^uint64(0), 2); err == nil {
		t.Fatal("Commit with overflowing range succeeded")
	}
}

func TestMode0600WhateverTheUmask(t *testing.T) {
	for _, umask := range []int{0, 0o022, 0o077, 0o277, 0o777} {
		t.Run(fmt.Sprintf("umask%03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			name := fmt.Sprintf("%smode%03o", prefix, umask)
			s, err := Create(name, 4096)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Unlink()
			defer s.Close()
			fi, err := os.Stat(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			if m := fi.Mode(); m != 0o600 {
				t.Fatalf("mode %v, want -rw-------", m)
			}
		})
	}
}

func TestCreateExclusive(t *testing.T) {
	name := prefix + "excl"
	s, err := Create(name, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unlink()
	defer s.Close()
	s.Commit(0, 4096)
	s.Bytes()[0] = 7
	_, err = Create(name, 8192)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create = %v, want ErrExist", err)
	}
	// The failed Create must not have touched the existing segment.
	if fi, err := os.Stat(s.Path()); err != nil || fi.Size() != 4096 || s.Bytes()[0] != 7 {
		t.Fatalf("existing segment changed: %v %v", fi, err)
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("x", 256)
	tests := []struct {
		name string
		ok   bool
	}{
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"/abs", false},
		{"nul\x00", false},
		{long, false},
		{prefix + "ok", true},
		{prefix + "...dots", true},
	}
	for _, tc := range tests {
		s, err := Create(tc.name, 4096)
		if tc.ok {
			if err != nil {
				t.Errorf("Create(%q): %v", tc.name, err)
				continue
			}
			s.Close()
			if err := Unlink(tc.name); err != nil {
				t.Errorf("Unlink(%q): %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadName) {
			t.Errorf("Create(%q) = %v, want ErrBadName", tc.name, err)
		}
		if _, err := Open(tc.name); !errors.Is(err, ErrBadName) {
			t.Errorf("Open(%q) = %v, want ErrBadName", tc.name, err)
		}
		if err := Unlink(tc.name); !errors.Is(err, ErrBadName) {
			t.Errorf("Unlink(%q) = %v, want ErrBadName", tc.name, err)
		}
	}
	if _, err := Create(prefix+"zero", 0); err == nil {
		t.Error("Create with size 0 succeeded")
		Unlink(prefix + "zero")
	}
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	for _, n := range []string{"dragon_mp.r1.pool", "dragon_mp.r1.x", "dragon_mp.r2.pool", "other"} {
		s, err := Create(n, 4096)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
	os.Mkdir(filepath.Join(dir, "dragon_mp.r1.dir"), 0o700) // directories are not segments
	tests := []struct {
		prefix string
		want   []string
	}{
		{"dragon_mp.r1.", []string{"dragon_mp.r1.pool", "dragon_mp.r1.x"}},
		{"dragon_mp.", []string{"dragon_mp.r1.pool", "dragon_mp.r1.x", "dragon_mp.r2.pool"}},
		{"", []string{"dragon_mp.r1.pool", "dragon_mp.r1.x", "dragon_mp.r2.pool", "other"}},
		{"nothing", nil},
	}
	for _, tc := range tests {
		got, err := List(tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	t.Setenv(EnvDir, filepath.Join(dir, "missing"))
	if _, err := List(""); err == nil {
		t.Error("List of a missing directory succeeded")
	}
}

// mountTinyTmpfs mounts a tmpfs of the given size (mount option syntax) in a
// temporary directory, points EnvDir at it and unmounts it at the end of the
// test. It skips the test when mounting is not allowed.
func mountTinyTmpfs(t *testing.T, size string) string {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v)", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	t.Setenv(EnvDir, dir)
	return dir
}

func TestCommitOnFullTmpfs(t *testing.T) {
	dir := mountTinyTmpfs(t, "1m")
	s, err := Create("seg", 16<<20) // sparse, larger than the filesystem
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const first = 512 << 10
	if err := s.Commit(0, first); err != nil {
		t.Fatal(err)
	}
	// Only ever write inside the committed range: past it, a full tmpfs SIGBUSes.
	b := s.Bytes()[:first]
	for i := range b {
		b[i] = byte(i)
	}

	err = s.Commit(first, 1<<20)
	var fe *FullError
	if !errors.As(err, &fe) {
		t.Fatalf("Commit on a full tmpfs = %v, want *FullError", err)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatal("FullError does not match syscall.ENOSPC")
	}
	if fe.Dir != dir || fe.Total != 1<<20 || fe.Need != 1<<20 || fe.Free >= 1<<20 {
		t.Fatalf("FullError fields %+v", *fe)
	}
	msg := fe.Error()
	for _, want := range []string{"shared memory is full", dir, "1.0 MiB in total", "1.0 MiB more needed",
		"--shm-size", "DRAGON_MP_SHM_DIR"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	t.Log(msg)
	for i := range b {
		if b[i] != byte(i) {
			t.Fatalf("committed byte %d changed", i)
		}
	}
	// Freed space can be committed again.
	if err := s.Unlink(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Create("seg2", 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Commit(0, 768<<10); err != nil {
		t.Fatalf("Commit after freeing: %v", err)
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1258291, "1.2 MiB"},
		{64 << 20, "64.0 MiB"}, {4 << 30, "4.0 GiB"}, {3 << 40, "3.0 TiB"},
	}
	for _, tc := range tests {
		if got := FormatBytes(tc.n); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
