package wire

import (
	"bytes"
	"errors"
	"io"
	"math"
	"slices"
	"testing"
)

func sampleFrames() []Frame {
	return []Frame{
		{Kind: KindRequest},
		{Kind: KindReply, Op: 7, Code: -3, ReqID: 1, Origin: 2, Addr: 3, Timeout: -1},
		{Kind: KindPost, Op: 3, Addr: 1 << 48, Payload: []byte("post")},
		{Kind: KindAck, Code: 1, ReqID: 9, Origin: 4, Addr: 2 << 48},
		{Kind: KindSync, ReqID: math.MaxUint64, Origin: math.MaxUint64, Addr: math.MaxUint64, Timeout: math.MinInt64},
		{Kind: KindPostFailed, Op: 1, Code: 32, ReqID: 77, Addr: 5<<48 | 64, Payload: []byte("E32: channel closed")},
		{Kind: KindRequest, Op: math.MaxUint16, Code: math.MinInt32, Args: []int64{-1}},
		{Kind: KindRequest, Args: []int64{1, 2, 3, 4, 5, 6, 7, math.MinInt64}, Payload: []byte("x")},
		{Kind: KindReply, Code: math.MaxInt32, Timeout: 0, Payload: bytes.Repeat([]byte{0xab}, 70000)},
		{Kind: KindRequest, Op: 9, Timeout: math.MaxInt64, Args: []int64{42}, Payload: []byte("hello")},
	}
}

// same compares frames treating nil and empty slices alike.
func same(a, b Frame) bool {
	return a.Kind == b.Kind && a.Op == b.Op && a.Code == b.Code && a.ReqID == b.ReqID &&
		a.Origin == b.Origin && a.Addr == b.Addr && a.Timeout == b.Timeout &&
		slices.Equal(a.Args, b.Args) && bytes.Equal(a.Payload, b.Payload)
}

func TestRoundTrip(t *testing.T) {
	for i, f := range sampleFrames() {
		enc := f.AppendTo([]byte("junk"))
		if !bytes.HasPrefix(enc, []byte("junk")) {
			t.Fatalf("%d: AppendTo clobbered the prefix", i)
		}
		enc = enc[4:]
		if got := int(enc[0]) | int(enc[1])<<8 | int(enc[2])<<16 | int(enc[3])<<24; got != f.BodySize() || got != len(enc)-PrefixSize {
			t.Fatalf("%d: length prefix %d, body %d, BodySize %d", i, got, len(enc)-PrefixSize, f.BodySize())
		}
		g, err := Decode(enc[PrefixSize:])
		if err != nil {
			t.Fatalf("%d: Decode: %v", i, err)
		}
		if !same(f, g) {
			t.Fatalf("%d: round trip\n got %+v\nwant %+v", i, g, f)
		}
		// Payload aliases the input but must not let an append spill into it.
		if len(g.Payload) > 0 {
			_ = append(g.Payload, 0xff)
			if h, err := Decode(enc[PrefixSize:]); err != nil || !same(f, h) {
				t.Fatalf("%d: append to Payload changed the buffer", i)
			}
		}
	}
}

func TestReadFrameStream(t *testing.T) {
	var stream []byte
	frames := sampleFrames()
	for _, f := range frames {
		stream = f.AppendTo(stream)
	}
	r := bytes.NewReader(stream)
	var buf []byte
	for i, f := range frames {
		g, err := ReadFrame(r, &buf)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !same(f, g) {
			t.Fatalf("%d: got %+v want %+v", i, g, f)
		}
	}
	if _, err := ReadFrame(r, &buf); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
}

