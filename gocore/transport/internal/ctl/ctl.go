// Package ctl is the codec of the control messages between two node agents
// (and of the hello of a data connection): the hello exchange that makes a
// connection trusted, and the goodbye/ack exchange that makes a close
// orderly rather than a loss.
//
// Every message is a uint16 little-endian body length followed by the body;
// bodies are at most MaxBody bytes and their first byte is the Type. Decode
// accepts exactly one well-formed body and nothing else (no trailing bytes),
// never panics and allocates only the RunID string.
//
//	Hello   type=1 version:u8 from:u16 to:u16 runLen:u8 run[runLen]
//	Reply   type=2 status:u8 from:u16
//	Goodbye type=3
//	Ack     type=4
package ctl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Type is the kind of a control message.
type Type uint8

const (
	THello   Type = 1
	TReply   Type = 2
	TGoodbye Type = 3
	TAck     Type = 4
)

// Version is the protocol version a hello carries.
const Version = 1

// Status is the answer in a Reply.
type Status uint8

const (
	StatusOK        Status = 1 // connection trusted, use it
	StatusDuplicate Status = 2 // a connection for this pair exists or wins the tie-break
	StatusRejected  Status = 3 // hello did not match the certificate / run / target
	StatusLost      Status = 4 // the server already declared the dialer lost
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusDuplicate:
		return "duplicate"
	case StatusRejected:
		return "rejected"
	case StatusLost:
		return "lost"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// MaxBody bounds a control message body; MaxRunID bounds a run id.
const (
	MaxBody  = 512
	MaxRunID = 255
)

// ErrMalformed is returned (wrapped) for any invalid control message.
var ErrMalformed = errors.New("ctl: malformed control message")

// Msg is one control message; which fields matter depends on Type.
type Msg struct {
	Type    Type
	Version uint8  // Hello
	From    uint16 // Hello, Reply
	To      uint16 // Hello
	RunID   string // Hello
	Status  Status // Reply
}

// Append appends m, length-prefixed, to b.
func (m *Msg) Append(b []byte) ([]byte, error) {
	body := make([]byte, 0, 16+len(m.RunID))
	body = append(body, byte(m.Type))
	switch m.Type {
	case THello:
		if len(m.RunID) > MaxRunID {
			return b, fmt.Errorf("%w: run id of %d bytes", ErrMalformed, len(m.RunID))
		}
		body = append(body, m.Version)
		body = binary.LittleEndian.AppendUint16(body, m.From)
		body = binary.LittleEndian.AppendUint16(body, m.To)
		body = append(body, byte(len(m.RunID)))
		body = append(body, m.RunID...)
	case TReply:
		body = append(body, byte(m.Status))
		body = binary.LittleEndian.AppendUint16(body, m.From)
	case TGoodbye, TAck:
	default:
		return b, fmt.Errorf("%w: type %d", ErrMalformed, m.Type)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...), nil
}

// Decode decodes one control message body (without the length prefix).
func Decode(b []byte) (Msg, error) {
	bad := func(why string) (Msg, error) { return Msg{}, fmt.Errorf("%w: %s", ErrMalformed, why) }
	if len(b) == 0 {
		return bad("empty")
	}
	if len(b) > MaxBody {
		return bad("too long")
	}
	m := Msg{Type: Type(b[0])}
	p := b[1:]
	var want int
	switch m.Type {
	case THello:
		if len(p) < 6 {
			return bad("short hello")
		}
		m.Version = p[0]
		m.From = binary.LittleEndian.Uint16(p[1:])
		m.To = binary.LittleEndian.Uint16(p[3:])
		n := int(p[5])
		want = 6 + n
		if len(p) == want {
			m.RunID = string(p[6:want])
		}
	case TReply:
		want = 3
		if len(p) == want {
			m.Status = Status(p[0])
			m.From = binary.LittleEndian.Uint16(p[1:])
			if m.Status < StatusOK || m.Status > StatusLost {
				return bad("unknown status")
			}
		}
	case TGoodbye, TAck:
		want = 0
	default:
		return bad("unknown type")
	}
	if len(p) != want {
		return bad(fmt.Sprintf("type %d: %d bytes after type, want %d", m.Type, len(p), want))
	}
	return m, nil
}

// Read reads one length-prefixed control message from r.
func Read(r io.Reader) (Msg, error) {
	var buf [2 + MaxBody]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return Msg{}, err
	}
	n := int(binary.LittleEndian.Uint16(buf[:2]))
	if n == 0 || n > MaxBody {
		return Msg{}, fmt.Errorf("%w: length %d", ErrMalformed, n)
	}
	if _, err := io.ReadFull(r, buf[2:2+n]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Msg{}, err
	}
	return Decode(buf[2 : 2+n])
}

// Write writes m to w in one Write call.
func Write(w io.Writer, m Msg) error {
	b, err := m.Append(nil)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
