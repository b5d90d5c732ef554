"""Locks, semaphores, conditions, events and barriers in the run's shared memory.

As in CPython, a Lock is a semaphore with value 1 and maximum 1, and
BoundedSemaphore is a semaphore whose maximum is its initial value. The
semaphore itself (gocore/shmsync) is a futex word in the pool: an
uncontended acquire or release never enters the kernel.

The other primitives behave like CPython's multiprocessing.synchronize:

- RLock: a shmsync.RecursiveLock whose owner is this thread's identity,
  node << 54 | pid << 32 | a per-process thread number (thread idents are 64-bit and are
  reused; a thread number is never reused within a process).
- Condition: its lock (an RLock unless given) plus a shmsync.Cond, a queue of
  per-wait nodes in the pool, like threading.Condition's deque of per-waiter
  locks: notify(n) wakes the n oldest waiters and returns at once (stdlib's
  semaphore design makes the notifier wait for the woken), a waiter that
  times out leaves the queue so it absorbs no later notification, and a
  waiter whose process died is skipped.
- Event: a shmsync.Event (flag + set generation in one futex word).
- Barrier: threading.Barrier's logic over a Condition, with its state and
  count in a small shared block, as in stdlib.

Lock/Semaphore acquire and release, RLock acquire and release and Event
set/clear/is_set/wait are the C methods of the data plane's objects
(dragon_mp._fastpath Sem, RLock, Event), bound onto each object: the steps
that never wait are atomics on the shared words (the same steps as
gocore/shmsync), waiting goes through Go.

Every blocking wait runs in <=100 ms slices (in dragon_mp._fastpath) so Ctrl-C
stays prompt. Every object pickles by taking a reference (through a Queue too,
not only to a starting child as stdlib allows).

Misuse raises what stdlib raises: AssertionError for releasing an RLock this
thread does not hold and for wait/notify without holding the Condition's
lock, ValueError for releasing a Lock too many times, and
threading.BrokenBarrierError from a broken Barrier.
"""

import errno
import math
import os
import sys
import threading
import time

from multiprocessing import process
from threading import BrokenBarrierError        # noqa: F401  (what Barrier raises)

from . import _core, _fast, _runtime
from ._shared import SharedObject, timeout_ns

__all__ = ['Lock', 'RLock', 'Semaphore', 'BoundedSemaphore', 'Condition', 'Event',
           'Barrier']

_TIMED_OUT = 0

# Largest semaphore value (pyext SemCreate's limit).
SEM_VALUE_MAX = 2**31 - 1

def _go():
    return _core.gocore()


def _cond_wait():
    """dmp_cond_wait(addr, waiter, timeout_ns) (pyext/sync_more.go): waits in <=100 ms
    slices without the GIL, running signal handlers between slices."""
    return _fast.bound('dmp_cond_wait', 'uut', _TIMED_OUT)


def _word(find, addr):
    """Where the object at addr lives in this process (0: Go does everything)."""
    try:
        return find(addr)
    except Exception:
        return 0        # not a live object of that kind: the calls through Go report it


def _owner_id():
    """This thread's RLock owner identity: node << 54 | pid << 32 | thread number (never 0),
    the one the C RLock methods use (a forked child's threads get new ones)."""
    return _core.fast().thread_owner()


def _holder_name():
    name = process.current_process().name
    if threading.current_thread().name != 'MainThread':
        name += '|' + threading.current_thread().name
    return name


