#
# The messages between a dragon_mp Pool and its workers
#
# dragon_mp/_pool_protocol.py -- modelled on CPython 3.11 Lib/multiprocessing/pool.py
# (Copyright (c) 2006-2008, R Oudkerk, licensed to PSF under a Contributor
# Agreement); the remote traceback classes are copied from it.
#
"""How a dragon_mp Pool and its worker processes talk (part of dragon_mp.pool;
see its docstring for the whole design).

* The messages on the pool's two queues: task and result messages (a pickle
  followed by a fixed trailer), the tuple messages the result handler gets
  (``_STARTED``, ``_DIED``), and ``_message_io``/``_decode``, the one way both
  sides put and take them.
* The errors a task's result carries back: the worker's exception with its
  traceback as text (``ExceptionWithTraceback`` -> ``RemoteTraceback``), a
  result that could not be sent (``MaybeEncodingError``), a worker lost while
  running the task (``WorkerLostError``).
* The workers' "current task" slots in shared memory (``_Slots``), through
  which the parent learns which task a dead worker held.

Stdlib only: the worker function and the Pool, in dragon_mp.pool, import this.
"""

__all__ = []   # internal: dragon_mp.pool offers these names

import io
import pickle
import struct
import threading
import traceback

from multiprocessing import util
from multiprocessing.reduction import ForkingPickler

# The public classes below name dragon_mp.pool as their module, where users
# (and stdlib's multiprocessing.pool) have them: reprs, tracebacks and
# pickles by reference show dragon_mp.pool.WorkerLostError, not this module.
_PUBLIC_MODULE = 'dragon_mp.pool'

#
# Messages on the pool's queues
#

# Tags of the tuple messages on the result queue (see dragon_mp.pool's
# docstring);
# results themselves travel as bytes.
_STARTED = 0
_DIED = 2

# Trailers of the byte messages: a task is pickle((func, args, kwds)) followed
# by (job, i); a result is pickle((success, value)) followed by (job, i, pid).
# pickle.loads ignores bytes past the end of the pickle, so the receiver
# unpickles the message as it is and reads the trailer with unpack_from.
_TASK_TRAILER = struct.Struct('<qq')
_RESULT_TRAILER = struct.Struct('<qqq')

def _dumps(obj):
    # ForkingPickler: the reducers multiprocessing registers (connections,
    # sockets, ...) apply as they would for a stdlib queue; bytes, not the
    # memoryview ForkingPickler.dumps returns, so the payload itself pickles.
    buf = io.BytesIO()
    ForkingPickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    return buf.getvalue()

_loads = pickle.loads
_last_byte = struct.Struct('B').unpack_from
_STOP = 46      # pickle's STOP opcode ('.'): the last byte of every pickle, never of a trailer

def _message_io(q):
    """(put_with(obj, trailer=None), get(block=True, timeout=None)) for the
    pool's messages on queue q.

    put_with(obj, trailer) puts pickle(obj) + trailer as one message (a task
    or a result; without a trailer it is q.put(obj)), get takes the next
    message as it is. On a dragon_mp Queue these are its C methods: the
    pickle goes straight into the pool (each large buffer of obj copied
    once; the parts are never joined) and get hands over bytes or a
    _fastpath.Message over the pool block, which the worker or the result
    handler unpickles in place. On any other queue (a stdlib context's
    queue) a message is the bytes of pickle + trailer and
    get unpickles what was put as an object.
    """
    fast = getattr(q, '_fast', None)
    if fast is not None:
        return fast.put_with, fast.get_msg

    def put_with(obj, trailer=None):
        q.put(obj if trailer is None else _dumps(obj) + trailer)
    return put_with, q.get

def _decode(msg):
    """A message from _message_io's get: a result or task message as it is,
    anything put as an object (None, a tuple) unpickled."""
    cls = msg.__class__
    if cls is bytes:                    # the common case: a small message
        return _loads(msg) if msg[-1] == _STOP else msg
    if msg is None or cls is tuple:
        return msg
    return _loads(msg) if _last_byte(msg, len(msg) - 1)[0] == _STOP else msg

#
# Errors a task's result can carry
#

# Hack to embed stringification of remote traceback in local traceback
class RemoteTraceback(Exception):
    __module__ = _PUBLIC_MODULE
    def __init__(self, tb):
        self.tb = tb
    def __str__(self):
        return self.tb

class ExceptionWithTraceback:
    def __init__(self, exc, tb):
        tb = traceback.format_exception(type(exc), exc, tb)
        tb = ''.join(tb)
        self.exc = exc
        self.tb = '\n"""\n%s"""' % tb
    def __reduce__(self):
        return rebuild_exc, (self.exc, self.tb)

def rebuild_exc(exc, tb):
    exc.__cause__ = RemoteTraceback(tb)
    return exc

class MaybeEncodingError(Exception):
    """Wraps possible unpickleable errors, so they can be
    safely sent through the queue."""
    __module__ = _PUBLIC_MODULE

    def __init__(self, exc, value):
        self.exc = repr(exc)
        self.value = repr(value)
        super(MaybeEncodingError, self).__init__(self.exc, self.value)

    def __str__(self):
        return "Error sending result: '%s'. Reason: '%s'" % (self.value,
                                                             self.exc)

    def __repr__(self):
        return "<%s: %s>" % (self.__class__.__name__, self)


class WorkerLostError(Exception):
    """The worker process running a task exited before returning its result
    (killed by a signal, os._exit(), a crash in C code...)."""
    __module__ = _PUBLIC_MODULE


#
# The workers' task slots
#

# Per-worker "current task" slots (a shared array of int64, three words per
# worker): the worker writes job and i, then 1 into the state word before it
# runs a task, and 0 after it has put the result. Only the worker handler
# reads a slot, once the worker has exited (see "Worker death" in
# dragon_mp.pool's docstring).
_SLOT_WORDS = 3

class _Slots:
    """The workers' "current task" slots: a shared int64 array (three words
    per worker: state, job, i) and which worker holds which slot (parent
    only). `lock` is held while workers are added or reaped: the worker
    handler does both, and stdlib lets the program call _repopulate_pool()
    from its own thread as well."""

    def __init__(self, array, n):
        self.array = array
        self.words = memoryview(array).cast('B').cast('q')
        self.owners = [None] * n
        self.lock = threading.RLock()

    @classmethod
    def create(cls, ctx, n):
        """Slots for n workers, or None when the context has no shared
        arrays (the workers then announce each task with a message)."""
        make = getattr(ctx, 'RawArray', None)
        if make is None:
            return None
        try:
            return cls(make('q', n * _SLOT_WORDS), n)
        except Exception as e:
            util.debug('pool: no task slots (%r); announcing tasks instead' % (e,))
            return None

    def reserve(self):
        k = self.owners.index(None)
        self.owners[k] = True
        base = k * _SLOT_WORDS
        self.words[base:base + _SLOT_WORDS] = memoryview(
            bytes(8 * _SLOT_WORDS)).cast('q')
        return k

    def release(self, owner):
        """Free the slot of a worker that has exited; (job, i) of the task it
        had claimed and not finished, or None."""
        for k, o in enumerate(self.owners):
            if o is owner:
                self.owners[k] = None
                base = k * _SLOT_WORDS
                words = self.words
                if words[base] == 1:
                    return (words[base + 1], words[base + 2])
                return None
        return None
