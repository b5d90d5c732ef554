package channel

import (
	"testing"
)

func BenchmarkSendRecv64B(b *testing.B) {
	hp := newShmHeap(b, 64<<20, false)
	hp.noPoison = true
	c := mustCreate(b, hp, Options{})
	defer c.Release()
	msg := make([]byte, 64)
	buf := make([]byte, c.Inline())
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(msg, -1); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Recv(buf, -1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPingPong64B(b *testing.B) {
	hp := newShmHeap(b, 64<<20, false)
	hp.noPoison = true
	ping := mustCreate(b, hp, Options{})
	pong := mustCreate(b, hp, Options{})
	defer ping.Release()
	defer pong.Release()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, ping.Inline())
		for {
			m, err := ping.Recv(buf, -1)
			if err != nil {
				return // closed
			}
			if err := pong.Send(buf[:m.Len], -1); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, 64)
	buf := make([]byte, pong.Inline())
	b.SetBytes(64)
	b.ReportAllocs()
	for b.Loop() {
		if err := ping.Send(msg, -1); err != nil {
			b.Fatal(err)
		}
		if _, err := pong.Recv(buf, -1); err != nil {
			b.Fatal(err)
		}
	}
	ping.Close()
	<-done
}

func BenchmarkSendRecv1MiB(b *testing.B) {
	hp := newShmHeap(b, 64<<20, false)
	hp.noPoison = true
	c := mustCreate(b, hp, Options{})
	defer c.Release()
	msg := make([]byte, 1<<20)
	buf := make([]byte, c.Inline())
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Send(msg, -1); err != nil {
			b.Fatal(err)
		}
		m, err := c.Recv(buf, -1)
		if err != nil || !m.Large {
			b.Fatal(err)
		}
		if err := c.ReleaseMessage(m); err != nil {
			b.Fatal(err)
		}
	}
}
