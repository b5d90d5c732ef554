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
  ``(_DIED, pid, exitcode, claimed, exit_reason)`` posted by the worker
  handler when it reaps a worker, and ``(_STARTED, pid, job, i)`` from workers without a
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
# Imports (stdlib and the pool's private modules, themselves stdlib only:
# nothing else from dragon_mp at import time)
#

import contextlib
import itertools
import os
import queue
import threading
import warnings

from multiprocessing import util
# ThreadPool runs workers as threads of this process and never touches the
# context's queues or processes, so stdlib's is the right one to offer.
from multiprocessing import pool as _stdlib_pool
from multiprocessing.pool import ThreadPool           # noqa: F401

# The pool's parts live in private modules, one concept each:
#   _pool_protocol  the messages between the pool and its workers, the errors
#                   a result carries back, the workers' task slots
#   _pool_handlers  the parent's three threads and the pool's termination
#                   (_PoolHandlers, a base class of Pool), the pool's states
#   _pool_results   ApplyResult, MapResult, IMapIterator, ... and their cache
# This module keeps the Pool's API, the worker function and starting and
# reaping workers. Every name it had before the split is still here (code
# written against stdlib's multiprocessing.pool, the tests and the bench
# tools reach for them as dragon_mp.pool.X), the modules it imported too.
from ._pool_protocol import (                           # noqa: F401
    _STARTED, _DIED, _TASK_TRAILER, _RESULT_TRAILER, _SLOT_WORDS,
    _dumps, _loads, _last_byte, _STOP, _message_io, _decode,
    RemoteTraceback, ExceptionWithTraceback, rebuild_exc,
    MaybeEncodingError, WorkerLostError, _Slots)
from ._pool_handlers import (                           # noqa: F401
    INIT, RUN, CLOSE, TERMINATE, _POLL_INTERVAL, _TERMINATE_GRACE,
    _describe_exitcode, _report_callback_error, _PoolHandlers)
from ._pool_results import (                            # noqa: F401
    job_counter, _PoolCache, ApplyResult, AsyncResult, MapResult,
    IMapIterator, IMapUnorderedIterator)
import collections                                      # noqa: F401
import io                                               # noqa: F401
import pickle                                           # noqa: F401
import signal                                           # noqa: F401
import struct                                           # noqa: F401
import sys                                              # noqa: F401
import time                                             # noqa: F401
import traceback                                        # noqa: F401
import types                                            # noqa: F401
from _thread import allocate_lock as _allocate_lock     # noqa: F401
from multiprocessing.context import TimeoutError        # noqa: F401
from multiprocessing.reduction import ForkingPickler    # noqa: F401

#
# Miscellaneous
#

def mapstar(args):
    return list(map(*args))

def starmapstar(args):
    return list(itertools.starmap(args[0], args[1]))

#
# Code run by worker processes
#

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

class Pool(_PoolHandlers, _stdlib_pool.Pool):
    '''
    Class which supports an async version of applying functions to arguments.
    '''
    # A subclass of stdlib's Pool only so that code checking the type (dask's
    # isinstance(pool, multiprocessing.pool.Pool)) accepts it: every method
    # stdlib's Pool has is defined here or in _PoolHandlers (the handler
    # threads and termination, dragon_mp._pool_handlers), none of its
    # machinery runs.
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
                # Why a signal ended it (the sender, the OOM killer), for the
                # WorkerLostError of its task; an exit code says it all.
                reason = getattr(worker, 'exit_reason', None) if exitcode < 0 else None
                try:
                    outqueue.put((_DIED, worker.pid, exitcode, claimed, reason))
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

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        self.terminate()


from .context import _default_context as _ctx    # noqa: E402
from .connection import wait    # noqa: E402,F401
get_context = _ctx.get_context

from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'pool')
