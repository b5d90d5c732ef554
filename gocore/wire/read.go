package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// readChunk bounds how far the buffer grows ahead of the bytes actually
// received, so a peer announcing a MaxFrame body and sending nothing costs
// at most this much memory.
const readChunk = 1 << 20

// ReadFrame reads one length-prefixed frame from r, reusing *buf (which it
// may grow and replace). The returned Payload aliases *buf and is valid
// until the next call with the same buf. It returns io.EOF only when r ends
// cleanly between frames, io.ErrUnexpectedEOF when it ends inside one, and
// an error wrapping ErrMalformed for a bad length or body.
func ReadFrame(r io.Reader, buf *[]byte) (Frame, error) {
	var f Frame
	err := ReadFrameInto(r, buf, &f)
	return f, err
}

// ReadHeader reads one frame's length prefix, header and Args from r into
// f (Payload nil) and returns the length of its payload, which the caller
// must read from r next (into wherever it belongs: a large payload need not
// pass through a buffer). *buf is reused as ReadFrame does. A bad prefix or
// header wraps ErrMalformed; the stream is then unusable.
func ReadHeader(r io.Reader, buf *[]byte, f *Frame) (int, error) {
	if cap(*buf) < PrefixSize+HeaderSize+8*MaxArgs {
		*buf = make([]byte, 0, 512)
	}
	b := (*buf)[:PrefixSize+HeaderSize]
	if _, err := io.ReadFull(r, b[:PrefixSize]); err != nil {
		return 0, err // io.EOF between frames, ErrUnexpectedEOF inside the prefix
	}
	n := binary.LittleEndian.Uint32(b)
	if n > MaxFrame {
		return 0, fmt.Errorf("%w: length %d > MaxFrame", ErrMalformed, n)
	}
	if n < HeaderSize {
		return 0, fmt.Errorf("%w: length %d < header %d", ErrMalformed, n, HeaderSize)
	}
	if _, err := io.ReadFull(r, b[PrefixSize:]); err != nil {
		return 0, unexpected(err)
	}
	hdr := b[PrefixSize:]
	if na := ArgsSize(hdr); na > 0 {
		if int(n) < HeaderSize+na {
			return 0, fmt.Errorf("%w: length %d < header and args", ErrMalformed, n)
		}
		b = (*buf)[:PrefixSize+HeaderSize+na]
		if _, err := io.ReadFull(r, b[PrefixSize+HeaderSize:]); err != nil {
			return 0, unexpected(err)
		}
		hdr = b[PrefixSize:]
	}
	return f.decodeHeader(hdr, int(n))
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// ReadFrameInto is ReadFrame decoding into f (see DecodeFrom), so a loop
// reading into one Frame allocates nothing in steady state.
func ReadFrameInto(r io.Reader, buf *[]byte, f *Frame) error {
	// The prefix is read into *buf too: a local array would escape through
	// the io.Reader interface and cost an allocation per frame.
	if cap(*buf) < PrefixSize {
		*buf = make([]byte, 0, 512)
	}
	pfx := (*buf)[:PrefixSize]
	if _, err := io.ReadFull(r, pfx); err != nil {
		return err // io.EOF between frames, ErrUnexpectedEOF inside the prefix
	}
	n := binary.LittleEndian.Uint32(pfx)
	if n > MaxFrame {
		return fmt.Errorf("%w: length %d > MaxFrame", ErrMalformed, n)
	}
	if n < HeaderSize {
		return fmt.Errorf("%w: length %d < header %d", ErrMalformed, n, HeaderSize)
	}
	b, err := readBody(r, (*buf)[:0], int(n))
	*buf = b
	if err != nil {
		return err
	}
	return f.DecodeFrom(b)
}

// readBody appends exactly n bytes from r to b (len(b) == 0), growing it at
// most readChunk beyond what has arrived.
func readBody(r io.Reader, b []byte, n int) ([]byte, error) {
	for len(b) < n {
		if len(b) == cap(b) {
			want := min(n, len(b)+max(len(b), readChunk))
			nb := make([]byte, len(b), want)
			copy(nb, b)
			b = nb
		}
		end := min(n, cap(b))
		m, err := io.ReadFull(r, b[len(b):end])
		b = b[:len(b)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return b, err
		}
	}
	return b, nil
}
