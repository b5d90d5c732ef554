package runtime

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
)

func newTestRun(t *testing.T) *Runtime {
	t.Helper()
	r, err := Create(fmt.Sprintf("rtest-%d-%s", os.Getpid(), t.Name()), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy() })
	return r
}

func TestAddressRoundTrip(t *testing.T) {
	tests := []struct {
		node uint16
		off  uint64
	}{{0, 64}, {1, 1 << 40}, {65535, 1<<48 - 64}}
	for _, tc := range tests {
		a := MakeAddress(tc.node, tc.off)
		if a.Node() != tc.node || a.Offset() != tc.off {
			t.Errorf("MakeAddress(%d, %#x) = %#x: node %d off %#x", tc.node, tc.off, uint64(a), a.Node(), a.Offset())
		}
	}
}

func TestSemaphoreObjectLifecycle(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewSemaphore(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	s, err := r.Semaphore(a)
	if err != nil {
		t.Fatalf("Semaphore(%#x): %v", uint64(a), err)
	}
	if !s.Acquire(0) || s.Acquire(0) {
		t.Fatal("a Lock-like semaphore admitted twice")
	}
	if err := r.RetainObject(a); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := r.ReleaseObject(a); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	if _, err := r.Semaphore(a); !errors.Is(err, ErrBadObject) {
		t.Fatalf("freed semaphore still usable: %v", err)
	}
	if st := r.Pool.Stats(); st.InUse != 0 {
		t.Fatalf("pool in use after free: %d", st.InUse)
	}
}

func TestBadAddresses(t *testing.T) {
	r := newTestRun(t)
	for _, a := range []Address{0, 64, 12345, MakeAddress(0, 1<<29), MakeAddress(3, 4096)} {
		if _, err := r.Semaphore(a); err == nil {
			t.Errorf("Semaphore(%#x) accepted a bad address", uint64(a))
		}
		if _, err := r.Channel(a); err == nil {
			t.Errorf("Channel(%#x) accepted a bad address", uint64(a))
		}
	}
}

func TestChannelThroughAddress(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewChannel(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.Channel(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.ReleaseChannel(a); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Channel(a); !errors.Is(err, channel.ErrBadHandle) {
		t.Fatalf("destroyed channel attached: %v", err)
	}
	if st := r.Pool.Stats(); st.InUse != 0 {
		t.Fatalf("pool in use after destroy: %d", st.InUse)
	}
}

func TestAttachSeesHead(t *testing.T) {
	r := newTestRun(t)
	o, err := Attach(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.HeadPid() != os.Getpid() || o.Head {
		t.Fatalf("HeadPid = %d, Head = %v", o.HeadPid(), o.Head)
	}
	if _, err := Attach("no-such-run"); err == nil {
		t.Fatal("attached to a run that does not exist")
	}
	if _, err := Create("bad/id", 0); !errors.Is(err, ErrBadID) {
		t.Fatalf("Create accepted a bad id: %v", err)
	}
}

// TestNodeMarks: marks are clear until set, set for good, seen by another
// process's view of the run (a second Attach), and absent until made.
func TestNodeMarks(t *testing.T) {
	r := newTestRun(t)
	if r.NodeLost(3) {
		t.Fatal("a mark is set in a run without marks")
	}
	if err := r.MarkNodeLost(3); err != ErrNoMarks {
		t.Fatalf("MarkNodeLost without marks: %v, want ErrNoMarks", err)
	}
	if err := r.MakeNodeMarks(); err != nil {
		t.Fatal(err)
	}
	other, err := Attach(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, n := range []uint16{0, 3, 63, 64, 1000, MaxNodes - 1} {
		if other.NodeLost(n) {
			t.Fatalf("node %d marked before MarkNodeLost", n)
		}
		if err := r.MarkNodeLost(n); err != nil {
			t.Fatal(err)
		}
		if !other.NodeLost(n) || !r.NodeLost(n) {
			t.Fatalf("node %d not marked after MarkNodeLost", n)
		}
	}
	if other.NodeLost(4) || other.NodeLost(65) {
		t.Fatal("a neighbouring mark was set")
	}
	if err := r.MakeNodeMarks(); err != nil || !other.NodeLost(3) {
		t.Fatal("a second MakeNodeMarks cleared the marks")
	}
}
