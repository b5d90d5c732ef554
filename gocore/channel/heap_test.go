package channel

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

// shmHeap is a test Heap over a MAP_SHARED mapping of a /dev/shm file
// (unlinked right after creation).
// Its allocator state lives at the start of the mapping, guarded by a
// shmsync.Mutex, so several processes mapping the file share it: blocks are
// power-of-two sized (>= 64 B) with one intrusive free list per size,
// carved from a bump pointer. New blocks are filled with 0xA5 and freed
// ones with 0xDD, so reliance on zeroed memory or use after free shows.
type shmHeap struct {
	mem  []byte
	file *os.File
	meta *heapMeta
	// live tracks this process's blocks (off → size) to catch bad frees;
	// nil for heaps shared with helper processes.
	mu   sync.Mutex
	live map[uint64]uint64
	// noPoison skips the 0xA5/0xDD fills (benchmarks).
	noPoison bool
}

type heapMeta struct {
	mu     shmsync.Mutex
	_      uint32
	size   uint64
	bump   uint64
	used   uint64 // bytes in live blocks (rounded sizes)
	blocks uint64 // live blocks
	free   [64]uint64
}

const heapMetaSize = 4096

var errHeapFull = errors.New("shmheap: out of space")

var shmSeq atomic.Int64

func shmDir() string {
	if d := os.Getenv("DRAGON_MP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// createShm creates a size-byte file in the shm directory, maps it and
// unlinks it at once, so that nothing is left behind even if the test
// binary dies; helper processes get the open file as fd 3 (ExtraFiles).
func createShm(size int) (*os.File, []byte, error) {
	path := filepath.Join(shmDir(), fmt.Sprintf("dragon_mp.test-channel-%d-%d.heap", os.Getpid(), shmSeq.Add(1)))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, err
	}
	os.Remove(path)
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, nil, err
	}
	mem, err := mapFd(f, size)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, mem, nil
}

func mapFd(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
}

// newShmHeap creates a size-byte heap in an (already unlinked) shm file.
func newShmHeap(tb testing.TB, size int, track bool) *shmHeap {
	tb.Helper()
	f, mem, err := createShm(size)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		syscall.Munmap(mem)
		f.Close()
	})
	hp := &shmHeap{mem: mem, file: f, meta: (*heapMeta)(unsafe.Pointer(&mem[0]))}
	hp.meta.size = uint64(size)
	hp.meta.bump = heapMetaSize
	if track {
		hp.live = map[uint64]uint64{}
	}
	return hp
}

// openShmHeap maps the heap file a helper process inherited as f.
func openShmHeap(f *os.File, size int) (*shmHeap, error) {
	mem, err := mapFd(f, size)
	if err != nil {
		return nil, err
	}
	return &shmHeap{mem: mem, file: f, meta: (*heapMeta)(unsafe.Pointer(&mem[0]))}, nil
}

func sizeClass(size uint64) uint {
	if size <= 64 {
		return 6
	}
	return uint(bits.Len64(size - 1))
}

func (hp *shmHeap) Alloc(size uint64) (uint64, error) {
	if size == 0 || size > 1<<40 {
		return 0, fmt.Errorf("shmheap: bad size %d", size)
	}
	cl := sizeClass(size)
	bs := uint64(1) << cl
	m := hp.meta
	m.mu.Lock()
	off := m.free[cl]
	if off != 0 {
		m.free[cl] = *(*uint64)(unsafe.Pointer(&hp.mem[off]))
	} else {
		if m.bump+bs > m.size {
			m.mu.Unlock()
			return 0, errHeapFull
		}
		off = m.bump
		m.bump += bs
	}
	m.used += bs
	m.blocks++
	m.mu.Unlock()
	if hp.live != nil {
		hp.mu.Lock()
		hp.live[off] = size
		hp.mu.Unlock()
	}
	if !hp.noPoison {
		b := hp.mem[off : off+bs]
		for i := range b {
			b[i] = 0xA5
		}
	}
	return off, nil
}

func (hp *shmHeap) Free(off, size uint64) error {
	cl := sizeClass(size)
	bs := uint64(1) << cl
	if off < heapMetaSize || off%64 != 0 || off+bs > uint64(len(hp.mem)) {
		panic(fmt.Sprintf("shmheap: bad free %#x size %d", off, size))
	}
	if hp.live != nil {
		hp.mu.Lock()
		got, ok := hp.live[off]
		delete(hp.live, off)
		hp.mu.Unlock()
		if !ok || got != size {
			panic(fmt.Sprintf("shmheap: free of %#x size %d: live=%v size %d", off, size, ok, got))
		}
	}
	if !hp.noPoison {
		b := hp.mem[off : off+bs]
		for i := range b {
			b[i] = 0xDD
		}
	}
	m := hp.meta
	m.mu.Lock()
	*(*uint64)(unsafe.Pointer(&hp.mem[off])) = m.free[cl]
	m.free[cl] = off
	m.used -= bs
	m.blocks--
	m.mu.Unlock()
	return nil
}

func (hp *shmHeap) Bytes(off, n uint64) []byte {
	if off > uint64(len(hp.mem)) || n > uint64(len(hp.mem))-off {
		panic(fmt.Sprintf("shmheap: Bytes(%#x, %d) out of range", off, n))
	}
	return hp.mem[off : off+n : off+n]
}

func (hp *shmHeap) Size() uint64 { return uint64(len(hp.mem)) }

// Used returns the bytes and blocks currently allocated.
func (hp *shmHeap) Used() (bytes, blocks uint64) {
	hp.meta.mu.Lock()
	defer hp.meta.mu.Unlock()
	return hp.meta.used, hp.meta.blocks
}

// noSize hides shmHeap's Size method, so Attach must survive Bytes panics.
type noSize struct{ Heap }

// failHeap fails every Alloc after the first n.
type failHeap struct {
	*shmHeap
	n   atomic.Int64
	err error
}

func (f *failHeap) Alloc(size uint64) (uint64, error) {
	if f.n.Add(-1) < 0 {
		return 0, f.err
	}
	return f.shmHeap.Alloc(size)
}
