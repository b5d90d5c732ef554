"""Queues over shared-memory channels.

A Queue is a channel in the run's pool: put pickles the object and copies
the bytes into the channel, get copies them out and unpickles. No feeder
thread and no pipe: a put is visible to every consumer when it returns, and
an object that cannot be pickled raises in put itself (stdlib's Queue would
report it from its feeder thread and drop the object), leaving the queue as
it was.
"""

import atexit
import os
import threading
import weakref

from multiprocessing import queues as _stdlib_queues
from queue import Empty, Full        # noqa: F401  (stdlib raises these)

from . import _core, _runtime
from ._shared import SharedObject, timeout_ns
from .reduction import ForkingPickler

__all__ = ['Queue', 'SimpleQueue', 'JoinableQueue']

_PUMP_SLICE = 0.1      # how often SimpleQueue's reader thread looks at close()


class _Channel(SharedObject):
    """One process's handle on a channel: bytes in, bytes out."""

    _retain_fn = 'ChannelRetain'
    _drop_fn = 'ChannelRelease'

    def __init__(self, capacity):
        _runtime.current()
        gc = _core.gocore()
        addr = _core.call(gc.ChannelCreate, capacity, 0)
        self._adopt(addr)
        self._inline = _core.call(gc.ChannelInline, addr)

    @classmethod
    def _attach(cls, addr, inline):
        self = cls.__new__(cls)
        _runtime.current()
        self._adopt(addr)
        self._inline = inline
        return self

    def __reduce__(self):
        return _Channel._attach, (self._reference_for_pickle(), self._inline)

    def send(self, data, block=True, timeout=None):
        """Send the bytes-like data (C copies it once, from the caller's buffer)."""
        rc = _core.fast().send(self._addr, data, timeout_ns(block, timeout))
        if rc < 0:
            _core.raise_for(rc)         # -FULL (a bounded channel stayed full): queue.Full

    def recv(self, block=True, timeout=None):
        r = _core.fast().recv(self._addr, timeout_ns(block, timeout), self._inline)
        if r.__class__ is bytes:
            return r
        _core.raise_for(r)              # -TIMEOUT: queue.Empty

    def __len__(self):
        return _core.call(_core.gocore().ChannelLen, self._addr)


_chan_classes = {}


def _picklable_chan(fp):
    """fp.Chan with a pickle: its bound put/get (a Queue's own methods) pickle
    as their queue's, as a stdlib Queue's bound methods do (Process(target=q.put))."""
    cls = _chan_classes.get(fp)
    if cls is None:
        class Chan(fp.Chan):
            __slots__ = ('_queue',)

            def __reduce__(self):
                return _fast_of, (self._queue(),)
        cls = _chan_classes[fp] = Chan
    return cls


def _fast_of(queue):
    return queue._fast


