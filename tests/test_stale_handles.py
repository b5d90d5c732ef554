"""A handle used past its object's end raises ValueError; it never reaches
the object made next in the same memory (issue 17, item 5).

dragon_mp passes an object between processes as its address plus one
reference, which the unpickling handle adopts. Loading the same pickle twice
adopts that reference twice, so one release too many frees the object while
a handle still names it; the memory then holds the next object made. The
address carries the object's generation (gocore/runtime.Address), checked by
Go and by the C fast path on every operation, so the stale handle fails
instead of acting on that object. dragon_mp only: stdlib refuses to pickle
these objects outside of starting a process.
"""

import gc
import pickle

import pytest

from multiprocessing import context

import dragon_mp as mp
from dragon_mp.reduction import ForkingPickler


def _dumps(obj):
    # As when a process is started with obj among its arguments (Value and
    # Array pickle only then).
    context.set_spawning_popen(object())
    try:
        return bytes(ForkingPickler.dumps(obj))
    finally:
        context.set_spawning_popen(None)


GEN_BITS = 0xfff << 36      # gocore/runtime.Address: node 63..48, generation 47..36, offset/64 35..0


def _places(obj, depth=3):
    """The pool places (addresses without their generation) of the dragon_mp
    objects obj is made of."""
    found = set()
    if depth == 0:
        return found
    if isinstance(obj, tuple):
        for o in obj:
            found |= _places(o, depth)
        return found
    for name, value in getattr(obj, '__dict__', {}).items():
        if name == '_addr' and isinstance(value, int) and value:
            found.add(value & ~GEN_BITS)
        elif not callable(value) and not isinstance(value, (int, str, bytes, float)):
            found |= _places(value, depth - 1)
    return found


def _over_released(make):
    """(stale handle, newer objects of the same kind): the object freed by an
    over-release, then its memory reused."""
    obj = make()
    data = _dumps(obj)
    first, stale = pickle.loads(data), pickle.loads(data)   # one reference, adopted twice
    del obj, first
    gc.collect()
    newer = [make() for _ in range(8)]     # the freed memory is taken again by one of these
    places = _places(stale)
    assert places, 'no address found: the test must look elsewhere'
    assert places & set().union(*map(_places, newer)), 'the memory was not reused: nothing tested'
    return stale, newer


def _queue_put(q):
    q.put('from the stale handle')


def _pipe_send(ends):
    ends[0].send('from the stale handle')


CHANNELS = [
    ('Queue', mp.Queue, _queue_put, lambda q: q.empty()),
    ('SimpleQueue', mp.SimpleQueue, _queue_put, lambda q: q.empty()),
    ('JoinableQueue', mp.JoinableQueue, _queue_put, lambda q: q.empty()),
    ('Pipe', mp.Pipe, _pipe_send, lambda ends: not ends[1].poll(0)),
]


@pytest.mark.parametrize('name,make,use,is_empty', CHANNELS, ids=[c[0] for c in CHANNELS])
def test_a_stale_channel_handle_raises(name, make, use, is_empty):
    stale, newer = _over_released(make)
    for _ in range(3):                     # the first attempt and the ones after it
        with pytest.raises(ValueError):
            use(stale)
    assert all(is_empty(n) for n in newer), 'the stale handle reached a newer object'
    use(newer[0])                          # the newer objects work
    assert not is_empty(newer[0])


SYNC = [
    ('Lock', mp.Lock, lambda l: l.acquire(False), lambda l: l.acquire(False) and (l.release() or True)),
    ('RLock', mp.RLock, lambda l: l.acquire(False), lambda l: l.acquire(False) and (l.release() or True)),
    ('Semaphore', lambda: mp.Semaphore(1), lambda s: s.acquire(False),
     lambda s: s.acquire(False) and (s.release() or True)),
    ('Event', mp.Event, lambda e: e.set(), lambda e: not e.is_set()),
    ('Value', lambda: mp.Value('i', 0), lambda v: setattr(v, 'value', 7), lambda v: v.value == 0),
]


@pytest.mark.parametrize('name,make,use,untouched', SYNC, ids=[c[0] for c in SYNC])
def test_a_stale_sync_handle_raises(name, make, use, untouched):
    stale, newer = _over_released(make)
    for _ in range(3):
        with pytest.raises(ValueError):
            use(stale)
    assert all(untouched(n) for n in newer), 'the stale handle reached a newer object'


def test_a_live_object_with_several_handles_still_works():
    # The generation changes nothing for handles that hold their references.
    q = mp.Queue()
    copies = [pickle.loads(_dumps(q)) for _ in range(3)]
    for i, c in enumerate(copies):
        c.put(i)
    assert sorted(q.get(timeout=5) for _ in copies) == [0, 1, 2]
