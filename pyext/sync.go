package pyext

/*
#include <stdint.h>
*/
import "C"

import (
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// SemCreate makes a semaphore (maxValue 0: unbounded) and returns its address.
func SemCreate(value, maxValue int64) (addr int64, err error) {
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	const limit = 1<<31 - 1
	if value < 0 || value > limit || maxValue < 0 || maxValue > limit ||
		(maxValue > 0 && value > maxValue) {
		return 0, pyErr(errInvalid)
	}
	a, err := r.NewSemaphore(uint32(value), uint32(maxValue))
	return int64(a), pyErr(err)
}

// SemValue is the semaphore's current count.
func SemValue(addr int64) (v int64, err error) {
	if isRemote(addr) {
		return remoteInt(remoteop.SemValue, addr)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return 0, pyErr(err)
	}
	s, err := r.Semaphore(runtime.Address(addr))
	if err != nil {
		return 0, pyErr(err)
	}
	return int64(s.Value()), nil
}

// SyncRetain adds a reference to a sync object.
func SyncRetain(addr int64) (err error) {
	if isRemote(addr) {
		return remoteErr(remoteop.SyncRetain, addr)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return pyErr(err)
	}
	return pyErr(r.RetainObject(runtime.Address(addr)))
}

// SyncRelease drops a reference to a sync object; the last one frees it.
func SyncRelease(addr int64) (err error) {
	if isRemote(addr) {
		return remoteErr(remoteop.SyncRelease, addr)
	}
	defer recovered(&err)
	r, err := current()
	if err != nil {
		return pyErr(err)
	}
	return pyErr(r.ReleaseObject(runtime.Address(addr)))
}

// dmp_sem_acquire: 1 acquired, 0 timed out, <0 error.
//
//export dmp_sem_acquire
func dmp_sem_acquire(addr C.uint64_t, timeoutNs C.int64_t) (rc int64) {
	defer cRecover(&rc)
	defer inside()()
	if isRemote(int64(addr)) {
		return remoteWait(remoteop.SemAcquire, int64(addr), duration(timeoutNs))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	s, err := r.Semaphore(runtime.Address(addr))
	if err != nil {
		return cCode(err)
	}
	if s.Acquire(duration(timeoutNs)) {
		return 1
	}
	return 0
}

// dmp_sem_release: 0 or <0 error.
//
//export dmp_sem_release
func dmp_sem_release(addr C.uint64_t) (rc int64) {
	defer cRecover(&rc)
	if isRemote(int64(addr)) {
		return remoteRC(remoteop.SemRelease, int64(addr))
	}
	r, err := current()
	if err != nil {
		return cCode(err)
	}
	s, err := r.Semaphore(runtime.Address(addr))
	if err != nil {
		return cCode(err)
	}
	if err := s.Release(); err != nil {
		return cCode(err)
	}
	return 0
}
