"""ctypes objects in the run's shared memory: stdlib's multiprocessing.sharedctypes.

The API and behaviour are stdlib's (Lib/multiprocessing/sharedctypes.py),
line for line where possible; only the memory differs. A RawValue/RawArray
is a ctypes object laid over a block of the run's pool (a
dragon_mp.heap.BufferWrapper), so every process of the run that receives it
maps the same bytes. The object keeps its block alive (`obj._wrapper`); the
block is freed when the last object using it, in any process, is gone.

Value and Array wrap the object with a lock: by default a
dragon_mp.synchronize.RLock (a futex word in the pool), falling back to
dragon_mp.synchronize.Lock where RLock is not available.

As in stdlib, the ctypes objects and their synchronized wrappers pickle only
while a process is being started (a Process argument); the lock and the
memory then travel as pool addresses.
"""

import ctypes
import weakref

from multiprocessing import sharedctypes as _stdlib
from multiprocessing.context import assert_spawning

from . import heap
from .reduction import ForkingPickler as _ForkingPickler

__all__ = ['RawValue', 'RawArray', 'Value', 'Array', 'copy', 'synchronized']

typecode_to_type = {
    'c': ctypes.c_char,     'u': ctypes.c_wchar,
    'b': ctypes.c_byte,     'B': ctypes.c_ubyte,
    'h': ctypes.c_short,    'H': ctypes.c_ushort,
    'i': ctypes.c_int,      'I': ctypes.c_uint,
    'l': ctypes.c_long,     'L': ctypes.c_ulong,
    'q': ctypes.c_longlong, 'Q': ctypes.c_ulonglong,
    'f': ctypes.c_float,    'd': ctypes.c_double
    }


def _new_value(type_):
    size = ctypes.sizeof(type_)
    wrapper = heap.BufferWrapper(size)
    return rebuild_ctype(type_, wrapper, None)


def _new_lock(ctx):
    """The lock of a Value/Array/synchronized() made without one.

    stdlib uses ctx.RLock(); a dragon_mp context (or none) gets dragon_mp's
    own RLock, or its Lock while RLock does not exist.
    """
    from . import context
    if ctx is not None and not isinstance(ctx, context.BaseContext):
        return ctx.RLock()
    from . import synchronize
    cls = getattr(synchronize, 'RLock', None) or synchronize.Lock
    return cls(ctx=ctx or context._default_context)


def RawValue(typecode_or_type, *args):
    '''
    Returns a ctypes object allocated from shared memory
    '''
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    '''
    Returns a ctypes array allocated from shared memory
    '''
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        type_ = type_ * size_or_initializer
        obj = _new_value(type_)
        ctypes.memset(ctypes.addressof(obj), 0, ctypes.sizeof(obj))
        return obj
    else:
        type_ = type_ * len(size_or_initializer)
        result = _new_value(type_)
        result.__init__(*size_or_initializer)
        return result


def Value(typecode_or_type, *args, lock=True, ctx=None):
    '''
    Return a synchronization wrapper for a Value
    '''
    obj = RawValue(typecode_or_type, *args)
    if lock is False:
        return obj
    if lock in (True, None):
        lock = _new_lock(ctx)
    if not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return synchronized(obj, lock, ctx=ctx)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    '''
    Return a synchronization wrapper for a RawArray
    '''
    obj = RawArray(typecode_or_type, size_or_initializer)
    if lock is False:
        return obj
    if lock in (True, None):
        lock = _new_lock(ctx)
    if not hasattr(lock, 'acquire'):
        raise AttributeError("%r has no method 'acquire'" % lock)
    return synchronized(obj, lock, ctx=ctx)


def copy(obj):
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


