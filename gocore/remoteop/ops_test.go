package remoteop

import (
	"errors"
	"testing"
	"time"
)

// The values cross the network between the nodes of a run and are mapped to
// exceptions by dragon_mp/_core.py: renumbering one is a protocol change.
func TestValuesArePinned(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want int
	}{
		{"ChanSend", int(ChanSend), 1},
		{"ChanRecv", int(ChanRecv), 2},
		{"SemAcquire", int(SemAcquire), 8},
		{"SyncRetain", int(SyncRetain), 11},
		{"RawWrite", int(RawWrite), 33},
		{"ProcStart", int(ProcStart), 34},
		{"ChanCap", int(ChanCap), 38},
		{"CodeTimeout", CodeTimeout, 1},
		{"CodeFull", CodeFull, 2},
		{"CodeBadHandle", CodeBadHandle, 4},
		{"CodeNotOwner", CodeNotOwner, 9},
		{"CodeNodeLost", CodeNodeLost, 12},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestSliced(t *testing.T) {
	for _, tc := range []struct {
		name     string
		timeout  time.Duration
		doneAt   int // the attempt that reports done (0: never)
		attempts int
		firstT   time.Duration
	}{
		{"no wait: one try", 0, 0, 1, 0},
		{"done at once", time.Hour, 1, 1, Slice},
		{"done on the third slice", -1, 3, 3, Slice},
		{"short timeout: one slice of it", 30 * time.Millisecond, 0, -1, 30 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			var first time.Duration
			err := Sliced(tc.timeout, func(w time.Duration) (bool, error) {
				n++
				if n == 1 {
					first = w
				}
				if tc.timeout > 0 && tc.doneAt == 0 {
					time.Sleep(w) // as an owner that waited the whole slice
				}
				return n != tc.doneAt, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tc.attempts >= 0 && n != tc.attempts {
				t.Errorf("attempts = %d, want %d", n, tc.attempts)
			}
			if first > tc.firstT || (tc.firstT > 0 && first < tc.firstT-5*time.Millisecond) {
				t.Errorf("first wait = %v, want %v", first, tc.firstT)
			}
		})
	}
	boom := errors.New("boom")
	if err := Sliced(-1, func(time.Duration) (bool, error) { return false, boom }); err != boom {
		t.Errorf("error = %v, want boom", err)
	}
}
