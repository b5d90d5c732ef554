package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/quic-go/quic-go"
)

// readBuf is the read buffer of a data stream: small messages are parsed
// out of it, so a burst of them costs a few stream reads, not two each.
const readBuf = 64 << 10

// readStream delivers the messages of one incoming data stream, in order.
// Deliver runs here; it must not block for long, or this stream stalls.
func (l *link) readStream(s *quic.ReceiveStream) {
	br := bufio.NewReaderSize(s, readBuf)
	var hdr [msgHeader]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				l.streamEOF() // clean end between messages: the peer FIN'd
			} else if errors.Is(err, io.ErrUnexpectedEOF) {
				l.abort(codeProtocol, "data stream ended inside a message header")
			}
			return
		}
		n := binary.LittleEndian.Uint32(hdr[0:])
		lane := binary.LittleEndian.Uint64(hdr[4:])
		if uint64(n) > MaxMessage {
			l.abort(codeProtocol, fmt.Sprintf("message of %d bytes", n))
			return
		}
		msg := make([]byte, n) // owned by Deliver's callee
		if _, err := io.ReadFull(br, msg); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				l.abort(codeProtocol, "data stream ended inside a message")
			}
			return
		}
		l.m.cfg.Deliver(l.p.id, lane, msg)
	}
}
