package runtime

import "github.com/dragon-mp/dragon_mp/gocore/channel"

// NewChannel creates a channel in the run's pool holding one reference.
// capacity 0 means unbounded; inline 0 picks the default inline size.
func (r *Runtime) NewChannel(capacity uint64, inline uint32) (Address, error) {
	// The header's tag carries the address's generation, which tells this
	// channel from the ones its memory holds before and after it.
	gen := r.nextGen()
	c, err := channel.CreateOptions(r.Pool, channel.Options{Capacity: capacity, Inline: inline, Tag: chanTag(gen)})
	if err != nil {
		return 0, err
	}
	a := MakeAddress(r.Node, gen, c.Offset())
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
	if c, err = channel.Attach(r.Pool, off, chanTag(a.Gen())); err != nil {
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

// chanTag is the header tag (channel.Options.Tag) of a channel made under
// generation gen: a nonzero word, so that no channel made by this package
// has the zero tag of a channel made without one.
func chanTag(gen uint32) uint64 { return 1<<63 | uint64(gen) }
