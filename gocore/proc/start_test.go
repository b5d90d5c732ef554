package proc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name     string
		spec     Spec
		want     int
		signaled bool
	}{
		{"true", Spec{Path: truePath}, 0, false},
		{"exit 3", Spec{Path: shPath, Args: []string{"sh", "-c", "exit 3"}}, 3, false},
		{"exit 255", Spec{Path: shPath, Args: []string{"sh", "-c", "exit 255"}}, 255, false},
		{"SIGKILL", Spec{Path: shPath, Args: []string{"sh", "-c", "kill -9 $$"}}, -9, true},
		{"SIGTERM", Spec{Path: shPath, Args: []string{"sh", "-c", "kill -TERM $$"}}, -15, true},
	}
	bothModes(t, func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				st := wait(t, start(t, tt.spec))
				if st.Code != tt.want || st.Signaled() != tt.signaled || st.Exited() == tt.signaled || st.Lost {
					t.Fatalf("status = %+v (%v), want code %d", st, st, tt.want)
				}
				if tt.signaled && st.Signal() != syscall.Signal(-tt.want) {
					t.Fatalf("Signal() = %v, want %v", st.Signal(), syscall.Signal(-tt.want))
				}
			})
		}
	})
}

func TestStartErrors(t *testing.T) {
	noExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(noExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		spec    Spec
		is      error  // errors.Is target, nil to skip
		message string // exact message if it starts with "proc:", else a substring
	}{
		{"missing program", Spec{Path: "/nonexistent/prog"}, fs.ErrNotExist,
			"proc: start /nonexistent/prog: no such file or directory"},
		{"not executable", Spec{Path: noExec}, fs.ErrPermission,
			"proc: start " + noExec + ": permission denied"},
		{"missing dir", Spec{Path: truePath, Dir: "/nonexistent/dir"}, fs.ErrNotExist,
			"proc: start /bin/true: chdir /nonexistent/dir: no such file or directory"},
		{"empty path", Spec{}, nil, "proc: start: Spec.Path is empty"},
		{"bad Files entry", Spec{Path: truePath, Files: []int{0, -2}}, nil,
			"proc: start /bin/true: Files[1] = -2 is neither a descriptor nor -1"},
		{"closed descriptor", Spec{Path: truePath, Files: []int{-1, 1 << 20}}, syscall.EBADF, "bad file descriptor"},
		{"NUL in argument", Spec{Path: truePath, Args: []string{"true", "a\x00b"}}, syscall.EINVAL, "invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(tt.spec)
			if err == nil {
				p.Kill()
				p.Wait(-1)
				p.Release()
				t.Fatal("Start succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			if strings.HasPrefix(tt.message, "proc:") && err.Error() != tt.message ||
				!strings.Contains(err.Error(), tt.message) {
				t.Errorf("error = %q, want %q", err, tt.message)
			}
		})
	}
}

func TestFiles(t *testing.T) {
	const probe34 = `for f in 3 4; do if [ -e /proc/$$/fd/$f ]; then echo $f:open; else echo $f:closed; fi; done`
	tests := []struct {
		name  string
		files func(w int) []int
		args  []string
		want  string
	}{
		{"child writes to fd 3", func(w int) []int { return []int{-1, -1, 2, w} },
			[]string{shPath, "-c", "echo hi >&3"}, "hi\n"},
		{"-1 stdin is /dev/null", func(w int) []int { return []int{-1, w} },
			[]string{readlinkPath, "/proc/self/fd/0"}, "/dev/null\n"},
		{"stderr past the end is /dev/null", func(w int) []int { return []int{-1, w} },
			[]string{readlinkPath, "/proc/self/fd/2"}, "/dev/null\n"},
		{"-1 past stdio closes", func(w int) []int { return []int{-1, w, 2, -1, w} },
			[]string{shPath, "-c", probe34}, "3:closed\n4:open\n"},
		{"same fd twice", func(w int) []int { return []int{-1, w, w} },
			[]string{shPath, "-c", "echo out; echo err >&2"}, "out\nerr\n"},
		{"fd already in place", func(w int) []int {
			// w is passed at its own number: the child must clear its
			// close-on-exec flag rather than dup it.
			fs := make([]int, w+1)
			for i := range fs {
				fs[i] = -1
			}
			fs[1], fs[w] = w, w
			return fs
		}, nil, "ok\nok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, read := capture(t)
			args := tt.args
			if args == nil {
				args = []string{shPath, "-c", "echo ok; echo ok >&" + strconv.Itoa(w)}
			}
			p := start(t, Spec{Path: args[0], Args: args, Files: tt.files(w)})
			got := read()
			if st := wait(t, p); st.Code != 0 {
				t.Fatalf("child failed: %v (output %q)", st, got)
			}
			if got != tt.want {
				t.Fatalf("output = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestOnlyFilesInherited: a descriptor the caller left inheritable (as a C
// library or os.set_inheritable would) must not reach the child, and the
// caller's own flag must stay as it was.
func TestOnlyFilesInherited(t *testing.T) {
	var leaky [2]int
	if err := unix.Pipe2(leaky[:], 0); err != nil { // no O_CLOEXEC
		t.Fatal(err)
	}
	defer unix.Close(leaky[0])
	defer unix.Close(leaky[1])

	w, read := capture(t)
	script := ""
	for _, fd := range leaky {
		n := strconv.Itoa(fd)
		script += "if [ -e /proc/$$/fd/" + n + " ]; then echo " + n + ":leaked; else echo " + n + ":closed; fi;"
	}
	p := start(t, Spec{Path: shPath, Args: []string{"sh", "-c", script}, Files: []int{-1, w, 2}})
	got := read()
	wait(t, p)
	want := strconv.Itoa(leaky[0]) + ":closed\n" + strconv.Itoa(leaky[1]) + ":closed\n"
	if got != want {
		t.Fatalf("child saw %q, want %q", got, want)
	}
	for _, fd := range leaky {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			t.Fatalf("caller's fd %d flags changed: %#x, %v", fd, flags, err)
		}
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("DRAGON_MP_PROC_INHERITED", "yes")
	tests := []struct {
		name   string
		env    []string
		check  func(out string) bool
		expect string
	}{
		{"explicit", []string{"FOO=bar baz", "EMPTY="},
			func(out string) bool { return out == "FOO=bar baz\nEMPTY=\n" }, "exactly the given entries"},
		{"empty", []string{},
			func(out string) bool { return out == "" }, "no entries"},
		{"nil inherits os.Environ", nil,
			func(out string) bool {
				return strings.Contains(out, "\nDRAGON_MP_PROC_INHERITED=yes\n") || strings.HasPrefix(out, "DRAGON_MP_PROC_INHERITED=yes\n")
			},
			"the caller's environment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, read := capture(t)
			p := start(t, Spec{Path: envPath, Args: []string{"env"}, Env: tt.env, Files: []int{-1, w, 2}})
			out := read()
			wait(t, p)
			if !tt.check(out) {
				t.Fatalf("env printed %q, want %s", out, tt.expect)
			}
		})
	}
}

func TestDir(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	cwd, _ = filepath.EvalSymlinks(cwd)
	for _, tt := range []struct{ dir, want string }{{dir, dir}, {"", cwd}} {
		w, read := capture(t)
		p := start(t, Spec{Path: pwdPath, Args: []string{"pwd", "-P"}, Dir: tt.dir, Files: []int{-1, w, 2}})
		if got := strings.TrimSpace(read()); got != tt.want {
			t.Errorf("Dir %q: child ran in %q, want %q", tt.dir, got, tt.want)
		}
		wait(t, p)
	}
}

func TestNewSession(t *testing.T) {
	self, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, newSession := range []bool{true, false} {
		p := start(t, Spec{Path: sleepPath, Args: []string{"sleep", "5"}, NewSession: newSession})
		st, err := readStat(p.Pid())
		if err != nil {
			t.Fatal(err)
		}
		want := self.session
		if newSession {
			want = p.Pid()
		}
		if st.session != want {
			t.Errorf("NewSession=%v: session %d, want %d", newSession, st.session, want)
		}
	}
}

// TestNoDescriptorLeak: starting, waiting and releasing (successful or not)
// leaves the caller's descriptor table as it was.
func TestNoDescriptorLeak(t *testing.T) {
	cycle := func() {
		for _, mode := range []bool{true, false} {
			usePidfd = mode
			p, err := Start(Spec{Path: truePath})
			if err != nil {
				t.Fatal(err)
			}
			p.Wait(-1)
			p.Release()
			p, err = Start(Spec{Path: sleepPath, Args: []string{"sleep", "5"}})
			if err != nil {
				t.Fatal(err)
			}
			p.Kill()
			p.Release() // reaped and closed in the background
			if _, err := Start(Spec{Path: "/nonexistent"}); err == nil {
				t.Fatal("Start of a missing program succeeded")
			}
		}
		usePidfd = true
	}
	countFDs := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	cycle() // warm up lazily opened runtime descriptors
	waitNoChildren(2 * time.Second)
	before := countFDs()
	for range 5 {
		cycle()
	}
	if kids := waitNoChildren(2 * time.Second); len(kids) > 0 {
		t.Fatalf("children not reaped after Release: %v", kids)
	}
	if after := countFDs(); after != before {
		t.Fatalf("open descriptors: %d before, %d after", before, after)
	}
}