class Queue(_stdlib_queues.Queue):
    """multiprocessing.Queue over a dragon_mp channel.

    A subclass of stdlib's class so that code checking the type accepts it;
    its feeder-thread machinery is never used."""

    def __init__(self, maxsize=0, *, ctx=None):
        self._maxsize = max(int(maxsize), 0)      # 0: unbounded, as in stdlib
        self._channel = _Channel(self._maxsize)
        self._closed = False
        self._bind_fast()

    def __getstate__(self):
        return self._maxsize, self._channel

    def __setstate__(self, state):
        self._maxsize, self._channel = state
        self._closed = False
        self._bind_fast()

    def _bind_fast(self):
        """put/get go through the C methods of a _fastpath.Chan (which pickles, and
        gathers a large payload into the channel with one copy)."""
        ch = self._channel
        c = self._fast = _picklable_chan(_core.fast())(ch._addr, ch._inline, ch)   # owner: keeps the channel alive
        c._queue = weakref.ref(self)
        if type(self) is Queue:
            # The bound C methods themselves: no Python frame per call. A
            # subclass's overrides must stay in charge, so only here.
            self.put, self.get = c.put, c.get
            self.put_nowait, self.get_nowait = c.put_nowait, c.get_nowait

    def _synchronous_puts(self):
        """This process's puts to another node's queue wait for the owner's
        reply (by default they are posted: they go ahead, as stdlib's feeder
        thread does, and are in place before the process's next operation on
        that node, and before its exit; see gocore/agent)."""
        _core.gocore().ChannelAllowPost(self._channel._addr, False)

    def _check_closed(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    def put(self, obj, block=True, timeout=None):
        # Pickled before anything is sent: a failure leaves the queue untouched.
        return self._fast.put(obj, block, timeout)

    def get(self, block=True, timeout=None):
        return self._fast.get(block, timeout)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def get_nowait(self):
        return self.get(False)

    def qsize(self):
        return len(self._channel)

    def empty(self):
        # As stdlib's: once this process has put and closed, its handle is
        # closed (there, close() shuts the pipe once the feeder has started).
        if self._closed and self._fast.used:
            raise OSError("handle is closed")
        return self.qsize() == 0

    def full(self):
        return self._maxsize > 0 and self.qsize() >= self._maxsize

    def close(self):
        """This process will put and get no more (the queue lives on for others)."""
        self._closed = True
        self._fast.close()

    def join_thread(self):
        # There is no feeder thread. A put to this node's queue has completed
        # when it returns; one to another node's may still be on its way
        # (posted): wait until it is in the queue, as stdlib waits for its
        # feeder thread to flush.
        assert self._closed, f"Queue {self!r} not closed"
        _core.call(_core.gocore().RemoteSync, self._channel._addr)

    def cancel_join_thread(self):
        pass

    # Meeting programs in other languages (docs/c_api.md): raw bytes, not
    # pickles, and an address as a string.

    def descriptor(self):
        """This queue as a string that a C or C++ program of the run opens
        (include/dragon_mp.h: dmp_queue_open), on any node of the run; keep
        the queue until it has opened it."""
        return _descriptor(self._channel)

    def put_bytes(self, data, block=True, timeout=None):
        """Put the bytes-like data as one raw message (not pickled): what
        get_bytes() here or dmp_queue_recv in C receives."""
        self._check_closed()
        self._channel.send(data, block, timeout)

    def get_bytes(self, block=True, timeout=None):
        """Take the next message as raw bytes (not unpickled): one sent by
        put_bytes() or by dmp_queue_send in C. Raises queue.Empty as get()."""
        self._check_closed()
        return self._channel.recv(block, timeout)


def _descriptor(channel):
    """dmp1:q:<run id>:<address in hex>: read by capi/capi.go (open)."""
    return f'dmp1:q:{_runtime.runid()}:{channel._addr:x}'


class JoinableQueue(Queue, _stdlib_queues.JoinableQueue):
    """A Queue whose consumers report each task done, so producers can join().

    As in stdlib: a semaphore counts unfinished tasks and a condition tells
    joiners when it reaches zero. The count is raised before the message is
    sent (and lowered again if the send fails), so a consumer can never
    report a task done before it was counted.
    """

    def __init__(self, maxsize=0, *, ctx=None):
        from .synchronize import Condition, Semaphore
        super().__init__(maxsize, ctx=ctx)
        self._unfinished_tasks = Semaphore(0)
        self._cond = Condition()

    def __getstate__(self):
        return super().__getstate__() + (self._unfinished_tasks, self._cond)

    def __setstate__(self, state):
        super().__setstate__(state[:-2])
        self._unfinished_tasks, self._cond = state[-2:]

    def put(self, obj, block=True, timeout=None):
        self._check_closed()
        self._unfinished_tasks.release()
        try:
            super().put(obj, block, timeout)
        except BaseException:
            self._unfinished_tasks.acquire(False)
            raise

    def put_bytes(self, data, block=True, timeout=None):
        """Queue.put_bytes, counted as a task, as put() is."""
        self._check_closed()
        self._unfinished_tasks.release()
        try:
            super().put_bytes(data, block, timeout)
        except BaseException:
            self._unfinished_tasks.acquire(False)
            raise

    def task_done(self):
        with self._cond:
            if not self._unfinished_tasks.acquire(False):
                raise ValueError('task_done() called too many times')
            if self._unfinished_tasks.get_value() == 0:
                self._cond.notify_all()

    def join(self):
        with self._cond:
            while self._unfinished_tasks.get_value() != 0:
                self._cond.wait()


class _ChannelReader:
    """A selectable read end on a channel: what stdlib code expects of SimpleQueue._reader.

    concurrent.futures.ProcessPoolExecutor waits for results with
    multiprocessing.connection.wait([result_queue._reader, ...]) (stdlib's
    wait: it needs a fileno()) and then calls result_queue._reader.recv(). A
    channel has no file descriptor, so a daemon thread takes one message at a
    time from the channel and holds it for recv(); fileno() is a pipe that is
    readable while a message is held. At most one message is taken ahead of
    its reader.
    """

    def __init__(self, channel):
        _patch_stdlib_wait()
        self._channel = channel
        self._r, self._w = os.pipe()
        self._held = None
        self._taking = False
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._pump, daemon=True,
                                        name='dragon_mp SimpleQueue reader')
        self._thread.start()
        # Before the run's teardown (registered earlier, so run later).
        atexit.register(self.close)

    def _pump(self):
        cond = self._cond
        while True:
            with cond:
                while self._held is not None and not self._closed:
                    cond.wait()
                if self._closed:
                    return
            try:
                data = self._channel.recv(timeout=_PUMP_SLICE)
            except Empty:
                continue
            except Exception:
                return              # the run ended under us: nothing more will arrive
            self._taking = True     # _pending: a message is between channel and pipe
            with cond:
                self._taking = False
                if self._closed:
                    return
                self._held = data
                os.write(self._w, b'\0')
                cond.notify_all()

    def fileno(self):
        if self._closed:
            raise OSError("handle is closed")
        return self._r

    def poll(self, timeout=0.0):
        with self._cond:
            self._cond.wait_for(lambda: self._held is not None or self._closed, timeout)
            return self._held is not None

    def _pending(self):
        """Whether a message is held or on its way to being held (waits for the pump)."""
        if self._closed:
            return False
        if self._held is not None:
            return True
        if len(self._channel) == 0 and not self._taking:
            return False
        return self.poll(_PUMP_SLICE)

    def recv_bytes(self):
        with self._cond:
            self._cond.wait_for(lambda: self._held is not None or self._closed)
            if self._held is None:
                raise OSError("handle is closed")
            data, self._held = self._held, None
            os.read(self._r, 1)
            self._cond.notify_all()
        return data

    def recv(self):
        return ForkingPickler.loads(self.recv_bytes())

    def close(self):
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        atexit.unregister(self.close)
        if self._thread is not threading.current_thread():
            self._thread.join()
        os.close(self._r)
        os.close(self._w)


