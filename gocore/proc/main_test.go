package proc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	truePath     = "/bin/true"
	shPath       = "/bin/sh"
	sleepPath    = "/bin/sleep"
	envPath      = "/usr/bin/env"
	readlinkPath = "/usr/bin/readlink"
	pwdPath      = "/bin/pwd"

	helperVar = "DRAGON_MP_PROC_TEST_HELPER" // selects a helper mode in TestMain
)

// TestMain doubles as the helper program: tests re-exec the test binary with
// helperVar set to get a child that runs this package's code.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperVar); mode != "" {
		os.Exit(runHelper(mode))
	}
	// Orphaned grandchildren (TestKillWithParent) are reparented to us rather
	// than to pid 1, which in a container may never reap them; that lets the
	// tests reap them and the leak check below see them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(2)
	}
	code := m.Run()
	if code == 0 {
		if kids := waitNoChildren(2 * time.Second); len(kids) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: child processes left behind (running or unreaped): %v\n", kids)
			code = 1
		}
	}
	os.Exit(code)
}

// runHelper is the body of a helper process.
func runHelper(mode string) int {
	switch mode {
	case "grandchild":
		// Start `sleep 60`, print its pid, then wait to be killed.
		p, err := Start(Spec{
			Path:           sleepPath,
			Args:           []string{"sleep", "60"},
			KillWithParent: os.Getenv("KWP") == "1",
		})
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println(p.Pid())
		time.Sleep(time.Hour)
		return 0
	case "findself":
		// Print what FindByEnv sees for an entry this process carries.
		fmt.Println(os.Getpid(), FindByEnv(os.Getenv("KEY"), os.Getenv("VALUE")))
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// helperSpec runs the test binary as a helper in mode, its stdout on w.
func helperSpec(mode string, w int, env ...string) Spec {
	return Spec{
		Path:           os.Args[0],
		Args:           []string{os.Args[0]},
		Env:            append(append(os.Environ(), helperVar+"="+mode), env...),
		Files:          []int{-1, w, 2},
		KillWithParent: true,
	}
}

// children returns the pids whose parent is this process.
func children() []int {
	var kids []int
	for _, pid := range allPids() {
		if st, err := readStat(pid); err == nil && st.ppid == os.Getpid() {
			kids = append(kids, pid)
		}
	}
	return kids
}

// waitNoChildren gives background reapers (Release) a moment to finish.
func waitNoChildren(d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		kids := children()
		if len(kids) == 0 || time.Now().After(deadline) {
			return kids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bothModes runs f with pidfds and with the pipe fallback used on kernels
// that have none.
func bothModes(t *testing.T, f func(t *testing.T)) {
	for _, mode := range []struct {
		name  string
		pidfd bool
	}{{"pidfd", true}, {"pipe", false}} {
		t.Run(mode.name, func(t *testing.T) {
			usePidfd = mode.pidfd
			defer func() { usePidfd = true }()
			f(t)
		})
	}
}

// start starts spec and makes sure the child is gone (killed, reaped,
// released) when the test ends, even if it fails half-way.
func start(t *testing.T, spec Spec) *Process {
	t.Helper()
	p, err := Start(spec)
	if err != nil {
		t.Fatalf("Start(%s): %v", spec.Path, err)
	}
	t.Cleanup(func() {
		p.Kill()
		p.Wait(-1)
		p.Release()
	})
	return p
}

// wait waits for p with a generous timeout.
func wait(t *testing.T, p *Process) ExitStatus {
	t.Helper()
	st, done := p.Wait(5 * time.Second)
	if !done {
		t.Fatalf("pid %d still running after 5s", p.Pid())
	}
	return st
}

// capture returns the write end of a fresh close-on-exec pipe, to put in
// Spec.Files, and a function that closes it and reads the pipe to EOF (call
// it after Start; it waits until every child holding the write end closed it).
func capture(t *testing.T) (w int, read func() string) {
	t.Helper()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(fds[0]), "pipe")
	closed := false
	closeW := func() {
		if !closed {
			unix.Close(fds[1])
			closed = true
		}
	}
	t.Cleanup(func() { closeW(); r.Close() })
	return fds[1], func() string {
		closeW()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// lineReader is capture for children that keep the pipe open: next reads
// one line, giving up after 5 s.
func lineReader(t *testing.T) (w int, next func() string) {
	t.Helper()
	var fds [2]int
	// Non-blocking read end so that os.File honours the read deadline; the
	// child's end stays blocking.
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetNonblock(fds[1], false); err != nil {
		t.Fatal(err)
	}
	r := os.NewFile(uintptr(fds[0]), "pipe")
	br := bufio.NewReader(r)
	t.Cleanup(func() { unix.Close(fds[1]); r.Close() })
	return fds[1], func() string {
		r.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading child output: %v (got %q)", err, line)
		}
		return strings.TrimSpace(line)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("child printed %q, want a number", s)
	}
	return n
}
