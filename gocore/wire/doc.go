// Package wire is the codec for op frames: one remote operation (a request
// or a post), its reply, an ack, a sync, as exchanged between a process and
// another node's agent.
//
// # Contract
//
//   - (*Frame).AppendTo appends one length-prefixed frame to a buffer; it
//     never fails for a frame that passes Validate and panics otherwise
//     (building an invalid frame is a programming error, not an input error).
//   - Decode parses one frame body (without the 4-byte prefix). It never
//     panics and never allocates more than the Args slice (at most MaxArgs
//     values), whatever the input; anything that is not exactly one valid
//     frame is ErrMalformed. The decoded Payload aliases the input.
//   - ReadHeader reads a frame up to its payload, which the caller then reads
//     from the stream into memory of its choice; AppendHeader is its
//     counterpart for writing.
//   - ReadFrame reads one length-prefixed frame from a stream, reusing the
//     caller's buffer. Lengths above MaxFrame are rejected before any
//     allocation, and the buffer grows only as bytes actually arrive, so a
//     peer announcing a huge frame and sending nothing cannot make us
//     allocate it.
//
// The meaning of Op, Code and Args belongs to the user of the package.
//
// # Encoding
//
// All integers little-endian. A frame on the wire is a uint32 body length
// followed by the body:
//
//	+0   version  uint8   1 (Version); anything else is ErrMalformed
//	+1   kind     uint8   KindRequest, KindReply, KindSync, KindPost, KindAck or KindPostFailed
//	+2   op       uint16
//	+4   code     int32
//	+8   reqID    uint64
//	+16  origin   uint64
//	+24  addr     uint64
//	+32  timeout  int64   ns; <0 forever, 0 non-blocking
//	+40  nargs    uint8   <= MaxArgs
//	+41  reserved [3]byte must be zero (room for flags in a later version)
//	+44  paylen   uint32  <= MaxPayload
//	+48  args     nargs x int64
//	     payload  paylen bytes
//
// The body length must equal 48 + 8*nargs + paylen exactly: trailing bytes
// are malformed, so a framing bug is caught at the first frame rather than
// silently shifting every later one.
package wire
