package main

/*
#include <stdint.h>
*/
import "C"

import (
	"github.com/dragon-mp/dragon_mp/gocore/remoteop"
	"github.com/dragon-mp/dragon_mp/gocore/runtime"
)

// dmp_lock_open opens the semaphore (Lock, Semaphore, BoundedSemaphore) a
// lock descriptor names.
//
//export dmp_lock_open
func dmp_lock_open(descriptor *C.char, out *C.uint64_t) (rc C.int) {
	defer recovered(&rc)
	if out == nil {
		return fail(errInvalid)
	}
	*out = 0
	h, err := open(descriptor, "s", false, func(r *runtime.Runtime, a runtime.Address) error {
		if _, err := r.Semaphore(a); err != nil { // of the right kind before a reference is taken
			return err
		}
		return r.RetainObject(a)
	}, func(r *runtime.Runtime, a runtime.Address) error {
		if _, err := call(r, remoteop.SemValue, a, 0, nil, nil); err != nil { // a semaphore there?
			return err
		}
		_, err := call(r, remoteop.SyncRetain, a, 0, nil, nil)
		return err
	})
	if err != nil {
		return fail(err)
	}
	if !h.remote {
		h.sem, err = h.r.Semaphore(h.addr)
	}
	if err == nil {
		*out, err = add(locks, h)
	}
	if err != nil {
		h.drop(false)
		return fail(err)
	}
	return 0
}

// dmp_lock_acquire decrements the semaphore, waiting at most the timeout.
//
//export dmp_lock_acquire
func dmp_lock_acquire(l C.uint64_t, timeoutNs C.int64_t) (rc C.int) {
	defer recovered(&rc)
	h, err := lookup(locks, l, false)
	if err != nil {
		return fail(err)
	}
	if h.remote {
		if err := remoteAcquire(h, duration(timeoutNs)); err != nil {
			return fail(err)
		}
		return 0
	}
	if !h.sem.Acquire(duration(timeoutNs)) {
		return fail(errTimeout)
	}
	return 0
}

// dmp_lock_release increments the semaphore.
//
//export dmp_lock_release
func dmp_lock_release(l C.uint64_t) (rc C.int) {
	defer recovered(&rc)
	h, err := lookup(locks, l, false)
	if err == nil && h.remote {
		_, err = call(h.r, remoteop.SemRelease, h.addr, 0, nil, nil)
	} else if err == nil {
		err = h.sem.Release()
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

// dmp_lock_close drops a lock handle and its reference.
//
//export dmp_lock_close
func dmp_lock_close(l C.uint64_t) (rc C.int) {
	defer recovered(&rc)
	h, err := lookup(locks, l, true)
	if err == nil {
		err = h.drop(false)
	}
	if err != nil {
		return fail(err)
	}
	return 0
}
