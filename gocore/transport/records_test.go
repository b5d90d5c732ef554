package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// socketPair is two connected fdConns (a Unix stream socket pair).
func socketPair(t testing.TB) (*fdConn, *fdConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := &fdConn{fd: fds[0]}, &fdConn{fd: fds[1]}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

var (
	secretAB = bytes.Repeat([]byte{1}, 32)
	secretBA = bytes.Repeat([]byte{2}, 32)
)

// recordPair is a writer on one end and a reader on the other, keyed alike.
func recordPair(t testing.TB) (w, r *recordConn) {
	t.Helper()
	a, b := socketPair(t)
	w, err := newRecordConn(a, secretBA, secretAB)
	if err != nil {
		t.Fatal(err)
	}
	r, err = newRecordConn(b, secretAB, secretBA)
	if err != nil {
		t.Fatal(err)
	}
	return w, r
}

func pattern(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// TestRecordsRoundTrip: what is written is read, whatever the sizes of the
// writes and of the reads (whole messages into their own memory, small
// reads, through a bufio.Reader as the agent reads).
func TestRecordsRoundTrip(t *testing.T) {
	sizes := []int{1, 100, tailRecord - 1, tailRecord, tailRecord + 1, directRead, readAhead + 7,
		maxRecord, maxRecord + 1, 1 << 20, 3<<20 + 5}
	readers := map[string]func(r io.Reader, n int) ([]byte, error){
		"exact": func(r io.Reader, n int) ([]byte, error) {
			b := make([]byte, n)
			_, err := io.ReadFull(r, b)
			return b, err
		},
		"small": func(r io.Reader, n int) ([]byte, error) {
			var out []byte
			buf := make([]byte, 1000)
			for len(out) < n {
				m, err := r.Read(buf[:min(len(buf), n-len(out))])
				out = append(out, buf[:m]...)
				if err != nil {
					return out, err
				}
			}
			return out, nil
		},
		"roomy": func(r io.Reader, n int) ([]byte, error) {
			// Room for more than the message: reads must stop at its end.
			b := make([]byte, n+maxRecord)
			_, err := io.ReadFull(r, b[:n])
			return b[:n], err
		},
	}
	for name, read := range readers {
		for _, buffered := range []bool{false, true} {
			t.Run(name, func(t *testing.T) {
				w, r := recordPair(t)
				var src io.Reader = r
				if buffered {
					src = bufio.NewReaderSize(r, 32<<10)
				}
				errc := make(chan error, 1)
				go func() {
					for i, n := range sizes {
						if _, err := w.Write(pattern(n, int64(i))); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				for i, n := range sizes {
					got, err := read(src, n)
					if err != nil {
						t.Fatalf("size %d: %v", n, err)
					}
					if !bytes.Equal(got, pattern(n, int64(i))) {
						t.Fatalf("size %d: different bytes", n)
					}
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// wire returns what w puts on the wire for the given writes.
func wire(t *testing.T, writes ...[]byte) []byte {
	t.Helper()
	a, b := socketPair(t)
	w, err := newRecordConn(a, secretBA, secretAB)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for _, p := range writes {
			w.Write(p)
		}
		a.Close()
	}()
	out, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readWire feeds raw bytes to a reader keyed as recordPair's and reads n
// bytes (or until an error).
func readWire(t testing.TB, raw []byte, n int) ([]byte, error) {
	t.Helper()
	a, b := socketPair(t)
	r, err := newRecordConn(b, secretAB, secretBA)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		a.Write(raw)
		a.Close() // the reader sees the end of the stream
	}()
	got := make([]byte, n)
	m, err := io.ReadFull(r, got)
	return got[:m], err
}

// splitRecords splits a wire image into its records.
func splitRecords(t *testing.T, raw []byte) [][]byte {
	var out [][]byte
	for len(raw) > 0 {
		n := int(binary.LittleEndian.Uint32(raw)) + recordHeader + recordTag
		out = append(out, raw[:n])
		raw = raw[n:]
	}
	return out
}

// TestRecordsRejectTampering: a changed byte anywhere, a dropped, repeated
// or reordered record, or a record of the other direction is refused; a
// cut stream is an unexpected EOF inside a record, a clean EOF between.
func TestRecordsRejectTampering(t *testing.T) {
	msg := [][]byte{pattern(100, 1), pattern(200, 2), pattern(300, 3)}
	raw := wire(t, msg...)
	recs := splitRecords(t, raw)
	if len(recs) != 3 {
		t.Fatalf("%d records", len(recs))
	}
	join := func(rs ...[]byte) []byte { return bytes.Join(rs, nil) }
	flip := func(i int) []byte {
		b := bytes.Clone(raw)
		b[i] ^= 0x40
		return b
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"header", flip(len(recs[0]))}, // 200 -> 136: the rest does not open
		{"ciphertext", flip(recordHeader + 5)},
		{"tag", flip(len(recs[0]) - 1)},
		{"dropped", join(recs[0], recs[2])},
		{"repeated", join(recs[0], recs[0], recs[1], recs[2])},
		{"reordered", join(recs[1], recs[0], recs[2])},
		{"huge length", append([]byte{0xff, 0xff, 0xff, 0x7f}, raw[4:]...)},
		{"zero length", append([]byte{0, 0, 0, 0}, raw[4:]...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := readWire(t, c.raw, 600); !errors.Is(err, errRecord) {
				t.Fatalf("got %v, want errRecord", err)
			}
		})
	}
	t.Run("other direction", func(t *testing.T) {
		a, b := socketPair(t)
		// Sealed with the reader's own sending key: a reflected record.
		w, _ := newRecordConn(a, secretBA, secretBA)
		r, _ := newRecordConn(b, secretAB, secretBA)
		go w.Write(msg[0])
		if _, err := r.Read(make([]byte, 100)); !errors.Is(err, errRecord) {
			t.Fatalf("got %v, want errRecord", err)
		}
	})
	t.Run("cut inside", func(t *testing.T) {
		if _, err := readWire(t, raw[:len(recs[0])+10], 600); err != io.ErrUnexpectedEOF {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cut between", func(t *testing.T) {
		got, err := readWire(t, raw[:len(recs[0])], 600)
		if err != io.ErrUnexpectedEOF || !bytes.Equal(got, msg[0]) {
			t.Fatalf("got %d bytes, %v", len(got), err)
		}
	})
}

// TestRecordsKeyUpdate: a stream longer than one key's share moves to the
// next key at the same record on both sides.
func TestRecordsKeyUpdate(t *testing.T) {
	saved := rekeyBytes
	rekeyBytes = 100 << 10
	defer func() { rekeyBytes = saved }()
	w, r := recordPair(t)
	first := bytes.Clone(w.out.secret)
	data := pattern(1<<20+3, 9)
	go w.Write(data)
	got := make([]byte, len(data))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("different bytes")
	}
	if bytes.Equal(w.out.secret, first) || !bytes.Equal(w.out.secret, r.in.secret) {
		t.Fatal("the key did not move on, or not alike")
	}
}

// TestRecordsTryOnce: with nothing arrived, a Read after TryOnce says so
// and loses nothing; once a record's header is there, the Read finishes
// the record.
func TestRecordsTryOnce(t *testing.T) {
	w, r := recordPair(t)
	r.raw.tryOnce.Store(true)
	if _, err := r.Read(make([]byte, 10)); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("got %v, want ErrWouldBlock", err)
	}
	data := pattern(200<<10, 4)
	raw := wire(t, data) // the same keys and sequence as w's first records
	// Half of the first record, the rest later.
	half := len(raw) / 4
	if _, err := w.raw.Write(raw[:half]); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		w.raw.Write(raw[half:])
	}()
	r.raw.tryOnce.Store(true)
	got := make([]byte, len(data))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("different bytes")
	}
}

// FuzzRecords: whatever arrives, the reader returns bytes or an error, and
// bytes only from records that open.
func FuzzRecords(f *testing.F) {
	valid := [][]byte{pattern(10, 1), pattern(40<<10, 2)}
	a, b := socketPair(f)
	w, _ := newRecordConn(a, secretBA, secretAB)
	go func() {
		for _, p := range valid {
			w.Write(p)
		}
		a.Close()
	}()
	seed, _ := io.ReadAll(b)
	f.Add(seed, uint16(100))
	f.Add(seed[:30], uint16(1000))
	f.Add([]byte{5, 0, 0, 0, 1, 2, 3}, uint16(64))
	f.Fuzz(func(t *testing.T, raw []byte, readSize uint16) {
		if len(raw) > 1<<20 {
			return
		}
		c1, c2 := socketPair(t)
		r, err := newRecordConn(c2, secretAB, secretBA)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c1.Write(raw)
			c1.Close()
		}()
		buf := make([]byte, int(readSize)%(2*directRead)+1)
		total := 0
		for {
			n, err := r.Read(buf)
			total += n
			if err != nil {
				break
			}
			if total > len(raw) {
				t.Fatalf("read %d bytes out of %d", total, len(raw))
			}
		}
	})
}
