"""The main module and the module-level helpers, in whole programs.

Every program is written once as a template and run twice, side by side:
with `import multiprocessing as mp` plus `mp.set_start_method('spawn')` (the
reference: dragon_mp's processes have spawn semantics) and with
`import dragon_mp as mp`. The test asserts the expected output and that both
variants print the same. Lines starting with `method:` show the start method's
name, a deliberate difference (README: the method is 'dragon'), and are
checked per implementation instead.

Template markers: a line `IMPORT_MP` becomes the import, a line `SET_SPAWN`
(indentation kept) becomes `mp.set_start_method('spawn')` for stdlib and
`pass` for dragon_mp.
"""

import os
import subprocess
import sys
import textwrap

from conftest import clean_env

TIMEOUT = 120

VARIANTS = {
    'stdlib-spawn': ('import multiprocessing as mp', "mp.set_start_method('spawn')"),
    'dragon_mp': ('import dragon_mp as mp', 'pass'),
}


def render(source, impl):
    imp, setup = VARIANTS[impl]
    lines = []
    for line in textwrap.dedent(source).splitlines():
        stripped = line.strip()
        indent = line[:len(line) - len(line.lstrip())]
        if stripped == 'IMPORT_MP':
            line = indent + imp
        elif stripped == 'SET_SPAWN':
            line = indent + setup
        lines.append(line)
    return '\n'.join(lines) + '\n'


class Result:
    def __init__(self, impl, proc, out, err):
        self.impl, self.returncode, self.stdout, self.stderr = impl, proc.returncode, out, err
        self.lines = out.splitlines()

    def compared(self):
        """Sorted output lines (children print concurrently), start-method names left out."""
        return sorted(line for line in self.lines if not line.startswith('method:'))

    def methods(self):
        return [line.split(':', 1)[1].strip() for line in self.lines if line.startswith('method:')]

    def __repr__(self):
        return f'<{self.impl} rc={self.returncode}\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}>'


