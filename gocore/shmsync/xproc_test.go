package shmsync

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// Cross-process tests re-execute the test binary with helperEnv set; the
// helper maps the same /dev/shm file (inherited as fd 3) and works on it.
const (
	helperEnv  = "SHMSYNC_TEST_HELPER"
	helperIter = "SHMSYNC_TEST_ITER"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	os.Exit(m.Run())
}

// semArea is the layout of the shared file used by the Semaphore test.
type semArea struct {
	lock    Semaphore // Init(1, 1): guards counter
	_       [48]byte
	counter uint64 // plain (non-atomic) increments under lock
	_       [56]byte
	gate    Semaphore // Init(0, 0): helpers block on it until the parent releases
	_       [48]byte
	passed  Semaphore // each helper releases it once through the gate
}

func shmDir() string {
	if d := os.Getenv("DRAGON_MP_SHM_DIR"); d != "" {
		return d
	}
	return "/dev/shm"
}

// createShm creates a size-byte file in the shm directory, maps it and
// unlinks it at once (nothing is left behind even if the test binary dies);
// helpers inherit the open file as fd 3.
func createShm(size int) (*os.File, []byte, error) {
	path := filepath.Join(shmDir(), fmt.Sprintf("dragon_mp.test-shmsync-%d.sem", os.Getpid()))
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

func runHelper(role string) int {
	mem, err := mapFd(os.NewFile(3, "shm"), 4096)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	a := (*semArea)(unsafe.Pointer(&mem[0]))
	iter, _ := strconv.Atoi(os.Getenv(helperIter))
	switch role {
	case "sem":
		for i := 0; i < iter; i++ {
			if !a.lock.Acquire(10 * time.Second) {
				fmt.Fprintln(os.Stderr, "helper: lock timed out")
				return 3
			}
			v := a.counter
			if i%64 == 0 {
				time.Sleep(time.Microsecond) // let others pile up on the lock
			}
			a.counter = v + 1
			if err := a.lock.Release(); err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				return 4
			}
		}
		if !a.gate.Acquire(10 * time.Second) {
			fmt.Fprintln(os.Stderr, "helper: gate timed out")
			return 5
		}
		a.passed.Release()
		return 0
	}
	fmt.Fprintln(os.Stderr, "helper: unknown role", role)
	return 1
}

func TestSemaphoreCrossProcess(t *testing.T) {
	f, mem, err := createShm(4096)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	defer syscall.Munmap(mem)
	a := (*semArea)(unsafe.Pointer(&mem[0]))
	a.lock.Init(1, 1)

	const helpers, iter = 2, 5000
	cmds := make([]*exec.Cmd, helpers)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=sem",
			helperIter+"="+strconv.Itoa(iter))
		cmd.ExtraFiles = []*os.File{f} // fd 3
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	// This process competes too, from two goroutines.
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < iter; i++ {
				a.lock.Acquire(-1)
				a.counter++
				a.lock.Release()
			}
		}()
	}
	wg.Wait()
	// The helpers now block on the gate (or will soon): open it one by one.
	time.Sleep(50 * time.Millisecond)
	for i := 0; i < helpers; i++ {
		if err := a.gate.Release(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < helpers; i++ {
		if !a.passed.Acquire(20 * time.Second) {
			t.Fatal("helpers did not pass the gate")
		}
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	if want := uint64((helpers + 2) * iter); a.counter != want {
		t.Fatalf("counter = %d, want %d", a.counter, want)
	}
	if a.lock.Value() != 1 || a.gate.Value() != 0 {
		t.Fatalf("lock value %d gate value %d", a.lock.Value(), a.gate.Value())
	}
}
