"""shared_memory: SharedMemory and ShareableList across processes, SharedMemoryManager.

The segments are stdlib's (/dev/shm/psm_*): every test checks that none it
created is left behind, for stdlib ('spawn') and for dragon_mp children.
"""

import multiprocessing
import multiprocessing.managers as std_managers
import multiprocessing.shared_memory as std_shared_memory
import os
import stat

import pytest

import dragon_mp
import dragon_mp.managers as dmp_managers
import dragon_mp.shared_memory as dmp_shared_memory
from dragon_mp.shared_memory import ShareableList, SharedMemory

from conftest import SHM_DIR, wait_until

JOIN = 30


def psm_segments():
    return {n for n in os.listdir(SHM_DIR) if n.startswith('psm_')}


@pytest.fixture(autouse=True)
def no_psm_left():
    """No psm_* segment that appeared during the test may outlive it."""
    before = psm_segments()
    yield
    assert wait_until(lambda: not (psm_segments() - before)), \
        f'shared memory segments left behind: {sorted(psm_segments() - before)}'


STD = multiprocessing.get_context('spawn')


@pytest.fixture(params=['stdlib-spawn', 'dragon_mp'])
def ctx(request):
    return STD if request.param == 'stdlib-spawn' else dragon_mp


def shm_path(name):
    return os.path.join(SHM_DIR, name.lstrip('/'))


# --- targets -------------------------------------------------------------------------------

def read_and_answer(name, size, out):
    shm = SharedMemory(name)              # attach by name
    try:
        assert shm.size >= size
        data = bytes(shm.buf[:5])
        shm.buf[100:105] = data[::-1]      # answer in the same block
    finally:
        shm.close()
    out.put(data)


def create_in_child(out, done):
    shm = SharedMemory(create=True, size=4096)
    shm.buf[:6] = b'child!'
    out.put(shm.name)
    done.get(timeout=JOIN)                 # the parent has read it
    shm.close()                            # the parent unlinks it


def edit_list(sl, name):
    other = ShareableList(name=name)       # attach by name, too
    try:
        assert other[2] == 'abc' and sl[2] == 'abc'
        sl[0] = sl[0] + 41
        other[1] = other[1] * 2
        sl[2] = 'xyz'
        other[3] = b'yx'
        sl[4] = 'set in child'[:4]
        other[5] = False
    finally:
        other.shm.close()
        sl.shm.close()


def write_managed(name, value):
    shm = SharedMemory(name)
    shm.buf[0] = value
    shm.close()


# --- tests ---------------------------------------------------------------------------------

def test_module_reexports_stdlib():
    assert dmp_shared_memory.SharedMemory is std_shared_memory.SharedMemory
    assert dmp_shared_memory.ShareableList is std_shared_memory.ShareableList
    assert dmp_shared_memory.__all__ == std_shared_memory.__all__


def test_create_in_parent_attach_in_child(ctx):
    shm = SharedMemory(create=True, size=1024)
    try:
        assert shm.name.lstrip('/').startswith('psm_')
        assert stat.S_IMODE(os.stat(shm_path(shm.name)).st_mode) == 0o600
        shm.buf[:5] = b'hello'
        out = ctx.Queue()
        p = ctx.Process(target=read_and_answer, args=(shm.name, 1024, out))
        p.start()
        assert out.get(timeout=JOIN) == b'hello'
        p.join(JOIN)
        assert p.exitcode == 0
        assert bytes(shm.buf[100:105]) == b'olleh'
        # The child's exit did not unlink the segment (it shares our resource tracker).
        assert os.path.exists(shm_path(shm.name))
        again = SharedMemory(shm.name)
        assert bytes(again.buf[:5]) == b'hello'
        again.close()
    finally:
        shm.close()
        shm.unlink()
    assert not os.path.exists(shm_path(shm.name))


def test_create_in_child_attach_in_parent(ctx):
    out, done = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=create_in_child, args=(out, done))
    p.start()
    name = out.get(timeout=JOIN)
    shm = SharedMemory(name)
    try:
        assert bytes(shm.buf[:6]) == b'child!'
        done.put(True)
        p.join(JOIN)
        assert p.exitcode == 0
        assert bytes(shm.buf[:6]) == b'child!'     # still there after the child's exit
    finally:
        shm.close()
        shm.unlink()
    assert not os.path.exists(shm_path(name))


def test_shareable_list_across_processes(ctx):
    sl = ShareableList([1, 2.5, 'abc', b'xy', None, True])
    try:
        p = ctx.Process(target=edit_list, args=(sl, sl.shm.name))   # pickled by name
        p.start()
        p.join(JOIN)
        assert p.exitcode == 0
        assert list(sl) == [42, 5.0, 'xyz', b'yx', 'set ', False]
        assert sl.count(False) == 1 and sl.index('xyz') == 2
    finally:
        sl.shm.close()
        sl.shm.unlink()


def test_shared_memory_manager(ctx):
    if ctx is STD:
        smm = std_managers.SharedMemoryManager(ctx=STD)
    else:
        smm = dmp_managers.SharedMemoryManager()
    with smm:
        if ctx is dragon_mp:
            assert isinstance(smm._process, dragon_mp.Process)
        shm = smm.SharedMemory(64)
        sl = smm.ShareableList(['a', 1, 2.0])
        names = [shm.name, sl.shm.name]
        conn = smm._Client(smm.address, authkey=smm._authkey)
        try:
            listed = std_managers.dispatch(conn, None, 'list_segments')
        finally:
            conn.close()
        assert sorted(listed) == sorted(names)
        p = ctx.Process(target=write_managed, args=(shm.name, 77))
        p.start()
        p.join(JOIN)
        assert p.exitcode == 0
        assert shm.buf[0] == 77
        l2 = ShareableList(name=sl.shm.name)
        assert list(l2) == ['a', 1, 2.0]
        l2.shm.close()
        shm.close()
        sl.shm.close()
    # The manager's shutdown unlinked every segment it tracked.
    assert smm._process.exitcode == 0
    for name in names:
        assert not os.path.exists(shm_path(name)), name


def test_segment_created_during_a_run_stays_tracked():
    """A segment created by a dragon_mp program after its run started is still
    cleaned up by the resource tracker: the tracker must not be part of the run
    (the run's end kills every process carrying the run id)."""
    from multiprocessing import resource_tracker
    import dragon_mp._runtime as rt
    rt.shutdown()
    resource_tracker._resource_tracker._stop()   # so that this process starts the next one
    q = dragon_mp.Queue()                  # the run has started
    shm = SharedMemory(create=True, size=128)
    try:
        tracker = resource_tracker._resource_tracker._pid
        if tracker is not None:
            with open(f'/proc/{tracker}/environ', 'rb') as f:
                run_vars = [v for v in f.read().split(b'\0') if v.startswith(b'DRAGON_MP_RUN=')]
            assert run_vars == [], 'the resource tracker belongs to the run'
        rt.shutdown()                      # the run ends
        del q
        assert resource_tracker._resource_tracker._check_alive()
    finally:
        shm.close()
        shm.unlink()
