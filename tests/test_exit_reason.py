"""Process.exit_reason and the reason in WorkerLostError (issue 19, one node).

The Go core watches every child it starts (gocore/events): with eBPF when it
loads (root), which names the sender of a signal and sees the OOM killer's
choice; else the fallback (exit status, the memory cgroup's OOM count, the
kernel log), which says less but gives the same categories. The in-process
tests use this process's tracer (eBPF as root; they are skipped otherwise);
the fallback and the OOM cases run in a fresh program (its own run and
tracer), the fallback one forced with DRAGON_MP_TEST_NO_BPF=1 (test-only).
Both start paths are covered: the zygote's fork and the Go core's exec.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import dragon_mp

from conftest import clean_env

HERE = os.path.dirname(os.path.abspath(__file__))
JOIN = 30


def sleep_forever():
    time.sleep(60)


def segfault():
    import ctypes
    ctypes.string_at(0)


def exit_with(code):
    sys.exit(code)


def hog(nbytes):
    # The OOM killer's choice is the process with the highest score: this
    # worker, not the program's process or the zygote (charged to the same
    # cgroup).
    with open('/proc/self/oom_score_adj', 'w') as f:
        f.write('1000')
    data = b'x' * nbytes
    return len(data)


def kill_from_another_process(p):
    """SIGKILL p from a separate process; returns that process's pid."""
    killer = subprocess.Popen([sys.executable, '-c',
                               'import os, sys; os.kill(int(sys.argv[1]), 9)', str(p.pid)])
    killer.wait()
    return killer.pid


# What a fresh program does (run by `program`): prints a JSON line.
SCRIPT = r'''
import json, os, subprocess, sys
sys.path.insert(0, %(here)r)
import dragon_mp
import test_exit_reason as t

mode = sys.argv[1]
if mode == 'kill':
    p = dragon_mp.Process(target=t.sleep_forever)
    p.start()
    killer = t.kill_from_another_process(p)
    p.join()
    out = {'reason': p.exit_reason, 'killer': killer}
elif mode == 'segv':
    p = dragon_mp.Process(target=t.segfault)
    p.start()
    p.join()
    out = {'reason': p.exit_reason}
elif mode == 'oom':
    with open(os.path.join(sys.argv[2], 'cgroup.procs'), 'w') as f:
        f.write(str(os.getpid()))
    with dragon_mp.Pool(1) as pool:
        try:
            out = {'result': pool.apply(t.hog, (1 << 30,))}
        except dragon_mp.pool.WorkerLostError as e:
            out = {'error': str(e)}
elif mode in ('executor_oom', 'executor_exit'):
    import concurrent.futures as cf
    if mode == 'executor_oom':
        with open(os.path.join(sys.argv[2], 'cgroup.procs'), 'w') as f:
            f.write(str(os.getpid()))
    task = (t.hog, 1 << 30) if mode == 'executor_oom' else (os._exit, 3)
    with cf.ProcessPoolExecutor(1, mp_context=dragon_mp.get_context()) as ex:
        try:
            out = {'result': ex.submit(*task).result(timeout=60)}
        except cf.process.BrokenProcessPool as e:
            out = {'error': str(e), 'cause': str(e.__cause__)}
out['mode'] = dragon_mp._core.gocore().ExitTracerMode()
print(json.dumps(out))
'''


