// Package transport is the QUIC mesh between the node agents of a
// multi-node run: one *Mesh per agent, one QUIC connection per node pair,
// one UDP port per agent (a single quic.Transport both listens and dials).
//
// # Contract
//
//   - Send(node, lane, msg) is reliable and FIFO per (node, lane). It copies
//     msg, dials lazily, and blocks only while dialing or while the lane's
//     stream has a few MiB queued (back-pressure). It is safe for concurrent
//     use; FIFO is between Sends that are ordered (e.g. one goroutine).
//   - Deliver(from, lane, msg) is called for every message, in order per
//     (peer, lane), from the goroutine reading that lane's stream; msg
//     belongs to the callee. It must not block for long: a stalled Deliver
//     stalls every lane sharing its stream (and, through QUIC flow control,
//     eventually the connection).
//   - A peer is lost when its connection dies (idle timeout with no
//     keep-alive answered: ~IdleTimeout after it went silent), when it says
//     goodbye (ErrPeerClosed), or when our dial or hello to it fails. Loss is
//     final for the life of the Mesh: PeerLost is called once, and every later
//     Send to that node returns an error wrapping ErrPeerLost. Messages not
//     yet delivered when a peer is lost are gone; there is no resend.
//   - Close says goodbye: for each peer it drains and FINs every stream, then
//     sends GOODBYE(n streams); the peer acknowledges only after reading all n
//     streams to their end, so everything sent before Close is delivered
//     (QUIC's own CloseWithError does not wait for delivery). Then it closes
//     the connections and socket and waits for all goroutines: no Deliver or
//     PeerLost runs after Close returns. Data sent to a peer that is itself
//     closing may be dropped.
//
// # Trust
//
// Each run has its own Ed25519 CA (NewCA); a node's certificate (Issue)
// names it as the DNS SAN NodeName(run, n) = "node-<n>.<run>.dragon_mp".
// Both sides use TLS 1.3 with the run's CA as the only root, client
// certificates required and verified, and ALPN "dragon_mp/1". A dialer pins
// the node it meant to reach (ServerName and VerifyConnection); a listener
// accepts any node of the run but itself. Because a client's Dial returns
// before the server has checked the client certificate, neither side sends
// data until the hello on the control stream is done: the dialer sends
// HELLO(run, from, to), the listener checks it against the certificate and
// answers OK, DUPLICATE (tie-break) or REJECTED. Data streams of a
// connection are accepted only after that.
//
// Tie-break: if two nodes dial each other at once, the lower node id's dial
// wins; the higher node accepts it and drops its own.
//
// # Streams
//
// Per connection: one bidirectional control stream (opened by the dialer)
// for hello, goodbye and ack (package internal/ctl); per direction a pool of
// NumStreams unidirectional data streams, opened lazily. A lane is hashed to
// one stream, which keeps the lane FIFO. Each stream has one writer
// goroutine that takes everything queued and writes it in one go, so small
// messages batch whenever the writer is busy, without a timer. Messages on a
// data stream are length(uint32) lane(uint64) bytes, little-endian.
//
// # Locks
//
// Order: Mesh.mu, then peer.mu, then Mesh.goMu. slot.mu may be followed by
// Mesh.goMu. link.mu and link.ctlMu are leaves. No lock is held while
// calling Deliver or PeerLost, or while blocked on the network (except
// link.ctlMu around one control-message write).
package transport
