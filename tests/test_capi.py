"""The C API (capi/, include/dragon_mp.h(pp), docs/c_api.md): C and C++ programs on a run's queues and locks.

The programs are compiled here (gcc, g++) from examples/ and from PROBE below, never shipped as
binaries. They are started as dragon_mp Processes whose target execs them (_exec): the test process
has loaded Go and must not fork, a Process is forked by the run's zygote, and the program inherits
the run's environment (DRAGON_MP_RUN...) from it.
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

import dragon_mp
from dragon_mp import _core, capi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, 'examples')

pytestmark = pytest.mark.skipif(
    not (shutil.which('gcc') and shutil.which('g++')
         and os.path.exists(os.path.join(capi.library_dir(), 'libdragon_mp.so'))),
    reason='needs gcc, g++ and dragon_mp built with its C API (dragon_mp/lib/libdragon_mp.so)')

# A C program for what the examples do not show: each mode checks return codes itself and exits 0
# when every one was the expected one (its stdout says what it saw).
PROBE = r'''
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dragon_mp.h>

#define EXPECT(call, want) do { int rc_ = (call); \
    printf("%s -> %d (%s) [%s]\n", #call, rc_, dmp_strerror(rc_), dmp_last_error()); fflush(stdout); \
    if (rc_ != (want)) { printf("FAIL: expected %d\n", (want)); return 1; } } while (0)

int main(int argc, char **argv)
{
    const char *mode = argv[1];
    dmp_queue_t q;
    dmp_lock_t l;
    if (!strcmp(mode, "notattached")) {        /* argv[2]: a queue descriptor */
        EXPECT(dmp_queue_open(argv[2], &q), DMP_ENOTATTACHED);
        return 0;
    }
    EXPECT(dmp_attach(), DMP_OK);
    EXPECT(dmp_attach(), DMP_OK);              /* a second attach does nothing */
    if (!strcmp(mode, "baddesc")) {            /* argv[2...]: descriptors that must be refused */
        for (int i = 2; i < argc; i++) {
            EXPECT(dmp_queue_open(argv[i], &q), DMP_EBADDESC);
            if (!*dmp_last_error())
                return 1;
        }
        EXPECT(dmp_queue_open(NULL, &q), DMP_EINVAL);
        EXPECT(dmp_queue_send(12345, "x", 1, 0), DMP_EINVAL);
    } else if (!strcmp(mode, "timeouts")) {    /* argv[2]: an empty queue; argv[3]: a full bounded one */
        dmp_queue_t full;
        void *buf = (void *)1;
        size_t len = 7;
        EXPECT(dmp_queue_open(argv[2], &q), DMP_OK);
        EXPECT(dmp_queue_open(argv[3], &full), DMP_OK);
        EXPECT(dmp_queue_recv(q, &buf, &len, 0), DMP_ETIMEOUT);
        if (buf || len)
            return 1;
        EXPECT(dmp_queue_recv(q, &buf, &len, 50000000), DMP_ETIMEOUT);
        EXPECT(dmp_queue_send(full, "x", 1, 0), DMP_EFULL);
        EXPECT(dmp_queue_send(full, "x", 1, 50000000), DMP_EFULL);
        char big[100000];
        memset(big, 1, sizeof big);
        EXPECT(dmp_queue_send(full, big, sizeof big, 50000000), DMP_EFULL);   /* a large one too */
        EXPECT(dmp_queue_close(full), DMP_OK);
        EXPECT(dmp_queue_close(full), DMP_EINVAL);
        EXPECT(dmp_queue_send(q, "done", 4, 0), DMP_OK);
    } else if (!strcmp(mode, "flood")) {       /* argv[2]: a queue; argv[3]: message size: send until killed */
        size_t n = strtoul(argv[3], NULL, 10);
        char *msg = malloc(n);
        memset(msg, 'f', n);
        EXPECT(dmp_queue_open(argv[2], &q), DMP_OK);
        for (;;)
            if (dmp_queue_send(q, msg, n, -1) != DMP_OK)
                return 1;
    } else if (!strcmp(mode, "lock")) {        /* argv[2]: a Lock; argv[3]: a queue to Python; argv[4]: from Python */
        dmp_queue_t to, from;
        void *buf;
        size_t len;
        EXPECT(dmp_lock_open(argv[2], &l), DMP_OK);
        EXPECT(dmp_queue_open(argv[3], &to), DMP_OK);
        EXPECT(dmp_queue_open(argv[4], &from), DMP_OK);
        dmp_lock_t other;
        EXPECT(dmp_lock_open(argv[3], &other), DMP_EBADDESC);        /* a queue is not a lock */
        EXPECT(dmp_lock_acquire(l, 0), DMP_OK);
        EXPECT(dmp_lock_acquire(l, 20000000), DMP_ETIMEOUT);         /* a Lock: already held */
        EXPECT(dmp_queue_send(to, "held", 4, -1), DMP_OK);
        EXPECT(dmp_queue_recv(from, &buf, &len, -1), DMP_OK);        /* Python saw it held */
        dmp_free(buf);
        EXPECT(dmp_lock_release(l), DMP_OK);
        EXPECT(dmp_lock_release(l), DMP_ERELEASE);
        EXPECT(dmp_lock_close(l), DMP_OK);
    } else {
        return 2;
    }
    EXPECT(dmp_detach(), DMP_OK);
    EXPECT(dmp_queue_open(argv[2], &q), DMP_ENOTATTACHED);
    return 0;
}
'''


def _exec(argv, out):
    """Process target: become the program argv, its output into the file out."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.execv(argv[0], argv)