def _patch_stdlib_wait():
    """Make stdlib's connection.wait see a _ChannelReader's message that the
    pump has not moved to the pipe yet.

    ProcessPoolExecutor waits on [result reader, wakeup, worker sentinels]
    and declares the pool broken when a sentinel is ready without the
    reader. A worker's result put completes before it exits, but the pump
    thread makes the reader readable a moment later, so the exit can win the
    race. When a sentinel (or anything else) is ready and a reader is not,
    the wrapper looks at the reader's channel and waits for the pump.
    """
    from multiprocessing import connection
    if getattr(connection.wait, '_dragon_mp', False):
        return
    stdlib_wait = connection.wait

    def wait(object_list, timeout=None):
        ready = stdlib_wait(object_list, timeout)
        if ready:
            for r in object_list:
                if isinstance(r, _ChannelReader) and r not in ready and r._pending():
                    ready.append(r)
        return ready
    wait._dragon_mp = True
    wait.__doc__ = stdlib_wait.__doc__
    connection.wait = wait


class SimpleQueue(_stdlib_queues.SimpleQueue):
    """multiprocessing.SimpleQueue: an unbounded queue without timeouts (a
    subclass of stdlib's for type checks; none of its code runs)."""

    def __init__(self, *, ctx=None):
        self._channel = _Channel(0)
        self._closed = False
        self._reader_obj = None

    def __getstate__(self):
        return self._channel

    def __setstate__(self, state):
        self._channel = state
        self._closed = False
        self._reader_obj = None

    @property
    def _reader(self):
        """A selectable read end in this process, made on first use (see _ChannelReader)."""
        if self._reader_obj is None:
            if self._closed:
                raise OSError("handle is closed")
            self._reader_obj = _ChannelReader(self._channel)
            weakref.finalize(self, self._reader_obj.close)
        return self._reader_obj

    def close(self):
        self._closed = True
        if self._reader_obj is not None:
            self._reader_obj.close()

    def empty(self):
        if self._closed:
            raise OSError("handle is closed")       # stdlib's SimpleQueue closes its pipe
        if self._reader_obj is not None and self._reader_obj._held is not None:
            return False
        return len(self._channel) == 0

    def get(self):
        if self._closed:
            raise OSError("handle is closed")
        if self._reader_obj is not None:
            # Once a reader exists it may hold the next message: keep the order.
            return self._reader_obj.recv()
        ch = self._channel
        return _core.fast().get(ch._addr, -1, ch._inline)

    def put(self, obj):
        if self._closed:
            raise OSError("handle is closed")
        return _core.fast().put(self._channel._addr, obj, -1)

    def descriptor(self):
        """As Queue.descriptor()."""
        return _descriptor(self._channel)

    def put_bytes(self, data):
        """Put the bytes-like data as one raw message (not pickled), as Queue.put_bytes."""
        if self._closed:
            raise OSError("handle is closed")
        self._channel.send(data)

    def get_bytes(self):
        """Take the next message as raw bytes (not unpickled), as Queue.get_bytes."""
        if self._closed:
            raise OSError("handle is closed")
        if self._reader_obj is not None:
            return self._reader_obj.recv_bytes()    # it may hold the next message
        return self._channel.recv()


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'queues')
