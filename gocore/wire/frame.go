package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says what a frame is.
type Kind uint8

const (
	KindRequest    Kind = 1 // wants a KindReply with its ReqID
	KindReply      Kind = 2
	KindSync       Kind = 3 // wants a KindReply once every earlier post of the connection has run
	KindPost       Kind = 4 // a request that wants no reply (runs in order per connection)
	KindAck        Kind = 5 // the requester took a reply (Code 0) or could not (Code 1)
	KindPostFailed Kind = 6 // a post (ReqID, Addr, Op) failed: Code and message as in a reply
)

// lastKind is the highest valid Kind.
const lastKind = KindPostFailed

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindReply:
		return "reply"
	case KindSync:
		return "sync"
	case KindPost:
		return "post"
	case KindAck:
		return "ack"
	case KindPostFailed:
		return "post failed"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

const (
	// Version is the encoding version written in every frame body.
	Version = 1
	// MaxArgs is the most Args a frame carries.
	MaxArgs = 8
	// MaxPayload is the largest Payload a frame carries.
	MaxPayload = 1 << 30
	// MaxFrame is the largest body length ReadFrame accepts; it bounds
	// header + args + payload with room to spare.
	MaxFrame = MaxPayload + 256

	// PrefixSize is the size of the length prefix before each body.
	PrefixSize = 4
	// HeaderSize is the fixed part of a body, before Args and Payload.
	HeaderSize = 48
)

// ErrMalformed is returned (possibly wrapped) for any input that is not a
// valid frame.
var ErrMalformed = errors.New("wire: malformed frame")

// Frame is one remote operation or its reply.
type Frame struct {
	Kind    Kind
	Op      uint16  // operation code (meaning defined by the user of the package)
	Code    int32   // reply: 0 ok, else an error code; request: 0
	ReqID   uint64  // chosen by the requester, echoed in the reply
	Origin  uint64  // opaque routing token of the requester (echoed in reply)
	Addr    uint64  // object address
	Timeout int64   // ns; <0 forever, 0 non-blocking
	Args    []int64 // at most MaxArgs (8)
	Payload []byte  // at most MaxPayload (1<<30)
}

// Validate reports whether f can be encoded.
func (f *Frame) Validate() error {
	switch {
	case f.Kind < KindRequest || f.Kind > lastKind:
		return fmt.Errorf("%w: bad kind %d", ErrMalformed, f.Kind)
	case len(f.Args) > MaxArgs:
		return fmt.Errorf("%w: %d args > %d", ErrMalformed, len(f.Args), MaxArgs)
	case len(f.Payload) > MaxPayload:
		return fmt.Errorf("%w: payload %d > %d", ErrMalformed, len(f.Payload), MaxPayload)
	}
	return nil
}

// BodySize is the encoded body length of f (without the prefix).
func (f *Frame) BodySize() int { return HeaderSize + 8*len(f.Args) + len(f.Payload) }

// AppendTo appends f, length prefix first, to b and returns the extended
// buffer. It panics if f fails Validate: frames are built locally, so an
// invalid one is a bug in the caller, and encoding it anyway would corrupt
// the stream for every later frame.
func (f *Frame) AppendTo(b []byte) []byte {
	b = f.AppendHeader(grow(b, PrefixSize+f.BodySize()), len(f.Payload))
	return append(b, f.Payload...)
}

