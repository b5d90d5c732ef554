package transport

import (
	"io"
	"net"
	"strconv"
	"testing"
)

// Benchmarks of a data connection against plain TCP on loopback, one
// process: the cost TLS and the blocking connection add per message.
//
//	go test -run - -bench . ./gocore/transport/

func BenchmarkData(b *testing.B) {
	ca, _ := NewCA("benchrun")
	creds2 := func(n uint16) *Creds {
		id, _ := ca.Issue(n)
		c, _ := id.Load()
		return c
	}
	ln, err := ListenData(creds2(2), "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan *DataConn, 1)
	go ln.Serve(func(c *DataConn) { conns <- c })
	cli, err := DialData(DialConfig{Creds: creds2(1), Node: 2, Addr: ln.Addr().String()})
	if err != nil {
		b.Fatal(err)
	}
	srv := <-conns
	defer cli.Close()
	defer srv.Close()
	benchConn(b, cli, srv)
}

func BenchmarkTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	srv := <-acc
	defer cli.Close()
	defer srv.Close()
	benchConn(b, cli, srv)
}

func benchConn(b *testing.B, cli, srv io.ReadWriter) {
	b.Run("pingpong64", func(b *testing.B) {
		go echo(srv, 64, b.N)
		buf := make([]byte, 64)
		for range b.N {
			cli.Write(buf)
			io.ReadFull(cli, buf)
		}
	})
	for _, size := range []int{1 << 20, 16 << 20} {
		b.Run("oneway"+sizeName(size), func(b *testing.B) {
			done := make(chan struct{})
			n := b.N
			go func() {
				buf := make([]byte, size)
				for range n {
					io.ReadFull(srv, buf)
				}
				close(done)
			}()
			buf := make([]byte, size)
			b.SetBytes(int64(size))
			for range n {
				cli.Write(buf)
			}
			<-done
		})
	}
}

func echo(c io.ReadWriter, size, n int) {
	buf := make([]byte, size)
	for range n {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		c.Write(buf)
	}
}

func sizeName(n int) string { return strconv.Itoa(n>>20) + "MiB" }
