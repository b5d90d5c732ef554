"""The zygote: processes started by fork() of a per-run process that never loads Go.

dragon_mp.Process uses the run's zygote when it can and falls back to exec'ing
a fresh interpreter (DRAGON_MP_ZYGOTE=0, or no zygote); both paths must
behave the same: exit codes, signals, sentinels, identity, output, ends.
"""

import os
import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import dragon_mp as mp
from dragon_mp import zygote, zygote_server

from conftest import clean_env, leaked, our_segments, wait_until

pytestmark = pytest.mark.usefixtures('zygote_enabled')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def exit_with(code):
    sys.exit(code)


def raise_error():
    raise ValueError('boom')


def sleep_for(seconds):
    time.sleep(seconds)


def identity(q):
    parent = mp.parent_process()
    q.put((os.getpid(), os.getppid(), parent.pid if parent else None,
           mp.current_process().name, os.getcwd(), os.environ.get('ZYGOTE_TEST_VAR')))


def nested(q):
    inner = mp.Process(target=identity, args=(q,), name='grandchild')
    inner.start()
    inner.join(30)
    q.put(('child', os.getpid(), inner.exitcode, inner._popen._conn is not None))


def start_sleeper_and_report(q):
    p = mp.Process(target=sleep_for, args=(600,))
    p.start()
    q.put(p.pid)
    time.sleep(600)


def use_queue(q):
    q.put(os.getpid())


def forked(p):
    """True if p was started by the zygote (not by exec)."""
    return p._popen._conn is not None


def gocore_mapped(pid):
    with open(f'/proc/{pid}/maps') as f:
        return '_gocore' in f.read()


def alive(pid):
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except OSError:
        return False


def test_the_loop_in_use():
    p = mp.Process(target=exit_with, args=(0,))
    p.start()
    p.join(30)
    assert forked(p)
    with open(f'/proc/{zygote.serving_pid()}/maps') as f:
        assert '_zygote_loop' in f.read()


# A program whose zygote cannot import dragon_mp._zygote_loop (as in a build
# without it): sitecustomize, run by every interpreter of the run, blocks it.
NO_C_LOOP = '''
import sys
sys.modules['dragon_mp._zygote_loop'] = None    # its import raises ImportError
'''

NO_C_LOOP_PROG = '''
import dragon_mp as mp

def noop():
    pass

if __name__ == '__main__':
    for _ in range(2):
        p = mp.Process(target=noop)
        p.start()
        p.join(30)
        print(p.exitcode, p._popen._conn is not None, flush=True)
'''


