#
# The result objects of a dragon_mp Pool
#
# dragon_mp/_pool_results.py -- modelled on CPython 3.11 Lib/multiprocessing/pool.py
# (Copyright (c) 2006-2008, R Oudkerk, licensed to PSF under a Contributor
# Agreement); the result classes are copied from it.
#
"""What Pool.apply_async, map_async, imap and imap_unordered return (part of
dragon_mp.pool), and the pool's cache of the results still pending.

The result handler (and the task handler, for a task that cannot be
pickled) calls ``_set(i, (success, value))`` on the result registered under a
task's job number in ``_cache``; a result leaves the cache once complete.
"""

__all__ = []   # internal: dragon_mp.pool offers these names

import collections
import itertools
import threading
import types

from _thread import allocate_lock as _allocate_lock
from multiprocessing.context import TimeoutError

# The classes name dragon_mp.pool as their module, where users (and stdlib's
# multiprocessing.pool) have them: their reprs say dragon_mp.pool.ApplyResult.
_PUBLIC_MODULE = 'dragon_mp.pool'

#
# The cache of pending results (one per pool)
#

job_counter = itertools.count()

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

#
# Class whose instances are returned by `Pool.apply_async()`
#

class ApplyResult(object):
    __module__ = _PUBLIC_MODULE

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
    __module__ = _PUBLIC_MODULE

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
    __module__ = _PUBLIC_MODULE

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
    __module__ = _PUBLIC_MODULE

    def _set(self, i, obj):
        with self._cond:
            self._items.append(obj)
            self._index += 1
            self._cond.notify()
            if self._index == self._length:
                del self._cache[self._job]
                self._pool = None
