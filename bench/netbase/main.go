// Command netbase measures the raw network baselines of bench/multinode.py
// between two hosts (network namespaces), without Python: plain TCP, plain
// quic-go, TLS 1.3 over TCP as dragon_mp's data connections make it
// (gocore/transport), and the whole remote-operation path of gocore/agent.
//
//	netbase gen   -dir D                                   run identities D/node1.json (client), D/node2.json (server)
//	netbase serve -proto tcp|gotls|quic|tls|agent -listen IP:0 [-id D/node2.json]
//	netbase run   -proto tcp|gotls|quic|tls|agent -connect ADDR -test pingpong|bulk|bulk-sw -size N
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
// TCP, Go TLS, raw QUIC and TLS carry a 16-byte command header (op, size,
// count) before every batch on one connection (QUIC: one bidirectional
// stream). Raw QUIC and gotls (crypto/tls over TCP, Go's network poller)
// use library defaults and a throwaway self-signed certificate (client
// skips verification); tls is dragon_mp's data connection,
// transport.DialData/ListenData as a process and an agent use it (per-run
// CA, mTLS, hello, then its own records, blocking reads). agent
// is gocore/agent's Client calling node 2's Agent: pingpong is a call that
// echoes its payload, bulk-sw a call with an empty reply (a synchronous
// put), bulk a stream of posts ended by a sync (a Queue's put).
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
	proto := fs.String("proto", "tcp", "tcp, gotls, quic, tls or agent")
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
		case "gotls":
			c = dialGoTLS(*connect)
		case "quic":
			c = dialQUIC(*connect)
		case "tls":
			c = dialTLS(*connect, *idFile)
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

// dialGoTLS: Go's standard TLS 1.3 (crypto/tls records, the network
// poller) over TCP, a throwaway self-signed certificate as for raw QUIC:
// the transport dragon_mp's data connections would be without their own
// records and blocking reads.
func dialGoTLS(addr string) conn {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn},
		MinVersion: tls.VersionTLS13})
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

// dialTLS: a data connection of node 1 to node 2's listener.
func dialTLS(addr, idFile string) conn {
	creds, err := loadID(idFile).Load()
	if err != nil {
		die("%v", err)
	}
	dc, err := transport.DialData(transport.DialConfig{Creds: creds, Node: 2, Addr: addr})
	if err != nil {
		die("%v", err)
	}
	return &streamConn{rw: dc, closer: func() { dc.Close() }}
}

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
	case "tcp", "gotls":
		var ln net.Listener
		var err error
		if proto == "tcp" {
			ln, err = net.Listen("tcp", listen)
		} else {
			ln, err = tls.Listen("tcp", listen, selfSigned())
		}
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
	case "tls":
		creds, err := loadID(idFile).Load()
		if err != nil {
			die("%v", err)
		}
		ln, err := transport.ListenData(creds, listen)
		if err != nil {
			die("%v", err)
		}
		addr = ln.Addr().String()
		go ln.Serve(func(c *transport.DataConn) { serveStream(c) })
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

// --- gocore/agent, without Python ------------------------------------------------------------
//
// proto "agent" is the remote-operation path of dragon_mp minus Python and pyext: node 1's
// agent.Client (with node 1's Agent answering its control requests) calls node 2's Agent, whose
// executor answers (pingpong: the payload back; bulk-sw: an empty reply, the shape of a
// synchronous put; bulk: posts, then one sync, the shape of a stream of Queue puts).

type agentExec struct{}

func (agentExec) Alloc(*wire.Frame, int) ([]byte, any) { return nil, nil }
func (agentExec) Free(any)                             {}
func (agentExec) Exec(req *agent.Request, _ bool) (agent.Result, bool) {
	if req.Op == opPingpong {
		return agent.Result{Reply: wire.Frame{Payload: req.Payload}}, true
	}
	return agent.Result{}, true
}

func serveAgent(listen, idFile string) string {
	a, err := agent.New(agent.Config{Node: 2, Identity: loadID(idFile), Exec: agentExec{}})
	if err != nil {
		die("%v", err)
	}
	addr, err := a.ListenData(listen)
	if err != nil {
		die("%v", err)
	}
	return addr
}

type agentConn struct {
	a *agent.Agent
	c *agent.Client
}

func dialAgent(addr, idFile string) conn {
	a, err := agent.New(agent.Config{Node: 1, Identity: loadID(idFile), Exec: agentExec{}})
	if err != nil {
		die("%v", err)
	}
	name := agent.SocketName(fmt.Sprintf("netbase-%d", os.Getpid()))
	if err := a.ServeLocal(name); err != nil {
		die("%v", err)
	}
	a.SetPeers(map[uint16]string{2: addr})
	return &agentConn{a: a, c: agent.NewClient(agent.ClientConfig{Control: name})}
}

func (c *agentConn) batch(op, size, count int) error {
	msg := [][]byte{make([]byte, size)}
	for range count {
		var err error
		if op == opBulk {
			err = c.c.Post(wire.Frame{Op: uint16(op), Addr: 2 << 48}, msg)
		} else {
			_, err = c.c.Call(wire.Frame{Op: uint16(op), Addr: 2 << 48}, msg, nil)
		}
		if err != nil {
			return err
		}
	}
	if op == opBulk {
		return c.c.Sync(2)
	}
	return nil
}

func (c *agentConn) close() {
	c.c.Close()
	c.a.Close()
}