def run_both(tmp_path, files, argv, env=None):
    """Write `files` ({relative path: template}) for each variant and run `argv` in both at once.

    `argv(dir)` builds the command line in the variant's directory; the directory is on
    PYTHONPATH and is the working directory. Returns {impl: Result}.
    """
    procs = {}
    for impl in VARIANTS:
        d = tmp_path / impl
        for rel, source in files.items():
            path = d / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(source, impl))
        e = clean_env(**(env or {}))
        e.pop('PYTHONUNBUFFERED', None)     # whole lines: parent and children write to one pipe
        e['PYTHONPATH'] = os.pathsep.join(p for p in (str(d), e.get('PYTHONPATH')) if p)
        procs[impl] = subprocess.Popen(argv(d), cwd=d, env=e, text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = {}
    try:
        for impl, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT)
            results[impl] = Result(impl, proc, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def assert_same(results, expected=None, returncode=0):
    """Both variants exit with `returncode` and print the same (and `expected`, sorted, if given)."""
    std, dmp = results['stdlib-spawn'], results['dragon_mp']
    for r in (std, dmp):
        assert r.returncode == returncode, r
    if expected is not None:
        assert std.compared() == sorted(expected), std
    assert dmp.compared() == std.compared(), (std, dmp)


def script(name):
    return lambda d: [sys.executable, str(d / name)]


# --- functions of the main script ------------------------------------------------------------

MAIN_SCRIPT = '''
    import os
    IMPORT_MP

    os.write(1, f'module level runs as {__name__}\\n'.encode())     # one write: children print at once

    def square(x):
        return x * x

    def where(_):
        return __name__

    def target(q, x):
        q.put(('target', __name__, x))

    class Worker(mp.Process):
        def __init__(self, q):
            super().__init__()
            self.q = q

        def run(self):
            self.q.put(('subclass', __name__, type(self).__module__))

    if __name__ == '__main__':
        SET_SPAWN
        q = mp.Queue()
        p = mp.Process(target=target, args=(q, 3))
        p.start()
        print(q.get(timeout=60))
        p.join(60)
        print('exitcode', p.exitcode)
        w = Worker(q)
        w.start()
        print(q.get(timeout=60))
        w.join(60)
        print('subclass exitcode', w.exitcode)
        pool = mp.Pool(2)
        print('map', pool.map(square, range(6)))
        print('apply', pool.apply(square, (7,)))
        print('where', sorted(set(pool.map(where, range(4)))))
        pool.close()
        pool.join()
        print('done')
'''


def test_main_script_functions_are_targets_and_pool_functions(tmp_path):
    """The guard keeps children from running the program; module level runs in each child."""
    results = run_both(tmp_path, {'prog.py': MAIN_SCRIPT}, script('prog.py'))
    assert_same(results, [
        'module level runs as __main__',
        # re-imported as __mp_main__ in the Process, the subclass and the two pool workers
        *['module level runs as __mp_main__'] * 4,
        "('target', '__mp_main__', 3)",
        'exitcode 0',
        "('subclass', '__mp_main__', '__mp_main__')",     # the class is unpickled from __mp_main__
        'subclass exitcode 0',
        'map [0, 1, 4, 9, 16, 25]',
        'apply 49',
        "where ['__mp_main__']",
        'done',
    ])


MAIN_ATTRIBUTES = '''
    """The program's docstring."""
    import os, sys
    IMPORT_MP

    if __name__ != '__main__':      # in the child, while the script is re-run
        os.write(1, ('while re-run: argv0 %s, registered %s\\n' % (
            os.path.basename(sys.argv[0]), sys.modules[__name__].__dict__ is globals())).encode())

    COUNT = 0

    def bump():
        global COUNT
        COUNT += 1

    def target(q):
        main = sys.modules['__main__']
        bump()
        q.put([
            ('name', main.__name__, sys.modules['__mp_main__'] is main),
            ('file', os.path.basename(main.__file__), main.__doc__),
            ('import', main.__spec__, main.__loader__, main.__package__, main.__cached__),
            ('globals are a copy', target.__globals__ is not main.__dict__,
             main.COUNT, target.__globals__['COUNT']),
            ('argv0', os.path.basename(sys.argv[0])),
        ])

    if __name__ == '__main__':
        SET_SPAWN
        q = mp.Queue()
        for _ in range(2):
            p = mp.Process(target=target, args=(q,))
            p.start()
            for item in q.get(timeout=60):
                print(item)
            p.join(60)
'''


def test_main_module_attributes_in_the_child(tmp_path):
    """The re-created main module is runpy's: attributes, a copy of the globals, argv[0]."""
    results = run_both(tmp_path, {'prog.py': MAIN_ATTRIBUTES}, script('prog.py'))
    assert_same(results, [
        *['while re-run: argv0 prog.py, registered True'] * 2,
        *["('name', '__mp_main__', True)", "('file', 'prog.py', \"The program's docstring.\")",
          "('import', None, None, '', None)", "('globals are a copy', True, 0, 1)",
          "('argv0', 'prog.py')"] * 2,
    ])


UNGUARDED = '''
    IMPORT_MP
    ctx = mp.get_context('spawn')       # not set_start_method: the child would run it again

    def target():
        pass

    p = ctx.Process(target=target)
    p.start()
    p.join(60)
    print('exitcode', p.exitcode)
'''


def test_missing_main_guard_is_an_error_in_the_child(tmp_path):
    """Without the guard the child re-runs the start: spawn refuses it with RuntimeError."""
    results = run_both(tmp_path, {'prog.py': UNGUARDED}, script('prog.py'))
    assert_same(results, ['exitcode 1'])
    for r in results.values():
        assert 'RuntimeError' in r.stderr and 'bootstrapping phase' in r.stderr, r


# --- python -m and python -c -----------------------------------------------------------------

PKG_MAIN_TARGET = '''
    IMPORT_MP

    def target(q):
        q.put(__name__)

    if __name__ == '__main__':
        SET_SPAWN
        q = mp.Queue()
        p = mp.Process(target=target, args=(q,))
        p.start()
        p.join(60)
        print('exitcode', p.exitcode)
'''

PKG_MAIN_IMPORTING = '''
    IMPORT_MP
    from pkg.work import target

    if __name__ == '__main__':
        SET_SPAWN
        q = mp.Queue()
        p = mp.Process(target=target, args=(q,))
        p.start()
        print(q.get(timeout=60))
        p.join(60)
        print('exitcode', p.exitcode)
'''

PKG_WORK = '''
    def target(q):
        q.put(('target', __name__))
'''


def test_python_m_package_target_in_dunder_main_fails_like_stdlib(tmp_path):
    """`python -m pkg`, target defined in pkg/__main__.py.

    stdlib's spawn does not re-import a `pkg.__main__` main module in its children
    (spawn._fixup_main_from_name skips names ending in '.__main__'), so the child cannot
    unpickle the target: exit code 1 and an AttributeError. dragon_mp must do the same.
    """
    files = {'pkg/__init__.py': '', 'pkg/__main__.py': PKG_MAIN_TARGET}
    results = run_both(tmp_path, files, lambda d: [sys.executable, '-m', 'pkg'])
    assert_same(results, ['exitcode 1'])
    for r in results.values():
        assert "AttributeError: Can't get attribute 'target'" in r.stderr, r


def test_python_m_package_main_with_target_in_the_package(tmp_path):
    """`python -m pkg` whose __main__ starts a target imported from pkg.work."""
    files = {'pkg/__init__.py': '', 'pkg/__main__.py': PKG_MAIN_IMPORTING, 'pkg/work.py': PKG_WORK}
    results = run_both(tmp_path, files, lambda d: [sys.executable, '-m', 'pkg'])
    assert_same(results, ["('target', 'pkg.work')", 'exitcode 0'])


PKG_APP = '''
    import os
    IMPORT_MP

    os.write(1, f'app module runs as {__name__}\\n'.encode())     # one write: children print at once

    def target(q):
        q.put(('target', __name__))

    def square(x):
        return x * x

    if __name__ == '__main__':
        SET_SPAWN
        q = mp.Queue()
        p = mp.Process(target=target, args=(q,))
        p.start()
        print(q.get(timeout=60))
        p.join(60)
        print('exitcode', p.exitcode)
        pool = mp.Pool(1)
        print('pool', pool.map(square, [2, 3]))
        pool.close()
        pool.join()
'''


def test_python_m_module_targets_live_in_the_main_module(tmp_path):
    """`python -m pkg.app`: children re-import pkg.app as __mp_main__ and find its functions."""
    files = {'pkg/__init__.py': '', 'pkg/app.py': PKG_APP}
    results = run_both(tmp_path, files, lambda d: [sys.executable, '-m', 'pkg.app'])
    assert_same(results, [
        'app module runs as __main__',
        'app module runs as __mp_main__',       # the Process
        'app module runs as __mp_main__',       # the pool worker
        "('target', '__mp_main__')",
        'exitcode 0',
        'pool [4, 9]',
    ])


HELPER = '''
    import os
    os.write(1, f'helper imported as {__name__}\\n'.encode())

    def work(q, x):
        q.put(('work', __name__, x * 2))
'''

DASH_C = '''
IMPORT_MP
SET_SPAWN
import helper
q = mp.Queue()
p = mp.Process(target=helper.work, args=(q, 21))
p.start()
print(q.get(timeout=60))
p.join(60)
print('exitcode', p.exitcode)
'''


def test_python_c_with_a_target_from_an_importable_module(tmp_path):
    code = {impl: render(DASH_C, impl) for impl in VARIANTS}
    results = run_both(tmp_path, {'helper.py': HELPER},
                       lambda d: [sys.executable, '-c', code[d.name]])
    assert_same(results, [
        'helper imported as helper',        # in the program
        'helper imported as helper',        # in the child, to unpickle the target
        "('work', 'helper', 42)",
        'exitcode 0',
    ])


# --- module-level helpers --------------------------------------------------------------------

HELPERS = '''
    import logging
    import sys
    IMPORT_MP

    def report_executable(q):
        q.put(sys.executable)

    def log_in_child():
        mp.get_logger().warning('hello from the child')

    if __name__ == '__main__':
        SET_SPAWN
        print('freeze_support', mp.freeze_support())
        print('allow_connection_pickling', mp.allow_connection_pickling())
        print('set_forkserver_preload', mp.set_forkserver_preload(['os', 'logging']))
        exe = sys.argv[1]
        print('set_executable', mp.set_executable(exe))
        q = mp.Queue()
        p = mp.Process(target=report_executable, args=(q,))
        p.start()
        got = q.get(timeout=60)
        p.join(60)
        print('child runs the given executable', got == exe, p.exitcode)

        logger = mp.log_to_stderr()
        print('logger', logger.name, logger is mp.get_logger(), logger is logging.getLogger('multiprocessing'))
        logger.setLevel(logging.WARNING)
        logger.warning('hello from the parent')
        p = mp.Process(target=log_in_child, name='logging-child')
        p.start()
        p.join(60)
        print('logging child exitcode', p.exitcode)
'''


def test_helpers(tmp_path):
    exe = tmp_path / 'python-link'
    exe.symlink_to(sys.executable)
    results = run_both(tmp_path, {'prog.py': HELPERS}, lambda d: [sys.executable, str(d / 'prog.py'), str(exe)])
    assert_same(results, [
        'freeze_support None',
        'allow_connection_pickling None',
        'set_forkserver_preload None',
        'set_executable None',
        'child runs the given executable True 0',
        'logger multiprocessing True True',
        'logging child exitcode 0',
    ])
    for r in results.values():
        assert '[WARNING/MainProcess] hello from the parent' in r.stderr, r
        # spawn passes log_to_stderr on to children
        assert '[WARNING/logging-child] hello from the child' in r.stderr, r


# --- start methods ---------------------------------------------------------------------------

CONTEXTS = '''
    IMPORT_MP

    def work(q, name):
        q.put(('ran', name))

    if __name__ == '__main__':
        methods = mp.get_all_start_methods()
        print('stdlib names listed', all(m in methods for m in ('fork', 'spawn', 'forkserver')))
        print('method:', methods[0])
        for name in ('spawn', 'fork', 'forkserver'):
            ctx = mp.get_context(name)
            print('method:', ctx.get_start_method())
            q = ctx.Queue()
            p = ctx.Process(target=work, args=(q, name))
            p.start()
            print(q.get(timeout=60))
            p.join(60)
            print(name, 'exitcode', p.exitcode)
        print('default context', mp.get_context(None) is mp.get_context(None))
        try:
            mp.get_context('no-such-method')
        except ValueError:
            print('unknown method refused')
'''


def test_get_context_with_each_stdlib_method_name(tmp_path):
    results = run_both(tmp_path, {'prog.py': CONTEXTS}, script('prog.py'))
    assert_same(results, [
        'stdlib names listed True',
        "('ran', 'spawn')", 'spawn exitcode 0',
        "('ran', 'fork')", 'fork exitcode 0',
        "('ran', 'forkserver')", 'forkserver exitcode 0',
        'default context True',
        'unknown method refused',
    ])
    # Each name is its own context and reports itself, as in stdlib; the one
    # difference is the default listed first: spawn, the semantics of every
    # dragon_mp start.
    assert results['stdlib-spawn'].methods() == ['fork', 'spawn', 'fork', 'forkserver']
    assert results['dragon_mp'].methods() == ['spawn', 'spawn', 'fork', 'forkserver']


SET_START_METHOD = '''
    IMPORT_MP

    def work(q):
        q.put('ran')

    if __name__ == '__main__':
        mp.set_start_method('spawn')
        print('method:', mp.get_start_method())
        q = mp.Queue()
        p = mp.Process(target=work, args=(q,))
        p.start()
        print(q.get(timeout=60))
        p.join(60)
        print('exitcode', p.exitcode)
        try:
            mp.set_start_method('forkserver')
        except RuntimeError:
            print('second set_start_method refused')
        mp.set_start_method('forkserver', force=True)
        print('forced')
        print('method:', mp.get_start_method())
        try:
            mp.set_start_method('no-such-method', force=True)
        except ValueError:
            print('unknown method refused')
'''


def test_set_start_method_semantics(tmp_path):
    results = run_both(tmp_path, {'prog.py': SET_START_METHOD}, script('prog.py'))
    assert_same(results, [
        'ran',
        'exitcode 0',
        'second set_start_method refused',      # stdlib: RuntimeError('context has already been set')
        'forced',
        'unknown method refused',
    ])
    # dragon_mp reports the name it was given (every name starts processes the same way)
    assert results['stdlib-spawn'].methods() == ['spawn', 'forkserver']
    assert results['dragon_mp'].methods() == ['spawn', 'forkserver']
