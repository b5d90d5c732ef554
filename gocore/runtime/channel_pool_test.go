package runtime

import "testing"

func TestChannelFIFOOnRealPool(t *testing.T) {
	r := newTestRun(t)
	for _, n := range []int{1, 203, 204, 205, 1000, 5000} {
		a, err := r.NewChannel(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := r.Channel(a)
		for i := 0; i < n; i++ {
			if err := c.Send([]byte{byte(i), byte(i >> 8)}, 0); err != nil {
				t.Fatalf("n=%d send %d: %v", n, i, err)
			}
		}
		buf := make([]byte, 256)
		for i := 0; i < n; i++ {
			m, err := c.Recv(buf, 0)
			if err != nil {
				t.Fatalf("n=%d recv %d: %v", n, i, err)
			}
			if m.Len != 2 || buf[0] != byte(i) || buf[1] != byte(i>>8) {
				t.Fatalf("n=%d recv %d: got %v", n, i, buf[:m.Len])
			}
		}
		if err := r.ReleaseChannel(a); err != nil {
			t.Fatal(err)
		}
	}
	if st := r.Pool.Stats(); st.InUse != 0 {
		t.Fatalf("in use %d", st.InUse)
	}
}
