"""Shared memory blocks for ctypes objects, on the run's pool.

stdlib's multiprocessing.heap carves blocks out of mmap'd arenas whose file
descriptors are passed to children at spawn time. dragon_mp has one shared
heap per run already, the pool every process of the run maps: a
BufferWrapper here is a raw object in that pool (zeroed, reference-counted
across processes, freed with its last reference), and pickling one hands the
receiver its own reference to the same bytes, from any process of the run to
any other (not only at spawn time).

Arena and Heap are stdlib's classes, re-exported so that code naming them
keeps working; dragon_mp's shared objects do not use them.
"""

import ctypes
import sys

from multiprocessing.heap import Arena, Heap       # noqa: F401  re-exported

from . import _core, _fast, _runtime
from ._shared import SharedObject

__all__ = ['BufferWrapper']


class BufferWrapper(SharedObject):
    """`size` zeroed bytes of shared memory; create_memoryview() maps them.

    The memoryviews (and ctypes objects built on them) keep the wrapper, and
    so the shared reference, alive.
    """

    _retain_fn = 'SyncRetain'
    _drop_fn = 'SyncRelease'

    def __init__(self, size):
        if size < 0:
            raise ValueError("Size {0:n} out of range".format(size))
        if sys.maxsize <= size:
            raise OverflowError("Size {0:n} too large".format(size))
        _runtime.current()
        self._adopt(_core.call(_core.gocore().RawCreate, size))
        self._size = size
        self._map()

    @classmethod
    def _attach(cls, addr):
        self = cls.__new__(cls)
        _runtime.current()
        self._adopt(addr)       # adopt first: a failure below still drops the reference
        self._size = _core.call(_core.gocore().RawSize, addr)
        if self.remote:
            self._pointer = None    # another node's memory: read and written by copy
        else:
            self._map()
        return self

    @property
    def remote(self):
        """True when the block lives on another node of a multi-node run."""
        return (self._addr >> 48) != _runtime.node_index()

    # dmp_raw_read/dmp_raw_write(addr, offset, n, buffer) (pyext/remote_data.go),
    # through _fastpath.bind: the buffer goes by its address (a ctypes buffer's,
    # alive until the call returns); offset and n as Go reads them, int64.

    def read(self, offset, n):
        """A copy of n bytes at offset (works on any node)."""
        buf = ctypes.create_string_buffer(n)
        rc = _fast.bound('dmp_raw_read', 'uiiu')(self._addr, offset, n, ctypes.addressof(buf))
        if rc < 0:
            _core.raise_for(rc)
        return buf.raw

    def write(self, offset, data):
        """Copy data to offset (works on any node)."""
        data = bytes(data)
        buf = (ctypes.c_char * len(data)).from_buffer_copy(data)
        rc = _fast.bound('dmp_raw_write', 'uiiu')(self._addr, offset, len(data), ctypes.addressof(buf))
        if rc < 0:
            _core.raise_for(rc)

    def _map(self):
        # Only numbers here: the wrapper refers to nothing that refers back to
        # it, so dropping the last user frees the block at once, without gc.
        offset = _core.call(_core.gocore().RawOffset, self._addr)
        base = _core.fast().pool_base()
        if not base:
            raise ValueError('dragon_mp runtime is not running in this process')
        self._pointer = base + offset

    def __reduce__(self):
        return BufferWrapper._attach, (self._reference_for_pickle(),)

    def create_memoryview(self):
        """A writable memoryview (format 'B') of the whole block.

        The view keeps the wrapper alive. Like every dragon_mp object, it is
        valid while the run lasts: the pool is unmapped when the run ends.
        """
        if self._pointer is None:
            raise ValueError('shared memory of another node cannot be mapped here '
                             '(sharedctypes objects of another node work by copy)')
        buf = (ctypes.c_ubyte * self._size).from_address(self._pointer)
        buf._wrapper = self
        return memoryview(buf).cast('B')

    def __repr__(self):
        return f'<{type(self).__name__} size={self._size} address={self._addr:#x}>'


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'heap')
