"""The zygote's spare: a child forked ahead of time that waits for a request.

A spare must behave exactly like a child forked on request: it holds nothing
of a previous request (descriptors, cwd, environment), it dies with the
zygote, and DRAGON_MP_ZYGOTE_SPARE=0 turns it off.
"""

import os
import re
import sys
import signal

import pytest

import dragon_mp as mp
from dragon_mp import zygote

from conftest import wait_until

pytestmark = pytest.mark.usefixtures('zygote_enabled')


def report(q):
    # stdin is /dev/null, as in any multiprocessing child; a spare opened it
    # ahead under a high number, a child forked for its request at the lowest.
    assert os.path.samestat(os.fstat(sys.stdin.fileno()), os.stat(os.devnull))
    fds = []                   # what each descriptor is (numbers shift with stdin's)
    for n in os.listdir('/proc/self/fd'):
        try:
            fds.append(re.sub(r'\[\d+\]', '', os.readlink(f'/proc/self/fd/{n}')))
        except OSError:
            pass               # the listing's own descriptor
    fds.sort()
    q.put((os.getpid(), os.getppid(), os.getcwd(), os.environ.get('SPARE_TEST_VAR'), fds))


def zygote_children(zpid):
    kids = set()
    for tid in os.listdir(f'/proc/{zpid}/task'):
        with open(f'/proc/{zpid}/task/{tid}/children') as f:
            kids.update(int(p) for p in f.read().split())
    return kids


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except OSError:
        return False


def test_spares_hold_nothing_of_earlier_requests(tmp_path, monkeypatch):
    q = mp.Queue()
    seen = []
    for i in range(4):
        d = tmp_path / str(i)
        d.mkdir()
        monkeypatch.chdir(d)
        if i % 2:                      # a spare applies the last request's environment
            monkeypatch.delenv('SPARE_TEST_VAR', raising=False)
        else:
            monkeypatch.setenv('SPARE_TEST_VAR', str(i))
        p = mp.Process(target=report, args=(q,))
        p.start()
        got = q.get(timeout=30)
        p.join(30)
        assert p.exitcode == 0 and p._popen._conn is not None
        pid, ppid, cwd, var, fds = got
        assert pid == p.pid and ppid == zygote.serving_pid()
        assert cwd == str(d) and var == (None if i % 2 else str(i))
        seen.append(fds)
    assert all(fds == seen[0] for fds in seen), seen      # no descriptor carried over


def test_spare_waits_and_dies_with_the_zygote():
    q = mp.Queue()
    # A first start brings this process's installed packages (pytest's) to
    # the zygote, whose template imports them and serves from then on (the
    # forking process is zygote.serving_pid()): once a second start is
    # served, it is idle.
    for _ in range(2):
        w = mp.Process(target=report, args=(q,))
        w.start()
        q.get(timeout=60)
        w.join(30)
    p = mp.Process(target=report, args=(q,))     # the same request twice: nothing new to load
    p.start()
    q.get(timeout=30)
    p.join(30)
    zpid = zygote.serving_pid()
    # Once idle, the zygote has one child forked ahead, and only that one
    # (the one that ran is reaped: it may still be listed for a moment).
    assert wait_until(lambda: len(zygote_children(zpid) - {p.pid}) == 1, 10), \
        zygote_children(zpid)
    assert wait_until(lambda: len(zygote_children(zpid)) == 1, 10), zygote_children(zpid)
    spare, = zygote_children(zpid)
    assert spare != p.pid
    p = mp.Process(target=report, args=(q,))
    p.start()
    assert q.get(timeout=30)[0] == p.pid == spare       # the spare served the request
    p.join(30)
    assert wait_until(lambda: len(zygote_children(zpid)) == 1, 10)
    spare, = zygote_children(zpid)
    os.kill(zpid, signal.SIGKILL)
    assert wait_until(lambda: not alive(spare), 10), 'a spare outlived the zygote'
    p = mp.Process(target=os.getpid)                  # a new zygote takes over
    p.start()
    p.join(30)
    assert p.exitcode == 0 and zygote.serving_pid() != zpid


def test_no_spare_when_disabled(monkeypatch):
    zygote.shutdown()
    monkeypatch.setenv('DRAGON_MP_ZYGOTE_SPARE', '0')
    q = mp.Queue()
    for _ in range(2):
        p = mp.Process(target=report, args=(q,))
        p.start()
        assert q.get(timeout=30)[0] == p.pid
        p.join(30)
        assert p.exitcode == 0 and p._popen._conn is not None
    zpid = zygote.serving_pid()
    assert wait_until(lambda: not zygote_children(zpid), 10)
    zygote.shutdown()        # the next test gets a zygote with spares


def test_idle_zygote_drops_its_spare_and_forks_one_again_after_a_request(monkeypatch):
    zygote.shutdown()
    monkeypatch.setenv('DRAGON_MP_ZYGOTE_SPARE_IDLE', '0.5')
    q = mp.Queue()
    p = mp.Process(target=report, args=(q,))
    p.start()
    q.get(timeout=30)
    p.join(30)
    zpid = zygote.serving_pid()
    assert wait_until(lambda: len(zygote_children(zpid)) == 1, 10)     # the spare
    spare, = zygote_children(zpid)
    assert wait_until(lambda: not zygote_children(zpid), 10), 'the spare outlived its idle time'
    assert not alive(spare)
    p = mp.Process(target=report, args=(q,))                          # forked on request
    p.start()
    assert q.get(timeout=30)[0] == p.pid != spare
    p.join(30)
    assert p.exitcode == 0
    assert wait_until(lambda: len(zygote_children(zpid)) == 1, 10)     # a spare again
    zygote.shutdown()        # the next test gets a zygote with the default idle time


def stdin_and_conn(conn, q):
    q.put((sys.stdin.fileno(), sys.stdin.read(), conn.fileno(), conn.recv()))


def test_a_passed_descriptor_on_the_spares_stdin_number():
    """A spare opens /dev/null as stdin ahead, under a high number; a requester's descriptor wins it."""
    from multiprocessing.connection import Pipe as StdlibPipe
    from dragon_mp import zygote_child
    q = mp.Queue()
    for _ in range(2):                 # the second start gets a spare
        p = mp.Process(target=report, args=(q,))
        p.start()
        q.get(timeout=30)
        p.join(30)
    a, b = StdlibPipe()
    high = zygote_child.STDIN_FD_MIN
    os.dup2(b.fileno(), high)
    b.close()
    from multiprocessing.connection import Connection
    conn = Connection(high)            # passed to the child under the same number
    try:
        a.send('through fd %d' % high)
        p = mp.Process(target=stdin_and_conn, args=(conn, q))
        p.start()
        stdin_fd, data, conn_fd, msg = q.get(timeout=30)
        p.join(30)
    finally:
        conn.close()
        a.close()
    assert p.exitcode == 0
    assert conn_fd == high and msg == 'through fd %d' % high
    assert stdin_fd != high and data == ''

