package pool

import (
	"testing"
	"time"
)

// touch writes every page of the first n bytes of the block at off.
func touch(p *Pool, off, n uint64) {
	b := p.Bytes(off, n)
	for i := uint64(0); i < n; i += 4096 {
		b[i] = 1
	}
}

func TestScavenge(t *testing.T) {
	const big = 32 << 20
	tests := []struct {
		name string
		// steps between the free and the check: "s" Scavenge(age), "a"
		// ScavengeAll, "r" alloc and free the same size again (a stream
		// reusing the block)
		steps        string
		age          uint64
		wantReleased bool
	}{
		{"young block kept", "s", 1, false},
		{"old block given back", "ss", 1, true},
		{"reused every interval: kept", "srsrsrs", 1, false},
		{"all: at once", "a", 1, true},
		{"given back, then reused", "ssr", 1, true},
		{"age 3: kept through 3 passes", "sss", 3, false},
		{"age 3: given back at the 4th", "ssss", 3, true},
		{"age 0 is age 1", "s", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestPool(t, DefaultReserve)
			small, err := p.Alloc(64) // keeps the heap split
			if err != nil {
				t.Fatal(err)
			}
			off, err := p.Alloc(big)
			if err != nil {
				t.Fatal(err)
			}
			touch(p, off, big)
			before := checkCommitted(t, p)
			if err := p.Free(off, big); err != nil {
				t.Fatal(err)
			}
			var released uint64
			for _, step := range tc.steps {
				var got uint64
				switch step {
				case 's':
					got, err = p.Scavenge(tc.age)
				case 'a':
					got, err = p.ScavengeAll()
				case 'r':
					o, err := p.Alloc(big)
					if err != nil {
						t.Fatal(err)
					}
					touch(p, o, big)
					err = p.Free(o, big)
				}
				if err != nil {
					t.Fatal(err)
				}
				released += got
				checkHeap(t, p)
			}
			after := checkCommitted(t, p)
			if tc.wantReleased {
				if released < big-2*Granule || p.Stats().Released < released {
					t.Fatalf("released %d bytes (stats %+v), want about %d", released, p.Stats(), big)
				}
			} else if released != 0 || after != before {
				t.Fatalf("released %d bytes, committed %d -> %d: a block in use within an interval was given back",
					released, before, after)
			}
			// The memory is usable again, whatever happened to it.
			o, err := p.Alloc(big)
			if err != nil {
				t.Fatal(err)
			}
			touch(p, o, big)
			if p.Bytes(o, big)[big-1] = 7; p.Bytes(o, big)[big-1] != 7 {
				t.Fatal("write lost")
			}
			p.Free(o, big)
			p.Free(small, 64)
			checkHeap(t, p)
			checkCommitted(t, p)
		})
	}
}

// The container: a burst of 58 x 1 MiB messages in a 64 MB /dev/shm,
// drained; a 10 MB message then needs pages the burst committed elsewhere.
func TestAllocAfterBurstInSmallTmpfs(t *testing.T) {
	mountTinyTmpfs(t, "64m")
	p, err := Create("dragon_mp.rtest.pool", DefaultReserve)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Destroy()
	for round := 0; round < 20; round++ {
		var live []uint64
		for i := 0; i < 58; i++ {
			off, err := p.Alloc(1<<20 + 64)
			if err != nil {
				t.Fatalf("round %d, message %d: %v", round, i, err)
			}
			touch(p, off, 1<<20+64)
			live = append(live, off)
		}
		for _, off := range live {
			if err := p.Free(off, 1<<20+64); err != nil {
				t.Fatal(err)
			}
		}
		off, err := p.Alloc(10 << 20)
		if err != nil {
			t.Fatalf("round %d: 10 MiB after the burst: %v (stats %+v)", round, err, p.Stats())
		}
		touch(p, off, 10<<20)
		p.Free(off, 10<<20)
		checkHeap(t, p)
		checkCommitted(t, p)
	}
	t.Logf("stats after 20 rounds: %+v", p.Stats())
}

// An Alloc that comes while a Scavenge pass holds the pool's only free block
// (an empty pool is one merged block) waits for it instead of failing.
func TestAllocWaitsForTheBlockScavengeHolds(t *testing.T) {
	p := newTestPool(t, 64<<20)
	off, err := p.Alloc(4 << 20) // commits pages; freed, they merge into one free block
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Free(off, 4<<20); err != nil {
		t.Fatal(err)
	}
	held, resume := make(chan struct{}), make(chan struct{})
	scavengeHook = func() {
		scavengeHook = nil // the first block only
		close(held)
		<-resume
	}
	t.Cleanup(func() { scavengeHook = nil })
	scavenged := make(chan error, 1)
	go func() {
		_, err := p.ScavengeAll()
		scavenged <- err
	}()
	<-held
	type result struct {
		off uint64
		err error
	}
	got := make(chan result, 1)
	go func() {
		off, err := p.Alloc(64)
		got <- result{off, err}
	}()
	select {
	case r := <-got:
		t.Fatalf("Alloc returned (%d, %v) while the only free block was out", r.off, r.err)
	case <-time.After(20 * time.Millisecond):
	}
	close(resume)
	r := <-got
	if r.err != nil {
		t.Fatalf("Alloc after the pass gave the block back: %v", r.err)
	}
	if err := <-scavenged; err != nil {
		t.Fatal(err)
	}
	if err := p.Free(r.off, 64); err != nil {
		t.Fatal(err)
	}
}
