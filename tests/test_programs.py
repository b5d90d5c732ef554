"""Whole programs: `python prog.py` and `dragon prog.py`, their ends and leftovers."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import clean_env, leaked, our_segments, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, 'examples', 'demo.py')
EXPECTED_DEMO = ['[0, 1, 4, 9, 16, 25, 36, 49]',
                 'exit codes: [0, 0, 0, 0, 0, 0, 0, 0]',
                 '[5, 4, 3, 2, 1, 0, 1, 2, 3, 4]']


def dragon_cmd():
    return [sys.executable, '-m', 'dragon_mp.launcher']


def run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=kw.pop('env', clean_env()), cwd=kw.pop('cwd', ROOT), **kw)


def run_processes(runid):
    from dragon_mp.reaper import run_processes as find
    return find(runid)


def write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


@pytest.mark.parametrize('launcher', ['python', 'dragon'])
def test_demo_runs_and_leaves_nothing(launcher):
    before = our_segments()
    argv = ([sys.executable] if launcher == 'python' else dragon_cmd()) + [DEMO]
    result = run(argv)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == EXPECTED_DEMO
    assert lines[3] == f'cpus: {len(os.sched_getaffinity(0))}'
    assert wait_until(lambda: not leaked(before)), leaked(before)


def test_launcher_passes_args_stdin_and_exit_code(tmp_path):
    prog = write(tmp_path, 'prog.py', '''
        import sys
        import dragon_mp as mp
        q = mp.Queue()
        q.put(sys.stdin.read().upper())
        print(q.get(), sys.argv[1:])
        sys.exit(7)
    ''')
    result = subprocess.run(dragon_cmd() + [prog, 'a', '--b'], input='hello', capture_output=True,
                            text=True, timeout=60, env=clean_env())
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip() == "HELLO ['a', '--b']"


def test_launcher_help_and_missing_program():
    result = run(dragon_cmd() + ['--help'])
    assert result.returncode == 0 and 'dragon' in result.stdout and 'prog.py' in result.stdout
    result = run(dragon_cmd() + ['/no/such/prog.py'])
    assert result.returncode != 0 and 'No such file' in result.stderr


@pytest.mark.parametrize('what', [['-m', 'dmp_prog_mod'], ['-mdmp_prog_mod'], ['-c', 'CODE'],
                                  ['--label', '-m', 'dmp_prog_mod']])
def test_launcher_runs_a_module_or_code_with_its_arguments(tmp_path, what):
    # As on python's command line, everything after the program is its own,
    # even what looks like an option of the launcher's.
    body = ('import sys, dragon_mp as mp\n'
            'q = mp.Queue(); q.put(sys.argv[1:]); print(repr(q.get()))\n')
    (tmp_path / 'dmp_prog_mod.py').write_text(body)
    what = [body if w == 'CODE' else w for w in what]
    env = clean_env()
    env['PYTHONPATH'] = os.pathsep.join([ROOT, str(tmp_path)])
    result = run(dragon_cmd() + what + ['x', '--label', '-m', 'y'], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(repr(['x', '--label', '-m', 'y']))
    result = run(dragon_cmd() + ['--label'], env=env)
    assert result.returncode == 2 and 'program to run is missing' in result.stderr


def test_launcher_reports_signal_death(tmp_path):
    prog = write(tmp_path, 'selfkill.py', '''
        import os, signal
        import dragon_mp as mp
        mp.Queue()
        os.kill(os.getpid(), signal.SIGKILL)
    ''')
    result = run(dragon_cmd() + [prog])
    assert result.returncode == 128 + signal.SIGKILL


KILLED_HEAD = '''
    import sys, time
    import dragon_mp as mp

    def sleeper():
        time.sleep(600)

    if __name__ == "__main__":
        q = mp.Queue()
        q.put(b"x" * (8 << 20))          # a large message: a committed pool block
        ps = [mp.Process(target=sleeper) for _ in range(3)]
        for p in ps:
            p.start()
        import os
        print(os.environ["DRAGON_MP_RUN"], *[p.pid for p in ps], flush=True)
        time.sleep(600)
'''


@pytest.mark.parametrize('launcher', ['python', 'dragon'])
def test_sigkill_of_the_program_leaves_nothing(tmp_path, launcher):
    before = our_segments()
    prog = write(tmp_path, 'killed.py', KILLED_HEAD)
    argv = ([sys.executable] if launcher == 'python' else dragon_cmd()) + [prog]
    head = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        runid, *pids = head.stdout.readline().split()
        assert len(pids) == 3
        assert our_segments() - before
        head.send_signal(signal.SIGKILL)
        head.wait(10)
        assert wait_until(lambda: not run_processes(runid), 10), run_processes(runid)
        assert wait_until(lambda: not leaked(before), 10), leaked(before)
    finally:
        head.kill()
        head.wait()
        head.stdout.close()


def test_sigterm_to_launcher_ends_program(tmp_path):
    prog = write(tmp_path, 'term.py', KILLED_HEAD)
    head = subprocess.Popen(dragon_cmd() + [prog], stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        runid, *pids = head.stdout.readline().split()
        head.send_signal(signal.SIGTERM)
        assert head.wait(20) == 128 + signal.SIGTERM
        assert wait_until(lambda: not run_processes(runid), 10)
    finally:
        head.kill()
        head.wait()
        head.stdout.close()


def test_cleanup_removes_only_dead_runs(tmp_path):
    from dragon_mp import cleanup, reaper
    shm = reaper.shm_dir()
    dead = 'r999999-1-abcdef'            # pid 999999 is above pid_max here: dead
    live_pid = os.getpid()
    from dragon_mp._runtime import process_start_time
    live = f'r{live_pid}-{process_start_time(live_pid)}-fedcba'
    paths = [os.path.join(shm, f'dragon_mp.{r}.pool') for r in (dead, live)]
    try:
        for p in paths:
            with open(p, 'wb') as f:
                f.write(b'x')
        result = run([sys.executable, '-m', 'dragon_mp.cleanup'])
        assert result.returncode == 0, result.stderr
        assert dead in result.stdout and live not in result.stdout
        assert not os.path.exists(paths[0]) and os.path.exists(paths[1])
        assert cleanup.head_alive(live) and not cleanup.head_alive(dead)
    finally:
        for p in paths:
            if os.path.exists(p):
                os.unlink(p)


CLEANUP_AS = """
import os, sys
from dragon_mp import cleanup
# What argparse imports lazily: once the uid is dropped, the interpreter's
# files (under root's home here) are out of reach.
import gettext, locale, shutil, textwrap
uid = int(sys.argv[1])
if uid != os.getuid():
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
sys.exit(cleanup.main(sys.argv[2:]))
"""


@pytest.mark.skipif(os.getuid() != 0, reason='needs root to play two users')
def test_cleanup_on_a_shared_machine():
    # /dev/shm holds every user's runs: each user cleans their own dead runs,
    # is told about the others' (never a PermissionError), and root cleans
    # everyone's only when asked to.
    import tempfile
    nobody = 65534
    shm = tempfile.mkdtemp(prefix='dragon_mp-shm-', dir='/tmp')
    os.chmod(shm, 0o1777)                      # as /dev/shm: sticky, everyone's
    mine, theirs = 'r999998-1-aaaaaa', 'r999997-1-bbbbbb'      # dead heads
    paths = {r: os.path.join(shm, f'dragon_mp.{r}.pool') for r in (mine, theirs)}

    def segment(runid, uid):
        with open(paths[runid], 'wb') as f:
            f.write(b'x')
        os.chmod(paths[runid], 0o600)
        os.chown(paths[runid], uid, uid)

    def cleanup_as(uid, *args):
        env = dict(os.environ, DRAGON_MP_SHM_DIR=shm, PYTHONPATH=ROOT)
        return subprocess.run([sys.executable, '-c', CLEANUP_AS, str(uid), *args],
                              capture_output=True, text=True, timeout=60, env=env)

    try:
        segment(mine, 0)
        segment(theirs, nobody)
        r = cleanup_as(nobody)             # the other user: their run only
        assert r.returncode == 0, r.stderr
        assert f'{mine}: skipped, owned by root (uid 0)' in r.stdout, r.stdout
        assert os.path.exists(paths[mine]) and not os.path.exists(paths[theirs])
        r = cleanup_as(nobody, mine)       # named explicitly: still not theirs to clean
        assert r.returncode == 0 and 'skipped' in r.stdout and os.path.exists(paths[mine])
        r = cleanup_as(nobody, '--all-users')
        assert r.returncode == 2 and 'only root' in r.stderr
        segment(theirs, nobody)
        r = cleanup_as(0)                  # root: its own run, and says how to clean the other
        assert r.returncode == 0, r.stderr
        assert f'{theirs}: skipped, owned by nobody (uid {nobody}) (root: --all-users cleans it)' \
            in r.stdout, r.stdout
        assert not os.path.exists(paths[mine]) and os.path.exists(paths[theirs])
        r = cleanup_as(0, '--all-users')
        assert r.returncode == 0 and f'{theirs}: killed 0 process(es), removed 1 segment(s)' \
            in r.stdout, r.stdout
        assert not os.path.exists(paths[theirs])
    finally:
        for p in paths.values():
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(shm)


def test_forked_child_gets_an_error_not_a_hang(tmp_path):
    prog = write(tmp_path, 'forked.py', '''
        import os, sys
        import dragon_mp as mp
        q = mp.Queue()
        q.put(1)
        pid = os.fork()
        if pid == 0:
            try:
                q.put(2)
            except RuntimeError as e:
                print("child error:", "fork" in str(e), flush=True)
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("child exit", os.waitstatus_to_exitcode(status), "parent got", q.get())
    ''')
    result = run([sys.executable, prog], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:2] == ['child error: True', 'child exit 0 parent got 1']


def test_fork_before_first_use_is_safe(tmp_path):
    prog = write(tmp_path, 'forkfirst.py', '''
        import os
        import dragon_mp as mp
        pid = os.fork()
        q = mp.Queue()
        q.put(os.getpid())
        assert q.get() == os.getpid()
        if pid == 0:
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        print("ok", os.waitstatus_to_exitcode(status))
    ''')
    result = run([sys.executable, prog], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'ok 0'


def test_full_dev_shm_gives_a_clear_error(tmp_path):
    small = tmp_path / 'shm'
    small.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', str(small)]).returncode:
        pytest.skip('cannot mount a tmpfs here')
    try:
        prog = write(tmp_path, 'full.py', '''
            import errno
            import dragon_mp as mp
            q = mp.Queue()
            try:
                q.put(b"x" * (64 << 20))
            except OSError as e:
                print("errno", e.errno == errno.ENOSPC, "--shm-size" in str(e))
            q.put("small")
            print(q.get(), q.qsize())
        ''')
        result = run([sys.executable, prog], env=clean_env(DRAGON_MP_SHM_DIR=str(small)))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split('\n')[:2] == ['errno True True', 'small 0']
        assert os.listdir(small) == []
    finally:
        subprocess.run(['umount', str(small)])
