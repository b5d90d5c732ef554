package pool

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/shm"
	"golang.org/x/sys/unix"
)

// allocatedBytes returns how much of the pool file the filesystem holds.
func allocatedBytes(t *testing.T, p *Pool) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p.seg.Path(), &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Blocks) * 512
}

func checkCommitted(t *testing.T, p *Pool) uint64 {
	t.Helper()
	c := p.Stats().Committed
	if a := allocatedBytes(t, p); a != c {
		t.Fatalf("Committed %d but the file holds %d bytes", c, a)
	}
	return c
}

func TestLazyCommit(t *testing.T) {
	p := newTestPool(t, DefaultReserve)
	fresh := checkCommitted(t, p)
	t.Logf("fresh 64 GiB pool: %s committed", shm.FormatBytes(fresh))
	if fresh > 512<<10 {
		t.Fatalf("fresh pool commits %d bytes", fresh)
	}
	small, err := p.Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	afterSmall := checkCommitted(t, p)
	t.Logf("after a 64-byte alloc: %s", shm.FormatBytes(afterSmall))
	if afterSmall > 4<<20 {
		t.Fatalf("first small alloc commits %d bytes", afterSmall-fresh)
	}
	const big = 300 << 20
	off, err := p.Alloc(big)
	if err != nil {
		t.Fatal(err)
	}
	b := p.Bytes(off, big)
	b[0], b[big-1] = 1, 2
	afterBig := checkCommitted(t, p)
	t.Logf("after a 300 MiB alloc: %s", shm.FormatBytes(afterBig))
	// The block is 512 MiB (rounded), but only the 300 MiB asked for are committed.
	if grew := afterBig - afterSmall; grew < big-Granule || grew > big+2<<20 {
		t.Fatalf("300 MiB alloc (512 MiB block) committed %d bytes", grew)
	}
	if err := p.Free(off, big); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Alloc(big); err != nil { // reuse: nothing new to commit
		t.Fatal(err)
	}
	if c := checkCommitted(t, p); c != afterBig {
		t.Fatalf("reallocating committed %d more bytes", c-afterBig)
	}
	p.Free(off, big)
	p.Free(small, 64)
	checkHeap(t, p)
}

// mountTinyTmpfs mounts a tmpfs of the given size in a temporary directory and
// points DRAGON_MP_SHM_DIR at it; it skips the test if mounting fails.
func mountTinyTmpfs(t *testing.T, size string) string {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v)", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	t.Setenv(shm.EnvDir, dir)
	return dir
}

func TestFullTmpfs(t *testing.T) {
	dir := mountTinyTmpfs(t, "4m")
	p, err := Create("dragon_mp.rtest.pool", DefaultReserve)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := p.Destroy(); err != nil {
			t.Error(err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%d files left in the tmpfs", len(ents))
		}
	}()
	checkCommitted(t, p)

	_, err = p.Alloc(8 << 20)
	var fe *shm.FullError
	if !errors.As(err, &fe) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Alloc(8 MiB) on a 4 MiB tmpfs = %v, want *shm.FullError", err)
	}
	if fe.Dir != dir || fe.Total != 4<<20 {
		t.Fatalf("FullError %+v", *fe)
	}
	t.Log(err)
	if s := p.Stats(); s.InUse != 0 || s.Allocs != 0 {
		t.Fatalf("failed Alloc changed stats: %+v", s)
	}
	checkHeap(t, p)
	checkCommitted(t, p)

	// Small allocations still work.
	c := newChurner(p, 1)
	for i := 0; i < 100; i++ {
		if err := c.alloc(); err != nil && !errors.As(err, &fe) {
			t.Fatal(err)
		}
	}
	for len(c.live) > 0 {
		if err := c.free(0); err != nil {
			t.Fatal(err)
		}
	}
	// Fill the tmpfs with 64 KiB blocks (each written whole: only committed
	// pages are ever touched, or this test would die of SIGBUS), until the
	// pool reports it full.
	var live []uint64
	var fullErr error
	for i := 0; i < 1000; i++ {
		off, err := p.Alloc(64 << 10)
		if err != nil {
			fullErr = err
			break
		}
		clear(p.Bytes(off, 64<<10))
		live = append(live, off)
	}
	if !errors.As(fullErr, &fe) {
		t.Fatalf("filling the tmpfs ended with %v after %d blocks", fullErr, len(live))
	}
	t.Logf("%d blocks of 64 KiB fit; committed %s", len(live), shm.FormatBytes(p.Stats().Committed))
	checkHeap(t, p)
	checkCommitted(t, p)
	// Allocations that need new metadata or body pages fail cleanly...
	for _, size := range []uint64{64, 4096, 1 << 20, 1 << 30} {
		if off, err := p.Alloc(size); err == nil {
			p.Bytes(off, size)[size-1] = 1
			p.Free(off, size)
		} else if !errors.As(err, &fe) {
			t.Fatalf("Alloc(%d) on a full tmpfs = %v", size, err)
		}
		checkHeap(t, p)
	}
	// Splitting a free block may need pages for the buddies' links and state
	// words, so reuse after a partial free is not guaranteed on a full tmpfs;
	// after freeing everything, the same allocations find the same pages.
	for _, off := range live {
		if err := p.Free(off, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	checkHeap(t, p)
	committed := checkCommitted(t, p)
	again := make([]uint64, len(live))
	for i := range live {
		off, err := p.Alloc(64 << 10)
		if err != nil {
			t.Fatalf("re-Alloc %d after freeing everything: %v", i, err)
		}
		clear(p.Bytes(off, 64<<10))
		again[i] = off
	}
	if c := checkCommitted(t, p); c != committed {
		t.Fatalf("re-allocating committed %d more bytes", c-committed)
	}
	for _, off := range again {
		if err := p.Free(off, 64<<10); err != nil {
			t.Fatal(err)
		}
	}
	// Small blocks work again.
	c = newChurner(p, 2)
	c.max = 4096
	if err := c.run(2000, 50); err != nil {
		t.Fatal(err)
	}
	if s := p.Stats(); s.InUse != 0 || s.Allocs != s.Frees {
		t.Fatalf("stats %+v", s)
	}
	checkHeap(t, p)
	checkCommitted(t, p)
}
