// Command netbase measures the raw network baselines of bench/multinode.py
// between two hosts (network namespaces): plain TCP, plain quic-go, and
// dragon_mp's own QUIC mesh (gocore/transport) without Python.
//
//	netbase gen   -dir D                                   mesh identities D/node1.json (client), D/node2.json (server)
//	netbase serve -proto tcp|quic|mesh -listen IP:0 [-id D/node2.json]
//	netbase run   -proto tcp|quic|mesh -connect ADDR -test pingpong|bulk|bulk-sw -size N
//	              [-samples K] [-sample-sec S] [-id D/node1.json]
//
// serve prints "ADDR <host:port>" and serves until killed (or stdin ends).
// run prints one JSON line: {"proto","test","size","unit","samples":[...]}.
//
// Tests (all payloads are zero bytes, written from one reused buffer):
//
//	pingpong  size bytes there and back per op; samples in us per round trip
//	bulk      one-way messages of size bytes, streamed; the server acks once
//	          after the last one; samples in MB/s (1e6 B/s) of payload
//	bulk-sw   stop-and-wait: every message of size bytes is acked (1 byte)
//	          before the next is sent (what a synchronous remote put does)
//
// TCP and raw QUIC carry a 16-byte command header (op, size, count) before
// every batch on one connection (QUIC: one bidirectional stream); the mesh
// sends the header as a message on lane 1, then the data messages on lane 1.
// Raw QUIC uses quic-go defaults and a throwaway self-signed certificate
// (client skips verification); the mesh uses transport.Start as the node
// agent does (per-run CA, mTLS, hello).
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/dragon-mp/dragon_mp/gocore/agent"
	"github.com/dragon-mp/dragon_mp/gocore/transport"
	"github.com/dragon-mp/dragon_mp/gocore/wire"
)

const (
	opPingpong = 1
	opBulk     = 2
	opBulkSW   = 3
	hdrSize    = 16
	alpn       = "netbase"
	meshLane   = 1
	runID      = "netbase"
)

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "netbase: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		die("usage: netbase gen|serve|run ...")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	proto := fs.String("proto", "tcp", "tcp, quic or mesh")
	listen := fs.String("listen", "127.0.0.1:0", "serve: listen address")
	connect := fs.String("connect", "", "run: server address")
	test := fs.String("test", "pingpong", "pingpong, bulk or bulk-sw")
	size := fs.Int("size", 64, "message size in bytes")
	samples := fs.Int("samples", 7, "samples")
	sampleSec := fs.Float64("sample-sec", 0.15, "target seconds per sample")
	idFile := fs.String("id", "", "mesh identity file")
	lock := fs.Bool("lock", false, "run: measure from a goroutine locked to its OS thread (as a cgo call from Python is)")
	dir := fs.String("dir", "", "gen: output directory")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "gen":
		gen(*dir)
	case "serve":
		serve(*proto, *listen, *idFile)
	case "run":
		var c conn
		switch *proto {
		case "tcp":
			c = dialTCP(*connect)
		case "quic":
			c = dialQUIC(*connect)
		case "mesh":
			c = dialMesh(*connect, *idFile)
		case "agent":
			c = dialAgent(*connect, *idFile)
		default:
			die("unknown proto %q", *proto)
		}
		if *lock {
			runtime.LockOSThread()
		}
		res := measure(c, *test, *size, *samples, time.Duration(*sampleSec*float64(time.Second)))
		res["locked_thread"] = *lock
		res["proto"] = *proto
		c.close()
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	default:
		die("unknown mode %q", os.Args[1])
	}
}

// --- mesh identities -----------------------------------------------------------------------

func gen(dir string) {
	ca, err := transport.NewCA(runID)
	if err != nil {
		die("%v", err)
	}
	for n := uint16(1); n <= 2; n++ {
		id, err := ca.Issue(n)
		if err != nil {
			die("%v", err)
		}
		b, _ := id.Marshal()
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.json", n)), b, 0o600); err != nil {
			die("%v", err)
		}
	}
}

func loadID(path string) transport.Identity {
	b, err := os.ReadFile(path)
	if err != nil {
		die("%v", err)
	}
	id, err := transport.ParseIdentity(b)
	if err != nil {
		die("%v", err)
	}
	return id
}

// --- the client side: one abstraction over the three transports ---------------------------

// conn is the client end. batch runs one command of count ops and returns
// when the last reply/ack is in.
type conn interface {
	batch(op, size, count int) error
	close()
}

func header(op, size, count int) []byte {
	h := make([]byte, hdrSize)
	binary.LittleEndian.PutUint32(h[0:], uint32(op))
	binary.LittleEndian.PutUint32(h[4:], uint32(size))
	binary.LittleEndian.PutUint64(h[8:], uint64(count))
	return h
}

// streamConn: TCP or a QUIC stream.
type streamConn struct {
	rw     io.ReadWriter
	closer func()
	buf    []byte
}

