package transport

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Records: what a data connection carries once its TLS 1.3 handshake and
// hello are done. Each direction has its own AES-128-GCM key, derived from
// the handshake with the TLS exporter (RFC 8446 §7.5), so the trust is the
// handshake's; the records are TLS 1.3's, bigger and without its copies:
//
//	record = length (uint32 LE, 1..maxRecord) | ciphertext (length) | tag (16)
//
// The nonce is the direction's IV xor the record's sequence number (as in
// TLS 1.3) and the length is the additional data, so a record cannot be
// altered, dropped, replayed or moved without the next Open failing. After
// rekeyBytes of plaintext a direction moves to its next key (HKDF of the
// current secret), far below what AES-GCM may encrypt under one key.
//
// Why not crypto/tls's records: it encrypts a copy of what it is given and
// decrypts into a buffer it then copies out of, 16 KiB at a time. Here a
// record is sealed straight from the caller's memory (a pool block, a
// Python bytes object) into the send buffer, and a record the reader has
// room for is read straight into the reader's memory (a channel's pool
// block) and opened in place: one pass over the data on each side instead
// of two. Measured: docs/many_nodes.md.

const (
	recordHeader = 4
	recordTag    = 16
	// maxRecord bounds a record's plaintext.
	maxRecord = 256 << 10
	// tailRecord: a Write longer than this ends with a record of at most
	// this much, so that a reader reading exactly that Write's bytes (a
	// frame's payload into its own memory) has room for every other
	// record's tag after its ciphertext and copies at most this much.
	tailRecord = 16 << 10
	// directRead: a Read with at least this much room reads the next
	// record's header alone, then its ciphertext straight into the caller's
	// buffer when it fits there (tag included).
	directRead = 32 << 10
	// readAhead is the record buffer's size for small reads.
	readAhead = 64 << 10
	// writeBatch: sealed records are written in batches of about this
	// much (one system call).
	writeBatch = 1 << 20

	exporterLabel = "EXPORTER-dragon_mp data records v1"
)

// rekeyBytes of plaintext at most under one key, per direction (a variable
// for the tests).
var rekeyBytes uint64 = 1 << 34

// errRecord reports a record that does not open: tampered with, forged, or
// out of order. The connection is unusable after it.
var errRecord = errors.New("transport: data connection: bad record")

// recordKeys derives each direction's secret from a finished handshake:
// (client to server, server to client).
func recordKeys(export func(label string, context []byte, length int) ([]byte, error)) (c2s, s2c []byte, err error) {
	b, err := export(exporterLabel, nil, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("transport: exporting record keys: %w", err)
	}
	return b[:32], b[32:], nil
}

// direction is one direction's key state.
type direction struct {
	secret []byte
	aead   cipher.AEAD
	iv     [12]byte
	seq    uint64
	bytes  uint64 // plaintext under the current key
	nonce  [12]byte
}

func newDirection(secret []byte) (*direction, error) {
	d := &direction{}
	return d, d.setKey(secret)
}

func (d *direction) setKey(secret []byte) error {
	key, err := hkdf.Expand(sha256.New, secret, "dragon_mp record key", 16)
	if err != nil {
		return err
	}
	iv, err := hkdf.Expand(sha256.New, secret, "dragon_mp record iv", 12)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	d.secret, d.aead, d.seq, d.bytes = secret, aead, 0, 0
	copy(d.iv[:], iv)
	return nil
}

// next returns the nonce of the next record.
func (d *direction) next() []byte {
	d.nonce = d.iv
	for i := 0; i < 8; i++ {
		d.nonce[4+i] ^= byte(d.seq >> (56 - 8*i))
	}
	return d.nonce[:]
}

// done counts a record of n plaintext bytes and moves to the next key when
// the current one has done enough.
func (d *direction) done(n int) error {
	d.seq++
	d.bytes += uint64(n)
	if d.bytes < rekeyBytes {
		return nil
	}
	next, err := hkdf.Expand(sha256.New, d.secret, "dragon_mp record key update", 32)
	if err != nil {
		return err
	}
	return d.setKey(next)
}

// bigBuffers holds write batches and record buffers between large
// transfers: a connection keeps only small ones.
var bigBuffers = sync.Pool{New: func() any { b := make([]byte, 0, writeBatch+maxRecord+recordHeader+recordTag); return &b }}

// recordConn reads and writes records on raw. Read and Write may run at
// the same time (each direction has its own state), each only from one
// goroutine at a time.
type recordConn struct {
	raw *fdConn

	in         *direction
	rbuf       []byte // bytes read and not consumed: rbuf[rpos:]
	rpos       int
	plain      []byte // an opened record's plaintext not yet returned (in rbuf)
	readBroken error

	out  *direction
	wbuf []byte
}

func newRecordConn(raw *fdConn, readSecret, writeSecret []byte) (*recordConn, error) {
	in, err := newDirection(readSecret)
	if err != nil {
		return nil, err
	}
	out, err := newDirection(writeSecret)
	if err != nil {
		return nil, err
	}
	return &recordConn{raw: raw, in: in, out: out, rbuf: make([]byte, 0, readAhead)}, nil
}

