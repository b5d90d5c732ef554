// Package goprof holds Go benchmarks used only to profile hot paths of
// gocore packages that have no benchmarks of their own (see
// bench/profiles/README.md): go test ./bench/goprof -bench . -cpuprofile cpu.prof
//
// The sync objects live in ordinary Go memory here; their futex words are
// waited on with the shared (non-private) futex calls either way, so the
// code paths are those of objects in a pool.
package goprof

import (
	"sync"
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/shmsync"
)

func BenchmarkMutexUncontended(b *testing.B) {
	var m shmsync.Mutex
	for b.Loop() {
		m.Lock()
		m.Unlock()
	}
}

func BenchmarkSemaphoreUncontended(b *testing.B) {
	var s shmsync.Semaphore
	s.Init(1, 1)
	for b.Loop() {
		s.Acquire(-1)
		if err := s.Release(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEventSetClear(b *testing.B) {
	var e shmsync.Event
	for b.Loop() {
		e.Set()
		e.Clear()
	}
}

// contended runs op in 2 goroutines (the machine's 2 cores) for b.N ops in all.
func contended(b *testing.B, op func()) {
	var wg sync.WaitGroup
	per := b.N / 2
	b.ResetTimer()
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				op()
			}
		}()
	}
	wg.Wait()
}

func BenchmarkMutexContended2(b *testing.B) {
	var m shmsync.Mutex
	contended(b, func() { m.Lock(); m.Unlock() })
}

func BenchmarkSemaphoreContended2(b *testing.B) {
	var s shmsync.Semaphore
	s.Init(1, 1)
	contended(b, func() {
		s.Acquire(-1)
		_ = s.Release()
	})
}
