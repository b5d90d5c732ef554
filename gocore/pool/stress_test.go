package pool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

// churner allocates and frees random blocks, filling each with a pattern that
// starts with a unique tag and checking it before the free: two blocks that
// overlap, or a block the allocator scribbles on, fail the check.
type churner struct {
	p    *Pool
	rng  *rand.Rand
	pat  []byte
	id   uint64
	seq  uint64
	max  uint64 // largest size asked for
	live []churnBlock
}

type churnBlock struct{ off, size, tag uint64 }

const churnMaxSize = 1 << 20

func newChurner(p *Pool, id uint64) *churner {
	c := &churner{p: p, rng: rand.New(rand.NewPCG(id, uint64(os.Getpid()))), id: id, max: churnMaxSize}
	c.pat = make([]byte, churnMaxSize+256)
	for i := range c.pat {
		c.pat[i] = byte(c.rng.Uint32())
	}
	return c
}

func (c *churner) size() uint64 {
	switch r := c.rng.IntN(100); {
	case r < 70:
		return 1 + c.rng.Uint64N(min(256, c.max))
	case r < 97:
		return 1 + c.rng.Uint64N(min(64<<10, c.max))
	default:
		return 1 + c.rng.Uint64N(c.max)
	}
}

func (c *churner) content(b churnBlock) []byte {
	s := b.tag % 256
	return c.pat[s : s+b.size]
}

func (c *churner) alloc() error {
	size := c.size()
	off, err := c.p.Alloc(size)
	if err != nil {
		return fmt.Errorf("Alloc(%d): %w", size, err)
	}
	c.seq++
	b := churnBlock{off, size, c.id<<40 | c.seq}
	mem := c.p.Bytes(off, size)
	copy(mem, c.content(b))
	if size >= 8 {
		binary.LittleEndian.PutUint64(mem, b.tag)
	}
	c.live = append(c.live, b)
	return nil
}

func (c *churner) free(i int) error {
	b := c.live[i]
	want := c.content(b)
	mem := c.p.Bytes(b.off, b.size)
	if b.size >= 8 {
		if got := binary.LittleEndian.Uint64(mem); got != b.tag {
			return fmt.Errorf("block %#x (%d bytes): tag %#x overwritten by %#x", b.off, b.size, b.tag, got)
		}
		mem, want = mem[8:], want[8:]
	}
	if !bytes.Equal(mem, want) {
		return fmt.Errorf("block %#x (%d bytes, tag %#x): content overwritten", b.off, b.size, b.tag)
	}
	if err := c.p.Free(b.off, b.size); err != nil {
		return err
	}
	c.live[i] = c.live[len(c.live)-1]
	c.live = c.live[:len(c.live)-1]
	return nil
}

// run does ops random allocs/frees keeping at most maxLive blocks, then frees
// everything.
func (c *churner) run(ops, maxLive int) error {
	for i := 0; i < ops; i++ {
		if len(c.live) < maxLive && (len(c.live) == 0 || c.rng.IntN(100) < 55) {
			if err := c.alloc(); err != nil {
				return err
			}
		} else if err := c.free(c.rng.IntN(len(c.live))); err != nil {
			return err
		}
	}
	for len(c.live) > 0 {
		if err := c.free(len(c.live) - 1); err != nil {
			return err
		}
	}
	return nil
}

// scavengeWhile gives pages back in a loop (every other pass ScavengeAll)
// until the returned stop is called: churners whose blocks it punched by
// mistake would find their pattern gone. stop returns the bytes given back.
func scavengeWhile(t *testing.T, p *Pool) (stop func() uint64) {
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		var total uint64
		for i := 0; ; i++ {
			select {
			case <-done:
				result <- total
				return
			default:
			}
			var got uint64
			var err error
			if i%2 == 0 {
				got, err = p.ScavengeAll()
			} else {
				got, err = p.Scavenge(1)
			}
			if err != nil {
				t.Error(err)
			}
			total += got
		}
	}()
	return func() uint64 {
		close(done)
		return <-result
	}
}

func TestStressGoroutines(t *testing.T) {
	p := newTestPool(t, 1<<30)
	const workers = 8
	ops := 20000
	if testing.Short() {
		ops = 2000
	}
	stop := scavengeWhile(t, p)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := newChurner(p, uint64(w+1)).run(ops, 200); err != nil {
				errs <- fmt.Errorf("worker %d: %w", w, err)
			}
		}()
	}
	wg.Wait()
	released := stop()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("given back while churning: %d bytes", released)
	s := p.Stats()
	if s.InUse != 0 || s.Allocs != s.Frees {
		t.Fatalf("stats %+v at the end", s)
	}
	checkHeap(t, p)
	t.Logf("stats %+v", s)
}

// helperMain is a helper process of TestCrossProcess: it opens the pool named
// in the environment and churns on it.
func helperMain() int {
	id, _ := strconv.ParseUint(os.Getenv(helperEnv), 10, 64)
	ops, _ := strconv.Atoi(os.Getenv(helperEnv + "_OPS"))
	p, err := Open(os.Getenv(helperEnv + "_POOL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	defer p.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for g := uint64(0); g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := newChurner(p, id*16+g).run(ops, 150); err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintf(os.Stderr, "helper %d (pid %d): %v\n", id, os.Getpid(), firstErr)
		return 1
	}
	return 0
}

func TestCrossProcess(t *testing.T) {
	p := newTestPool(t, 1<<30)
	ops := 15000
	if testing.Short() {
		ops = 1500
	}
	const helpers = 3
	cmds := make([]*exec.Cmd, helpers)
	outs := make([]bytes.Buffer, helpers)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(),
			fmt.Sprintf("%s=%d", helperEnv, i+1),
			fmt.Sprintf("%s_OPS=%d", helperEnv, ops),
			fmt.Sprintf("%s_POOL=%s", helperEnv, p.Name()))
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	// This process churns too, at the same time, and gives pages back.
	stop := scavengeWhile(t, p)
	if err := newChurner(p, 99).run(ops, 150); err != nil {
		t.Error(err)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper %d: %v\n%s", i+1, err, outs[i].String())
		}
	}
	t.Logf("given back while churning: %d bytes", stop())
	s := p.Stats()
	if s.InUse != 0 || s.Allocs != s.Frees {
		t.Fatalf("stats %+v after all processes finished", s)
	}
	if want := uint64(helpers*2+1) * uint64(ops); s.Allocs < want/3 {
		t.Fatalf("only %d allocs for %d ops: helpers did not work", s.Allocs, want)
	}
	checkHeap(t, p)
	t.Logf("stats %+v", s)
}
