package runtime

import (
	"errors"
	"testing"
)

func TestRawLifecycle(t *testing.T) {
	r := newTestRun(t)
	before := r.Pool.Stats().InUse
	for _, size := range []uint64{0, 1, 8, 31, 32, 33, 100, 4096, 1 << 20} {
		a, err := r.NewRaw(size)
		if err != nil {
			t.Fatalf("NewRaw(%d): %v", size, err)
		}
		off, n, err := r.Raw(a)
		if err != nil {
			t.Fatalf("Raw(%#x): %v", uint64(a), err)
		}
		if n != size {
			t.Errorf("Raw(%#x) size %d, want %d", uint64(a), n, size)
		}
		if off <= a.Offset() || (off-r.Pool.Reserve())%RawAlign != 0 || uint64(uintptr(r.Pool.Pointer(off)))%RawAlign != 0 {
			t.Errorf("payload offset %#x for object at %#x", off, a.Offset())
		}
		b, err := r.RawBytes(a)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(b)) != n {
			t.Fatalf("RawBytes len %d, want %d", len(b), size)
		}
		for i, c := range b {
			if c != 0 {
				t.Fatalf("size %d: byte %d = %#x, want zeroed payload", size, i, c)
			}
		}
		for i := range b {
			b[i] = 0xA5
		}
		// A second reference keeps the object alive past the first release.
		if err := r.RetainObject(a); err != nil {
			t.Fatal(err)
		}
		if err := r.ReleaseObject(a); err != nil {
			t.Fatal(err)
		}
		if b2, err := r.RawBytes(a); err != nil || len(b2) != len(b) || (size > 0 && b2[size-1] != 0xA5) {
			t.Fatalf("raw object after a release of two references: %v", err)
		}
		if err := r.ReleaseObject(a); err != nil {
			t.Fatal(err)
		}
		if _, _, err := r.Raw(a); !errors.Is(err, ErrBadObject) {
			t.Fatalf("freed raw object still usable: %v", err)
		}
		if err := r.ReleaseObject(a); err == nil {
			t.Fatal("release of a freed raw object succeeded")
		}
	}
	if st := r.Pool.Stats(); st.InUse != before {
		t.Fatalf("pool in use %d after freeing every raw object, want %d", st.InUse, before)
	}
}

func TestRawReusedBlockIsZeroed(t *testing.T) {
	r := newTestRun(t)
	a, err := r.NewRaw(256)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := r.RawBytes(a)
	for i := range b {
		b[i] = 0xFF
	}
	if err := r.ReleaseObject(a); err != nil {
		t.Fatal(err)
	}
	a2, err := r.NewRaw(256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.ReleaseObject(a2)
	b2, _ := r.RawBytes(a2)
	for i, c := range b2 {
		if c != 0 {
			t.Fatalf("byte %d of a new raw object = %#x (block at %#x, previous %#x)", i, c, uint64(a2), uint64(a))
		}
	}
}

func TestRawKindChecked(t *testing.T) {
	r := newTestRun(t)
	s, err := r.NewSemaphore(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.ReleaseObject(s)
	if _, _, err := r.Raw(s); !errors.Is(err, ErrBadObject) {
		t.Fatalf("Raw accepted a semaphore: %v", err)
	}
	a, err := r.NewRaw(64)
	if err != nil {
		t.Fatal(err)
	}
	defer r.ReleaseObject(a)
	if _, err := r.Semaphore(a); !errors.Is(err, ErrBadObject) {
		t.Fatalf("Semaphore accepted a raw object: %v", err)
	}
	for _, bad := range []Address{0, 64, 12345, MakeAddress(0, 0, 1<<29), a + 1, a ^ 1<<genShift} {
		if _, _, err := r.Raw(bad); err == nil {
			t.Errorf("Raw(%#x) accepted a bad address", uint64(bad))
		}
	}
	if _, _, err := r.Raw(MakeAddress(2, a.Gen(), a.Offset())); !errors.Is(err, ErrRemote) {
		t.Errorf("Raw on another node: %v", err)
	}
}

func TestRawTooLarge(t *testing.T) {
	r := newTestRun(t)
	before := r.Pool.Stats()
	if _, err := r.NewRaw(1 << 62); !errors.Is(err, ErrRawSize) {
		t.Errorf("NewRaw(1<<62): %v, want ErrRawSize", err)
	}
	if _, err := r.NewRaw(r.Pool.Reserve()); err == nil {
		t.Error("NewRaw(reserve) succeeded: header + payload exceed the heap")
	}
	if st := r.Pool.Stats(); st.InUse != before.InUse {
		t.Errorf("failed NewRaw left %d bytes in use", st.InUse-before.InUse)
	}
}
