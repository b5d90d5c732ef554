package runtime

import "github.com/dragon-mp/dragon_mp/gocore/channel"

// NewChannel creates a channel in the run's pool holding one reference.
// capacity 0 means unbounded; inline 0 picks the default inline size.
func (r *Runtime) NewChannel(capacity uint64, inline uint32) (Address, error) {
	c, err := channel.Create(r.Pool, capacity, inline)
	if err != nil {
		return 0, err
	}
	a := MakeAddress(r.Node, c.Offset())
	r.mu.Lock()
	r.channels[a] = c
	r.mu.Unlock()
	return a, nil
}

// Channel returns this process's handle on the channel at a.
//
// Fast path: a map lookup under r.mu. Attaching validates the channel header,
// so a stale or forged address gives channel.ErrBadHandle.
func (r *Runtime) Channel(a Address) (*channel.Channel, error) {
	r.mu.Lock()
	c := r.channels[a]
	r.mu.Unlock()
	if c != nil {
		return c, nil
	}
	off, err := r.local(a)
	if err != nil {
		return nil, err
	}
	if c, err = channel.Attach(r.Pool, off); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.channels[a] = c
	r.mu.Unlock()
	return c, nil
}

// RetainChannel adds a reference to the channel at a.
func (r *Runtime) RetainChannel(a Address) error {
	c, err := r.Channel(a)
	if err != nil {
		return err
	}
	return c.Retain()
}

// ReleaseChannel drops one reference to the channel at a, destroying it with
// the last one. This process forgets its handle either way: the memory may
// later hold another object.
func (r *Runtime) ReleaseChannel(a Address) error {
	c, err := r.Channel(a)
	if err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.channels, a)
	r.mu.Unlock()
	_, err = c.Release()
	return err
}
