package transport

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
)

// The benchmarks run the same two workloads over the mesh and over plain
// loopback TCP with the same framing (length, lane, bytes; one fresh
// buffer per received message), so QUIC/TCP ratios can be read off one
// run:
//
//	pingpong-64B: one 64-byte message there and back per op (latency)
//	oneway-64B:   one-way 64-byte messages, as fast as they go (batching)
//	bulk-1MiB:    one-way 1 MiB messages, ops/s x 1 MiB = throughput

func BenchmarkMesh(b *testing.B) {
	b.Run("pingpong-64B", func(b *testing.B) {
		a, z := benchPair(b)
		back := make(chan struct{}, 1)
		z.rec.onRecv = func(from uint16, lane uint64, msg []byte) {
			// Answer off the reader: Deliver must not block.
			go z.m.Send(from, lane, msg)
		}
		a.rec.onRecv = func(uint16, uint64, []byte) { back <- struct{}{} }
		msg := make([]byte, 64)
		for b.Loop() {
			if err := a.m.Send(2, 1, msg); err != nil {
				b.Fatal(err)
			}
			<-back
		}
	})
	b.Run("oneway-64B", func(b *testing.B) { meshOneway(b, 64) })
	b.Run("bulk-1MiB", func(b *testing.B) { meshOneway(b, 1<<20) })
}

func meshOneway(b *testing.B, size int) {
	{
		a, z := benchPair(b)
		var got atomic.Int64
		done := make(chan struct{}, 1)
		var want atomic.Int64
		z.rec.onRecv = func(_ uint16, _ uint64, msg []byte) {
			if got.Add(1) == want.Load() {
				done <- struct{}{}
			}
		}
		msg := make([]byte, size)
		b.SetBytes(int64(len(msg)))
		// Warm up the connection (handshake, windows) outside the timing.
		want.Store(1)
		a.m.Send(2, 1, msg)
		<-done
		got.Store(0)
		want.Store(int64(b.N))
		b.ResetTimer()
		for range b.N {
			if err := a.m.Send(2, 1, msg); err != nil {
				b.Fatal(err)
			}
		}
		<-done
	}
}

type benchNode struct {
	m   *Mesh
	rec *recorder
}

// benchPair starts two connected meshes.
func benchPair(b *testing.B) (benchNode, benchNode) {
	ca, err := NewCA("bench")
	if err != nil {
		b.Fatal(err)
	}
	var n [2]benchNode
	for i := range n {
		id, _ := ca.Issue(uint16(i + 1))
		r := newRecorder()
		rr := r
		m, err := Start(Config{Identity: id, Listen: "127.0.0.1:0",
			Deliver: func(f uint16, l uint64, msg []byte) { rr.onRecv(f, l, msg) }})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		n[i] = benchNode{m, r}
	}
	n[0].m.SetPeers(map[uint16]string{2: n[1].m.Addr().String()})
	n[1].m.SetPeers(map[uint16]string{1: n[0].m.Addr().String()})
	// Connect before timing: a message each way.
	ok := make(chan struct{}, 2)
	n[0].rec.onRecv = func(uint16, uint64, []byte) { ok <- struct{}{} }
	n[1].rec.onRecv = func(uint16, uint64, []byte) { ok <- struct{}{} }
	n[0].m.Send(2, 0, []byte("hi"))
	<-ok
	n[1].m.Send(1, 0, []byte("hi"))
	<-ok
	return n[0], n[1]
}

// BenchmarkTCP is the baseline: the same framing over loopback TCP,
// flushing after each message like the mesh's writer does when idle.
func BenchmarkTCP(b *testing.B) {
	b.Run("pingpong-64B", func(b *testing.B) {
		c1, c2 := tcpPair(b)
		go func() { // echo
			r, w := bufio.NewReader(c2), bufio.NewWriter(c2)
			for {
				lane, msg, err := tcpRead(r)
				if err != nil {
					return
				}
				tcpWrite(w, lane, msg)
				w.Flush()
			}
		}()
		r, w := bufio.NewReader(c1), bufio.NewWriter(c1)
		msg := make([]byte, 64)
		for b.Loop() {
			tcpWrite(w, 1, msg)
			w.Flush()
			if _, _, err := tcpRead(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("oneway-64B", func(b *testing.B) { tcpOneway(b, 64) })
	b.Run("bulk-1MiB", func(b *testing.B) { tcpOneway(b, 1<<20) })
}

// tcpOneway writes through a bufio.Writer flushed at the end: the
// best case batching for TCP.
func tcpOneway(b *testing.B, size int) {
	{
		c1, c2 := tcpPair(b)
		done := make(chan struct{})
		n := b.N
		go func() {
			r := bufio.NewReaderSize(c2, readBuf)
			for range n {
				if _, _, err := tcpRead(r); err != nil {
					break
				}
			}
			close(done)
		}()
		msg := make([]byte, size)
		b.SetBytes(int64(len(msg)))
		w := bufio.NewWriterSize(c1, readBuf)
		for range n {
			tcpWrite(w, 1, msg)
		}
		w.Flush()
		<-done
	}
}

func tcpPair(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c2 := <-acc
	b.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

func tcpWrite(w *bufio.Writer, lane uint64, msg []byte) {
	var hdr [msgHeader]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(msg)))
	binary.LittleEndian.PutUint64(hdr[4:], lane)
	w.Write(hdr[:])
	w.Write(msg)
}

func tcpRead(r *bufio.Reader) (uint64, []byte, error) {
	var hdr [msgHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	msg := make([]byte, binary.LittleEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(r, msg)
	return binary.LittleEndian.Uint64(hdr[4:]), msg, err
}
