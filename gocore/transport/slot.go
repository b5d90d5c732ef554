package transport

import (
	"encoding/binary"
	"sync"

	"github.com/quic-go/quic-go"
)

// msgHeader precedes every message on a data stream: length uint32, lane
// uint64, little-endian.
const msgHeader = 12

// slot is one outgoing data stream of a link: a byte queue filled by Send
// and one writer goroutine that drains it. The writer takes the whole
// queue at once, so messages sent while it is blocked in Write go out
// together in the next Write (batching without a timer: it flushes as soon
// as the queue empties).
type slot struct {
	mu      sync.Mutex
	dataC   sync.Cond // writer waits for data / finish / death
	spaceC  sync.Cond // senders wait for room in the queue
	q       []byte    // queued, framed messages
	running bool      // writer started
	done    chan struct{}
	finish  bool  // drain, FIN, exit: set by goodbye
	dead    error // stop now; Send fails with it
}

func (s *slot) init() {
	s.dataC.L = &s.mu
	s.spaceC.L = &s.mu
}

func (s *slot) put(l *link, lane uint64, msg []byte) error {
	n := msgHeader + len(msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.dead == nil && !s.finish && len(s.q) > 0 && len(s.q)+n > queueLimit {
		s.spaceC.Wait()
	}
	if s.dead != nil {
		return s.dead
	}
	if s.finish {
		return ErrClosed
	}
	wasEmpty := len(s.q) == 0
	s.q = binary.LittleEndian.AppendUint32(s.q, uint32(len(msg)))
	s.q = binary.LittleEndian.AppendUint64(s.q, lane)
	s.q = append(s.q, msg...)
	if !s.running {
		s.running = true
		s.done = make(chan struct{})
		if !l.m.spawn(func() { s.write(l) }) {
			close(s.done)
			s.dead = ErrClosed
			s.q = nil
			return ErrClosed
		}
	} else if wasEmpty {
		s.dataC.Signal()
	}
	return nil
}

func (s *slot) kill(err error) {
	s.mu.Lock()
	if s.dead == nil {
		s.dead = err
		s.q = nil
	}
	s.dataC.Broadcast()
	s.spaceC.Broadcast()
	s.mu.Unlock()
}

func (s *slot) finishReq() {
	s.mu.Lock()
	s.finish = true
	s.dataC.Broadcast()
	s.spaceC.Broadcast()
	s.mu.Unlock()
}

// doneC is closed when the writer has exited; nil if it never started.
func (s *slot) doneC() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	return s.done
}

func (s *slot) write(l *link) {
	defer close(s.done)
	st, err := l.conn.OpenUniStreamSync(l.conn.Context())
	if err != nil {
		s.kill(lostErr(l.p.id, err))
		return
	}
	l.mu.Lock()
	l.opened++
	l.mu.Unlock()
	var spare []byte
	for {
		s.mu.Lock()
		for len(s.q) == 0 && !s.finish && s.dead == nil {
			s.dataC.Wait()
		}
		if s.dead != nil {
			s.mu.Unlock()
			st.CancelWrite(quic.StreamErrorCode(codeLost))
			return
		}
		if len(s.q) == 0 { // finishing and drained
			s.mu.Unlock()
			st.Close() // FIN: the peer counts it before acking our goodbye
			return
		}
		buf := s.q
		s.q = spare[:0]
		s.spaceC.Broadcast()
		s.mu.Unlock()
		if _, err := st.Write(buf); err != nil {
			s.kill(lostErr(l.p.id, err))
			return
		}
		// Keep the buffer for the next swap, unless one huge message
		// grew it: do not pin that memory for the life of the link.
		if cap(buf) > 2*queueLimit {
			buf = nil
		}
		spare = buf
	}
}
