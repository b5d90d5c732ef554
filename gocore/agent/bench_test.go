package agent

import (
	"testing"

	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

// Benchmarks of the remote-operation path in one process over loopback:
// what the agent and its client cost, without Python and without a second
// machine.
//
//	go test -run - -bench . ./gocore/agent/

func BenchmarkCall(b *testing.B) {
	nodes := run(&testing.T{}, 2)
	c := nodes[0].client(&testing.T{})
	defer c.Close()
	msg := [][]byte{make([]byte, 64)}
	b.Run("echo64", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Call(wire.Frame{Op: opEcho, Addr: addr(1, 64)}, msg, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, size := range []int{1 << 20, 16 << 20} {
		buf := make([]byte, size)
		sink := func(n int) ([]byte, error) { return buf[:n], nil }
		b.Run("pull"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if _, err := c.Call(wire.Frame{Op: opSource, Addr: addr(1, 64), Args: []int64{int64(size)}}, nil, sink); err != nil {
					b.Fatal(err)
				}
			}
		})
		payload := [][]byte{make([]byte, size)}
		b.Run("post"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := c.Post(wire.Frame{Op: opSink, Addr: addr(1, 64)}, payload); err != nil {
					b.Fatal(err)
				}
			}
			c.Sync(1)
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return string(rune('0'+n>>20/10%10)) + string(rune('0'+n>>20%10)) + "MiB"
	}
	return "small"
}
