package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The checked-in pyext/layout.h must be what the generator writes from the
// Go definitions now: a layout change in Go without regenerating fails here.
func TestLayoutHeaderUpToDate(t *testing.T) {
	want, err := Header()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../layout.h")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, want) {
		return
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("pyext/layout.h is out of date with the Go definitions (line %d: have %q, want %q);\n"+
				"run `go run ./pyext/internal/layoutgen` from the repository root and rebuild the extension",
				i+1, gl, wl)
		}
	}
}

func TestCName(t *testing.T) {
	for in, want := range map[string]string{
		"magic": "magic", "slotSize": "slot_size", "neWaiters": "ne_waiters", "inline": "inline_",
	} {
		if got := cName(in); got != want {
			t.Errorf("cName(%q) = %q, want %q", in, got, want)
		}
	}
}