def test_without_the_c_loop_the_zygote_fails_clearly_and_starts_exec(tmp_path):
    """No other loop: the zygote does not start, says why, and the program's starts use exec."""
    (tmp_path / 'sitecustomize.py').write_text(NO_C_LOOP)
    (tmp_path / 'prog.py').write_text(NO_C_LOOP_PROG)
    env = clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    env.pop('DRAGON_MP_ZYGOTE', None)
    r = subprocess.run([sys.executable, str(tmp_path / 'prog.py')], capture_output=True, text=True,
                       timeout=120, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ['0', 'False'] * 2          # both started by exec, and ran
    error = ('ImportError: dragon_mp: the zygote needs the C extension dragon_mp._zygote_loop '
             '(pyext/zygote_loop.c), which is not built; `pip install .` builds it with a C compiler')
    assert r.stderr.count(error) == 1, r.stderr            # one attempt per run


def _minor_faults(pid):
    with open(f'/proc/{pid}/stat') as f:
        return int(f.read().rsplit(')', 1)[1].split()[7])


def test_the_c_loop_serves_starts_without_python():
    """Steady-state starts never return to Python in the C loop: the zygote then writes to a
    handful of pages per start, not to the ~240 a loop in Python touched (each a copy-on-write
    fault, since every start forks a spare that shares them).

    The best of three batches: while the zygote still imports its preload list (in Python,
    one module per idle turn), a batch on a busy machine meets some of those imports."""
    for _ in range(5):                    # the first starts import, compile, take the context on
        p = mp.Process(target=exit_with, args=(0,))
        p.start()
        p.join(30)
    zpid = zygote.serving_pid()
    batches = []
    for _ in range(3):
        before = _minor_faults(zpid)
        for _ in range(20):
            p = mp.Process(target=exit_with, args=(0,))
            p.start()
            p.join(30)
            assert p.exitcode == 0
        batches.append((_minor_faults(zpid) - before) / 20)
    assert min(batches) < 60, batches           # a loop in Python: ~240


@pytest.mark.parametrize('target,args,code', [
    (exit_with, (0,), 0), (exit_with, (3,), 3), (raise_error, (), 1), (sleep_for, (0,), 0),
])
def test_exit_codes(target, args, code):
    p = mp.Process(target=target, args=args)
    p.start()
    p.join(30)
    assert forked(p)
    assert p.exitcode == code
    assert not p.is_alive()


def hard_exit(code):
    os._exit(code)


def fork_a_copy_that_exits_first():
    pid = os.fork()
    if pid == 0:
        sys.exit(9)        # returns through the child's exit path: must not report
    os.waitpid(pid, 0)


@pytest.mark.parametrize('target,args,code', [
    (hard_exit, (7,), 7),                   # no report from the child: the zygote's
    (fork_a_copy_that_exits_first, (), 0),  # only the started process reports
])
def test_exit_status_the_child_cannot_report_or_must_not(target, args, code):
    for _ in range(3):                      # with and without a spare
        p = mp.Process(target=target, args=args)
        p.start()
        p.join(30)
        assert forked(p)
        assert p.exitcode == code


def test_child_report_before_the_zygote_reply(tmp_path):
    """request() keeps an exit status that comes before the zygote's reply (a child that ended at once)."""
    import pickle
    import socket
    import threading
    name = f'dragon_mp.zygote.test{os.getpid()}.fake'
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(zygote.socket_address(name))
    listener.listen(1)
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    child.wait()
    me = os.pidfd_open(os.getpid())

    def fake_zygote():
        conn, _ = listener.accept()
        conn.recv(1 << 16)
        conn.send(pickle.dumps({'exitcode': 5}))              # the child's own report
        socket.send_fds(conn, [pickle.dumps({'pid': 1234})], [me])
        conn.close()

    server = threading.Thread(target=fake_zygote, daemon=True)
    server.start()
    try:
        ctx = zygote.context('/', {}, False, False)
        pid, pidfd, sock, early = zygote.request(name, [], [], ctx, 3, -1)
    finally:
        server.join(10)
        listener.close()
        os.close(me)
    os.close(pidfd)
    sock.close()
    assert (pid, early) == (1234, 5)


@pytest.mark.parametrize('method,code', [('terminate', -signal.SIGTERM), ('kill', -signal.SIGKILL)])
def test_terminate_and_kill(method, code):
    p = mp.Process(target=sleep_for, args=(60,))
    p.start()
    assert forked(p) and p.is_alive()
    getattr(p, method)()
    p.join(10)
    assert p.exitcode == code
    assert p not in mp.active_children()


def test_join_timeout_and_sentinel():
    p = mp.Process(target=sleep_for, args=(0.5,))
    p.start()
    start = time.monotonic()
    p.join(0.1)
    assert p.exitcode is None and time.monotonic() - start < 0.4
    ready, _, _ = select.select([p.sentinel], [], [], 10)
    assert ready == [p.sentinel]
    p.join()
    assert p.exitcode == 0


def test_identity_cwd_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('ZYGOTE_TEST_VAR', 'set after the zygote started')
    q = mp.Queue()
    mp.Process(target=exit_with, args=(0,)).start()     # the zygote exists from here on
    monkeypatch.chdir(tmp_path)
    p = mp.Process(target=identity, args=(q,), name='kid')
    p.start()
    pid, ppid, parent, name, cwd, var = q.get(timeout=30)
    p.join(30)
    assert forked(p)
    assert (pid, parent, name, cwd, var) == (p.pid, os.getpid(), 'kid', str(tmp_path),
                                             'set after the zygote started')
    assert ppid == zygote.serving_pid() != os.getpid()   # the real parent: the zygote (or its template)


def test_nested_child_uses_the_zygote():
    q = mp.Queue()
    p = mp.Process(target=nested, args=(q,))
    p.start()
    got = [q.get(timeout=30), q.get(timeout=30)]
    p.join(30)
    assert p.exitcode == 0 and forked(p)
    grandchild = next(g for g in got if g[0] != 'child')
    child = next(g for g in got if g[0] == 'child')
    assert child[1:] == (p.pid, 0, True)
    gpid, gppid, gparent, gname, _, _ = grandchild
    assert gparent == p.pid and gname == 'grandchild' and gppid == zygote.serving_pid()


def test_requester_killed_takes_its_children():
    q = mp.Queue()
    p = mp.Process(target=start_sleeper_and_report, args=(q,))
    p.start()
    grandchild = q.get(timeout=30)
    assert alive(grandchild)
    p.kill()
    p.join(10)
    assert wait_until(lambda: not alive(grandchild), 5), 'grandchild outlived its parent'


def test_zygote_never_loads_go():
    q = mp.Queue()                                      # this process has Go loaded
    ps = [mp.Process(target=use_queue, args=(q,)) for _ in range(2)]
    for p in ps:
        p.start()
    assert sorted(q.get(timeout=30) for _ in ps) == sorted(p.pid for p in ps)
    for p in ps:
        p.join(30)
    assert all(forked(p) for p in ps)
    zpid = zygote.owned_pid()
    assert gocore_mapped(os.getpid())
    assert not gocore_mapped(zpid) and not gocore_mapped(zygote.serving_pid())


def test_dead_zygote_is_replaced():
    p = mp.Process(target=exit_with, args=(0,))
    p.start()
    p.join(30)
    first = zygote.owned_pid()
    running = mp.Process(target=sleep_for, args=(60,))
    running.start()
    os.kill(first, signal.SIGKILL)
    # Its children die with it (PR_SET_PDEATHSIG); their status is lost: -SIGKILL.
    running.join(10)
    assert running.exitcode == -signal.SIGKILL
    assert wait_until(lambda: not alive(first), 5)
    p = mp.Process(target=exit_with, args=(5,))
    p.start()
    p.join(30)
    assert p.exitcode == 5 and forked(p)
    assert zygote.owned_pid() not in (None, first)


def test_disabled_zygote_uses_exec(monkeypatch):
    monkeypatch.setenv('DRAGON_MP_ZYGOTE', '0')
    q = mp.Queue()
    p = mp.Process(target=identity, args=(q,))
    p.start()
    pid, ppid, parent, *_ = q.get(timeout=30)
    p.join(30)
    assert not forked(p)
    assert p.exitcode == 0 and (pid, ppid, parent) == (p.pid, os.getpid(), os.getpid())
    assert zygote.owned_pid() is None


def digest_of(q, data):
    import hashlib
    q.put((len(data), hashlib.sha256(data).hexdigest()))


@pytest.mark.parametrize('enabled', ['1', '0'])
@pytest.mark.parametrize('size', [0, 100, 70_000, 5 << 20])
def test_process_data_of_any_size(monkeypatch, enabled, size):
    """The data pipe (lengths, then the pickles) carries arguments larger than the pipe holds."""
    import hashlib
    monkeypatch.setenv('DRAGON_MP_ZYGOTE', enabled)
    data = os.urandom(size)
    q = mp.Queue()
    p = mp.Process(target=digest_of, args=(q, data))
    p.start()
    got = q.get(timeout=60)
    p.join(60)
    assert forked(p) == (enabled == '1')
    assert p.exitcode == 0 and got == (size, hashlib.sha256(data).hexdigest())


# --- whole programs ---------------------------------------------------------------------------

def run_program(tmp_path, source, **env):
    path = tmp_path / 'prog.py'
    path.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=120, env=clean_env(**env), cwd=ROOT)