func (c *streamConn) batch(op, size, count int) error {
	if len(c.buf) < size {
		c.buf = make([]byte, size)
	}
	msg := c.buf[:size]
	if _, err := c.rw.Write(header(op, size, count)); err != nil {
		return err
	}
	one := make([]byte, 1)
	switch op {
	case opPingpong:
		for range count {
			if _, err := c.rw.Write(msg); err != nil {
				return err
			}
			if _, err := io.ReadFull(c.rw, msg); err != nil {
				return err
			}
		}
	case opBulk:
		for range count {
			if _, err := c.rw.Write(msg); err != nil {
				return err
			}
		}
		_, err := io.ReadFull(c.rw, one)
		return err
	case opBulkSW:
		for range count {
			if _, err := c.rw.Write(msg); err != nil {
				return err
			}
			if _, err := io.ReadFull(c.rw, one); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *streamConn) close() { c.closer() }

func dialTCP(addr string) conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		die("%v", err)
	}
	return &streamConn{rw: c, closer: func() { c.Close() }}
}

func quicConf() *quic.Config {
	return &quic.Config{MaxIdleTimeout: 30 * time.Second, KeepAlivePeriod: 5 * time.Second}
}

func dialQUIC(addr string) conn {
	ctx := context.Background()
	qc, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}}, quicConf())
	if err != nil {
		die("%v", err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		die("%v", err)
	}
	return &streamConn{rw: st, closer: func() {
		st.Close()
		qc.CloseWithError(0, "done")
	}}
}

// meshConn: node 1 of a two-node mesh; the server is node 2.
type meshConn struct {
	m    *transport.Mesh
	in   chan []byte
	buf  []byte
	lost chan error
}

func dialMesh(addr, idFile string) conn {
	c := &meshConn{in: make(chan []byte, 1<<16), lost: make(chan error, 1)}
	m, err := transport.Start(transport.Config{
		Identity: loadID(idFile), Listen: ":0", Peers: map[uint16]string{2: addr},
		Deliver:  func(_ uint16, _ uint64, msg []byte) { c.in <- msg },
		PeerLost: func(_ uint16, err error) { c.lost <- err },
	})
	if err != nil {
		die("%v", err)
	}
	c.m = m
	return c
}

func (c *meshConn) recv() error {
	select {
	case <-c.in:
		return nil
	case err := <-c.lost:
		return err
	}
}

func (c *meshConn) batch(op, size, count int) error {
	if len(c.buf) < size {
		c.buf = make([]byte, size)
	}
	msg := c.buf[:size]
	if err := c.m.Send(2, meshLane, header(op, size, count)); err != nil {
		return err
	}
	switch op {
	case opPingpong, opBulkSW:
		for range count {
			if err := c.m.Send(2, meshLane, msg); err != nil {
				return err
			}
			if err := c.recv(); err != nil {
				return err
			}
		}
	case opBulk:
		for range count {
			if err := c.m.Send(2, meshLane, msg); err != nil {
				return err
			}
		}
		return c.recv()
	}
	return nil
}

func (c *meshConn) close() { c.m.Close() }

// --- measuring -----------------------------------------------------------------------------

func measure(c conn, test string, size, samples int, target time.Duration) map[string]any {
	op := map[string]int{"pingpong": opPingpong, "bulk": opBulk, "bulk-sw": opBulkSW}[test]
	if op == 0 {
		die("unknown test %q", test)
	}
	run := func(n int) time.Duration {
		t0 := time.Now()
		if err := c.batch(op, size, n); err != nil {
			die("%s %s: %v", test, fmt.Sprint(size), err)
		}
		return time.Since(t0)
	}
	// warm-up (handshake, congestion and flow-control windows), then
	// calibration: how many ops make one sample last ~target.
	warm := 200
	if op != opPingpong {
		warm = max(2, (64<<20)/size)
	}
	run(warm)
	n := 1
	var d time.Duration
	for {
		d = run(n)
		if d >= target/4 || n >= 1<<24 {
			break
		}
		n *= 2
	}
	n = max(1, int(float64(n)*float64(target)/float64(max(d, time.Microsecond))))
	out := make([]float64, 0, samples)
	for range samples {
		d := run(n).Seconds()
		if op == opPingpong {
			out = append(out, d/float64(n)*1e6)
		} else {
			out = append(out, float64(n)*float64(size)/d/1e6)
		}
	}
	unit := "MB/s"
	if op == opPingpong {
		unit = "us"
	}
	s := append([]float64(nil), out...)
	sort.Float64s(s)
	return map[string]any{"test": test, "size": size, "unit": unit, "ops_per_sample": n,
		"samples": out, "median": s[len(s)/2]}
}

// --- the server side -----------------------------------------------------------------------