def _compile(compiler, src, exe, *extra):
    subprocess.run([compiler, '-O2', '-Wall', '-Werror', *extra, src, *capi.cflags(), *capi.libs(),
                    '-o', exe], check=True, capture_output=True, text=True)


@pytest.fixture(scope='module')
def programs(tmp_path_factory):
    d = tmp_path_factory.mktemp('capi')
    probe_src = d / 'probe.c'
    probe_src.write_text(PROBE)
    exes = {'probe': str(d / 'probe'), 'echo': str(d / 'echo'), 'producer': str(d / 'c_producer')}
    _compile('gcc', str(probe_src), exes['probe'])
    _compile('g++', os.path.join(EXAMPLES, 'echo.cpp'), exes['echo'], '-std=c++17')
    _compile('gcc', os.path.join(EXAMPLES, 'c_producer.c'), exes['producer'])
    exes['dir'] = str(d)
    return exes


class Program:
    """A compiled program running as a dragon_mp Process of this run."""

    def __init__(self, programs, name, *args):
        self.out = os.path.join(programs['dir'], f'{name}.{time.monotonic_ns()}.out')
        self.p = dragon_mp.Process(target=_exec, args=([programs[name], *map(str, args)], self.out))
        self.p.start()

    def finish(self, timeout=60):
        self.p.join(timeout)
        if self.p.exitcode is None:
            self.p.kill()
            self.p.join(10)
        with open(self.out) as f:
            return self.p.exitcode, f.read()

    def check(self, timeout=60):
        code, out = self.finish(timeout)
        assert code == 0, out
        return out


def stats():
    return json.loads(_core.gocore().RuntimeStats())