OUTPUT = '''
    import os, sys
    import dragon_mp as mp

    def speak(i):
        print("out", i, flush=True)
        print("err", i, file=sys.stderr)
        sys.exit(i)

    if __name__ == "__main__":
        for i in range(3):
            p = mp.Process(target=speak, args=(i,))
            p.start()
            p.join()
            print("exit", p.exitcode, p._popen._conn is not None, flush=True)
'''


@pytest.mark.parametrize('enabled', ['1', '0'])
def test_child_output_reaches_the_requester(tmp_path, enabled):
    before = our_segments()
    result = run_program(tmp_path, OUTPUT, DRAGON_MP_ZYGOTE=enabled)
    assert result.returncode == 0, result.stderr
    forked = str(enabled == '1')
    assert result.stdout.split('\n')[:6] == ['out 0', f'exit 0 {forked}', 'out 1',
                                             f'exit 1 {forked}', 'out 2', f'exit 2 {forked}']
    assert [line for line in result.stderr.splitlines() if line.startswith('err')] == \
        ['err 0', 'err 1', 'err 2']
    assert wait_until(lambda: not leaked(before)), leaked(before)


KILLED = '''
    import os, sys, time
    import dragon_mp as mp
    from dragon_mp import zygote

    def sleeper():
        time.sleep(600)

    if __name__ == "__main__":
        q = mp.Queue()
        q.put(b"x" * (1 << 20))
        ps = [mp.Process(target=sleeper) for _ in range(3)]
        for p in ps:
            p.start()
        assert all(p._popen._conn is not None for p in ps)
        print(os.environ["DRAGON_MP_RUN"], zygote.owned_pid(), *[p.pid for p in ps], flush=True)
        time.sleep(600)
'''


