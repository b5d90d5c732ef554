"""Installed packages a program imports are imported once, by a template.

Children of a program that imports numpy and pandas are forked from a
template the zygote made, which has imported them (dragon_mp.zygote_preload):
they compute right (numpy's BLAS threads included), draw different random
numbers, and a module that is unsafe to fork after import, fails to import,
or whose import never ends, is skipped and named without breaking starts.
The template starts importing at `import dragon_mp`, before the first start;
packages imported later make a second template; a template that dies leaves
the zygote serving. Each program runs as a script of its own, so each test
has a fresh run and a fresh zygote.
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
                assert ppid != os.getpid()         # forked by the template
                assert warm, 'the template has not imported numpy'
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


def run_processes_of(runid, exclude):
    """Pids of the processes of run runid (by their environment), but exclude."""
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == exclude:
            continue
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                if f'DRAGON_MP_RUN={runid}'.encode() in f.read().split(b'\0'):
                    out.append(int(pid))
        except OSError:
            pass
    return out


def test_template_imports_the_main_scripts_packages_before_the_first_start(tmp_path):
    # `import dragon_mp` first (PEP 8's order), then numpy: a template of the
    # run has numpy loaded before the program starts anything, and the first
    # child is forked from it.
    require_module('numpy')
    r = run(tmp_path, """
        import dragon_mp as mp
        import numpy
        import time

        def child(q):
            report(q)

        def maps(pid):
            try:
                with open(f'/proc/{pid}/maps') as f:
                    return f.read()
            except OSError:
                return ''

        if __name__ == '__main__':
            from dragon_mp import _runtime
            from test_helper import run_processes_of
            runid = _runtime.planned_runid()
            deadline = time.monotonic() + 60
            found = []
            while not found and time.monotonic() < deadline:
                found = [p for p in run_processes_of(runid, os.getpid())
                         if '_multiarray_umath' in maps(p)]
                time.sleep(0.02)
            assert found, 'no template of the run imported numpy before a start'
            q = mp.Queue()
            p = mp.Process(target=child, args=(q,))
            p.start()
            pid, ppid, warm, _ = q.get(timeout=60)
            p.join(60)
            assert p.exitcode == 0 and warm and ppid in found, (ppid, found)
            print('ok')
    """, files=[('test_helper.py', 'import os\n' + _source_of(run_processes_of))])
    assert r.stdout.strip().endswith('ok')


def _source_of(fn):
    import inspect
    return inspect.getsource(fn)


def test_packages_imported_later_make_a_second_template(tmp_path):
    # pandas is imported after the first start, by a name the script's
    # text does not show: the next start brings it, and a template forked
    # from the first one imports it and serves.
    require_module('numpy')
    require_module('pandas')
    r = run(tmp_path, """
        import dragon_mp as mp
        import numpy

        def child(q):
            q.put((os.getppid(), '_multiarray_umath' in zygote_maps(),
                   '/pandas/_libs/' in zygote_maps()))

        def parent_of(pid):
            with open(f'/proc/{pid}/stat') as f:
                return int(f.read().rpartition(')')[2].split()[1])

        if __name__ == '__main__':
            q = mp.Queue()
            p = mp.Process(target=child, args=(q,))
            p.start()
            first, np_warm, pd_warm = q.get(timeout=60)
            p.join(60)
            assert np_warm and not pd_warm
            import importlib
            importlib.import_module('pandas')    # not seen in the script's text
            for _ in range(2):
                p = mp.Process(target=child, args=(q,))
                p.start()
                second, np_warm, pd_warm = q.get(timeout=60)
                p.join(60)
                assert p.exitcode == 0 and np_warm and pd_warm
            assert second != first and parent_of(second) == first
            print('ok')
    """)
    assert r.stdout.strip().endswith('ok')


def test_a_template_that_dies_leaves_the_zygote_serving(tmp_path):
    # SIGKILL the template that serves (the children's parent): the zygote
    # takes requests again (cold children, correct).
    require_module('numpy')
    r = run(tmp_path, """
        import signal
        import dragon_mp as mp
        import numpy

        def child(q):
            report(q)

        def start_one(q):
            p = mp.Process(target=child, args=(q,))
            p.start()
            _, ppid, warm, _ = q.get(timeout=60)
            p.join(60)
            assert p.exitcode == 0
            return ppid, warm

        if __name__ == '__main__':
            q = mp.Queue()
            template, warm = start_one(q)
            assert warm and start_one(q) == (template, True)
            os.kill(template, signal.SIGKILL)
            zygote, warm = start_one(q)
            assert zygote != template and not warm
            assert start_one(q) == (zygote, False)
            print('ok')
    """)
    assert r.stdout.strip().endswith('ok')


def test_a_template_that_dies_importing_has_its_module_skipped(tmp_path):
    # A forced module whose import never ends: the template is killed inside
    # it (as its timeout would), the module is skipped and named, and the
    # start that waited for it is served at once.
    r = run(tmp_path, """
        import logging, signal, time
        import dragon_mp as mp

        def child(q):
            q.put(os.getppid())

        if __name__ == '__main__':
            mp.log_to_stderr(logging.DEBUG)
            mark = os.environ['MARK']
            deadline = time.monotonic() + 60
            while not os.path.exists(mark) and time.monotonic() < deadline:
                time.sleep(0.02)
            with open(mark) as f:
                importing = int(f.read().split()[0])
            os.kill(importing, signal.SIGKILL)      # the template, inside slowmod's import
            q = mp.Queue()
            t0 = time.monotonic()
            for _ in range(2):
                p = mp.Process(target=child, args=(q,))
                p.start()
                assert q.get(timeout=60) != importing
                p.join(60)
                assert p.exitcode == 0
            assert time.monotonic() - t0 < 20
            print('ok')
    """, files=[('slowmod.py', """
        import os, time
        with open(os.environ['MARK'] + '.tmp', 'w') as f:
            f.write(f'{os.getpid()}\\n')
        os.rename(os.environ['MARK'] + '.tmp', os.environ['MARK'])
        time.sleep(600)
    """)], DRAGON_MP_ZYGOTE_PRELOAD='slowmod', MARK=str(tmp_path / 'importing'))
    assert r.stdout.strip().endswith('ok')
    assert 'not preloading slowmod: the process importing it was killed by SIGKILL' in r.stderr, \
        r.stderr


def test_a_program_that_starts_nothing_leaves_nothing(tmp_path):
    # The zygote and template started at import end with the program, and
    # the process spawned to start them is reaped (no zombie child).
    require_module('numpy')
    r = run(tmp_path, """
        import dragon_mp as mp
        import numpy

        if __name__ == '__main__':
            from dragon_mp import _runtime
            q = mp.Queue()
            q.put(1)
            assert q.get() == 1
            print(_runtime.runid())
    """)
    runid = r.stdout.split()[-1]
    import time
    deadline = time.monotonic() + 10
    while run_processes_of(runid, os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not run_processes_of(runid, os.getpid())


def test_main_script_packages_reads_import_lines(tmp_path, monkeypatch):
    # The scan behind the start at import: installed packages named by import
    # lines (indented ones too), not the standard library, the program's own
    # modules, relative imports or text inside triple-quoted strings.
    require_module('numpy')
    require_module('pandas')
    from dragon_mp import zygote_prestart
    script = tmp_path / 'script.py'
    script.write_text(textwrap.dedent('''
        """import pandas   (a docstring, not an import)
        """
        import os, sys
        import numpy.linalg as la, json
        from . import sibling
        import usermod
        def f():
            from pandas import DataFrame
    '''))
    (tmp_path / 'usermod.py').write_text('')
    main = type(sys)('__main__')
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, '__main__', main)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv('DRAGON_MP_ZYGOTE_PRELOAD', raising=False)
    assert zygote_prestart.main_script_packages() == ['numpy.linalg', 'pandas']
    monkeypatch.setenv('DRAGON_MP_ZYGOTE_PRELOAD', 'forced,-pandas')
    assert zygote_prestart.main_script_packages() == ['forced', 'numpy.linalg']
    monkeypatch.setenv('DRAGON_MP_ZYGOTE_PRELOAD', '-*')
    assert zygote_prestart.main_script_packages() == []
