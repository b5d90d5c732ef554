package runtime

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/channel"
)

func newTestRun(t *testing.T) *Runtime {
	t.Helper()
	r, err := Create(fmt.Sprintf("rtest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-")), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy() })
	return r
}

func TestAddressRoundTrip(t *testing.T) {
	tests := []struct {
		node uint16
		gen  uint32
		off  uint64
	}{{0, 0, 64}, {1, 1, 1 << 40}, {65535, 4095, MaxOffset - 64}, {7, 4096 + 5, 4096}}
	for _, tc := range tests {
		a := MakeAddress(tc.node, tc.gen, tc.off)
		if a.Node() != tc.node || a.Gen() != tc.gen%4096 || a.Offset() != tc.off {
			t.Errorf("MakeAddress(%d, %d, %#x) = %#x: node %d gen %d off %#x",
				tc.node, tc.gen, tc.off, uint64(a), a.Node(), a.Gen(), a.Offset())
		}
	}
}

// A handle kept past its object's end (an over-release) must fail, not reach
// the object made next at the same offset.
func TestStaleAddressesFail(t *testing.T) {
	tests := []struct {
		name  string
		make  func(r *Runtime) (Address, error)
		use   func(r *Runtime, a Address) error
		free  func(r *Runtime, a Address) error
		stale error
	}{
		{"semaphore", func(r *Runtime) (Address, error) { return r.NewSemaphore(1, 1) },
			func(r *Runtime, a Address) error { _, err := r.Semaphore(a); return err },
			(*Runtime).ReleaseObject, ErrBadObject},
		{"raw", func(r *Runtime) (Address, error) { return r.NewRaw(64) },
			func(r *Runtime, a Address) error { _, _, err := r.Raw(a); return err },
			(*Runtime).ReleaseObject, ErrBadObject},
		{"channel", func(r *Runtime) (Address, error) { return r.NewChannel(0, 0) },
			func(r *Runtime, a Address) error {
				c, err := r.Channel(a)
				if err != nil {
					return err
				}
				return c.Send([]byte("x"), 0)
			},
			(*Runtime).ReleaseChannel, channel.ErrBadHandle},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRun(t)
			old, err := tc.make(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.use(r, old); err != nil {
				t.Fatalf("live object: %v", err)
			}
			// Another process uses it too, and keeps its handle (a channel's is cached).
			other, err := Attach(r.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if err := tc.use(other, old); err != nil {
				t.Fatalf("live object, other process: %v", err)
			}
			if err := tc.free(r, old); err != nil {
				t.Fatal(err)
			}
			// The memory is reused by a new object of the same kind.
			cur, err := tc.make(r)
			if err != nil {
				t.Fatal(err)
			}
			if cur.Offset() != old.Offset() || cur == old {
				t.Fatalf("new object at %#x (gen %d), old at %#x (gen %d): not a reuse",
					cur.Offset(), cur.Gen(), old.Offset(), old.Gen())
			}
			if err := tc.use(r, old); !errors.Is(err, tc.stale) {
				t.Errorf("stale handle: %v, want %v", err, tc.stale)
			}
			if err := tc.use(r, cur); err != nil {
				t.Errorf("new object: %v", err)
			}
			if err := tc.use(other, old); !errors.Is(err, tc.stale) {
				t.Errorf("stale handle, other process: %v, want %v", err, tc.stale)
			}
			// A process that never saw the old object, by the stale address.
			fresh, err := Attach(r.ID)
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			if err := tc.use(fresh, old); !errors.Is(err, tc.stale) {
				t.Errorf("stale handle, fresh attach: %v, want %v", err, tc.stale)
			}
		})
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
	for _, a := range []Address{0, 64, 12345, MakeAddress(0, 0, 1<<29), MakeAddress(3, 0, 4096)} {
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
