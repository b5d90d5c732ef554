package pool

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/dragon-mp/dragon_mp/gocore/shm"
)

// prefix names every segment these tests create, so TestMain can check that
// none is left behind in /dev/shm.
var prefix = fmt.Sprintf("dragon_mp.rtest%d.", os.Getpid())

const helperEnv = "DRAGON_MP_POOL_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Unsetenv(shm.EnvDir)
	code := m.Run()
	left, err := shm.List(prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "list:", err)
		code = 1
	}
	for _, n := range left {
		fmt.Fprintln(os.Stderr, "segment left behind:", n)
		shm.Unlink(n)
		code = 1
	}
	os.Exit(code)
}

// newPool creates a pool named after the test and destroys it at the end.
func newTestPool(t testing.TB, reserve uint64) *Pool {
	t.Helper()
	p, err := Create(prefix+strings.ReplaceAll(t.Name(), "/", "_"), reserve)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Destroy(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// checkHeap walks every free list under the pool mutex and checks links,
// alignment, state bits and that free + in-use bytes add up to the heap.
func checkHeap(t testing.TB, p *Pool) {
	t.Helper()
	if err := heapError(p); err != nil {
		t.Fatal(err)
	}
}

func heapError(p *Pool) error {
	h, l := p.hdr, &p.lay
	h.mu.Lock()
	defer h.mu.Unlock()
	var free uint64
	for k := uint(0); k < maxOrders; k++ {
		if k > l.maxOrder {
			if h.heads[k] != 0 {
				return fmt.Errorf("order %d beyond maxOrder has a list", k)
			}
			continue
		}
		bs := uint64(MinBlock) << k
		prev := uint64(0)
		n := uint64(0)
		for off := h.heads[k]; off != 0; off = p.links(off)[0] {
			if off < l.heapOff || off >= l.segSize || (off-l.heapOff)%bs != 0 {
				return fmt.Errorf("order %d: bad block %#x in free list", k, off)
			}
			if !p.committed(off) {
				return fmt.Errorf("order %d: free block %#x not committed", k, off)
			}
			if got := p.links(off)[1]; got != prev {
				return fmt.Errorf("order %d: block %#x has prev %#x, want %#x", k, off, got, prev)
			}
			if st := p.state(k, p.index(off, k)); st != stFree {
				return fmt.Errorf("order %d: free block %#x has state %d", k, off, st)
			}
			if k < l.maxOrder && p.state(k, p.index(off, k)^1) == stFree {
				return fmt.Errorf("order %d: block %#x and its buddy are both free (not merged)", k, off)
			}
			prev = off
			if n++; n > l.reserve/bs {
				return fmt.Errorf("order %d: free list cycles", k)
			}
		}
		free += n * bs
	}
	if free+h.inUse != l.reserve {
		return fmt.Errorf("free %d + in use %d != reserve %d", free, h.inUse, l.reserve)
	}
	return nil
}

func TestHeaderLayout(t *testing.T) {
	var h header
	tests := []struct {
		field string
		got   uintptr
		want  uintptr
	}{
		{"magic", unsafe.Offsetof(h.magic), 0},
		{"version", unsafe.Offsetof(h.version), 8},
		{"reserve", unsafe.Offsetof(h.reserve), 24},
		{"gbBytes", unsafe.Offsetof(h.gbBytes), 56},
		{"mu", unsafe.Offsetof(h.mu), 64},
		{"committed", unsafe.Offsetof(h.committed), 128},
		{"frees", unsafe.Offsetof(h.frees), 152},
		{"epoch", unsafe.Offsetof(h.epoch), 160},
		{"released", unsafe.Offsetof(h.released), 168},
		{"scavOut", unsafe.Offsetof(h.scavOut), 176},
		{"user", unsafe.Offsetof(h.user), 192},
		{"l2", unsafe.Offsetof(h.l2), 448},
		{"stateOffs", unsafe.Offsetof(h.stateOffs), 704},
		{"heads", unsafe.Offsetof(h.heads), 1216},
		{"size", unsafe.Sizeof(h), 1728},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("header.%s at %d, want %d", tc.field, tc.got, tc.want)
		}
	}
}

func TestLayout(t *testing.T) {
	for r := uint64(MinReserve); r <= MaxReserve; r <<= 1 {
		l := newLayout(r)
		if l.metaEnd > l.heapOff {
			t.Errorf("R=%d: metadata ends at %d, past the heap start %d", r, l.metaEnd, l.heapOff)
		}
		if gbGranules := (l.gbBytes + Granule - 1) / Granule; gbGranules > l2Words*64 {
			t.Errorf("R=%d: granule bitmap has %d granules, l2 tracks %d", r, gbGranules, l2Words*64)
		}
		if l.maxOrder >= maxOrders || uint64(MinBlock)<<l.maxOrder != r {
			t.Errorf("R=%d: maxOrder %d", r, l.maxOrder)
		}
		if l.stateOffs[0]%Granule != 0 || l.stateOffs[0] < gbOff+l.gbBytes {
			t.Errorf("R=%d: state bitmaps at %d overlap the granule bitmap", r, l.stateOffs[0])
		}
	}
	tests := []struct{ in, want uint64 }{
		{0, DefaultReserve}, {1, MinReserve}, {MinReserve, MinReserve}, {MinReserve + 1, 2 * MinReserve},
		{3 << 30, 4 << 30}, {MaxReserve, MaxReserve}, {MaxReserve + 1, 0},
	}
	for _, tc := range tests {
		if got := roundReserve(tc.in); got != tc.want {
			t.Errorf("roundReserve(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
	orders := []struct {
		size uint64
		k    uint
	}{{1, 0}, {64, 0}, {65, 1}, {128, 1}, {129, 2}, {4096, 6}, {1 << 20, 14}, {1<<20 + 1, 15}}
	for _, tc := range orders {
		if got := orderOf(tc.size); got != tc.k {
			t.Errorf("orderOf(%d) = %d, want %d", tc.size, got, tc.k)
		}
	}
}
