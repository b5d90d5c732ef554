package events

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startSleeper starts `sleep 60` and returns it with a function that reaps
// it and returns its status in Python's convention.
func startSleeper(t *testing.T, args ...string) (*exec.Cmd, func() int) {
	t.Helper()
	if len(args) == 0 {
		args = []string{"sleep", "60"}
	}
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, func() int {
		cmd.Wait()
		ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return -int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

func newTracer(t *testing.T, opts Options) *Tracer {
	t.Helper()
	tr := New(opts)
	t.Cleanup(tr.Close)
	if !opts.NoBPF && tr.Mode() != "ebpf" {
		if os.Geteuid() != 0 {
			t.Skipf("eBPF needs root: %v", tr.LoadError())
		}
		t.Fatalf("eBPF did not load as root: %v", tr.LoadError())
	}
	return tr
}

func TestExitCode(t *testing.T) {
	tr := newTracer(t, Options{NoBPF: true})
	cmd, wait := startSleeper(t, "sh", "-c", "exit 3")
	tr.Watch(cmd.Process.Pid)
	r := tr.Reason(cmd.Process.Pid, wait())
	if r.Kind != "exited" || r.Code != 3 || r.Text != "exited 3" {
		t.Fatalf("got %+v", r)
	}
}

func TestKillNamesSender(t *testing.T) {
	tr := newTracer(t, Options{})
	cmd, wait := startSleeper(t)
	tr.Watch(cmd.Process.Pid)
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	r := tr.Reason(cmd.Process.Pid, wait())
	want := "killed by SIGKILL from pid " + strconv.Itoa(os.Getpid()) + " ("
	if r.Kind != "signal" || r.SenderPID != os.Getpid() || !strings.HasPrefix(r.Text, want) {
		t.Fatalf("got %+v, want text %q...", r, want)
	}
}

func TestKillFromAnotherProcess(t *testing.T) {
	tr := newTracer(t, Options{})
	cmd, wait := startSleeper(t)
	tr.Watch(cmd.Process.Pid)
	killer := exec.Command("kill", "-TERM", strconv.Itoa(cmd.Process.Pid))
	if err := killer.Run(); err != nil {
		t.Fatal(err)
	}
	r := tr.Reason(cmd.Process.Pid, wait())
	if r.SenderPID != killer.Process.Pid || r.Signal != int(syscall.SIGTERM) {
		t.Fatalf("got %+v, want sender %d", r, killer.Process.Pid)
	}
}

func TestSegfaultIsItsOwn(t *testing.T) {
	tr := newTracer(t, Options{})
	// With faulthandler the process raises SIGSEGV again itself, after the
	// fault: the fault, first, is the cause.
	for _, flags := range []string{"-E", "-Xfaulthandler"} {
		cmd, wait := startSleeper(t, "python3", flags, "-c", "import ctypes; ctypes.string_at(0)")
		tr.Watch(cmd.Process.Pid)
		r := tr.Reason(cmd.Process.Pid, wait())
		if r.Signal != int(syscall.SIGSEGV) || !r.Kernel || r.Text != "SIGSEGV (a memory fault in the process itself)" {
			t.Fatalf("%s: got %+v", flags, r)
		}
	}
}

func TestFallbackSenderUnknown(t *testing.T) {
	tr := newTracer(t, Options{NoBPF: true})
	cmd, wait := startSleeper(t)
	tr.Watch(cmd.Process.Pid)
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	r := tr.Reason(cmd.Process.Pid, wait())
	if r.Kind != "signal" || r.Text != "killed by SIGKILL (sender unknown)" {
		t.Fatalf("got %+v", r)
	}
}

func TestUnwatched(t *testing.T) {
	var tr *Tracer
	if r := tr.Reason(12345, -9); r.Text != "killed by SIGKILL (sender unknown)" {
		t.Fatalf("got %+v", r)
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[uint64]string{4 << 30: "4 GiB", 3328599654: "3.1 GiB", 512 << 10: "512 KiB", 100: "100 B"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
}

// childMemCgroup makes a v1 memory cgroup under this process's own with the
// given limit, and removes it at the end of the test.
func childMemCgroup(t *testing.T, limit int) (path, dir string) {
	t.Helper()
	own := memCgroupOf(os.Getpid())
	if own.dir == "" || own.v2 {
		t.Skip("no v1 memory cgroup here")
	}
	path = filepath.Join(own.path, "dmp-events-test-"+strconv.Itoa(os.Getpid()))
	dir = filepath.Join(cgroupRoot, "memory", path)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50 && os.Remove(dir) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	for _, f := range []string{"memory.memsw.limit_in_bytes", "memory.limit_in_bytes"} {
		os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0)
		os.WriteFile(filepath.Join(dir, f), []byte(strconv.Itoa(limit)), 0)
	}
	return path, dir
}

// oomChild starts a process in a new memory cgroup that allocates past its
// limit, and returns the tracer's reason for its death.
func oomChild(t *testing.T, tr *Tracer) (Reason, string) {
	const limit = 64 << 20
	path, dir := childMemCgroup(t, limit)
	// The child waits on stdin until it is in the cgroup, then allocates
	// (and touches) 256 MiB.
	cmd := exec.Command("python3", "-c", "import sys; sys.stdin.read(1); b = bytearray(256 << 20); print(len(b))")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	tr.Watch(pid)
	in.Write([]byte("x"))
	in.Close()
	cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = -int(ws.Signal())
	}
	r := tr.Reason(pid, code)
	t.Logf("%s: %+v", tr.Mode(), r)
	return r, path
}

func TestOOM(t *testing.T) {
	tr := newTracer(t, Options{})
	r, path := oomChild(t, tr)
	if r.Kind != "oom" || r.RSS == 0 || r.Cgroup != path || r.Limit != 64<<20 ||
		!strings.HasPrefix(r.Text, "killed by the OOM killer (cgroup "+path+", rss ") ||
		!strings.HasSuffix(r.Text, ", limit 64 MiB)") {
		t.Fatalf("got %+v", r)
	}
}

func TestOOMFallback(t *testing.T) {
	tr := newTracer(t, Options{NoBPF: true})
	r, path := oomChild(t, tr)
	if r.Signal != sigKILL {
		t.Fatalf("got %+v", r)
	}
	// With the kernel log readable (root) the fallback knows it was the OOM
	// killer; without it, only that the OOM killer acted in its cgroup.
	if r.Kind == "oom" {
		if r.Cgroup != path || r.RSS == 0 {
			t.Fatalf("got %+v", r)
		}
	} else if !strings.Contains(r.Text, "the OOM killer acted in its cgroup "+path) {
		t.Fatalf("got %+v", r)
	}
}
