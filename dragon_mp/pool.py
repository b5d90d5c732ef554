#
# Module providing the `Pool` class for managing a process pool
#
# dragon_mp/pool.py -- modelled on CPython 3.11 Lib/multiprocessing/pool.py
# (Copyright (c) 2006-2008, R Oudkerk, licensed to PSF under a Contributor
# Agreement); the pure-logic parts (chunking, result classes, remote
# tracebacks) are copied from it.
#
"""A process pool written against the *public* queue API.

Why not stdlib's pool
---------------------
``multiprocessing.pool.Pool`` is wired to pipes: it reads
``SimpleQueue._reader``/``_writer`` directly, sleeps in
``connection.wait()`` on reader file descriptors and drains the task pipe in
``_help_stuff_finish``.  dragon_mp queues are shared-memory channels woken by
futexes; they have no file descriptors.  This Pool therefore only uses
``q.put(obj)``, ``q.get(block=True, timeout=None)`` (raising ``queue.Empty``)
and ``q.close()``, plus the stdlib Process API (start, join(timeout),
is_alive, exitcode, terminate, kill, pid).

Layout (same names and roles as stdlib)
---------------------------------------
* ``_inqueue`` (context Queue): parent -> workers.  Items are ``None`` (stop)
  or a task message: the pickled ``(func, args, kwds)`` followed by
  ``(job, i)`` packed as two int64 (``pickle.loads`` ignores what follows
  the pickle, so the worker unpickles the message as it is).  See
  ``_message_io``: on a dragon_mp queue the pickle goes straight into the
  pool (large buffers copied once) and the message is taken as it is.
* ``_outqueue`` (context Queue): workers (and the worker handler) -> parent.
  Items are ``None`` (sentinel from the task handler after close), result
  messages (the pickled ``(success, value)`` followed by ``(job, i, pid)``),
  ``(_DIED, pid, exitcode, claimed)`` posted by the worker handler when it
  reaps a worker, and ``(_STARTED, pid, job, i)`` from workers without a
  task slot (below).
* ``_slots`` (``ctx.RawArray('q', 3 * processes)``): one "current task" slot
  per worker, see "Worker death".
* ``_taskqueue`` (``queue.SimpleQueue``, parent only): ``apply_async``/
  ``map_async``/``imap`` put ``(task generator, set_length)`` here.
* ``_change_notifier`` (``queue.SimpleQueue``, parent only): wakes the worker
  handler on close/terminate/cache drained.

Three daemon threads in the parent, as in stdlib:

* task handler: takes task generators from ``_taskqueue``, pickles each task
  *itself* (so an unpicklable argument fails that task's result with the
  pickling exception and the pool stays usable) and puts the bytes on
  ``_inqueue``.
* result handler: ``_outqueue.get(timeout=0.1)`` in a loop (no fds to
  select on; the slices keep shutdown prompt), unpickles payloads (an
  unpicklable result fails its task instead of killing the thread) and sets
  the results in ``_cache``.

Per-task cost (a trivial ``apply_async`` is all overhead, and the parent's
three threads share one GIL): tasks and results whose function and values
are builtin scalars are pickled with ``pickle.dumps`` (the same bytes
ForkingPickler makes, without building one per call), and an ``ApplyResult``
waits on a bare lock instead of a ``threading.Event``.
* worker handler: every 0.1 s (or when notified) reaps exited workers,
  reports each to the result handler with ``_DIED`` and starts replacements
  ("maintain pool", including after ``maxtasksperchild``).

Worker death
------------
A worker claims every task it takes before running it: it writes ``job`` and
``i`` into its slot in shared memory, then 1 into the slot's state word, and
writes 0 there after it has put the result (a few stores, no message: an
earlier version sent a ``_STARTED`` message per task, which cost as much as
the result itself).  Contexts without ``RawArray`` fall back to that message.
When the worker handler reaps an exited worker it reads the slot (final: the
worker is dead), frees it for the replacement and posts ``_DIED`` with the
claimed ``(job, i)`` (or None) through ``_outqueue``, after everything the
dead worker put.  The result handler remembers each worker's last result: a
claimed task whose result is not that one was really lost (a worker dying
between its put and clearing the state word lost nothing), and is failed with
:class:`WorkerLostError` (stdlib 3.11 leaves it pending forever); the worker
is replaced.  Limits: the result needs a queue whose ``put`` has completed
when it returns (dragon_mp channels; stdlib's ``multiprocessing.Queue``
flushes from a feeder thread, so a worker dying just after putting a result
can lose it: reported as lost while the state word still says 1, pending
forever once it says 0, as in stdlib), and a worker killed between taking a
task and claiming it (a few bytecodes) loses that task silently, as in
stdlib.  A worker killed while it holds a queue's internal
lock is the queue's business (dragon_mp's mutex takes over a dead holder's
lock; stdlib's pipes stay locked).

Shutdown protocol
-----------------
* ``close()``: state CLOSE and notify the worker handler.  It keeps
  maintaining workers until ``_cache`` is empty, then puts ``None`` on
  ``_taskqueue``; the task handler then puts ``None`` on ``_outqueue`` (the
  result handler exits once the cache is empty) and one ``None`` per worker
  on ``_inqueue`` (workers exit).  ``join()`` joins the three threads and the
  workers.
* ``terminate()`` (also ``__exit__``, the garbage-collection finalizer and
  interpreter exit via ``multiprocessing.util.Finalize``, exitpriority 15):
  every thread is told TERMINATE and notices within one 0.1 s slice; queued
  tasks are drained; workers get ``terminate()`` (SIGTERM) and, if still
  alive after a grace period (1 s), ``kill()``; threads and workers are
  joined and both queues closed (``cancel_join_thread()`` first, if the queue
  has it).  Unlike stdlib, nothing is written to ``_outqueue`` on this path:
  a worker killed while holding a queue's write lock must not block the
  parent.  Results still pending stay pending (never ready), as in stdlib.
"""