def test_sigkill_of_the_program_leaves_nothing(tmp_path):
    from dragon_mp.reaper import run_processes
    before = our_segments()
    path = tmp_path / 'killed.py'
    path.write_text(textwrap.dedent(KILLED))
    head = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True,
                            env=clean_env())
    try:
        runid, zpid, *pids = head.stdout.readline().split()
        pids = [int(zpid)] + [int(p) for p in pids]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        head.send_signal(signal.SIGKILL)
        head.wait(10)
        assert wait_until(lambda: not any(alive(p) for p in pids), 10), \
            [p for p in pids if alive(p)]
        assert wait_until(lambda: not run_processes(runid), 10), run_processes(runid)
        assert wait_until(lambda: not leaked(before), 10), leaked(before)
    finally:
        head.kill()
        head.wait()
        head.stdout.close()


def test_main_script_path_hook_lookup_is_cached_only_for_plain_scripts(tmp_path, monkeypatch):
    """The zygote records "no path hook" for a plain main script (each child's
    runpy would look again, zipimport reading the file); a zip app keeps its
    zipimporter, and what runpy then does is unchanged."""
    import pkgutil
    import runpy
    import zipfile
    monkeypatch.setattr(sys, 'path_importer_cache', dict(sys.path_importer_cache))
    script = tmp_path / 'prog.py'
    script.write_text('answer = 42\n')
    app = tmp_path / 'app.pyz'
    with zipfile.ZipFile(app, 'w') as z:
        z.writestr('__main__.py', 'answer = 43\n')
    for path in (script, app, tmp_path):
        sys.path_importer_cache.pop(str(path), None)

    zygote_server._cache_no_importer(str(script))
    assert str(script) in sys.path_importer_cache and sys.path_importer_cache[str(script)] is None
    zygote_server._cache_no_importer(str(app))
    assert pkgutil.get_importer(str(app)) is not None      # still the zip's importer
    assert runpy.run_path(str(script), run_name='__mp_main__')['answer'] == 42
    assert runpy.run_path(str(app), run_name='__mp_main__')['answer'] == 43