def synchronized(obj, lock=None, ctx=None):
    assert not isinstance(obj, _stdlib.SynchronizedBase), 'object already synchronized'

    # A RemoteCtype (another node's object) is wrapped as the type it stands for.
    cls = obj._type if isinstance(obj, RemoteCtype) else type(obj)
    if issubclass(cls, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    elif issubclass(cls, ctypes.Array):
        if cls._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    else:
        try:
            scls = class_cache[cls]
        except KeyError:
            names = [field[0] for field in cls._fields_]
            d = {name: make_property(name) for name in names}
            classname = 'Synchronized' + cls.__name__
            scls = class_cache[cls] = type(classname, (SynchronizedBase,), d)
        return scls(obj, lock, ctx)

#
# Functions for pickling/unpickling
#
# Both work on any wrapper with create_memoryview() (ours or stdlib's), so it
# does not matter which module's reducer ForkingPickler holds for a ctypes
# type when both modules are used in one program.
#


def reduce_ctype(obj):
    assert_spawning(obj)
    if isinstance(obj, ctypes.Array):
        return rebuild_ctype, (obj._type_, obj._wrapper, obj._length_)
    else:
        return rebuild_ctype, (type(obj), obj._wrapper, None)


def rebuild_ctype(type_, wrapper, length):
    if length is not None:
        type_ = type_ * length
    _ForkingPickler.register(type_, reduce_ctype)
    if getattr(wrapper, 'remote', False):
        return RemoteCtype(type_, wrapper)
    buf = wrapper.create_memoryview()
    obj = type_.from_buffer(buf)
    obj._wrapper = wrapper
    return obj



class RemoteCtype:
    """A ctypes object of another node (multi-node runs): every access copies.

    Shared memory cannot be mapped across nodes, so a RawValue/RawArray (and
    the object inside a Value/Array) that reaches another node becomes this
    proxy: `.value`, `.raw`, indexing, slicing, len() and iteration read or
    write the owner's bytes through the transport. An element or a scalar is
    read or written in one piece; use the Value/Array lock for anything
    bigger, as on one node.
    """

    remote_copy = True      # tells code that maps ctypes memory to take another way

    def __init__(self, type_, wrapper):
        self._type = type_
        self._wrapper = wrapper

    def _load(self):
        return self._type.from_buffer_copy(self._wrapper.read(0, ctypes.sizeof(self._type)))

    def _store(self, obj):
        self._wrapper.write(0, bytes(memoryview(obj).cast('B')))

    def __reduce__(self):
        return rebuild_ctype, (self._type, self._wrapper, None)

    @property
    def value(self):
        return self._load().value

    @value.setter
    def value(self, v):
        obj = self._load()
        obj.value = v
        self._store(obj)

    @property
    def raw(self):
        return self._load().raw

    @raw.setter
    def raw(self, v):
        obj = self._load()
        obj.raw = v
        self._store(obj)

    def __len__(self):
        return self._type._length_

    def __getattr__(self, name):
        # A Structure's fields (read by copy).
        fields = dict(getattr(self._type, '_fields_', ()))
        if name in fields:
            return getattr(self._load(), name)
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name.startswith('_'):
            return object.__setattr__(self, name, value)
        if name in dict(getattr(self._type, '_fields_', ())):
            obj = self._load()
            setattr(obj, name, value)
            self._store(obj)
            return
        object.__setattr__(self, name, value)

    def _element(self, i):
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError('invalid index')
        return i, self._type._type_, ctypes.sizeof(self._type._type_)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._load()[i]
        i, etype, size = self._element(i)
        return self._type.from_buffer_copy(self._wrapper.read(0, ctypes.sizeof(self._type)))[i] \
            if size == 0 else _value_of(etype.from_buffer_copy(self._wrapper.read(i * size, size)))

    def __setitem__(self, i, v):
        if isinstance(i, slice):
            obj = self._load()
            obj[i] = v
            self._store(obj)
            return
        i, etype, size = self._element(i)
        e = etype(v) if not isinstance(v, etype) else v
        self._wrapper.write(i * size, bytes(memoryview(e).cast('B')))

    def __iter__(self):
        return iter(self._load())

    def __repr__(self):
        return f'<RemoteCtype {self._type.__name__} on node {self._wrapper._addr >> 48}>'


def _value_of(obj):
    # A simple ctypes instance's Python value (as indexing a ctypes array gives).
    return obj.value if isinstance(obj, ctypes._SimpleCData) else obj

#
# Function to create properties (the same as stdlib's)
#


make_property = _stdlib.make_property
class_cache = weakref.WeakKeyDictionary()

#
# Synchronized wrappers: stdlib's classes (isinstance checks against
# multiprocessing.sharedctypes hold), with dragon_mp's default lock and a
# pickle that rebuilds them with this module's synchronized().
#


class SynchronizedBase(_stdlib.SynchronizedBase):

    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        if lock:
            self._lock = lock
        else:
            self._lock = _new_lock(ctx)
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __reduce__(self):
        assert_spawning(self)
        return synchronized, (self._obj, self._lock)


class Synchronized(SynchronizedBase, _stdlib.Synchronized):
    pass


class SynchronizedArray(SynchronizedBase, _stdlib.SynchronizedArray):
    pass


class SynchronizedString(SynchronizedArray, _stdlib.SynchronizedString):
    pass


from .context import _default_context as _ctx    # noqa: E402
get_context = _ctx.get_context

from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'sharedctypes')