class SemLock(SharedObject):
    """A counting semaphore with an optional maximum (0: none)."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, value, maxvalue, *, ctx=None):
        if value < 0:       # stdlib: sem_open() refuses it with EINVAL
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        _runtime.current()
        self._setup(_core.call(_core.gocore().SemCreate, value, maxvalue))

    def _setup(self, addr):
        """Own the reference to addr. acquire and release are the C methods of a
        _fastpath.Sem (the steps that never wait are atomics on the shared words,
        no call into Go); the reference is dropped when that object dies, since a
        bound method (lock.acquire) may outlive this one."""
        sem = self._sem = _core.fast().Sem(addr, _word(_fast.sem_word, addr))
        self.acquire, self.release = sem.acquire, sem.release
        self._adopt(addr, anchor=sem)

    # Bound onto each object by _setup; these serve code that calls them
    # through the class (a subclass's super().acquire()).
    def acquire(self, block=True, timeout=None):
        return self._sem.acquire(block, timeout)

    def release(self):
        self._sem.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def _get_value(self):
        return _core.call(_core.gocore().SemValue, self._addr)

    # stdlib code reaches into sem._semlock (multiprocessing.queues: qsize,
    # full, JoinableQueue; so concurrent.futures with a dragon_mp context).
    @property
    def _semlock(self):
        return self

    def _is_zero(self):
        return self._get_value() == 0

    def _is_mine(self):
        """Acquired by this thread through this object (stdlib's SemLock._is_mine)."""
        return self._sem._is_mine()

    def _count(self):
        """Acquires minus releases through this object in this process (stdlib's _count)."""
        return self._sem._count()

    def _held_here(self):
        """Acquired through this object in this process and not released yet."""
        return self._sem._count() > 0

    # What a Condition over this lock needs.
    _is_owned = _is_mine

    def descriptor(self):
        """This lock or semaphore as a string that a C or C++ program of the
        run opens (include/dragon_mp.h: dmp_lock_open; docs/c_api.md), on any
        node of the run; keep the object until it has opened it."""
        return f'dmp1:s:{_runtime.runid()}:{self._addr:x}'

    def _release_save(self):
        self.release()

    def _acquire_restore(self, saved):
        self.acquire()


class Semaphore(SemLock):
    def __init__(self, value=1, *, ctx=None):
        super().__init__(value, 0)

    def get_value(self):
        return self._get_value()

    def __repr__(self):
        try:
            value = self._get_value()
        except Exception:
            value = 'unknown'
        return f'<{type(self).__name__}(value={value})>'


class BoundedSemaphore(Semaphore):
    def __init__(self, value=1, *, ctx=None):
        SemLock.__init__(self, value, value)
        self._maxvalue = value

    def __reduce__(self):
        return _attach_bounded, (self._reference_for_pickle(), self._maxvalue)

    def __repr__(self):
        try:
            value = self._get_value()
        except Exception:
            value = 'unknown'
        return f'<{type(self).__name__}(value={value}, maxvalue={self._maxvalue})>'


def _attach_bounded(addr, maxvalue):
    self = BoundedSemaphore._attach(addr)
    self._maxvalue = maxvalue
    return self


class Lock(SemLock):
    def __init__(self, *, ctx=None):
        super().__init__(1, 1)

    def __repr__(self):
        try:
            if self._is_mine():
                name = _holder_name()
            elif self._get_value() == 1:
                name = 'None'
            elif self._held_here():
                name = 'SomeOtherThread'
            else:
                name = 'SomeOtherProcess'
        except Exception:
            name = 'unknown'
        return f'<{type(self).__name__}(owner={name})>'


#
# Recursive lock
#

class RLock(SharedObject):
    """A recursive lock: the thread holding it may acquire it again."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, *, ctx=None):
        _runtime.current()
        self._setup(_core.call(_go().RLockCreate))

    def _setup(self, addr):
        """Own the reference to addr; acquire and release are the C methods of a
        _fastpath.RLock (which owns the reference, as for SemLock)."""
        lk = self._fast = _core.fast().RLock(addr, _word(_fast.rlock_word, addr))
        self.acquire, self.release = lk.acquire, lk.release
        self._adopt(addr, anchor=lk)

    # Bound onto each object by _setup (see SemLock).
    def acquire(self, block=True, timeout=None):
        return self._fast.acquire(block, timeout)

    def release(self):
        self._fast.release()        # not ours: AssertionError, as stdlib

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def _owner(self):
        return _core.call(_go().RLockOwner, self._addr)

    def _count(self):
        """The holder's recursion depth (0 when free)."""
        return _core.call(_go().RLockCount, self._addr)

    def _is_owned(self):
        return self._owner() == _owner_id()

    # Condition.wait releases the lock completely and restores the depth after.
    def _release_save(self):
        return _core.call(_go().RLockReleaseAll, self._addr, _owner_id())

    def _acquire_restore(self, count):
        self.acquire()
        for _ in range(count - 1):
            self.acquire(False)     # re-entry: never waits

    def __repr__(self):
        try:
            owner = self._owner()
            if owner == 0:
                name, count = 'None', 0
            elif owner == _owner_id():
                name, count = _holder_name(), self._count()
            elif owner >> 32 == _owner_id() >> 32:      # same node and pid
                name, count = 'SomeOtherThread', 'nonzero'
            else:
                name, count = 'SomeOtherProcess', 'nonzero'
        except Exception:
            name, count = 'unknown', 'unknown'
        return f'<{type(self).__name__}({name}, {count})>'


#
# Condition variable
#

def _is_owned(lock):
    """Whether this thread holds lock (a dragon_mp, stdlib or threading lock)."""
    test = getattr(lock, '_is_owned', None)
    if test is not None:
        return test()
    semlock = getattr(lock, '_semlock', None)     # stdlib multiprocessing lock
    if semlock is not None:
        return semlock._is_mine()
    if lock.acquire(False):                         # threading.Condition's fallback
        lock.release()
        return False
    return True


def _release_save(lock):
    save = getattr(lock, '_release_save', None)
    if save is not None:
        return save()
    semlock = getattr(lock, '_semlock', None)
    count = semlock._count() if semlock is not None else 1
    for _ in range(count):
        lock.release()
    return count


def _acquire_restore(lock, saved):
    restore = getattr(lock, '_acquire_restore', None)
    if restore is not None:
        return restore(saved)
    for _ in range(saved):
        lock.acquire()


class Condition(SharedObject):
    """A condition variable across processes; its lock is an RLock unless given."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, lock=None, *, ctx=None):
        _runtime.current()
        self._lock = lock if lock is not None else RLock(ctx=ctx)
        self._adopt(_core.call(_go().CondCreate))
        self._make_methods()

    def _make_methods(self):
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __reduce__(self):
        return _rebuild_condition, (self._lock, self._reference_for_pickle())

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __repr__(self):
        try:
            num_waiters = _core.call(_go().CondWaiting, self._addr)
        except Exception:
            num_waiters = 'unknown'
        return f'<{type(self).__name__}({self._lock}, {num_waiters})>'

    def wait(self, timeout=None):
        if not _is_owned(self._lock):
            raise AssertionError('must acquire() condition before using wait()')
        go, addr = _go(), self._addr
        # Queued while the lock is still held: no notify can miss this wait.
        waiter = _core.call(go.CondEnqueue, addr)
        try:
            saved = _release_save(self._lock)
        except BaseException:
            _core.call(go.CondFinish, addr, waiter)
            raise
        try:
            rc = _TIMED_OUT
            try:
                rc = _cond_wait()(addr, waiter, timeout_ns(True, timeout))
            finally:
                # Leave the queue before waiting for the lock: a notification
                # that comes meanwhile goes to a waiter that still waits, and
                # one that raced with the timeout is reported, not lost.
                notified = _core.call(go.CondFinish, addr, waiter)
            if rc < 0:
                _core.raise_for(rc)
        finally:
            _acquire_restore(self._lock, saved)
        return bool(notified)

    def notify(self, n=1):
        if not _is_owned(self._lock):
            raise AssertionError('lock is not owned')
        if n <= 0:
            return
        n = sys.maxsize if n >= sys.maxsize else math.ceil(n)
        _core.call(_go().CondNotify, self._addr, n)

    def notify_all(self):
        self.notify(n=sys.maxsize)

    def wait_for(self, predicate, timeout=None):
        result = predicate()
        if result:
            return result
        if timeout is not None:
            endtime = time.monotonic() + timeout
        else:
            endtime = None
            waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result


def _rebuild_condition(lock, addr):
    self = Condition.__new__(Condition)
    _runtime.current()
    self._lock = lock
    self._adopt(addr)
    self._make_methods()
    return self


#
# Event
#

class Event(SharedObject):
    """A flag that processes can wait for."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, *, ctx=None):
        _runtime.current()
        self._setup(_core.call(_go().EventCreate))

    def _setup(self, addr):
        """Own the reference to addr; set/clear/is_set/wait are the C methods of a
        _fastpath.Event (which owns the reference, as for SemLock)."""
        e = self._fast = _core.fast().Event(addr, _word(_fast.event_word, addr))
        self.set, self.clear, self.is_set, self.wait = e.set, e.clear, e.is_set, e.wait
        self._adopt(addr, anchor=e)

    # Bound onto each object by _setup (see SemLock).
    def is_set(self):
        return self._fast.is_set()

    def set(self):
        self._fast.set()

    def clear(self):
        self._fast.clear()

    def wait(self, timeout=None):
        """Wait until the flag is set (or was set meanwhile); return whether it was."""
        return self._fast.wait(timeout)

    def __repr__(self) -> str:
        try:
            set_status = 'set' if self.is_set() else 'unset'
        except Exception:
            set_status = 'unknown'
        return f"<{type(self).__qualname__} at {id(self):#x} {set_status}>"


#
# Barrier
#

_BARRIER_STATE, _BARRIER_COUNT = 0, 1


class _BarrierState(SharedObject):
    """The changing fields of a Barrier (state, count), in shared memory."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self):
        _runtime.current()
        self._adopt(_core.call(_go().BarrierCreate))

    def get(self, field):
        return _core.call(_go().BarrierGet, self._addr, field)

    def set(self, field, value):
        _core.call(_go().BarrierSet, self._addr, field, value)


class Barrier(threading.Barrier):
    """threading.Barrier across processes: its Condition and state are shared."""

    def __init__(self, parties, action=None, timeout=None, *, ctx=None):
        self.__setstate__((parties, action, timeout, Condition(ctx=ctx), _BarrierState()))

    def __setstate__(self, state):
        (self._parties, self._action, self._timeout,
         self._cond, self._shared) = state

    def __getstate__(self):
        return (self._parties, self._action, self._timeout,
                self._cond, self._shared)

    @property
    def _state(self):
        return self._shared.get(_BARRIER_STATE)

    @_state.setter
    def _state(self, value):
        self._shared.set(_BARRIER_STATE, value)

    @property
    def _count(self):
        return self._shared.get(_BARRIER_COUNT)

    @_count.setter
    def _count(self, value):
        self._shared.set(_BARRIER_COUNT, value)


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'synchronize')