def _wait_until(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


def _pattern(n, seed):
    return bytes((i * 31 + seed) & 0xff for i in range(min(n, 4096))) * (n // 4096 + 1)


SIZES = [1, 255, 256, 257, 65536, 1 << 20, 64 << 20, 0]     # 0 B last: it also ends echo.cpp


def test_descriptors_name_the_run_and_the_object():
    q, lock, sem = dragon_mp.Queue(), dragon_mp.Lock(), dragon_mp.Semaphore(2)
    run = os.environ['DRAGON_MP_RUN']
    assert q.descriptor() == f'dmp1:q:{run}:{q._channel._addr:x}'
    assert lock.descriptor().startswith(f'dmp1:s:{run}:')
    assert sem.descriptor() != lock.descriptor()
    assert dragon_mp.SimpleQueue().descriptor().startswith('dmp1:q:')


def test_bytes_api_in_python():
    q = dragon_mp.Queue()
    for data in (b'', b'x', b'y' * 300, bytearray(b'z' * 100000), memoryview(b'abc')):
        q.put_bytes(data)
        assert q.get_bytes(timeout=10) == bytes(data)
    with pytest.raises(queue.Empty):
        q.get_bytes(timeout=0.01)
    q.put(('a', 1))                          # a pickle is a message like any other, in raw form too
    assert q.get_bytes(timeout=10).startswith(b'\x80')
    bounded = dragon_mp.Queue(1)
    bounded.put_bytes(b'1')
    with pytest.raises(queue.Full):
        bounded.put_bytes(b'2', timeout=0.01)
    sq = dragon_mp.SimpleQueue()
    sq.put_bytes(b'simple')
    assert sq.get_bytes() == b'simple'
    jq = dragon_mp.JoinableQueue()
    jq.put_bytes(b'task')
    assert jq.get_bytes() == b'task'
    jq.task_done()
    jq.join()


def test_cpp_echo_round_trips(programs):
    """0 B to 64 MiB, Python -> C++ -> Python: both directions, content checked."""
    to_c, from_c, lock = dragon_mp.Queue(), dragon_mp.Queue(), dragon_mp.Lock()
    echo = Program(programs, 'echo', to_c.descriptor(), from_c.descriptor(), lock.descriptor())
    try:
        for i, n in enumerate(SIZES):
            data = _pattern(n, i)[:n]
            to_c.put_bytes(data)
            back = from_c.get_bytes(timeout=60)
            assert len(back) == n and back == data, n
        echo.check()
    finally:
        echo.p.kill()
    assert lock.acquire(timeout=5)


def test_c_producer_example_feeds_a_queue(programs):
    q = dragon_mp.Queue()
    prod = Program(programs, 'producer', q.descriptor(), 1000)
    items = []
    while (item := q.get_bytes(timeout=60)):
        items.append(int(item))
    prod.check()
    assert items == list(range(1000))


def run_example(name, *args):
    """examples/<name> as a user runs it: its own run, this checkout's dragon_mp."""
    env = {k: v for k, v in os.environ.items() if k != 'DRAGON_MP_RUN'}
    env['PYTHONPATH'] = os.pathsep.join([ROOT, env.get('PYTHONPATH', '')])
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], env=env,
                       capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_c_producer_example_program():
    """examples/c_producer.py as a user runs it (its own run, a Pool)."""
    out = run_example('c_producer.py', '200')
    assert '200 items from C, sum of squares %d' % sum(i * i for i in range(200)) in out


def test_timeouts(programs):
    empty, full = dragon_mp.Queue(), dragon_mp.Queue(1)
    full.put_bytes(b'x')
    out = Program(programs, 'probe', 'timeouts', empty.descriptor(), full.descriptor()).check()
    assert 'ETIMEOUT' not in out        # codes are printed with dmp_strerror's words
    assert empty.get_bytes(timeout=10) == b'done'
    assert full.get_bytes(timeout=10) == b'x' and full.qsize() == 0


def test_bad_descriptors(programs):
    q = dragon_mp.Queue()
    good = q.descriptor()
    run, addr = good.split(':')[2:]
    lock = dragon_mp.Lock()
    gone = dragon_mp.Queue()
    gone_desc = gone.descriptor()
    del gone
    bad = ['', 'garbage', 'dmp1:q:%s' % run, 'dmp1:q:%s:zz' % run, 'dmp1:q:%s:0' % run,
           'dmp1:q:r1-2-abcdef:%s' % addr,                   # another run
           'dmp1:s:%s:%s' % (run, addr),                     # another kind
           lock.descriptor().replace(':s:', ':q:'),          # a lock named as a queue
           gone_desc]                                        # a queue that is gone
    out = Program(programs, 'probe', 'baddesc', *bad).check()
    assert 'belongs to run r1-2-abcdef' in out, out
    assert Program(programs, 'probe', 'notattached', good).check()
    q.put_bytes(b'still works')
    assert q.get_bytes(timeout=10) == b'still works'


def test_lock(programs):
    lock, to_py, from_py = dragon_mp.Lock(), dragon_mp.Queue(), dragon_mp.Queue()
    probe = Program(programs, 'probe', 'lock', lock.descriptor(), to_py.descriptor(), from_py.descriptor())
    assert to_py.get_bytes(timeout=60) == b'held'
    assert not lock.acquire(timeout=0.05)             # C holds it
    from_py.put_bytes(b'go')
    probe.check()
    assert lock.acquire(timeout=10)
    lock.release()


@pytest.mark.parametrize('size', [100, 64 << 20])
def test_killed_mid_send_leaks_nothing(programs, size):
    """A C process SIGKILLed while it sends: its reference and the block it was filling are given
    back by the run's head (gocore/ledger), and the queue keeps working."""
    q = dragon_mp.Queue()
    base = stats()
    sender = Program(programs, 'probe', 'flood', q.descriptor(), size)
    assert _wait_until(lambda: q.qsize() >= 3, 60), sender.finish(1)
    if size > 1 << 20:
        time.sleep(0.01)                               # most likely inside a 64 MiB copy now
    os.kill(sender.p.pid, signal.SIGKILL)
    code, _ = sender.finish()
    assert code == -signal.SIGKILL
    while True:
        try:
            assert len(q.get_bytes(timeout=0)) == size
        except queue.Empty:
            break
    assert _wait_until(lambda: stats()['in_use'] <= base['in_use'], 20), (stats(), base)
    assert _wait_until(lambda: stats()['held_refs'] <= base['held_refs'], 20), (stats(), base)
    q.put_bytes(b'after')
    assert q.get_bytes(timeout=10) == b'after'


def test_worker_group_example_program():
    """examples/worker_group.py as a user runs it: a ProcessGroup of 8 C workers with restart."""
    check_worker_group_output(run_example('worker_group.py', '200'), 200)


def check_worker_group_output(out, count):
    """A worker takes at most 5 tasks, then exits and is replaced: at least count/5 workers answered
    (the last tasks spread over the workers then alive), so some were restarts."""
    m = re.search(r'(\d+) answers from (\d+) worker processes \((\d+) restarts\), sum of squares (\d+)', out)
    assert m, out
    answers, workers, restarts, total = map(int, m.groups())
    assert answers == count and total == sum(i * i for i in range(count)), out
    assert count // 5 <= workers <= 8 + restarts and restarts >= count // 5 - 8, out
