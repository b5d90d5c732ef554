package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dragon-mp/dragon_mp/gocore/transport/internal/ctl"
)

// dataServer is node `node`'s data listener on 127.0.0.1; accepted
// connections arrive on conns.
type dataServer struct {
	ln    *DataListener
	conns chan *DataConn
}

func startDataServer(t *testing.T, ca *CA, node uint16) *dataServer {
	t.Helper()
	creds := mustCreds(t, ca, node)
	ln, err := ListenData(creds, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dataServer{ln: ln, conns: make(chan *DataConn, 16)}
	go ln.Serve(func(c *DataConn) { s.conns <- c })
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-s.conns:
				c.Close()
			default:
				return
			}
		}
	})
	return s
}

func (s *dataServer) accept(t *testing.T) *DataConn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(deadline):
		t.Fatal("no connection accepted")
		return nil
	}
}

func mustCreds(t *testing.T, ca *CA, node uint16) *Creds {
	t.Helper()
	id, err := ca.Issue(node)
	if err != nil {
		t.Fatal(err)
	}
	c, err := id.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dial(t *testing.T, ca *CA, from, to uint16, addr string, step time.Duration, check func() error) *DataConn {
	t.Helper()
	c, err := DialData(DialConfig{Creds: mustCreds(t, ca, from), Node: to, Addr: addr, Step: step, Check: check})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDataRoundTrip: both ends see who the other is, and bytes of every
// size cross both ways intact (up to 16 MiB: many TLS records).
func TestDataRoundTrip(t *testing.T) {
	ca, _ := NewCA("datarun")
	srv := startDataServer(t, ca, 2)
	cli := dial(t, ca, 1, 2, srv.ln.Addr().String(), 0, nil)
	s := srv.accept(t)
	if s.Peer != 1 || cli.Peer != 2 {
		t.Fatalf("peers: server sees %d (want 1), client sees %d (want 2)", s.Peer, cli.Peer)
	}
	for _, n := range []int{1, 100, 16 << 10, 16<<10 + 1, 1 << 20, 16 << 20} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i*7 + i>>11 + n)
		}
		errc := make(chan error, 1)
		go func() {
			buf := make([]byte, n)
			if _, err := io.ReadFull(s, buf); err != nil {
				errc <- err
				return
			}
			_, err := s.Write(buf) // echo
			errc <- err
		}()
		if _, err := cli.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, n)
		if _, err := io.ReadFull(cli, got); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("%d bytes: echo differs", n)
		}
	}
}

// TestDataCongestion: both ends of a data connection use cubic when the
// system allows it (see congestion), from their first packet.
func TestDataCongestion(t *testing.T) {
	allowed, err := os.ReadFile("/proc/sys/net/ipv4/tcp_allowed_congestion_control")
	if err != nil || !strings.Contains(" "+strings.TrimSpace(string(allowed))+" ", " "+congestion+" ") {
		t.Skipf("%s is not allowed here (%q)", congestion, allowed)
	}
	ca, _ := NewCA("datarun")
	srv := startDataServer(t, ca, 2)
	cli := dial(t, ca, 1, 2, srv.ln.Addr().String(), 0, nil)
	s := srv.accept(t)
	for name, c := range map[string]*DataConn{"client": cli, "server": s} {
		got, err := unix.GetsockoptString(c.raw.fd, unix.IPPROTO_TCP, unix.TCP_CONGESTION)
		if err != nil {
			t.Fatal(err)
		}
		if got != congestion {
			t.Errorf("%s: congestion control %q, want %q", name, got, congestion)
		}
	}
}

// TestDataPinsServer: the address given for node 2 is node 3's listener
// (a valid member of the run): the dial fails, nothing is accepted there.
func TestDataPinsServer(t *testing.T) {
	ca, _ := NewCA("datarun")
	srv3 := startDataServer(t, ca, 3)
	_, err := DialData(DialConfig{Creds: mustCreds(t, ca, 1), Node: 2, Addr: srv3.ln.Addr().String()})
	if err == nil {
		t.Fatal("dialing node 2 at node 3's address succeeded")
	}
	t.Logf("refused: %v", err)
	select {
	case <-srv3.conns:
		t.Fatal("node 3 accepted a connection meant for node 2")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestDataOutsidersRejected: every outsider of TestOutsidersRejected, but
// against a data listener: none gets an OK hello, none is accepted.
func TestDataOutsidersRejected(t *testing.T) {
	c := newCluster(t, 1) // only for its CA and run id
	srv := startDataServer(t, c.ca, 1)
	for _, o := range outsiders(t, c, DataALPN) {
		t.Run(o.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", srv.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(deadline))
			tc := tls.Client(nc, o.tls(c, 1))
			if err := tc.Handshake(); err != nil {
				t.Logf("rejected in the handshake: %v", err)
				return
			}
			if o.hello != nil {
				ctl.Write(tc, o.hello(c, 1))
			}
			reply, err := ctl.Read(tc)
			if err == nil && reply.Status == ctl.StatusOK {
				t.Fatalf("outsider got an OK hello reply: %+v", reply)
			}
			t.Logf("answer: %v %v", reply.Status, err)
		})
	}
	select {
	case conn := <-srv.conns:
		t.Fatalf("an outsider was accepted as node %d", conn.Peer)
	default:
	}
	// A member still gets in.
	dial(t, c.ca, 1, 1, srv.ln.Addr().String(), 0, nil)
	srv.accept(t)
}

// TestDataCheckEndsWait: a read blocked on a silent peer ends with Check's
// error within about one Step once Check reports one.
func TestDataCheckEndsWait(t *testing.T) {
	ca, _ := NewCA("datarun")
	srv := startDataServer(t, ca, 2)
	var gone atomic.Bool
	errGone := errors.New("node 2 is lost")
	cli := dial(t, ca, 1, 2, srv.ln.Addr().String(), 20*time.Millisecond, func() error {
		if gone.Load() {
			return errGone
		}
		return nil
	})
	srv.accept(t)
	done := make(chan error, 1)
	go func() {
		_, err := cli.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // several steps pass quietly
	select {
	case err := <-done:
		t.Fatalf("read ended before Check said so: %v", err)
	default:
	}
	gone.Store(true)
	select {
	case err := <-done:
		if !errors.Is(err, errGone) {
			t.Fatalf("read ended with %v, want Check's error", err)
		}
	case <-time.After(deadline):
		t.Fatal("read still blocked after Check reported an error")
	}
}

// TestDataCloseWakesBlockedCalls: Close from another goroutine ends a read
// blocked with no Step at all, and later calls fail.
func TestDataCloseWakesBlockedCalls(t *testing.T) {
	ca, _ := NewCA("datarun")
	srv := startDataServer(t, ca, 2)
	dial(t, ca, 1, 2, srv.ln.Addr().String(), 0, nil)
	s := srv.accept(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read returned no error")
		}
	case <-time.After(deadline):
		t.Fatal("Close did not wake the blocked read")
	}
	if _, err := s.Write([]byte("x")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}