__all__ = ['Pool', 'ThreadPool', 'AsyncResult', 'ApplyResult', 'MapResult',
           'IMapIterator', 'IMapUnorderedIterator', 'WorkerLostError',
           'RemoteTraceback', 'MaybeEncodingError']

#
# Imports (stdlib only: nothing from dragon_mp at import time)
#

import collections
import contextlib
import io
import itertools
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
import traceback
import types
import warnings

from _thread import allocate_lock as _allocate_lock
from multiprocessing import util
from multiprocessing.context import TimeoutError
from multiprocessing.reduction import ForkingPickler
# ThreadPool runs workers as threads of this process and never touches the
# context's queues or processes, so stdlib's is the right one to offer.
from multiprocessing import pool as _stdlib_pool
from multiprocessing.pool import ThreadPool           # noqa: F401

#
# Constants representing the state of a pool
#

INIT = "INIT"
RUN = "RUN"
CLOSE = "CLOSE"
TERMINATE = "TERMINATE"

# Handler threads wait on the cross-process queues in slices of this length:
# queue.get has no file descriptor to select on together with a "stop" event,
# so the slice bounds how late a thread notices close/terminate.
_POLL_INTERVAL = 0.1

# How long terminate() waits for SIGTERMed workers before SIGKILLing them.
_TERMINATE_GRACE = 1.0

# Tags of the tuple messages on the result queue (see the module docstring);
# results themselves travel as bytes.
_STARTED = 0
_DIED = 2

# Trailers of the byte messages: a task is pickle((func, args, kwds)) followed
# by (job, i); a result is pickle((success, value)) followed by (job, i, pid).
# pickle.loads ignores bytes past the end of the pickle, so the receiver
# unpickles the message as it is and reads the trailer with unpack_from.
_TASK_TRAILER = struct.Struct('<qq')
_RESULT_TRAILER = struct.Struct('<qqq')

# Per-worker "current task" slots (a shared array of int64, three words per
# worker): the worker writes job and i, then 1 into the state word before it
# runs a task, and 0 after it has put the result. Only the worker handler
# reads a slot, once the worker has exited (see "Worker death").
_SLOT_WORDS = 3

#
# Miscellaneous
#

job_counter = itertools.count()

def mapstar(args):
    return list(map(*args))

