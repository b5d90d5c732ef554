#
# The threads of a dragon_mp Pool and its termination
#
# dragon_mp/_pool_handlers.py -- modelled on CPython 3.11 Lib/multiprocessing/pool.py
# (Copyright (c) 2006-2008, R Oudkerk, licensed to PSF under a Contributor
# Agreement); the thread loops and the shutdown order are stdlib's.
#
"""The parent's side of a dragon_mp Pool at run time (part of dragon_mp.pool;
see its docstring for the layout, "Worker death" and "Shutdown protocol").

``_PoolHandlers`` holds, as stdlib's Pool does, the bodies of the three daemon
threads (worker handler, task handler, result handler) and the pool's
termination (``_terminate_pool``, run once by ``terminate()``, the garbage
collection finalizer or interpreter exit). ``dragon_mp.pool.Pool`` inherits
them, so ``Pool._handle_results`` and friends are where stdlib has them. The
worker handler maintains the pool through ``cls._maintain_pool``, which Pool
defines next to the worker function it starts.

Every method gets the pieces it needs as arguments, never the pool: the pool
must stay collectable so its finalizer can run.
"""

__all__ = []   # internal: dragon_mp.pool.Pool inherits _PoolHandlers

import queue
import signal
import sys
import threading
import time
import traceback

from multiprocessing import util

from ._pool_protocol import (_DIED, _RESULT_TRAILER, _STARTED, _TASK_TRAILER,
                             MaybeEncodingError, WorkerLostError, _decode,
                             _loads, _message_io)

#
# Constants representing the state of a pool (and of each handler thread)
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

def _describe_exitcode(exitcode):
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = 'unknown signal'
        return 'killed by signal %d (%s)' % (-exitcode, name)
    return 'exited with exitcode %r' % (exitcode,)

def _report_callback_error(what):
    # A raising callback killed stdlib's result handler (and hung every
    # later get()); report it like an unhandled thread exception and go on.
    print('Exception in dragon_mp.pool %s:' % what, file=sys.stderr)
    traceback.print_exc()

class _PoolHandlers:
    """The handler threads' bodies and the termination of dragon_mp's Pool
    (a base class of it, see the module docstring)."""

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
                _, pid, exitcode, claimed, *reason = msg     # reason: optional
                reason = reason[0] if reason else None
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
                    'worker)' % (pid, reason or _describe_exitcode(exitcode), i, job)))
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
