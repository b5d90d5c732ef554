"""Installed packages a program imports are imported once, by the zygote.

Children of a program that imports numpy and pandas are forked from a
zygote that has imported them (dragon_mp.zygote_preload): they compute right
(numpy's BLAS threads included), draw different random numbers, and a
module that is unsafe to fork after import, or fails to import, is skipped
and named without breaking starts. Each program runs as a script of its own,
so each test has a fresh run and a fresh zygote.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import clean_env, require_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures('zygote_enabled')


# What a child reports: its parent (the zygote) and what that process has
# loaded, from /proc: a zygote that imported numpy maps its extension.
REPORT = '''
import os, sys

def zygote_maps():
    with open(f'/proc/{os.getppid()}/maps') as f:
        return f.read()

def report(q, tag=None):
    q.put((os.getpid(), os.getppid(), '_multiarray_umath' in zygote_maps(), tag))
'''


def run(tmp_path, source, files=(), **env):
    for name, text in files:
        (tmp_path / name).write_text(textwrap.dedent(text))
    prog = tmp_path / 'prog.py'
    prog.write_text(REPORT + textwrap.dedent(source))
    env = clean_env(**env)
    env['PYTHONPATH'] = os.pathsep.join([ROOT, str(tmp_path)])
    r = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True,
                       timeout=180, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_numpy_and_pandas_children_are_forked_warm_and_compute_right(tmp_path):
    require_module('numpy')
    require_module('pandas')
    r = run(tmp_path, '''
        import numpy as np
        import pandas as pd
        import dragon_mp as mp

        def compute(q, seed):
            # Large enough for OpenBLAS to use its threads in the child.
            rng = np.random.default_rng(seed)
            a = rng.random((400, 400))
            df = pd.DataFrame({'k': np.arange(1000) % 7, 'v': np.arange(1000.0)})
            q.put((seed, float((a @ a).sum()), df.groupby('k')['v'].sum().tolist(),
                   float(np.random.rand()), '_multiarray_umath' in zygote_maps(),
                   os.getppid()))

        if __name__ == '__main__':
            q = mp.Queue()
            ps = [mp.Process(target=compute, args=(q, s)) for s in range(4)]
            for p in ps:
                p.start()
            got = sorted(q.get(timeout=120) for _ in ps)
            for p in ps:
                p.join(60)
                assert p.exitcode == 0
            for seed, total, groups, _, warm, ppid in got:
                a = np.random.default_rng(seed).random((400, 400))
                assert abs(total - float((a @ a).sum())) < 1e-6 * abs(total), seed
                df = pd.DataFrame({'k': np.arange(1000) % 7, 'v': np.arange(1000.0)})
                assert groups == df.groupby('k')['v'].sum().tolist()
                assert ppid != os.getpid()         # forked by the zygote
                # The first start brings the packages: its child imports
                # them itself while the zygote does; the next ones are warm.
                assert warm or seed == 0, 'the zygote has not imported numpy'
            # numpy's global generator is seeded again in every child.
            assert len({g[3] for g in got}) == len(got)
            with mp.Pool(2) as pool:
                assert pool.map(abs, range(-20, 0)) == list(range(20, 0, -1))
            print('ok')
    ''')
    assert r.stdout.strip().endswith('ok')


THREAD_AT_IMPORT = ('threadmod.py', '''
    import threading, time
    threading.Thread(target=time.sleep, args=(3600,), daemon=True, name='threadmod').start()
    VALUE = 42
''')

FAILS_IN_ZYGOTE = ('failmod.py', '''
    import os
    if os.getppid() == 1 or 'FAILMOD_OK' not in os.environ:
        raise ImportError('failmod needs FAILMOD_OK')
    VALUE = 7
''')

LOADS_GO = ('gomod.py', '''
    import dragon_mp
    Q = dragon_mp.Queue()      # loads the Go runtime at import
''')


def test_unsafe_and_failing_modules_are_skipped_and_named(tmp_path):
    # Forced with DRAGON_MP_ZYGOTE_PRELOAD: a module that starts a thread at
    # import, one that loads dragon_mp's Go runtime, one that does not
    # import, one that does not exist. Each is named in the debug log, and
    # the zygote still forks (the children's parent is not the program).
    r = run(tmp_path, '''
        import logging
        import dragon_mp as mp
        import threadmod

        def child(q):
            import threadmod
            q.put((threadmod.VALUE, os.getppid()))

        if __name__ == '__main__':
            mp.log_to_stderr(logging.DEBUG)
            q = mp.Queue()
            for _ in range(3):
                p = mp.Process(target=child, args=(q,))
                p.start()
                value, ppid = q.get(timeout=60)
                p.join(60)
                assert p.exitcode == 0 and value == 42
                assert ppid != os.getpid()
            print('ok')
    ''', files=[THREAD_AT_IMPORT, FAILS_IN_ZYGOTE, LOADS_GO],
        DRAGON_MP_ZYGOTE_PRELOAD='threadmod,gomod,failmod,no_such_module_xyz')
    assert r.stdout.strip().endswith('ok')
    err = r.stderr
    assert 'not preloading threadmod: it starts Python threads (threadmod)' in err, err
    assert "not preloading gomod: it loads dragon_mp's Go runtime" in err, err
    assert 'not preloading failmod: its import failed' in err, err
    assert 'not preloading no_such_module_xyz: its import failed' in err, err
    assert 'cannot fork any more' not in err, err


# A module that records, in the file $MARK, every process that imports it
# (an absolute path: the zygote does not run in the program's directory).
MARKER = '''
    import os
    with open(os.environ['MARK'], 'a') as f:
        f.write(f'{os.getpid()}\\n')
'''


def test_user_modules_are_never_preloaded_and_numpy_can_be_forbidden(tmp_path):
    # A module of the program's own (next to the script) records every
    # process that imports it: the program and its children, never the
    # zygote or its probe (which would hold a stale copy after an edit).
    # -numpy keeps numpy out of the zygote.
    require_module('numpy')
    r = run(tmp_path, '''
        import numpy
        import dragon_mp as mp
        import usermod

        def child(q):
            report(q)

        if __name__ == '__main__':
            q = mp.Queue()
            seen = set()
            for _ in range(2):
                p = mp.Process(target=child, args=(q,))
                p.start()
                pid, ppid, warm, _ = q.get(timeout=60)
                p.join(60)
                seen.add(ppid)
                assert not warm, 'numpy is forbidden, yet the zygote maps it'
            with open(os.environ['MARK']) as f:
                pids = {int(x) for x in f.read().split()}
            assert not pids & seen, (pids, seen)
            print('ok')
    ''', files=[('usermod.py', MARKER)], DRAGON_MP_ZYGOTE_PRELOAD='-numpy',
        MARK=str(tmp_path / 'imported_by'))
    assert r.stdout.strip().endswith('ok')


def test_forced_module_is_imported_by_the_zygote_and_nothing_is_left(tmp_path):
    # set_forkserver_preload (stdlib's call) forces a module the program
    # never imports; the zygote imports it (after its probe did). Neither the
    # probe nor the fork that stops thread pools is left behind as a zombie.
    r = run(tmp_path, '''
        import dragon_mp as mp

        def child(q):
            q.put(os.getppid())

        def state(pid):
            try:
                with open(f'/proc/{pid}/stat') as f:
                    return f.read().rpartition(')')[2].split()[0]
            except OSError:
                return 'gone'

        if __name__ == '__main__':
            mp.set_forkserver_preload(['forcedmod'])
            q = mp.Queue()
            zygotes = set()
            for _ in range(3):
                p = mp.Process(target=child, args=(q,))
                p.start()
                zygotes.add(q.get(timeout=60))
                p.join(60)
                assert p.exitcode == 0
            zpid, = zygotes
            with open(os.environ['MARK']) as f:
                pids = [int(x) for x in f.read().split()]
            assert zpid in pids and os.getpid() not in pids, (zpid, pids)
            # A child that has just ended may wait a moment for the zygote's
            # reap (its requester did not wait for it): zombies must go.
            import time
            deadline = time.monotonic() + 10
            while True:
                with open(f'/proc/{zpid}/task/{zpid}/children') as f:
                    kids = [int(x) for x in f.read().split()]
                zombies = [k for k in kids if state(k) == 'Z']
                if not zombies or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert not zombies, zombies
            print('ok')
    ''', files=[('forcedmod.py', MARKER)], MARK=str(tmp_path / 'imported_by'))
    assert r.stdout.strip().endswith('ok')


def test_main_script_edits_between_runs_are_seen(tmp_path):
    # The zygote is the run's: a second run of an edited script (same
    # installed packages) runs the new code in its children.
    require_module('numpy')
    source = '''
        import numpy
        import dragon_mp as mp

        def child(q):
            q.put(VERSION)

        VERSION = {version}

        if __name__ == '__main__':
            q = mp.Queue()
            p = mp.Process(target=child, args=(q,))
            p.start()
            print('version', q.get(timeout=60))
            p.join(60)
    '''
    for version in (1, 2):
        r = run(tmp_path, source.replace('{version}', str(version)))
        assert r.stdout.split() == ['version', str(version)]