// Write seals p into records and writes them; it returns len(p) or an
// error (after which the connection is unusable).
func (c *recordConn) Write(p []byte) (int, error) {
	total := len(p)
	buf := c.wbuf[:0]
	var big *[]byte
	if len(p) > readAhead {
		big = bigBuffers.Get().(*[]byte)
		buf = (*big)[:0]
		defer func() { *big = (*big)[:0]; bigBuffers.Put(big) }()
	}
	for len(p) > 0 {
		n := min(len(p), maxRecord)
		if n == len(p) && n > tailRecord && total > tailRecord {
			n -= tailRecord // the last record is tailRecord long
		}
		var err error
		if buf, err = c.seal(buf, p[:n]); err != nil {
			return 0, err
		}
		p = p[n:]
		if len(p) == 0 || len(buf) >= writeBatch {
			if _, err := c.raw.Write(buf); err != nil {
				return 0, err
			}
			buf = buf[:0]
		}
	}
	if big == nil {
		c.wbuf = buf[:0]
	}
	return total, nil
}

// seal appends one record of plaintext p to buf.
func (c *recordConn) seal(buf, p []byte) ([]byte, error) {
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(p)))
	buf = c.out.aead.Seal(buf, c.out.next(), p, buf[start:start+recordHeader])
	return buf, c.out.done(len(p))
}

// Read returns plaintext: what is left of an opened record, else the next
// record's (straight into p when it fits there with its tag).
func (c *recordConn) Read(p []byte) (int, error) {
	if len(c.plain) > 0 {
		n := copy(p, c.plain)
		c.plain = c.plain[n:]
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	if c.readBroken != nil {
		return 0, c.readBroken
	}
	n, err := c.readRecord(p)
	if err != nil && !errors.Is(err, ErrWouldBlock) {
		c.readBroken = err
	}
	return n, err
}

func (c *recordConn) readRecord(p []byte) (int, error) {
	direct := len(p) >= directRead
	if err := c.fill(recordHeader, direct); err != nil {
		return 0, err
	}
	var hdr [recordHeader]byte
	copy(hdr[:], c.rbuf[c.rpos:])
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n == 0 || n > maxRecord {
		return 0, fmt.Errorf("%w (length %d)", errRecord, n)
	}
	need := n + recordTag
	// The header is here: this Read finishes the record, whatever a
	// TryOnce asked (what was read of it must not be lost).
	c.raw.tryOnce.Store(false)
	if len(p) >= need {
		// Straight into p: what came with the header first, then the rest.
		have := copy(p[:need], c.rbuf[c.rpos+recordHeader:])
		c.consume(recordHeader + have)
		if _, err := io.ReadFull(c.raw, p[have:need]); err != nil {
			return 0, unexpectedEOF(err)
		}
		if _, err := c.in.aead.Open(p[:0], c.in.next(), p[:need], hdr[:]); err != nil {
			return 0, errRecord
		}
		return n, c.in.done(n)
	}
	if err := c.fill(recordHeader+need, false); err != nil {
		return 0, unexpectedEOF(err)
	}
	ct := c.rbuf[c.rpos+recordHeader : c.rpos+recordHeader+need]
	plain, err := c.in.aead.Open(ct[:0], c.in.next(), ct, hdr[:])
	if err != nil {
		return 0, errRecord
	}
	c.consume(recordHeader + need)
	if err := c.in.done(n); err != nil {
		return 0, err
	}
	k := copy(p, plain)
	c.plain = plain[k:]
	return k, nil
}

// fill makes rbuf[rpos:] hold at least n bytes, reading at most what is
// missing when exact (the bytes after belong in the caller's buffer), or
// as much as has arrived otherwise.
func (c *recordConn) fill(n int, exact bool) error {
	if len(c.rbuf)-c.rpos >= n {
		return nil
	}
	if c.rpos > 0 { // keep what is left at the front
		m := copy(c.rbuf, c.rbuf[c.rpos:])
		c.rbuf, c.rpos = c.rbuf[:m], 0
	}
	if cap(c.rbuf) < n {
		nb := make([]byte, len(c.rbuf), max(n, readAhead))
		copy(nb, c.rbuf)
		c.rbuf = nb
	}
	for len(c.rbuf) < n {
		end := cap(c.rbuf)
		if exact {
			end = n
		}
		m, err := c.raw.Read(c.rbuf[len(c.rbuf):end])
		c.rbuf = c.rbuf[:len(c.rbuf)+m]
		if err != nil {
			return err
		}
	}
	return nil
}

// consume drops n bytes from the front of rbuf, and a large buffer once
// it is empty.
func (c *recordConn) consume(n int) {
	c.rpos += n
	if c.rpos < len(c.rbuf) {
		return
	}
	c.rpos = 0
	if cap(c.rbuf) > readAhead && len(c.plain) == 0 {
		c.rbuf = make([]byte, 0, readAhead)
	} else {
		c.rbuf = c.rbuf[:0]
	}
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
