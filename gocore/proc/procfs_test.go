package proc

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestStartTimeAndAlive(t *testing.T) {
	self, err := StartTime(os.Getpid())
	if err != nil || self == 0 {
		t.Fatalf("StartTime(self) = %d, %v", self, err)
	}
	p := start(t, Spec{Path: sleepPath, Args: []string{"sleep", "30"}})
	child, err := StartTime(p.Pid())
	if err != nil || child < self {
		t.Fatalf("StartTime(child) = %d, %v (self %d)", child, err, self)
	}
	tests := []struct {
		name  string
		pid   int
		start uint64
		want  bool
	}{
		{"self", os.Getpid(), self, true},
		{"self, any start time", os.Getpid(), 0, true},
		{"child", p.Pid(), child, true},
		{"recycled pid (other start time)", p.Pid(), child + 1, false},
		{"no such pid", 1 << 30, 0, false},
		{"pid 0", 0, 0, false},
	}
	for _, tt := range tests {
		if got := Alive(tt.pid, tt.start); got != tt.want {
			t.Errorf("%s: Alive(%d, %d) = %v, want %v", tt.name, tt.pid, tt.start, got, tt.want)
		}
	}

	// An exited, unreaped child (zombie) is not alive.
	p.Kill()
	if !waitDead(p.Pid(), child, 2*time.Second) {
		t.Fatal("killed child still alive")
	}
	if st, _ := readStat(p.Pid()); st.state != 'Z' {
		t.Fatalf("killed, unreaped child in state %c, want Z", st.state)
	}
	wait(t, p)

	if _, err := StartTime(1 << 30); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("StartTime(no such pid) error = %v, want fs.ErrNotExist", err)
	}
}

func TestReadStatOddCommand(t *testing.T) {
	// The command name (field 2) may contain spaces and parentheses: fields
	// must be counted from the last ')'.
	bin, err := os.ReadFile(sleepPath)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "a) b (c")
	if err := os.WriteFile(odd, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	p := start(t, Spec{Path: odd, Args: []string{"x", "30"}})
	st, err := readStat(p.Pid())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := StartTime(os.Getpid())
	if st.ppid != os.Getpid() || (st.state != 'S' && st.state != 'R') || st.startTime < want {
		t.Fatalf("readStat(%d) = %+v", p.Pid(), st)
	}
}