// AppendHeader appends f's length prefix, header and Args for a payload of
// n bytes that the caller writes right after them (f.Payload is not
// used): a large payload then goes out from where it lies, uncopied. It
// panics as AppendTo does, also for n over MaxPayload.
func (f *Frame) AppendHeader(b []byte, n int) []byte {
	g := *f
	g.Payload = nil
	if err := g.Validate(); err != nil {
		panic(err)
	}
	if n < 0 || n > MaxPayload {
		panic(fmt.Errorf("%w: payload %d > %d", ErrMalformed, n, MaxPayload))
	}
	body := HeaderSize + 8*len(f.Args) + n
	b = grow(b, PrefixSize+HeaderSize+8*len(f.Args))
	b = binary.LittleEndian.AppendUint32(b, uint32(body))
	b = append(b, Version, byte(f.Kind))
	b = binary.LittleEndian.AppendUint16(b, f.Op)
	b = binary.LittleEndian.AppendUint32(b, uint32(f.Code))
	b = binary.LittleEndian.AppendUint64(b, f.ReqID)
	b = binary.LittleEndian.AppendUint64(b, f.Origin)
	b = binary.LittleEndian.AppendUint64(b, f.Addr)
	b = binary.LittleEndian.AppendUint64(b, uint64(f.Timeout))
	b = append(b, byte(len(f.Args)), 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for _, a := range f.Args {
		b = binary.LittleEndian.AppendUint64(b, uint64(a))
	}
	return b
}

// grow makes room for n more bytes with at most one allocation.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// Decode decodes one frame body (without the 4-byte prefix). Payload
// aliases b; Args is freshly allocated (nil when empty).
func Decode(b []byte) (Frame, error) {
	var f Frame
	err := f.DecodeFrom(b)
	return f, err
}

// DecodeFrom decodes one frame body into f, reusing f.Args' storage when it
// is large enough, so a reader decoding into the same Frame allocates
// nothing. Payload aliases b. On error f is zeroed (Args empty, storage
// kept).
func (f *Frame) DecodeFrom(b []byte) error {
	if len(b) < HeaderSize {
		*f = Frame{Args: f.Args[:0]}
		return fmt.Errorf("%w: %d bytes < header %d", ErrMalformed, len(b), HeaderSize)
	}
	plen, err := f.decodeHeader(b, len(b))
	if err != nil {
		return err
	}
	if plen > 0 {
		off := len(b) - plen
		// Full slice expression: an append by the caller must not
		// overwrite whatever follows in b.
		f.Payload = b[off:len(b):len(b)]
	}
	return nil
}

// ArgsSize is the size of the Args a header (its first HeaderSize bytes)
// announces; malformed headers report 0 and are caught by decodeHeader.
func ArgsSize(hdr []byte) int {
	if len(hdr) < HeaderSize || hdr[40] > MaxArgs {
		return 0
	}
	return 8 * int(hdr[40])
}

// decodeHeader decodes the header and Args at the start of b (at least
// HeaderSize + ArgsSize bytes) of a body of bodyLen bytes into f, with no
// Payload, and returns the payload length. On error f is zeroed.
func (f *Frame) decodeHeader(b []byte, bodyLen int) (int, error) {
	args := f.Args[:0]
	*f = Frame{Args: args}
	if b[0] != Version {
		return 0, fmt.Errorf("%w: version %d", ErrMalformed, b[0])
	}
	kind := Kind(b[1])
	if kind < KindRequest || kind > lastKind {
		return 0, fmt.Errorf("%w: bad kind %d", ErrMalformed, b[1])
	}
	nargs := int(b[40])
	if nargs > MaxArgs {
		return 0, fmt.Errorf("%w: %d args > %d", ErrMalformed, nargs, MaxArgs)
	}
	if b[41]|b[42]|b[43] != 0 {
		return 0, fmt.Errorf("%w: reserved bytes set", ErrMalformed)
	}
	plen := uint64(binary.LittleEndian.Uint32(b[44:]))
	if plen > MaxPayload {
		return 0, fmt.Errorf("%w: payload %d > %d", ErrMalformed, plen, MaxPayload)
	}
	// Compare in uint64: all terms are small, so no overflow on any arch.
	if want := uint64(HeaderSize) + 8*uint64(nargs) + plen; uint64(bodyLen) != want {
		return 0, fmt.Errorf("%w: body %d bytes, header says %d", ErrMalformed, bodyLen, want)
	}
	if len(b) < HeaderSize+8*nargs {
		return 0, fmt.Errorf("%w: %d bytes < header and args %d", ErrMalformed, len(b), HeaderSize+8*nargs)
	}
	f.Kind = kind
	f.Op = binary.LittleEndian.Uint16(b[2:])
	f.Code = int32(binary.LittleEndian.Uint32(b[4:]))
	f.ReqID = binary.LittleEndian.Uint64(b[8:])
	f.Origin = binary.LittleEndian.Uint64(b[16:])
	f.Addr = binary.LittleEndian.Uint64(b[24:])
	f.Timeout = int64(binary.LittleEndian.Uint64(b[32:]))
	if nargs > 0 {
		if cap(args) < nargs {
			args = make([]int64, 0, nargs)
		}
		for i := range nargs {
			args = append(args, int64(binary.LittleEndian.Uint64(b[HeaderSize+8*i:])))
		}
		f.Args = args
	}
	return int(plen), nil
}