def starmapstar(args):
    return list(itertools.starmap(args[0], args[1]))

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
    handler unpickles in place. On any other queue (dragon_mp's ctypes path,
    a stdlib context's queue) a message is the bytes of pickle + trailer and
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
# Hack to embed stringification of remote traceback in local traceback
#

class RemoteTraceback(Exception):
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

#
# Code run by worker processes
#

class MaybeEncodingError(Exception):
    """Wraps possible unpickleable errors, so they can be
    safely sent through the queue."""

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


def _describe_exitcode(exitcode):
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = 'unknown signal'
        return 'killed by signal %d (%s)' % (-exitcode, name)
    return 'exited with exitcode %r' % (exitcode,)


def worker(inqueue, outqueue, initializer=None, initargs=(), maxtasks=None,
           wrap_exception=False, slots=None, slot=None):
    if (maxtasks is not None) and not (isinstance(maxtasks, int)
                                       and maxtasks >= 1):
        raise AssertionError("Maxtasks {!r} is not valid".format(maxtasks))
    if hasattr(outqueue, '_synchronous_puts'):
        # The pool learns which task a worker holds from what it puts here;
        # on another node, a put that could still be in flight when the node
        # is lost would hide a lost task: every put waits for the owner.
        outqueue._synchronous_puts()
    put, _ = _message_io(outqueue)
    _, get = _message_io(inqueue)
    # The parent knows its workers by Process.pid; a dragon_mp or stdlib
    # child is that very process, so os.getpid() names us to the parent.
    pid = os.getpid()
    unpack_task = _TASK_TRAILER.unpack_from
    pack_result = _RESULT_TRAILER.pack
    if slots is not None and not getattr(slots, 'remote_copy', False):
        # Our "current task" slot: three int64 words (state, job, i). A worker
        # on another node of a multi-node run cannot map them (its slots are a
        # sharedctypes.RemoteCtype): it announces its tasks instead.
        words = memoryview(slots).cast('B').cast('q')
        state = slot * _SLOT_WORDS
        word_job, word_i = state + 1, state + 2
    else:
        words = None

    if initializer is not None:
        initializer(*initargs)

    completed = 0
    while maxtasks is None or (maxtasks and completed < maxtasks):
        try:
            task = get()
        except (EOFError, OSError):
            util.debug('worker got EOFError or OSError -- exiting')
            break

        if _decode(task) is None:
            util.debug('worker got sentinel -- exiting')
            break

        job, i = unpack_task(task, len(task) - _TASK_TRAILER.size)
        # Claim the task before running it: if we die now, the parent can
        # fail exactly this task instead of waiting for it forever.
        if words is not None:
            words[word_job] = job
            words[word_i] = i
            words[state] = 1
        else:
            put((_STARTED, pid, job, i))
        func = None
        try:
            # Unpickling happens here, not in get(): a function that cannot be
            # imported in the child fails its task instead of the worker.
            func, args, kwds = _loads(task)
            task = None         # a large task's pool block goes back now
            result = (True, func(*args, **kwds))
        except Exception as e:
            if wrap_exception and func is not _helper_reraises_exception:
                e = ExceptionWithTraceback(e, e.__traceback__)
            result = (False, e)
        # put_with pickles before it sends: a result that cannot be pickled
        # raises here, nothing was sent, and the task gets the error (a
        # queue that pickles in a feeder thread would drop it: a hang).
        trailer = pack_result(job, i, pid)
        try:
            put(result, trailer)
        except Exception as e:
            wrapped = MaybeEncodingError(e, result[1])
            util.debug("Possible encoding error while sending result: %s" % (
                wrapped))
            put((False, wrapped), trailer)
        if words is not None:
            words[state] = 0

        task = job = result = func = args = kwds = None
        completed += 1
    util.debug('worker exiting after %d tasks' % completed)

def _helper_reraises_exception(ex):
    'Pickle-able helper function for use by _guarded_task_generation.'
    raise ex

#
# Class representing a process pool
#

class _PoolCache(dict):
    """
    Class that implements a cache for the Pool class that will notify
    the pool management threads every time the cache is emptied. The
    notification is done by the use of a queue that is provided when
    instantiating the cache.
    """
    def __init__(self, /, *args, notifier=None, **kwds):
        self.notifier = notifier
        super().__init__(*args, **kwds)

    def __delitem__(self, item):
        super().__delitem__(item)

        # Notify that the cache is empty. This is important because the
        # pool keeps maintaining workers until the cache gets drained. This
        # wakes the worker handler at once instead of at its next poll.
        if not self:
            self.notifier.put(None)

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

def _report_callback_error(what):
    # A raising callback killed stdlib's result handler (and hung every
    # later get()); report it like an unhandled thread exception and go on.
    print('Exception in dragon_mp.pool %s:' % what, file=sys.stderr)
    traceback.print_exc()

class Pool(_stdlib_pool.Pool):
    '''
    Class which supports an async version of applying functions to arguments.
    '''
    # A subclass of stdlib's Pool only so that code checking the type (dask's
    # isinstance(pool, multiprocessing.pool.Pool)) accepts it: every method
    # stdlib's Pool has is defined here, none of its machinery runs.
    _wrap_exception = True

    @staticmethod
    def Process(ctx, *args, **kwds):
        return ctx.Process(*args, **kwds)

    def __init__(self, processes=None, initializer=None, initargs=(),
                 maxtasksperchild=None, context=None):
        # Attributes initialized early to make sure that they exist in
        # __del__() if __init__() raises an exception
        self._pool = []
        self._state = INIT

        if context is None:
            # Lazy: dragon_mp.context may not be importable when this module
            # is (and importing it must not load the Go core).
            from dragon_mp import context as _dragon_context
            context = _dragon_context._default_context
        self._ctx = context

        # Validate before creating queues: they are shared-memory objects.
        if processes is None:
            cpu_count = getattr(self._ctx, 'cpu_count', None)
            processes = (cpu_count() if cpu_count is not None
                         else os.cpu_count()) or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None:
            if not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0:
                raise ValueError("maxtasksperchild must be a positive int or None")

        if initializer is not None and not callable(initializer):
            raise TypeError('initializer must be a callable')

        self._setup_queues()
        self._slots = _Slots.create(self._ctx, processes)
        self._taskqueue = queue.SimpleQueue()
        # The _change_notifier queue exists to wake up self._handle_workers()
        # when the cache (self._cache) is empty or when there is a change in
        # the _state variable of the thread that runs _handle_workers.  Only
        # threads of this process use it, so a thread queue is enough.
        self._change_notifier = queue.SimpleQueue()
        self._cache = _PoolCache(notifier=self._change_notifier)
        self._maxtasksperchild = maxtasksperchild
        self._initializer = initializer
        self._initargs = initargs

        self._processes = processes
        try:
            self._repopulate_pool()
        except Exception:
            for p in self._pool:
                if p.exitcode is None:
                    p.terminate()
            for p in self._pool:
                p.join()
            self._close_queues(self._inqueue, self._outqueue)
            raise

        # The threads get the pieces they need, never `self`: the pool must
        # stay collectable so its finalizer can run.
        self._worker_handler = threading.Thread(
            target=Pool._handle_workers,
            args=(self._cache, self._taskqueue, self._ctx, self.Process,
                  self._processes, self._pool, self._inqueue, self._outqueue,
                  self._initializer, self._initargs, self._maxtasksperchild,
                  self._wrap_exception, self._change_notifier, self._slots),
            name='dragon_mp.pool-worker-handler'
            )
        self._worker_handler.daemon = True
        self._worker_handler._state = RUN
        self._worker_handler.start()


        self._task_handler = threading.Thread(
            target=Pool._handle_tasks,
            args=(self._taskqueue, _message_io(self._inqueue)[0], self._outqueue,
                  self._pool, self._cache),
            name='dragon_mp.pool-task-handler'
            )
        self._task_handler.daemon = True
        self._task_handler._state = RUN
        self._task_handler.start()

        self._result_handler = threading.Thread(
            target=Pool._handle_results,
            args=(self._outqueue, self._cache),
            name='dragon_mp.pool-result-handler'
            )
        self._result_handler.daemon = True
        self._result_handler._state = RUN
        self._result_handler.start()

        self._terminate = util.Finalize(
            self, self._terminate_pool,
            args=(self._taskqueue, self._inqueue, self._outqueue, self._pool,
                  self._change_notifier, self._worker_handler, self._task_handler,
                  self._result_handler, self._cache),
            exitpriority=15
            )
        self._state = RUN

    # Copy globals as function locals to make sure that they are available
    # during Python shutdown when the Pool is destroyed.
    def __del__(self, _warn=warnings.warn, RUN=RUN):
        if self._state == RUN:
            _warn(f"unclosed running multiprocessing pool {self!r}",
                  ResourceWarning, source=self)
            if getattr(self, '_change_notifier', None) is not None:
                self._change_notifier.put(None)

    def __repr__(self):
        cls = self.__class__
        return (f'<{cls.__module__}.{cls.__qualname__} '
                f'state={self._state} '
                f'pool_size={len(self._pool)}>')

    @staticmethod
    def _join_exited_workers(pool, outqueue, slots=None):
        """Cleanup after any worker processes which have exited (lifetime
        reached, or died).  Each one is reported to the result handler, which
        fails the task it was running, if any.  Returns True if any workers
        were cleaned up.
        """
        cleaned = False
        for i in reversed(range(len(pool))):
            worker = pool[i]
            exitcode = worker.exitcode
            if exitcode is not None:
                # worker exited
                util.debug('cleaning up worker %d' % i)
                worker.join()
                cleaned = True
                del pool[i]
                # The task it had claimed (its slot is final: it has exited).
                claimed = None
                if slots is not None:
                    with slots.lock:
                        claimed = slots.release(worker)
                # Through the result queue, not a side channel: it then
                # arrives after every message the worker managed to put.
                try:
                    outqueue.put((_DIED, worker.pid, exitcode, claimed))
                except (OSError, ValueError):
                    pass
        return cleaned

    def _repopulate_pool(self):
        return self._repopulate_pool_static(self._ctx, self.Process,
                                            self._processes,
                                            self._pool, self._inqueue,
                                            self._outqueue, self._initializer,
                                            self._initargs,
                                            self._maxtasksperchild,
                                            self._wrap_exception,
                                            self._slots)

    @staticmethod
    def _repopulate_pool_static(ctx, Process, processes, pool, inqueue,
                                outqueue, initializer, initargs,
                                maxtasksperchild, wrap_exception, slots=None):
        """Bring the number of pool processes up to the specified number,
        for use after reaping workers which have exited.
        """
        with slots.lock if slots is not None else contextlib.nullcontext():
            Pool._add_workers(ctx, Process, processes, pool, inqueue, outqueue, initializer,
                              initargs, maxtasksperchild, wrap_exception, slots)

    @staticmethod
    def _add_workers(ctx, Process, processes, pool, inqueue, outqueue, initializer,
                     initargs, maxtasksperchild, wrap_exception, slots):
        for i in range(processes - len(pool)):
            extra = ()
            if slots is not None:
                k = slots.reserve()
                extra = (slots.array, k)
            try:
                w = Process(ctx, target=worker,
                            args=(inqueue, outqueue,
                                  initializer,
                                  initargs, maxtasksperchild,
                                  wrap_exception) + extra,
                            daemon=True)
                try:
                    w.name = w.name.replace('Process', 'PoolWorker')
                except (AttributeError, TypeError):
                    pass
                w.start()
            except BaseException:
                if slots is not None:
                    slots.owners[k] = None
                raise
            if slots is not None:
                slots.owners[k] = w
            pool.append(w)
            util.debug('added worker')

    @staticmethod
    def _maintain_pool(ctx, Process, processes, pool, inqueue, outqueue,
                       initializer, initargs, maxtasksperchild,
                       wrap_exception, slots=None):
        """Clean up any exited workers and start replacements for them.
        """
        with slots.lock if slots is not None else contextlib.nullcontext():
            if Pool._join_exited_workers(pool, outqueue, slots):
                Pool._repopulate_pool_static(ctx, Process, processes, pool,
                                             inqueue, outqueue, initializer,
                                             initargs, maxtasksperchild,
                                             wrap_exception, slots)

    def _setup_queues(self):
        # Queue, not SimpleQueue: the handler threads need get(timeout=...).
        make = getattr(self._ctx, 'Queue', None) or self._ctx.SimpleQueue
        self._inqueue = make()
        self._outqueue = make()

    def _check_running(self):
        if self._state != RUN:
            raise ValueError("Pool not running")

    def apply(self, func, args=(), kwds={}):
        '''
        Equivalent of `func(*args, **kwds)`.
        Pool must be running.
        '''
        return self.apply_async(func, args, kwds).get()

    def map(self, func, iterable, chunksize=None):
        '''
        Apply `func` to each element in `iterable`, collecting the results
        in a list that is returned.
        '''
        return self._map_async(func, iterable, mapstar, chunksize).get()

    def starmap(self, func, iterable, chunksize=None):
        '''
        Like `map()` method but the elements of the `iterable` are expected to
        be iterables as well and will be unpacked as arguments. Hence
        `func` and (a, b) becomes func(a, b).
        '''
        return self._map_async(func, iterable, starmapstar, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None,
            error_callback=None):
        '''
        Asynchronous version of `starmap()` method.
        '''
        return self._map_async(func, iterable, starmapstar, chunksize,
                               callback, error_callback)

    def _guarded_task_generation(self, result_job, func, iterable):
        '''Provides a generator of tasks for imap and imap_unordered with
        appropriate handling for iterables which throw exceptions during
        iteration.'''
        try:
            i = -1
            for i, x in enumerate(iterable):
                yield (result_job, i, func, (x,), {})
        except Exception as e:
            yield (result_job, i+1, _helper_reraises_exception, (e,), {})

    def imap(self, func, iterable, chunksize=1):
        '''
        Equivalent of `map()` -- can be MUCH slower than `Pool.map()`.
        '''
        self._check_running()
        if chunksize == 1:
            result = IMapIterator(self)
            self._taskqueue.put(
                (
                    self._guarded_task_generation(result._job, func, iterable),
                    result._set_length
                ))
            return result
        else:
            if chunksize < 1:
                raise ValueError(
                    "Chunksize must be 1+, not {0:n}".format(
                        chunksize))
            task_batches = Pool._get_tasks(func, iterable, chunksize)
            result = IMapIterator(self)
            self._taskqueue.put(
                (
                    self._guarded_task_generation(result._job,
                                                  mapstar,
                                                  task_batches),
                    result._set_length
                ))
            return (item for chunk in result for item in chunk)

    def imap_unordered(self, func, iterable, chunksize=1):
        '''
        Like `imap()` method but ordering of results is arbitrary.
        '''
        self._check_running()
        if chunksize == 1:
            result = IMapUnorderedIterator(self)
            self._taskqueue.put(
                (
                    self._guarded_task_generation(result._job, func, iterable),
                    result._set_length
                ))
            return result
        else:
            if chunksize < 1:
                raise ValueError(
                    "Chunksize must be 1+, not {0!r}".format(chunksize))
            task_batches = Pool._get_tasks(func, iterable, chunksize)
            result = IMapUnorderedIterator(self)
            self._taskqueue.put(
                (
                    self._guarded_task_generation(result._job,
                                                  mapstar,
                                                  task_batches),
                    result._set_length
                ))
            return (item for chunk in result for item in chunk)

    def apply_async(self, func, args=(), kwds={}, callback=None,
            error_callback=None):
        '''
        Asynchronous version of `apply()` method.
        '''
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._taskqueue.put(([(result._job, 0, func, args, kwds)], None))
        return result

    def map_async(self, func, iterable, chunksize=None, callback=None,
            error_callback=None):
        '''
        Asynchronous version of `map()` method.
        '''
        return self._map_async(func, iterable, mapstar, chunksize, callback,
            error_callback)

    def _map_async(self, func, iterable, mapper, chunksize=None, callback=None,
            error_callback=None):
        '''
        Helper function to implement map, starmap and their async counterparts.
        '''
        self._check_running()
        if not hasattr(iterable, '__len__'):
            iterable = list(iterable)

        if chunksize is None:
            # The configured size, not len(self._pool): the worker handler
            # shrinks that list for a moment while it replaces workers.
            chunksize, extra = divmod(len(iterable), self._processes * 4)
            if extra:
                chunksize += 1
        if len(iterable) == 0:
            chunksize = 0

        task_batches = Pool._get_tasks(func, iterable, chunksize)
        result = MapResult(self, chunksize, len(iterable), callback,
                           error_callback=error_callback)
        self._taskqueue.put(
            (
                self._guarded_task_generation(result._job,
                                              mapper,
                                              task_batches),
                None
            )
        )
        return result

    @staticmethod
    def _wait_for_updates(change_notifier, timeout=_POLL_INTERVAL):
        # Worker processes have no fd we could wait on together with the
        # notifier (in general), so wake up every `timeout` to poll exitcodes.
        try:
            change_notifier.get(timeout=timeout)
        except queue.Empty:
            return
        while True:
            try:
                change_notifier.get_nowait()
            except queue.Empty:
                return

    @classmethod
    def _handle_workers(cls, cache, taskqueue, ctx, Process, processes,
                        pool, inqueue, outqueue, initializer, initargs,
                        maxtasksperchild, wrap_exception, change_notifier,
                        slots=None):
        thread = threading.current_thread()

        # Keep maintaining workers until the cache gets drained, unless the pool
        # is terminated.
        while thread._state == RUN or (cache and thread._state != TERMINATE):
            cls._maintain_pool(ctx, Process, processes, pool, inqueue,
                               outqueue, initializer, initargs,
                               maxtasksperchild, wrap_exception, slots)
            cls._wait_for_updates(change_notifier)
        # send sentinel to stop workers
        taskqueue.put(None)
        util.debug('worker handler exiting')

    @staticmethod
    def _handle_tasks(taskqueue, put, outqueue, pool, cache):
        thread = threading.current_thread()
        pack_task = _TASK_TRAILER.pack

        for taskseq, set_length in iter(taskqueue.get, None):
            task = None
            try:
                # iterating taskseq cannot fail
                for task in taskseq:
                    if thread._state != RUN:
                        util.debug('task handler found thread._state != RUN')
                        break
                    job, idx, func, args, kwds = task
                    try:
                        # Pickle here, not in the queue: the failure belongs
                        # to this task alone (a feeder thread would just drop
                        # the item and the result would never come).
                        put((func, args, kwds), pack_task(job, idx))
                    except Exception as e:
                        try:
                            cache[job]._set(idx, (False, e))
                        except KeyError:
                            pass
                        except Exception:
                            _report_callback_error('callback')
                else:
                    if set_length:
                        util.debug('doing set_length()')
                        idx = task[1] if task else -1
                        set_length(idx + 1)
                    continue
                break
            finally:
                task = taskseq = job = func = args = kwds = None
        else:
            util.debug('task handler got sentinel')

        if thread._state == TERMINATE:
            # terminate() kills the workers and the result handler watches its
            # own state: no sentinels.  Writing to the result queue now could
            # even block for good: a worker SIGTERMed between sending its last
            # result and releasing the queue's write lock (stdlib's Queue)
            # never releases it.
            util.debug('task handler exiting (terminated)')
            return

        try:
            # tell result handler to finish when cache is empty
            util.debug('task handler sending sentinel to result handler')
            outqueue.put(None)

            # tell workers there is no more work
            util.debug('task handler sending sentinel to workers')
            for p in pool:
                put(None)
        except (OSError, ValueError):
            util.debug('task handler got OSError when sending sentinels')

        util.debug('task handler exiting')

    @staticmethod
    def _handle_results(outqueue, cache):
        thread = threading.current_thread()
        # worker pid -> (job, i) of the task it announced (_STARTED: only
        # workers without a slot announce tasks by message)
        inflight = {}
        # worker pid -> (job, i, pid) of its latest result
        answered = {}
        unpack = _RESULT_TRAILER.unpack_from
        trailer = _RESULT_TRAILER.size

        def dispatch(msg):
            if msg.__class__ is not tuple:
                t = unpack(msg, len(msg) - trailer)
                job, i, pid = t
                answered[pid] = t
                try:
                    obj = _loads(msg)
                    msg = None      # a large result's pool block goes back now
                except Exception as e:
                    # e.g. an exception class that does not survive a pickle
                    # round trip: fail the task rather than this thread.
                    obj = (False, MaybeEncodingError(
                        e, '<result of task %d of job %d>' % (i, job)))
            elif msg[0] == _STARTED:
                _, pid, job, i = msg
                inflight[pid] = (job, i)
                return
            elif msg[0] == _DIED:
                # Everything the worker put is before this message: the task
                # it had claimed is lost unless its result is its last one.
                _, pid, exitcode, claimed = msg
                started = inflight.pop(pid, None)
                last = answered.pop(pid, None)
                if claimed is None:
                    claimed = started
                if claimed is None or (last is not None
                                       and (last[0], last[1]) == claimed):
                    return          # it was idle (e.g. maxtasksperchild)
                job, i = claimed
                obj = (False, WorkerLostError(
                    'worker process %s %s while running task %d of job %d; '
                    'that task\'s result is lost (the pool replaced the '
                    'worker)' % (pid, _describe_exitcode(exitcode), i, job)))
            else:
                raise AssertionError('unknown pool message %r' % (msg,))
            try:
                result = cache[job]
            except KeyError:
                return
            try:
                result._set(i, obj)
            except Exception:
                _report_callback_error('callback')

        _, get = _message_io(outqueue)
        while 1:
            try:
                task = _decode(get(timeout=_POLL_INTERVAL))
            except queue.Empty:
                if thread._state != RUN:
                    break
                continue
            except (OSError, EOFError, ValueError):
                util.debug('result handler got EOFError/OSError -- exiting')
                return

            if thread._state != RUN:
                assert thread._state == TERMINATE, "Thread not in TERMINATE"
                util.debug('result handler found thread._state=TERMINATE')
                break

            if task is None:
                util.debug('result handler got sentinel')
                break

            dispatch(task)
            task = None

        while cache and thread._state != TERMINATE:
            try:
                task = _decode(get(timeout=_POLL_INTERVAL))
            except queue.Empty:
                continue
            except (OSError, EOFError, ValueError):
                util.debug('result handler got EOFError/OSError -- exiting')
                return

            if task is None:
                util.debug('result handler ignoring extra sentinel')
                continue
            dispatch(task)
            task = None

        util.debug('result handler exiting: len(cache)=%s, thread._state=%s',
              len(cache), thread._state)

    @staticmethod
    def _get_tasks(func, it, size):
        it = iter(it)
        while 1:
            x = tuple(itertools.islice(it, size))
            if not x:
                return
            yield (func, x)

    def __reduce__(self):
        raise NotImplementedError(
              'pool objects cannot be passed between processes or pickled'
              )

    def close(self):
        util.debug('closing pool')
        if self._state == RUN:
            self._state = CLOSE
            self._worker_handler._state = CLOSE
            self._change_notifier.put(None)

    def terminate(self):
        util.debug('terminating pool')
        self._state = TERMINATE
        self._terminate()

    def join(self):
        util.debug('joining pool')
        if self._state == RUN:
            raise ValueError("Pool is still running")
        elif self._state not in (CLOSE, TERMINATE):
            raise ValueError("In unknown state")
        self._worker_handler.join()
        self._task_handler.join()
        self._result_handler.join()
        for p in self._pool:
            p.join()

    @staticmethod
    def _help_stuff_finish(inqueue, task_handler, size):
        # Drop the tasks nobody has taken yet, so live workers do not start
        # them and a bounded queue cannot keep the task handler blocked in put.
        util.debug('removing tasks from inqueue until task handler finished')
        try:
            _, get = _message_io(inqueue)
            while True:
                get(block=False)
        except Exception:
            # queue.Empty, or a queue already unusable (closed, the run torn
            # down at exit): either way nothing more to drain, and terminate
            # must go on to stop the workers.
            pass

    @staticmethod
    def _close_queues(*queues):
        for q in queues:
            # Nothing left in them matters; a stdlib Queue must not make
            # interpreter exit wait for its feeder thread to flush.
            cancel = getattr(q, 'cancel_join_thread', None)
            try:
                if cancel is not None:
                    cancel()
                q.close()
            except Exception:
                pass

    @classmethod
    def _terminate_pool(cls, taskqueue, inqueue, outqueue, pool, change_notifier,
                        worker_handler, task_handler, result_handler, cache):
        # this is guaranteed to only be called once
        util.debug('finalizing pool')

        # Notify that the worker_handler state has been changed so the
        # _handle_workers loop can be unblocked (and exited) in order to
        # send the finalization sentinel all the workers.
        worker_handler._state = TERMINATE
        change_notifier.put(None)

        task_handler._state = TERMINATE

        util.debug('helping task handler/workers to finish')
        cls._help_stuff_finish(inqueue, task_handler, len(pool))

        # No sentinel on outqueue (stdlib puts one): the result handler sees
        # its state within one poll slice, and the parent must not write to a
        # queue whose lock a worker killed below may hold (see _handle_tasks).
        result_handler._state = TERMINATE
        change_notifier.put(None)

        # We must wait for the worker handler to exit before terminating
        # workers because we don't want workers to be restarted behind our back.
        util.debug('joining worker handler')
        if threading.current_thread() is not worker_handler:
            worker_handler.join()

        # Terminate workers which haven't already finished.
        if pool and hasattr(pool[0], 'terminate'):
            util.debug('terminating workers')
            for p in pool:
                if p.exitcode is None:
                    p.terminate()

        util.debug('joining task handler')
        if threading.current_thread() is not task_handler:
            task_handler.join()

        util.debug('joining result handler')
        if threading.current_thread() is not result_handler:
            result_handler.join()

        if pool and hasattr(pool[0], 'terminate'):
            util.debug('joining pool workers')
            # SIGTERM can be caught or ignored by user code; do not let that
            # hang terminate() (or interpreter exit): kill after a grace period.
            deadline = time.monotonic() + _TERMINATE_GRACE
            for p in pool:
                p.join(max(0.0, deadline - time.monotonic()))
            for p in pool:
                if p.exitcode is None:
                    util.debug('killing worker %s' % p.pid)
                    p.kill()
                    p.join()

        cls._close_queues(inqueue, outqueue)

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()

#
# Class whose instances are returned by `Pool.apply_async()`
#

class ApplyResult(object):

    def __init__(self, pool, callback, error_callback):
        self._pool = pool
        # Readiness is a flag plus a lock held until the result is set: a
        # waiter takes the lock and gives it back at once (so every waiter
        # passes). A bare lock costs a fraction of a threading.Event
        # (a Condition and its waiter lock), on every task.
        self._ready = False
        self._done = _allocate_lock()
        self._done.acquire()
        self._job = next(job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._cache[self._job] = self

    def ready(self):
        return self._ready

    def successful(self):
        if not self.ready():
            raise ValueError("{0!r} not ready".format(self))
        return self._success

    def wait(self, timeout=None):
        if self._ready:
            return
        if timeout is None:
            got = self._done.acquire()
        else:
            got = self._done.acquire(True, max(timeout, 0))
        if got:
            self._done.release()

    def _set_ready(self):
        self._ready = True
        self._done.release()

    def get(self, timeout=None):
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        else:
            raise self._value

    def _set(self, i, obj):
        self._success, self._value = obj
        try:
            if self._callback and self._success:
                self._callback(self._value)
            if self._error_callback and not self._success:
                self._error_callback(self._value)
        finally:
            # Even if a callback raised: the result is known, get() must not
            # wait for it forever.
            self._set_ready()
            del self._cache[self._job]
            self._pool = None

    __class_getitem__ = classmethod(types.GenericAlias)

AsyncResult = ApplyResult       # create alias -- see #17805

#
# Class whose instances are returned by `Pool.map_async()`
#

class MapResult(ApplyResult):

    def __init__(self, pool, chunksize, length, callback, error_callback):
        ApplyResult.__init__(self, pool, callback,
                             error_callback=error_callback)
        # Both the task handler (pickling failures) and the result handler
        # set chunks of the same MapResult.
        self._lock = threading.Lock()
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        if chunksize <= 0:
            self._number_left = 0
            self._set_ready()
            del self._cache[self._job]
        else:
            self._number_left = length//chunksize + bool(length % chunksize)

    def _set(self, i, success_result):
        with self._lock:
            self._number_left -= 1
            success, result = success_result
            if success and self._success:
                self._value[i*self._chunksize:(i+1)*self._chunksize] = result
            elif not success and self._success:
                # only store first exception
                self._success = False
                self._value = result
            if self._number_left != 0:
                return
        # only consider the result ready once all jobs are done
        try:
            if self._success:
                if self._callback:
                    self._callback(self._value)
            elif self._error_callback:
                self._error_callback(self._value)
        finally:
            del self._cache[self._job]
            self._set_ready()
            self._pool = None

#
# Class whose instances are returned by `Pool.imap()`
#

class IMapIterator(object):

    def __init__(self, pool):
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = next(job_counter)
        self._cache = pool._cache
        self._items = collections.deque()
        self._index = 0
        self._length = None
        self._unsorted = {}
        self._cache[self._job] = self

    def __iter__(self):
        return self

    def next(self, timeout=None):
        with self._cond:
            try:
                item = self._items.popleft()
            except IndexError:
                if self._index == self._length:
                    self._pool = None
                    raise StopIteration from None
                self._cond.wait(timeout)
                try:
                    item = self._items.popleft()
                except IndexError:
                    if self._index == self._length:
                        self._pool = None
                        raise StopIteration from None
                    raise TimeoutError from None

        success, value = item
        if success:
            return value
        raise value

    __next__ = next                    # XXX

    def _set(self, i, obj):
        with self._cond:
            if self._index == i:
                self._items.append(obj)
                self._index += 1
                while self._index in self._unsorted:
                    obj = self._unsorted.pop(self._index)
                    self._items.append(obj)
                    self._index += 1
                self._cond.notify()
            else:
                self._unsorted[i] = obj

            if self._index == self._length:
                del self._cache[self._job]
                self._pool = None

    def _set_length(self, length):
        with self._cond:
            self._length = length
            if self._index == self._length:
                self._cond.notify()
                del self._cache[self._job]
                self._pool = None

#
# Class whose instances are returned by `Pool.imap_unordered()`
#

class IMapUnorderedIterator(IMapIterator):

    def _set(self, i, obj):
        with self._cond:
            self._items.append(obj)
            self._index += 1
            self._cond.notify()
            if self._index == self._length:
                del self._cache[self._job]
                self._pool = None


from .context import _default_context as _ctx    # noqa: E402
from .connection import wait    # noqa: E402,F401
get_context = _ctx.get_context

from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'pool')
