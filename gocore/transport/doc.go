// Package transport connects the nodes of a multi-node run, with the run's
// own certificate authority as the only trust: a QUIC mesh between the node
// agents, which tells who is alive, and data connections (a TLS 1.3
// handshake over kernel TCP, then records keyed by it), which carry the
// data.
//
// Why two: on the links this runs on, quic-go carries ~0.35-0.4 GB/s and a
// 64 B round trip of ~100 µs, all of it in user space (packetisation,
// AEAD per datagram, acks, pacing); kernel TCP with our records carries
// 3.5-4 GB/s on the same two vCPUs (crypto/tls's own records: 1.7-2.2)
// and, read with a blocking recv on the caller's thread, a round trip of a
// few tens of µs. QUIC is kept for what it does well here: one UDP socket
// per agent however many peers, connection keep-alives that detect a
// silent node in IdleTimeout, and a handshake that pins both ends.
// docs/many_nodes.md has the measurements.
//
// # Mesh (mesh.go, peer.go, link.go)
//
//   - Watch(node) makes sure there is a trusted connection to node (dialing
//     it if there is none): from then on, node's loss is reported. Nodes
//     watch only what they need: node 0 every node, every other node
//     node 0, so a run of N nodes has N-1 mesh connections, not N²/2.
//   - A peer is lost when its connection dies (idle timeout with no
//     keep-alive answered: ~IdleTimeout after it went silent), when it says
//     goodbye (ErrPeerClosed), or when our dial or hello to it fails. Loss is
//     final for the life of the Mesh: PeerLost is called once, and Lost(node)
//     says why from then on.
//   - Close says goodbye to every peer and waits for its ack (so the peer
//     counts an orderly end, not a loss), closes the connections and the
//     socket and waits for every goroutine: no PeerLost runs after Close
//     returns.
//
// # Data connections (data.go, fdconn.go, records.go)
//
//   - DialData connects a process to a node's agent (ListenData/Serve):
//     TLS 1.3, the run's CA as the only root, client certificates required,
//     ALPN DataALPN, the server's node pinned; then the same hello as the
//     mesh's (run, from, to checked against the certificate) before any
//     data. TCP_NODELAY, cubic congestion control, keep-alive probes and
//     TCP_USER_TIMEOUT as a backstop (the mesh notices a lost node first).
//   - Then records: one AES-128-GCM key per direction from the handshake's
//     exporter; records of up to 256 KiB sealed straight from the writer's
//     memory and, when the reader has room, read straight into its memory
//     and opened in place; a changed, dropped, repeated, reordered or
//     reflected record fails the connection.
//   - The connection underneath is an fdConn: blocking recv/send on the
//     calling thread (no netpoller hand-off), a Read that polls for an
//     adaptive time before it blocks, every blocked call woken every Step
//     to ask Check (whose error ends it: a node marked lost), and Close
//     waking every blocked call at once.
//   - What travels on it (framing, posts, acks, ordering) is package
//     agent's business; package wire encodes it.
//
// # Trust
//
// Each run has its own Ed25519 CA (NewCA); a node's certificate (Issue)
// names it as the DNS SAN NodeName(run, n) = "node-<n>.<run>.dragon_mp".
// Both sides of either kind of connection use TLS 1.3 with the run's CA as
// the only root, client certificates required and verified. A dialer pins
// the node it meant to reach (ServerName and VerifyConnection); a listener
// accepts any node of the run but itself. Because a client's handshake
// ends before the server has checked the client certificate, neither side
// sends data until the hello is done: the dialer sends HELLO(run, from,
// to), the listener checks it against the certificate and answers OK,
// DUPLICATE (mesh tie-break) or REJECTED.
//
// Mesh tie-break: if two nodes dial each other at once, the lower node
// id's dial wins; the higher node accepts it and drops its own.
//
// # Locks
//
// Order: Mesh.mu, then peer.mu, then Mesh.goMu. link.ctlMu is a leaf, and
// so are fdConn.mu and DataListener's. No lock is held while calling
// PeerLost or while blocked on the network (except link.ctlMu around one
// control-message write).
package transport
