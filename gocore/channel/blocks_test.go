package channel

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

func TestAllocMessageSendBlock(t *testing.T) {
	hp := newShmHeap(t, 64<<20, true)
	c := mustCreate(t, hp, Options{Capacity: 1, Inline: 64})
	// only large messages go through a caller-filled block
	if _, err := c.AllocMessage(64, -1); err != ErrInvalid {
		t.Fatalf("AllocMessage(inline size) = %v, want ErrInvalid", err)
	}
	fill := func(n uint64, seed byte) uint64 {
		off, err := c.AllocMessage(n, -1)
		if err != nil {
			t.Fatal(err)
		}
		b := hp.Bytes(off, n)
		for i := range b {
			b[i] = seed + byte(i)
		}
		return off
	}
	off1 := fill(1000, 1)
	if err := c.SendBlock(off1, 1000, 0); err != nil {
		t.Fatal(err)
	}
	// full: the block stays the caller's, and can be sent again later
	off2 := fill(300000, 2)
	if err := c.SendBlock(off2, 300000, 10*time.Millisecond); err != ErrFull {
		t.Fatalf("SendBlock on a full channel = %v, want ErrFull", err)
	}
	if err := c.SendBlock(off2, 64, 0); err != ErrInvalid {
		t.Fatalf("SendBlock(inline size) = %v, want ErrInvalid", err)
	}
	for i, want := range []struct {
		n    uint64
		seed byte
	}{{1000, 1}, {300000, 2}} {
		got, err := c.RecvBytes(0)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(got)) != want.n {
			t.Fatalf("message %d: %d bytes, want %d", i, len(got), want.n)
		}
		for j := range got {
			if got[j] != want.seed+byte(j) {
				t.Fatalf("message %d: byte %d corrupt", i, j)
			}
		}
		if i == 0 {
			if err := c.SendBlock(off2, 300000, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	// closed: AllocMessage refuses, SendBlock leaves the block to the caller
	off3 := fill(5000, 3)
	c.Close()
	if _, err := c.AllocMessage(5000, -1); err != ErrClosed {
		t.Fatalf("AllocMessage on a closed channel = %v", err)
	}
	if err := c.SendBlock(off3, 5000, 0); err != ErrClosed {
		t.Fatalf("SendBlock on a closed channel = %v", err)
	}
	if err := c.ReleaseMessage(Message{Len: 5000, Large: true, Off: off3}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if u, n := hp.Used(); u != 0 || n != 0 {
		t.Fatalf("leaked %d bytes in %d blocks", u, n)
	}
}

// holderLog is a Holder that records what the channel told it, and whether
// the channel lock was held at the time.
type holderLog struct {
	c      *Channel
	events []string
}

func (l *holderLog) note(what string) {
	locked := atomic.LoadUint32((*uint32)(unsafe.Pointer(&l.c.h.mu))) != 0
	l.events = append(l.events, fmt.Sprintf("%s locked=%v", what, locked))
}
func (l *holderLog) Hold(off, n uint64) { l.note(fmt.Sprintf("hold %d", n)) }
func (l *holderLog) Clear()             { l.note("clear") }

func TestHolderCalledUnderTheLock(t *testing.T) {
	hp := newShmHeap(t, testHeapSize, true)
	big := make([]byte, 1000)
	tests := []struct {
		name string
		run  func(c *Channel, h Holder) error
		want []string
	}{
		{"RecvHeld large", func(c *Channel, h Holder) error {
			if err := c.Send(big, 0); err != nil {
				return err
			}
			m, err := c.RecvHeld(make([]byte, 300), 0, h)
			if err == nil {
				err = c.ReleaseMessage(m)
			}
			return err
		}, []string{"hold 1000 locked=true"}},
		{"RecvHeld inline: nothing held", func(c *Channel, h Holder) error {
			if err := c.Send([]byte("x"), 0); err != nil {
				return err
			}
			_, err := c.RecvHeld(make([]byte, 300), 0, h)
			return err
		}, nil},
		{"SendBlockHeld", func(c *Channel, h Holder) error {
			off, err := c.AllocMessage(1000, 0)
			if err != nil {
				return err
			}
			if err := c.SendBlockHeld(off, 1000, 0, h); err != nil {
				return err
			}
			m, err := c.Recv(make([]byte, 300), 0)
			if err == nil {
				err = c.ReleaseMessage(m)
			}
			return err
		}, []string{"clear locked=true"}},
		{"SendPartsHeld", func(c *Channel, h Holder) error {
			if err := c.SendPartsHeld(0, h, big[:500], big[500:]); err != nil {
				return err
			}
			m, err := c.Recv(make([]byte, 300), 0)
			if err == nil {
				err = c.ReleaseMessage(m)
			}
			return err
		}, []string{"hold 1000 locked=false", "clear locked=true"}},
		{"SendPartsHeld to a full channel: cleared, then freed", func(c *Channel, h Holder) error {
			if err := c.Send([]byte("fills capacity 1"), 0); err != nil {
				return err
			}
			if err := c.SendPartsHeld(time.Millisecond, h, big); err != ErrFull {
				return fmt.Errorf("err %v, want ErrFull", err)
			}
			_, err := c.Recv(make([]byte, 300), 0)
			return err
		}, []string{"hold 1000 locked=false", "clear locked=false"}},
		{"SendPartsHeld to a full channel without waiting: no block, entry cleared", func(c *Channel, h Holder) error {
			if err := c.Send([]byte("fills capacity 1"), 0); err != nil {
				return err
			}
			if err := c.SendPartsHeld(0, h, big); err != ErrFull {
				return fmt.Errorf("err %v, want ErrFull", err)
			}
			_, err := c.Recv(make([]byte, 300), 0)
			return err
		}, []string{"clear locked=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustCreate(t, hp, Options{Capacity: 1})
			l := &holderLog{c: c}
			if err := tt.run(c, l); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(l.events) != fmt.Sprint(tt.want) {
				t.Fatalf("events %q, want %q", l.events, tt.want)
			}
			if d, err := c.Release(); !d || err != nil {
				t.Fatalf("Release: %v %v", d, err)
			}
			if u, n := hp.Used(); u != 0 || n != 0 {
				t.Fatalf("leak: %d bytes in %d blocks", u, n)
			}
		})
	}
}
