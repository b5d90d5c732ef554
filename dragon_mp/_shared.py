"""Counted references to objects in the run's shared memory.

A channel or semaphore lives in the run's pool and is addressed by a 64-bit
address that means the same thing in every process. Each Python object that
refers to one holds one reference, counted in shared memory: creating or
unpickling takes one, garbage collection drops it, and the last drop frees the
memory. Pickling takes a reference on behalf of the receiver (the sender may
drop its own before the receiver attaches); a pickle that is never loaded
leaks that object until the run ends, never longer. Each reference a process
holds is recorded in its ledger (gocore/ledger), so that when the process is
killed the run's head drops its references for it.
"""

import weakref

from . import _core, _runtime

__all__ = []   # internal: nothing for `from ... import *`

# Blocking calls into Go wait at most this long per call, so signal handlers
# (Ctrl-C) run promptly between slices.
WAIT_SLICE_NS = 100_000_000


def timeout_ns(block, timeout):
    """Go's timeout convention (<0 forever, 0 poll) for a stdlib block/timeout pair."""
    if not block:
        return 0
    if timeout is None:
        return -1
    return max(int(timeout * 1e9), 0)


class SharedObject:
    """Base of Python objects that hold one reference to a pool object."""

    # Names of the gopy functions that add and drop a reference (set by subclasses).
    _retain_fn = None
    _drop_fn = None

    def _adopt(self, addr, anchor=None):
        """Own one (already counted) reference to addr.

        The reference is dropped when `anchor` (default: self) is collected:
        a C fast-path object whose bound methods may outlive self.
        """
        self._addr = addr
        self._gen = _runtime.generation()
        self._finalizer = weakref.finalize(self if anchor is None else anchor,
                                           _drop, self._drop_fn, addr, self._gen)
        # Recorded in this process's ledger: if it is killed, the run's head
        # drops the reference for it (pyext/refs.go).
        _core.gocore().RefAdopt(addr, self._drop_fn == 'ChannelRelease')

    def _setup(self, addr):
        """Take over one counted reference to addr (subclasses bind more)."""
        self._adopt(addr)

    @classmethod
    def _attach(cls, addr):
        """The handle rebuilt where a pickle is loaded; it adopts the
        reference the pickling process took for it."""
        self = cls.__new__(cls)
        _runtime.current()
        self._setup(addr)
        return self

    def __reduce__(self):
        return self.__class__._attach, (self._reference_for_pickle(),)

    def _reference_for_pickle(self):
        _core.call(getattr(_core.gocore(), self._retain_fn), self._addr)
        return self._addr


def _drop(fn_name, addr, gen):
    # A reference of an ended run points at memory that no longer exists.
    if _runtime.alive(gen):
        try:
            go = _core.gocore()
            go.RefForget(addr)      # first: killed in between, it leaks instead of dropping twice
            _core.call(getattr(go, fn_name), addr)
        except Exception:
            pass
