package remoteop

import "testing"

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
