"""Locks and semaphores in the run's shared memory.

As in CPython, a Lock is a semaphore with value 1 and maximum 1, and
BoundedSemaphore is a semaphore whose maximum is its initial value. The
semaphore itself (gocore/shmsync) is a futex word in the pool: an
uncontended acquire or release never enters the kernel.
"""

import threading

from multiprocessing import process

from . import _core, _runtime
from ._shared import SharedObject, sliced, timeout_ns

__all__ = ['Lock', 'Semaphore', 'BoundedSemaphore']

_TIMED_OUT = 0


class SemLock(SharedObject):
    """A counting semaphore with an optional maximum (0: none)."""

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, value, maxvalue, *, ctx=None):
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        _runtime.current()
        self._adopt(_core.call(_core.gocore().SemCreate, value, maxvalue))
        self._owner = None          # (pid, thread ident) of the last acquirer here

    @classmethod
    def _attach(cls, addr):
        self = cls.__new__(cls)
        _runtime.current()
        self._adopt(addr)
        self._owner = None
        return self

    def __reduce__(self):
        return self.__class__._attach, (self._reference_for_pickle(),)

    def acquire(self, block=True, timeout=None):
        lib, addr = _core.clib(), self._addr
        rc = sliced(lambda ns: lib.dmp_sem_acquire(addr, ns),
                    timeout_ns(block, timeout), _TIMED_OUT)
        if rc < 0:
            _core.raise_for(rc)
        if rc:
            self._owner = (process.current_process().pid, threading.get_ident())
        return rc == 1

    def release(self):
        rc = _core.clib().dmp_sem_release(self._addr)
        if rc < 0:
            _core.raise_for(rc)
        self._owner = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *args):
        self.release()

    def _get_value(self):
        return _core.call(_core.gocore().SemValue, self._addr)


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
            if self._owner == (process.current_process().pid, threading.get_ident()):
                name = process.current_process().name
                if threading.current_thread().name != 'MainThread':
                    name += '|' + threading.current_thread().name
            elif self._get_value() == 1:
                name = 'None'
            else:
                name = 'SomeOtherProcess'
        except Exception:
            name = 'unknown'
        return f'<{type(self).__name__}(owner={name})>'