func serve(proto, listen, idFile string) {
	var addr string
	switch proto {
	case "tcp":
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			die("%v", err)
		}
		addr = ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go serveStream(c)
			}
		}()
	case "quic":
		ln, err := quic.ListenAddr(listen, selfSigned(), quicConf())
		if err != nil {
			die("%v", err)
		}
		addr = ln.Addr().String()
		go func() {
			for {
				qc, err := ln.Accept(context.Background())
				if err != nil {
					return
				}
				go func() {
					st, err := qc.AcceptStream(context.Background())
					if err != nil {
						return
					}
					serveStream(st)
				}()
			}
		}()
	case "mesh":
		addr = serveMesh(listen, idFile)
	case "agent":
		addr = serveAgent(listen, idFile)
	default:
		die("unknown proto %q", proto)
	}
	fmt.Printf("ADDR %s\n", addr)
	os.Stdout.Sync()
	io.Copy(io.Discard, os.Stdin) // until the driver closes stdin (or kills us)
}

func serveStream(rw io.ReadWriter) {
	r := bufio.NewReaderSize(rw, 256<<10)
	h := make([]byte, hdrSize)
	var buf []byte
	ack := []byte{1}
	for {
		if _, err := io.ReadFull(r, h); err != nil {
			return
		}
		op := int(binary.LittleEndian.Uint32(h[0:]))
		size := int(binary.LittleEndian.Uint32(h[4:]))
		count := int(binary.LittleEndian.Uint64(h[8:]))
		if len(buf) < size {
			buf = make([]byte, size)
		}
		msg := buf[:size]
		for i := range count {
			if _, err := io.ReadFull(r, msg); err != nil {
				return
			}
			switch {
			case op == opPingpong:
				rw.Write(msg)
			case op == opBulkSW, op == opBulk && i == count-1:
				rw.Write(ack)
			}
		}
	}
}

func serveMesh(listen, idFile string) string {
	in := make(chan []byte, 1<<16)
	m, err := transport.Start(transport.Config{
		Identity: loadID(idFile), Listen: listen,
		Deliver:  func(_ uint16, _ uint64, msg []byte) { in <- msg },
		PeerLost: func(uint16, error) {},
	})
	if err != nil {
		die("%v", err)
	}
	go func() {
		// Deliver must not block: a worker takes the messages off the reader.
		ack := []byte{1}
		for {
			h := <-in
			op := int(binary.LittleEndian.Uint32(h[0:]))
			count := int(binary.LittleEndian.Uint64(h[8:]))
			for i := range count {
				msg := <-in
				switch {
				case op == opPingpong:
					m.Send(1, meshLane, msg)
				case op == opBulkSW, op == opBulk && i == count-1:
					m.Send(1, meshLane, ack)
				}
			}
		}
	}()
	return m.Addr().String()
}

func selfSigned() *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		die("%v", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "netbase"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"netbase"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		die("%v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos: []string{alpn}}
}

// --- gocore/agent over the mesh, without Python ----------------------------------------------
//
// proto "agent" is the remote-operation path of dragon_mp minus Python and pyext: the client
// process calls its node agent (node 1) over the agent's abstract unix socket with
// agent.Client.Call; the agent forwards over the mesh to node 2's agent, whose executor answers
// (pingpong: the payload back; bulk-sw: an empty reply, the shape of a remote put). Only
// pingpong and bulk-sw make sense (a Call is synchronous).

func agentExec(req *wire.Frame) (wire.Frame, func()) {
	if req.Op == opPingpong {
		return wire.Frame{Payload: req.Payload}, nil
	}
	return wire.Frame{}, nil
}

func serveAgent(listen, idFile string) string {
	a := agent.New(2, agentExec)
	m, err := transport.Start(transport.Config{Identity: loadID(idFile), Listen: listen,
		Deliver: a.Deliver, PeerLost: a.PeerLost})
	if err != nil {
		die("%v", err)
	}
	a.SetMesh(m)
	return m.Addr().String()
}

type agentConn struct {
	a *agent.Agent
	m *transport.Mesh
	c *agent.Client
}

func dialAgent(addr, idFile string) conn {
	a := agent.New(1, agentExec)
	m, err := transport.Start(transport.Config{Identity: loadID(idFile), Listen: ":0",
		Peers: map[uint16]string{2: addr}, Deliver: a.Deliver, PeerLost: a.PeerLost})
	if err != nil {
		die("%v", err)
	}
	a.SetMesh(m)
	name := agent.SocketName(fmt.Sprintf("netbase-%d", os.Getpid()))
	if err := a.Serve(name); err != nil {
		die("%v", err)
	}
	c, err := agent.Dial(name)
	if err != nil {
		die("%v", err)
	}
	return &agentConn{a: a, m: m, c: c}
}

func (c *agentConn) batch(op, size, count int) error {
	if op == opBulk {
		return fmt.Errorf("agent: only pingpong and bulk-sw")
	}
	msg := make([]byte, size)
	for range count {
		r, err := c.c.Call(wire.Frame{Op: uint16(op), Addr: 2 << 48, Payload: msg})
		if err != nil {
			return err
		}
		if r.Code != 0 {
			return fmt.Errorf("agent reply code %d: %s", r.Code, r.Payload)
		}
	}
	return nil
}

func (c *agentConn) close() {
	c.c.Close()
	c.m.Close()
	c.a.Close()
}
