package pyext

import (
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// Raw objects: zeroed shared bytes that Python maps in place with ctypes
// (dragon_mp.heap.BufferWrapper, under sharedctypes' Value/Array/RawValue/
// RawArray). References go through SyncRetain / SyncRelease (sync.go), which
// accept any object kind.

// RawCreate allocates size zeroed bytes in the run's pool and returns the
// object's address, holding one reference.
func RawCreate(size int64) (addr int64, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	if size < 0 {
		return 0, pyErr(errInvalid)
	}
	a, err := r.NewRaw(uint64(size))
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(a), nil
}

// RawOffset is the pool offset of the raw object's data: its address in this
// process is dmp_pool_base() + offset (32-byte aligned).
func RawOffset(addr int64) (off int64, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	o, _, err := r.Raw(runtime.Address(addr))
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(o), nil
}

// RawSize is the size in bytes of the raw object's data.
func RawSize(addr int64) (n int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.RawSize, addr)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	_, size, err := r.Raw(runtime.Address(addr))
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(size), nil
}