def program(*args, no_bpf=False, zygote=True):
    env = clean_env()
    env['PYTHONPATH'] = os.pathsep.join([os.path.dirname(os.path.dirname(dragon_mp.__file__)),
                                         env.get('PYTHONPATH', '')])
    if no_bpf:
        env['DRAGON_MP_TEST_NO_BPF'] = '1'
    if not zygote:
        env['DRAGON_MP_ZYGOTE'] = '0'
    r = subprocess.run([sys.executable, '-c', SCRIPT % {'here': HERE}] + list(args),
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(params=['zygote', 'exec'])
def start_path(request, monkeypatch):
    if request.param == 'exec':
        monkeypatch.setenv('DRAGON_MP_ZYGOTE', '0')
    else:
        monkeypatch.delenv('DRAGON_MP_ZYGOTE', raising=False)
    return request.param


def tracer_mode():
    return dragon_mp._core.gocore().ExitTracerMode()


@pytest.fixture
def ebpf():
    # Loads this runtime's tracer if no process was started yet.
    if tracer_mode() != 'ebpf':
        if os.geteuid() == 0:
            pytest.fail('eBPF did not load as root: ' + tracer_mode())
        pytest.skip('eBPF needs root: ' + tracer_mode())


def test_running_and_normal_exit(start_path):
    p = dragon_mp.Process(target=sleep_forever)
    assert p.exit_reason is None            # not started
    p.start()
    assert p.exit_reason is None            # running
    p.terminate()
    p.join(JOIN)
    assert p.exit_reason.startswith('killed by SIGTERM')
    p = dragon_mp.Process(target=exit_with, args=(0,))
    p.start()
    p.join(JOIN)
    assert p.exitcode == 0 and p.exit_reason is None
    p = dragon_mp.Process(target=exit_with, args=(3,))
    p.start()
    p.join(JOIN)
    assert p.exit_reason == 'exited 3'


def test_kill_names_the_sender(ebpf, start_path):
    p = dragon_mp.Process(target=sleep_forever)
    p.start()
    killer = kill_from_another_process(p)
    p.join(JOIN)
    assert p.exitcode == -signal.SIGKILL
    assert p.exit_reason.startswith('killed by SIGKILL from pid %d (' % killer), p.exit_reason


def test_terminate_names_this_process(ebpf, start_path):
    p = dragon_mp.Process(target=sleep_forever)
    p.start()
    p.terminate()
    p.join(JOIN)
    assert p.exit_reason.startswith('killed by SIGTERM from pid %d (' % os.getpid()), p.exit_reason


def test_segfault(ebpf, start_path):
    p = dragon_mp.Process(target=segfault)
    p.start()
    p.join(JOIN)
    assert p.exitcode == -signal.SIGSEGV
    assert p.exit_reason == 'SIGSEGV (a memory fault in the process itself)'


@pytest.mark.parametrize('zygote', [True, False], ids=['zygote', 'exec'])
def test_fallback_same_categories(zygote):
    out = program('kill', no_bpf=True, zygote=zygote)
    assert out['mode'].startswith('fallback')
    assert out['reason'] == 'killed by SIGKILL (sender unknown)'
    out = program('segv', no_bpf=True, zygote=zygote)
    assert out['reason'].startswith('killed by SIGSEGV'), out


@pytest.fixture
def memory_cgroup():
    """A v1 memory cgroup under this process's own, 256 MiB; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip('making a memory cgroup needs root')
    with open('/proc/self/cgroup') as f:
        lines = [line.strip().split(':', 2) for line in f]
    own = [path for _, ctrl, path in lines if 'memory' in ctrl.split(',')]
    if not own or not os.path.isdir('/sys/fs/cgroup/memory'):
        pytest.skip('no v1 memory cgroup here')
    path = os.path.join('/sys/fs/cgroup/memory' + own[0], 'dmp-exit-reason-%d' % os.getpid())
    os.mkdir(path)
    try:
        for name in ('memory.limit_in_bytes', 'memory.memsw.limit_in_bytes'):
            try:
                with open(os.path.join(path, name), 'w') as f:
                    f.write(str(256 << 20))
            except OSError:
                pass            # no swap accounting
        yield path
    finally:
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(path)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@pytest.mark.parametrize('no_bpf', [False, True], ids=['ebpf', 'fallback'])
def test_pool_worker_oom(memory_cgroup, no_bpf):
    out = program('oom', memory_cgroup, no_bpf=no_bpf)
    assert 'error' in out, out
    cgroup = memory_cgroup[len('/sys/fs/cgroup/memory'):]
    # eBPF sees the OOM killer's choice; the fallback reads it in the
    # kernel log (root can).
    assert 'killed by the OOM killer (cgroup %s, rss ' % cgroup in out['error'], out
    assert 'limit 256 MiB)' in out['error'], out


def test_executor_worker_exit_says_why():
    # stdlib's BrokenProcessPool says only "terminated abruptly": with dragon_mp's
    # processes its message and its __cause__ name the worker and why it ended.
    out = program('executor_exit')
    assert 'terminated abruptly' in out['error'], out
    assert re.search(r'process \d+ \(\S+\): exited 3$', out['error']), out
    assert 'exited 3' in out['cause'], out


@pytest.mark.parametrize('no_bpf', [False, True], ids=['ebpf', 'fallback'])
def test_executor_worker_oom(memory_cgroup, no_bpf):
    out = program('executor_oom', memory_cgroup, no_bpf=no_bpf)
    cgroup = memory_cgroup[len('/sys/fs/cgroup/memory'):]
    assert 'killed by the OOM killer (cgroup %s, rss ' % cgroup in out['error'], out
    assert 'limit 256 MiB)' in out['cause'], out
