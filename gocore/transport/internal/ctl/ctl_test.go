package ctl

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func samples() []Msg {
	return []Msg{
		{Type: THello, Version: Version, From: 1, To: 2, RunID: "run-1"},
		{Type: THello, Version: 9, From: 65535, To: 0, RunID: ""},
		{Type: THello, Version: Version, From: 3, To: 4, RunID: strings.Repeat("r", MaxRunID)},
		{Type: TReply, Status: StatusOK, From: 7},
		{Type: TReply, Status: StatusDuplicate, From: 8},
		{Type: TReply, Status: StatusRejected},
		{Type: TReply, Status: StatusLost, From: 1},
		{Type: TGoodbye},
		{Type: TAck},
	}
}

func TestRoundTrip(t *testing.T) {
	var stream bytes.Buffer
	for _, m := range samples() {
		if err := Write(&stream, m); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range samples() {
		got, err := Read(&stream)
		if err != nil || got != want {
			t.Fatalf("%d: got %+v, %v; want %+v", i, got, err, want)
		}
	}
	if _, err := Read(&stream); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	hello, _ := (&Msg{Type: THello, Version: 1, From: 1, To: 2, RunID: "abc"}).Append(nil)
	hello = hello[2:]
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown type", []byte{9}},
		{"type 0", []byte{0}},
		{"short hello", hello[:5]},
		{"hello run truncated", hello[:len(hello)-1]},
		{"hello trailing", append(bytes.Clone(hello), 'x')},
		{"reply short", []byte{byte(TReply), 1}},
		{"reply bad status", []byte{byte(TReply), 0, 1, 0}},
		{"reply status 5", []byte{byte(TReply), 5, 1, 0}},
		{"goodbye long", []byte{byte(TGoodbye), 1, 0, 0}},
		{"ack trailing", []byte{byte(TAck), 0}},
		{"too long", append([]byte{byte(TAck)}, make([]byte, MaxBody)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode(tc.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"zero length", []byte{0, 0}, ErrMalformed},
		{"over max", []byte{0xff, 0xff}, ErrMalformed},
		{"truncated", []byte{5, 0, byte(THello)}, io.ErrUnexpectedEOF},
		{"half prefix", []byte{5}, io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Read(bytes.NewReader(tc.in)); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzHello feeds arbitrary bodies to the decoder that sees the first bytes
// an unauthenticated-until-hello peer sends. Whatever it accepts must
// re-encode to the same bytes (the encoding is canonical).
func FuzzHello(f *testing.F) {
	for _, m := range samples() {
		b, _ := m.Append(nil)
		f.Add(b[2:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc, err := m.Append(nil)
		if err != nil {
			t.Fatalf("accepted %x but cannot re-encode: %v", b, err)
		}
		if !bytes.Equal(enc[2:], b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc[2:])
		}
	})
}
