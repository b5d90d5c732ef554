package transport

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestNewCARunID(t *testing.T) {
	tests := []struct {
		run string
		ok  bool
	}{
		{"r1", true},
		{"abc-123", true},
		{strings.Repeat("a", 63), true},
		{"", false},
		{strings.Repeat("a", 64), false},
		{"Upper", false},
		{"has.dot", false},
		{"-lead", false},
		{"trail-", false},
		{"sp ace", false},
	}
	for _, tc := range tests {
		_, err := NewCA(tc.run)
		if (err == nil) != tc.ok {
			t.Errorf("NewCA(%q): err %v, want ok=%v", tc.run, err, tc.ok)
		}
	}
}

func TestIdentityRoundTrip(t *testing.T) {
	ca, err := NewCA("run-a")
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []uint16{0, 1, 7, 65535} {
		id, err := ca.Issue(node)
		if err != nil {
			t.Fatal(err)
		}
		b, err := id.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseIdentity(b)
		if err != nil {
			t.Fatalf("node %d: %v", node, err)
		}
		if got.Node != node || got.RunID != "run-a" || string(got.CertPEM) != string(id.CertPEM) {
			t.Fatalf("node %d: round trip gave %+v", node, got)
		}
	}
}

func TestParseIdentityRejects(t *testing.T) {
	ca, _ := NewCA("run-a")
	other, _ := NewCA("run-b")
	rogue, _ := NewCA("run-a") // same run id, different key
	id1, _ := ca.Issue(1)
	id2, _ := ca.Issue(2)
	otherID, _ := other.Issue(1)
	rogueID, _ := rogue.Issue(1)
	edit := func(f func(*Identity)) []byte {
		id := id1
		f(&id)
		b, _ := json.Marshal(id)
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"garbage", []byte("{nope")},
		{"wrong node", edit(func(id *Identity) { id.Node = 2 })},
		{"key of another node", edit(func(id *Identity) { id.KeyPEM = id2.KeyPEM })},
		{"cert of another run", edit(func(id *Identity) { id.CertPEM, id.KeyPEM = otherID.CertPEM, otherID.KeyPEM })},
		{"cert from a rogue CA", edit(func(id *Identity) { id.CertPEM, id.KeyPEM = rogueID.CertPEM, rogueID.KeyPEM })},
		{"run id mismatch", edit(func(id *Identity) { id.RunID = "run-b" })},
		{"no CA", edit(func(id *Identity) { id.CAPEM = nil })},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseIdentity(tc.in); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
