package proc

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testEnvKey = "DRAGON_MP_PROC_TEST_RUN"

// uniqueValue returns an environment value no other process carries.
func uniqueValue(t *testing.T) string {
	return fmt.Sprintf("r%d-%d-%s", os.Getpid(), time.Now().UnixNano(), strings.ReplaceAll(t.Name(), "/", "-"))
}

// startWithEnv starts args with the caller's environment plus extra entries.
func startWithEnv(t *testing.T, args []string, extra ...string) *Process {
	t.Helper()
	p := start(t, Spec{Path: args[0], Args: args, Env: append(os.Environ(), extra...), KillWithParent: true})
	for _, e := range extra {
		waitEnvVisible(t, p.Pid(), e)
	}
	return p
}

// waitEnvVisible waits until pid's /proc environ shows entry: for a moment
// after Start returns, execve is still setting up the new image and the
// environment reads empty.
func waitEnvVisible(t *testing.T, pid int, entry string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !hasEnv(pid, []byte(entry)) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d: %q not in its environment after 2s", pid, entry)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFindAndKillByEnv(t *testing.T) {
	val := uniqueValue(t)
	entry := testEnvKey + "=" + val
	obeys := startWithEnv(t, []string{sleepPath, "30"}, entry)

	// A process that ignores SIGTERM; wait until the trap is set.
	w, next := lineReader(t)
	ignores := start(t, Spec{
		Path:           shPath,
		Args:           []string{"sh", "-c", `trap "" TERM; echo ready; exec sleep 30`},
		Env:            append(os.Environ(), entry),
		Files:          []int{-1, w, 2},
		KillWithParent: true,
	})
	if got := next(); got != "ready" {
		t.Fatalf("child said %q", got)
	}
	// sh execs sleep next: wait for the new image (its name is set before
	// its environment is in place) and then for its environment.
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(ignores.Pid()) + "/comm")
		if string(comm) == "sleep\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child did not exec sleep (comm %q)", comm)
		}
	}
	waitEnvVisible(t, ignores.Pid(), entry)

	// Near misses must not match.
	others := []*Process{
		startWithEnv(t, []string{sleepPath, "30"}, entry+"x"),
		startWithEnv(t, []string{sleepPath, "30"}, "X"+entry),
		startWithEnv(t, []string{sleepPath, "30"}, testEnvKey+"="),
		startWithEnv(t, []string{sleepPath, "30"}),
	}

	want := []int{obeys.Pid(), ignores.Pid()}
	slices.Sort(want)
	if got := FindByEnv(testEnvKey, val); !slices.Equal(got, want) {
		t.Fatalf("FindByEnv = %v, want %v", got, want)
	}

	const grace = 300 * time.Millisecond
	t0 := time.Now()
	if n := KillByEnv(testEnvKey, val, grace); n != 2 {
		t.Fatalf("KillByEnv signalled %d processes, want 2", n)
	}
	if d := time.Since(t0); d < grace {
		t.Fatalf("KillByEnv returned after %v although a process ignored SIGTERM (grace %v)", d, grace)
	}
	if st := wait(t, obeys); st.Code != -15 {
		t.Fatalf("SIGTERM-obeying process: %v, want -15", st)
	}
	if st := wait(t, ignores); st.Code != -9 {
		t.Fatalf("SIGTERM-ignoring process: %v, want -9", st)
	}
	for _, p := range others {
		if st, done := p.Wait(0); done {
			t.Fatalf("KillByEnv killed non-matching pid %d: %v", p.Pid(), st)
		}
	}
	if got := FindByEnv(testEnvKey, val); len(got) != 0 {
		t.Fatalf("FindByEnv after KillByEnv = %v", got)
	}
	if n := KillByEnv(testEnvKey, val, grace); n != 0 {
		t.Fatalf("second KillByEnv signalled %d", n)
	}
}

func TestKillByEnvEarlyReturnAndNoGrace(t *testing.T) {
	tests := []struct {
		name  string
		grace time.Duration
		want  int
		max   time.Duration
	}{
		{"everyone obeys SIGTERM", 10 * time.Second, -15, 2 * time.Second},
		{"no grace", 0, -9, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			val := uniqueValue(t)
			ps := []*Process{
				startWithEnv(t, []string{sleepPath, "30"}, testEnvKey+"="+val),
				startWithEnv(t, []string{sleepPath, "30"}, testEnvKey+"="+val),
			}
			t0 := time.Now()
			if n := KillByEnv(testEnvKey, val, tt.grace); n != len(ps) {
				t.Fatalf("KillByEnv signalled %d, want %d", n, len(ps))
			}
			if d := time.Since(t0); d > tt.max {
				t.Fatalf("KillByEnv took %v", d)
			}
			for _, p := range ps {
				if st := wait(t, p); st.Code != tt.want {
					t.Fatalf("status %v, want %d", st, tt.want)
				}
			}
		})
	}
}

// TestFindByEnvExcludesCaller: a process carrying the entry does not find
// itself.
func TestFindByEnvExcludesCaller(t *testing.T) {
	val := uniqueValue(t)
	w, read := capture(t)
	p := start(t, helperSpec("findself", w, "KEY="+testEnvKey, "VALUE="+val, testEnvKey+"="+val))
	out := strings.Fields(read())
	if st := wait(t, p); st.Code != 0 || len(out) != 2 {
		t.Fatalf("helper: %v, output %q", st, out)
	}
	if out[0] != strconv.Itoa(p.Pid()) {
		t.Fatalf("helper reported pid %s, want %d", out[0], p.Pid())
	}
	if out[1] != "[]" {
		t.Fatalf("helper's FindByEnv = %s, want [] (itself excluded)", out[1])
	}
}
