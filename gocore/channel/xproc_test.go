package channel

import (
	"bufio"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cross-process tests re-execute the test binary with helperRole set; the
// helper maps the same /dev/shm heap file (inherited as fd 3), attaches to the channel and
// reports "count checksum" on stdout.
const (
	helperRole = "DMP_CHANNEL_TEST_HELPER" // "producer" or "consumer"
	helperSize = "DMP_CHANNEL_TEST_SIZE"
	helperChan = "DMP_CHANNEL_TEST_CHAN"
	helperID   = "DMP_CHANNEL_TEST_ID"
	helperN    = "DMP_CHANNEL_TEST_N"
	xprocProds = 2
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperRole); role != "" {
		os.Exit(runHelper(role))
	}
	os.Exit(m.Run())
}

func envU64(name string) uint64 {
	v, _ := strconv.ParseUint(os.Getenv(name), 10, 64)
	return v
}

func runHelper(role string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "helper %s %d: %s\n", role, os.Getpid(), fmt.Sprintf(format, args...))
		return 1
	}
	hp, err := openShmHeap(os.NewFile(3, "heap"), int(envU64(helperSize)))
	if err != nil {
		return fail("%v", err)
	}
	defer syscall.Munmap(hp.mem)
	c, err := Attach(hp, envU64(helperChan), 0)
	if err != nil {
		return fail("Attach: %v", err)
	}
	if err := c.Retain(); err != nil {
		return fail("Retain: %v", err)
	}
	defer c.Release()
	inline := int(c.Inline())
	var count, sum uint64
	switch role {
	case "producer":
		id, n := uint32(envU64(helperID)), envU64(helperN)
		for seq := uint64(0); seq < n; seq++ {
			msg := payload(id, seq, msgLen(seq, inline))
			if err := c.Send(msg, 20*time.Second); err != nil {
				return fail("Send %d: %v", seq, err)
			}
			count++
			sum += uint64(crc32.ChecksumIEEE(msg))
		}
	case "consumer":
		next := make([]uint64, xprocProds)
		buf := make([]byte, inline)
		for {
			m, err := c.Recv(buf, 20*time.Second)
			if err == ErrClosed {
				break
			}
			if err != nil {
				return fail("Recv: %v", err)
			}
			var b []byte
			if m.Large {
				b = hp.Bytes(m.Off, m.Len)
			} else {
				b = buf[:m.Len]
			}
			id, seq, err := checkPayload(b)
			if err != nil || id >= xprocProds || seq < next[id] {
				return fail("bad message id %d seq %d (next %v): %v", id, seq, next, err)
			}
			next[id] = seq + 1
			count++
			sum += uint64(crc32.ChecksumIEEE(b))
			if err := c.ReleaseMessage(m); err != nil {
				return fail("ReleaseMessage: %v", err)
			}
		}
	default:
		return fail("unknown role")
	}
	fmt.Printf("%d %d\n", count, sum)
	return 0
}

type helper struct {
	cmd *exec.Cmd
	out strings.Builder
}

func startHelper(t *testing.T, hp *shmHeap, c *Channel, role string, id int, n uint64) *helper {
	t.Helper()
	h := &helper{cmd: exec.Command(os.Args[0], "-test.run=^$")}
	h.cmd.Env = append(os.Environ(),
		helperRole+"="+role,
		helperSize+"="+strconv.Itoa(len(hp.mem)),
		helperChan+"="+strconv.FormatUint(c.Offset(), 10),
		helperID+"="+strconv.Itoa(id),
		helperN+"="+strconv.FormatUint(n, 10))
	h.cmd.ExtraFiles = []*os.File{hp.file} // fd 3
	h.cmd.Stdout = &h.out
	h.cmd.Stderr = os.Stderr
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *helper) wait(t *testing.T) (count, sum uint64) {
	t.Helper()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper %v: %v", h.cmd.Env[len(h.cmd.Env)-5:], err)
	}
	sc := bufio.NewScanner(strings.NewReader(h.out.String()))
	if !sc.Scan() {
		t.Fatalf("helper printed nothing")
	}
	if _, err := fmt.Sscan(sc.Text(), &count, &sum); err != nil {
		t.Fatalf("helper output %q: %v", sc.Text(), err)
	}
	return count, sum
}

// TestCrossProcess: 2 producer and 2 consumer processes share a channel
// (and the heap its large payloads come from) through a /dev/shm mapping.
func TestCrossProcess(t *testing.T) {
	tests := []Options{
		{Capacity: 32},
		{Inline: 64, ChunkSlots: 16},
	}
	const perProducer = 20000
	for _, o := range tests {
		t.Run(fmt.Sprintf("%+v", o), func(t *testing.T) {
			hp := newShmHeap(t, 64<<20, false) // helpers allocate too: no per-process tracking
			c := mustCreate(t, hp, o)
			base, _ := hp.Used()
			var prods, cons []*helper
			for k := 0; k < 2; k++ {
				cons = append(cons, startHelper(t, hp, c, "consumer", k, 0))
			}
			for id := 0; id < xprocProds; id++ {
				prods = append(prods, startHelper(t, hp, c, "producer", id, perProducer))
			}
			var sent, sentSum, got, gotSum uint64
			for _, h := range prods {
				n, s := h.wait(t)
				sent += n
				sentSum += s
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for _, h := range cons {
				n, s := h.wait(t)
				t.Logf("consumer received %d", n)
				got += n
				gotSum += s
			}
			if sent != xprocProds*perProducer || got != sent || gotSum != sentSum {
				t.Fatalf("sent %d (sum %d), received %d (sum %d)", sent, sentSum, got, gotSum)
			}
			if r := c.Refs(); r != 1 {
				t.Fatalf("refs = %d after helpers released", r)
			}
			if u, _ := hp.Used(); u != base {
				t.Fatalf("heap use %d, want %d", u, base)
			}
			if d, err := c.Release(); !d || err != nil {
				t.Fatalf("Release: %v %v", d, err)
			}
			if u, n := hp.Used(); u != 0 || n != 0 {
				t.Fatalf("leak: %d bytes in %d blocks", u, n)
			}
		})
	}
}