EDITED = '''
    import os, sys
    import dragon_mp as mp

    VERSION = 1

    def report(q):
        q.put(VERSION)

    if __name__ == "__main__":
        q = mp.Queue()
        for round in range(2):
            p = mp.Process(target=report, args=(q,))
            p.start()
            print("child sees", q.get(timeout=60), p._popen._conn is not None, flush=True)
            p.join()
            with open(__file__) as f:
                text = f.read()
            with open(__file__, "w") as f:      # a child re-reads the script, as under spawn
                f.write(text.replace("VERSION = 1", "VERSION = 2"))
'''


def test_edited_main_script_is_read_again(tmp_path):
    """The zygote's compiled main script serves only a file with the same bytes."""
    result = run_program(tmp_path, EDITED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['child sees 1 True', 'child sees 2 True']


def test_main_code_only_for_the_same_bytes_and_a_plain_script(tmp_path, monkeypatch):
    import zipfile
    from dragon_mp import spawn
    monkeypatch.setattr(sys, 'path_importer_cache', dict(sys.path_importer_cache))
    monkeypatch.setattr(zygote_server, '_code_cache', {})
    script = tmp_path / 'prog.py'
    script.write_text('answer = 42\n')
    app = tmp_path / 'app.pyz'
    with zipfile.ZipFile(app, 'w') as z:
        z.writestr('__main__.py', 'answer = 43\n')
    assert zygote_server._main_code(str(script)) is None                  # not compiled
    zygote_server._compile_sources([('main', str(script), str(script)), ('main', str(app), str(app))])
    code = zygote_server._main_code(str(script))
    assert code is not None and code.co_filename == str(script)
    assert spawn._run_main_code(code, str(script))['answer'] == 42
    assert zygote_server._main_code(str(app)) is None                     # a path hook takes it
    script.write_text('answer = 44\n')
    assert zygote_server._main_code(str(script)) is None                  # changed on disk


def test_run_main_code_is_runpy_run_path(tmp_path, monkeypatch):
    """spawn._run_main_code gives what runpy.run_path gives, and restores what it changed."""
    import runpy
    from dragon_mp import spawn
    script = tmp_path / 'prog.py'
    script.write_text(textwrap.dedent('''
        """the doc"""
        import sys
        seen = (__name__, sys.argv[0], sys.modules[__name__].__dict__ is globals(),
                __file__, __package__, __spec__, __loader__, __cached__)
        def f():
            return g
        g = 1
    '''))
    monkeypatch.setattr(sys, 'argv', ['orig-argv0', 'x'])
    before = sys.modules.get('__mp_main__')
    code = compile(script.read_bytes(), str(script), 'exec')
    ours = spawn._run_main_code(code, str(script))
    theirs = runpy.run_path(str(script), run_name='__mp_main__')

    def plain(d):
        return {k: v for k, v in d.items() if k not in ('f', '__builtins__')}
    assert plain(ours) == plain(theirs) and ours['f']() == theirs['f']() == 1
    assert ours.keys() == theirs.keys()
    assert ours['f'].__globals__ is not ours                       # a copy, as runpy returns
    assert sys.argv == ['orig-argv0', 'x'] and sys.modules.get('__mp_main__') is before

    broken = compile('import sys\nraise KeyError(sys.argv[0])\n', str(script), 'exec')
    with pytest.raises(KeyError, match='prog.py'):
        spawn._run_main_code(broken, str(script))
    assert sys.argv == ['orig-argv0', 'x'] and sys.modules.get('__mp_main__') is before
    monkeypatch.delitem(sys.modules, '__mp_main__', raising=False)
    spawn._run_main_code(code, str(script))
    assert '__mp_main__' not in sys.modules


# --- requests that must be refused ---------------------------------------------------------------

def _zygote_name():
    p = mp.Process(target=exit_with, args=(0,))      # make sure this process has a zygote
    p.start()
    p.join(30)
    return os.environ[zygote.ENV_ZYGOTE]


def _send_raw(name, msg, fds=()):
    """Send one raw request; the messages that come back until the zygote closes the connection."""
    import pickle
    import socket
    answers = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(30)
        sock.connect(zygote.socket_address(name))
        socket.send_fds(sock, [msg], list(fds))
        while True:
            got, rfds, _, _ = socket.recv_fds(sock, 4096, 4)
            for fd in rfds:
                os.close(fd)
            if not got:
                return answers
            answers.append(pickle.loads(got))


@pytest.mark.parametrize('msg', [
    b'', b'x', b'DZy2', b'NOPE' + b'\0' * 12,
    zygote.HEAD.pack(zygote.MAGIC, 0, 0, 3),            # says 3 descriptors, has none
    zygote.HEAD.pack(zygote.MAGIC, 1 << 30, 1 << 30, 0),  # parts longer than the message
    zygote.HEAD.pack(zygote.MAGIC, 5, 0, 0) + b'junk!',   # a zygote part that is no pickle
    zygote.HEAD.pack(zygote.MAGIC, 0, 5, 0) + b'junk!',   # a context that is no pickle
    zygote.HEAD.pack(zygote.MAGIC, 0, 0, 0),             # no start part
    zygote.HEAD.pack(zygote.MAGIC, 0, 0, 0) + b'xx',      # a start part too short
    zygote.HEAD.pack(zygote.MAGIC, 0, 0, 0) + zygote.pack_start([5], 3, -1),  # targets, no fds
])
def test_malformed_requests_are_refused_and_the_zygote_serves_on(msg):
    name = _zygote_name()
    zpid = zygote.owned_pid()
    answers = _send_raw(name, msg)
    if answers and 'pid' in answers[0]:              # a child was started: it must fail
        assert [a.get('exitcode') for a in answers[1:]] not in ([], [0]), answers
    else:
        assert all('error' in a for a in answers), answers
    assert zygote.owned_pid() == zpid and alive(zpid)
    p = mp.Process(target=exit_with, args=(4,))
    p.start()
    p.join(30)
    assert forked(p) and p.exitcode == 4


REFUSED_PROBE = """
import os, socket, struct, sys
name = sys.argv[1]
os.setgid(65534)
os.setuid(65534)          # after the interpreter started: nobody may not read root's Python
try:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(10)
        sock.connect('\\0' + name)
        sock.send(struct.pack('<4sIII', b'DZy2', 0, 0, 0))
        print('refused' if sock.recv(4096) == b'' else 'served')
except (ConnectionResetError, BrokenPipeError):
    print('refused')
"""


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to connect as another uid')
def test_other_users_are_refused():
    name = _zygote_name()
    out = subprocess.run([sys.executable, '-c', REFUSED_PROBE, name],
                         capture_output=True, text=True, timeout=60, cwd='/')
    assert out.stdout.strip() == 'refused', out.stderr
    p = mp.Process(target=exit_with, args=(0,))
    p.start()
    p.join(30)
    assert forked(p) and p.exitcode == 0


def test_modules_whose_bytecode_is_stale_are_compiled_once_by_the_zygote(tmp_path, monkeypatch):
    # Under PYTHONDONTWRITEBYTECODE an edited module keeps its old .pyc, and
    # every process that imports it compiles it again: the requester sends
    # such a module to the zygote (which compiles it once for every child),
    # as it does a module with no .pyc; one with a valid .pyc is not sent.
    import importlib
    import py_compile
    for name in ('fresh_mod', 'stale_mod', 'nopyc_mod'):
        (tmp_path / f'{name}.py').write_text('VALUE = 1\n')
    py_compile.compile(str(tmp_path / 'fresh_mod.py'))
    py_compile.compile(str(tmp_path / 'stale_mod.py'))
    time.sleep(0.01)
    (tmp_path / 'stale_mod.py').write_text('VALUE = 22\n')     # edited: size and mtime differ
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, 'dont_write_bytecode', True)
    for name in ('fresh_mod', 'stale_mod', 'nopyc_mod'):
        monkeypatch.delitem(sys.modules, name, raising=False)
        importlib.import_module(name)
    sent = zygote.requester_sources({'len': 0, 'names': set()}, None)
    paths = {os.path.basename(p) for _, p, _ in sent}
    assert {'stale_mod.py', 'nopyc_mod.py'} <= paths and 'fresh_mod.py' not in paths, paths