// TestReadHeaderStream reads a stream header by header, each payload by
// the caller into its own buffer, as a server reading a large payload into
// a pool block does; AppendHeader followed by the payload writes the same
// bytes as AppendTo.
func TestReadHeaderStream(t *testing.T) {
	var stream []byte
	frames := sampleFrames()
	for i, f := range frames {
		if i%2 == 0 {
			stream = f.AppendTo(stream)
		} else {
			stream = append(f.AppendHeader(stream, len(f.Payload)), f.Payload...)
		}
	}
	r := bytes.NewReader(stream)
	var buf []byte
	for i, f := range frames {
		var g Frame
		n, err := ReadHeader(r, &buf, &g)
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if n != len(f.Payload) || g.Payload != nil {
			t.Fatalf("%d: payload length %d (payload %v), want %d", i, n, g.Payload, len(f.Payload))
		}
		g.Payload = make([]byte, n)
		if _, err := io.ReadFull(r, g.Payload); err != nil {
			t.Fatalf("%d: payload: %v", i, err)
		}
		if !same(f, g) {
			t.Fatalf("%d: got %+v want %+v", i, g, f)
		}
	}
	var g Frame
	if _, err := ReadHeader(r, &buf, &g); err != io.EOF {
		t.Fatalf("after last frame: %v, want io.EOF", err)
	}
	for _, cut := range []int{2, PrefixSize + 10, PrefixSize + HeaderSize + 3} {
		f := Frame{Kind: KindRequest, Args: []int64{1, 2}, Payload: []byte("abc")}
		enc := f.AppendTo(nil)[:cut]
		if _, err := ReadHeader(bytes.NewReader(enc), &buf, &g); err != io.ErrUnexpectedEOF {
			t.Fatalf("stream cut at %d: %v, want io.ErrUnexpectedEOF", cut, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := (&Frame{Kind: KindRequest, Args: []int64{1, 2}, Payload: []byte("abc")}).AppendTo(nil)[PrefixSize:]
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", good[:HeaderSize-1]},
		{"bad version", mut(func(b []byte) []byte { b[0] = 2; return b })},
		{"kind 0", mut(func(b []byte) []byte { b[1] = 0; return b })},
		{"kind 7", mut(func(b []byte) []byte { b[1] = 7; return b })},
		{"too many args", mut(func(b []byte) []byte { b[40] = MaxArgs + 1; return b })},
		{"reserved set", mut(func(b []byte) []byte { b[42] = 1; return b })},
		{"payload over max", mut(func(b []byte) []byte { b[47] = 0x80; return b })},
		{"truncated payload", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"args count too big for body", mut(func(b []byte) []byte { b[40] = 3; return b })},
		{"payload len too big for body", mut(func(b []byte) []byte { b[44] = 4; return b })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestReadFrameErrors(t *testing.T) {
	good := (&Frame{Kind: KindReply, Payload: []byte("abcdef")}).AppendTo(nil)
	pfx := func(n uint32) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)} }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"clean eof", nil, io.EOF},
		{"eof in prefix", good[:2], io.ErrUnexpectedEOF},
		{"eof in body", good[:len(good)-1], io.ErrUnexpectedEOF},
		{"length over MaxFrame", pfx(MaxFrame + 1), ErrMalformed},
		{"length under header", append(pfx(HeaderSize-1), make([]byte, HeaderSize)...), ErrMalformed},
		// Announces 1 GiB, sends 10 bytes: must fail without allocating 1 GiB.
		{"huge length, little data", append(pfx(MaxFrame), make([]byte, 10)...), io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf []byte
			_, err := ReadFrame(bytes.NewReader(tc.in), &buf)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if cap(buf) > 2*readChunk {
				t.Fatalf("buffer grew to %d bytes for %d bytes of input", cap(buf), len(tc.in))
			}
		})
	}
}

func TestAppendToPanicsOnInvalid(t *testing.T) {
	tests := []Frame{
		{Kind: 0},
		{Kind: KindRequest, Args: make([]int64, MaxArgs+1)},
	}
	for i, f := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%d: AppendTo of invalid frame did not panic", i)
				}
			}()
			f.AppendTo(nil)
		}()
	}
}

func TestAllocs(t *testing.T) {
	f := Frame{Kind: KindRequest, Op: 1, Args: []int64{1, 2, 3}, Payload: make([]byte, 100)}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = f.AppendTo(buf[:0]) }); n != 0 {
		t.Errorf("AppendTo into a big-enough buffer: %v allocs", n)
	}
	body := buf[PrefixSize:]
	var g Frame
	if n := testing.AllocsPerRun(100, func() { _ = g.DecodeFrom(body) }); n != 0 {
		t.Errorf("DecodeFrom reusing Args: %v allocs", n)
	}
	r := bytes.NewReader(nil)
	var rb []byte
	if n := testing.AllocsPerRun(100, func() { r.Reset(buf); _ = ReadFrameInto(r, &rb, &g) }); n != 0 {
		t.Errorf("ReadFrameInto steady state: %v allocs", n)
	}
}

func FuzzDecode(f *testing.F) {
	for _, fr := range sampleFrames() {
		if len(fr.Payload) > 1000 {
			continue
		}
		f.Add(fr.AppendTo(nil)[PrefixSize:])
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		// Anything accepted must re-encode to exactly the same bytes
		// (the encoding is canonical), and ReadFrame must agree.
		enc := fr.AppendTo(nil)
		if !bytes.Equal(enc[PrefixSize:], b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc[PrefixSize:])
		}
		var buf []byte
		g, err := ReadFrame(bytes.NewReader(enc), &buf)
		if err != nil || !same(fr, g) {
			t.Fatalf("ReadFrame disagrees with Decode: %v", err)
		}
		var h Frame
		r := bytes.NewReader(enc)
		n, err := ReadHeader(r, &buf, &h)
		h.Payload = enc[len(enc)-r.Len():]
		if err != nil || n != r.Len() || !same(fr, h) {
			t.Fatalf("ReadHeader disagrees with Decode: %v", err)
		}
	})
}

func BenchmarkRoundTrip(b *testing.B) {
	f := Frame{Kind: KindRequest, Op: 1, Args: []int64{1, 2}, Payload: make([]byte, 64)}
	buf := make([]byte, 0, 256)
	var g Frame
	b.ReportAllocs()
	for b.Loop() {
		buf = f.AppendTo(buf[:0])
		if err := g.DecodeFrom(buf[PrefixSize:]); err != nil {
			b.Fatal(err)
		}
	}
}
