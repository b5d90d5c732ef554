"""Run CPython's own multiprocessing test suite against dragon_mp.

    python tests/cpython/run.py                  # the four families, dragon_mp
    python tests/cpython/run.py --stdlib         # the same files against stdlib: the baseline
    python tests/cpython/run.py -f misc -k TestStartMethod

It takes the running interpreter's test/_test_multiprocessing.py (the file
behind test_multiprocessing_spawn), points its imports at dragon_mp, and runs
the families stdlib runs (processes, threads, manager, misc) with the 'spawn'
start method, each in its own interpreter as `python -m unittest` would.

Pointing at dragon_mp changes exactly this, nothing else in the file:
  - `import multiprocessing[.X]` and `from multiprocessing[.X] import ...`
    import dragon_mp's modules (bound to the same names);
  - the module names _TestImportStar imports ('multiprocessing.' + m) are
    dragon_mp's;
  - the helper scripts the suite runs (mp_fork_bomb.py, mp_preload.py) get
    the same import change.
mock.patch targets are left as they are: where dragon_mp reuses stdlib's code
(SharedMemory), stdlib's module is where the patched name is looked up.

A test that fails is compared with tests/cpython/differences.txt, the tests
that check stdlib internals dragon_mp deliberately does not have, each with
its reason. The run fails if any other test fails, or if a listed one passes
(the list must stay true).
"""

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FAMILIES = ('processes', 'threads', 'manager', 'misc')
PKG = 'dmp_cpython'


def stdlib_test_dir():
    spec = importlib.util.find_spec('test._test_multiprocessing')
    if spec is None:
        sys.exit('this Python has no test package (test/_test_multiprocessing.py)')
    return os.path.dirname(spec.origin)


_IMPORT = re.compile(r'^(\s*)import multiprocessing(\.[\w.]+)?(\s*(?:,.*)?)$', re.M)
_FROM = re.compile(r'^(\s*)from multiprocessing(\.[\w.]+)?( import )', re.M)
_STAR_NAMES = [
    (re.compile(r"'multiprocessing\.' \+ m\b"), "'dragon_mp.' + m"),
    (re.compile(r"modules\.(remove|append)\('multiprocessing(\.[\w.]+)?'\)"),
     lambda m: f"modules.{m.group(1)}('dragon_mp{m.group(2) or ''}')"),
]


def point_at_dragon_mp(source):
    def imp(m):
        indent, sub, rest = m.group(1), m.group(2) or '', m.group(3)
        if sub:
            return f'{indent}import dragon_mp{sub}; import dragon_mp as multiprocessing{rest}'
        return f'{indent}import dragon_mp as multiprocessing{rest}'
    source = _IMPORT.sub(imp, source)
    source = _FROM.sub(lambda m: f'{m.group(1)}from dragon_mp{m.group(2) or ""}{m.group(3)}', source)
    for pattern, repl in _STAR_NAMES:
        source = pattern.sub(repl, source)
    return source


def make_package(dest, dragon, not_run):
    """dest/dmp_cpython: the suite (pointed at dragon_mp or not) and one
    module per family, as test/test_multiprocessing_spawn/ has."""
    src = stdlib_test_dir()
    pkg = os.path.join(dest, PKG)
    os.makedirs(pkg)
    open(os.path.join(pkg, '__init__.py'), 'w').close()
    for name in ('_test_multiprocessing.py', 'mp_fork_bomb.py', 'mp_preload.py'):
        with open(os.path.join(src, name)) as f:
            text = f.read()
        if dragon:
            text = point_at_dragon_mp(text)
        with open(os.path.join(pkg, name), 'w') as f:
            f.write(text)
    for family in FAMILIES:
        kw = 'exclude_types=True' if family == 'misc' else f'only_type={family!r}'
        with open(os.path.join(pkg, f'test_{family}.py'), 'w') as f:
            f.write('import unittest\n'
                    'from ._test_multiprocessing import install_tests_in_module_dict\n'
                    f"install_tests_in_module_dict(globals(), 'spawn', {kw})\n"
                    f'_NOT_RUN = {not_run!r}\n' + _SKIP_NOT_RUN)
    return pkg


# Appended to each family module: a test listed as "not run" (it would hang
# or take the run down with dragon_mp) is reported as skipped, with its reason.
_SKIP_NOT_RUN = """
import re as _re
for _name, _cls in list(globals().items()):
    if isinstance(_cls, type) and issubclass(_cls, unittest.TestCase):
        _key = _re.sub(r'^With(Processes|Threads|Manager)', '_', _name)
        for _test in dir(_cls):
            _reason = _NOT_RUN.get(_name + '.' + _test) or _NOT_RUN.get(_key + '.' + _test)
            if _reason:
                setattr(_cls, _test, unittest.skip('dragon_mp: ' + _reason)(getattr(_cls, _test)))
"""


def run_family(dest, family, pattern, timeout, env, echo):
    """unittest's output of one family (echoed line by line with echo)."""
    argv = [sys.executable, '-m', 'unittest', '-v', f'{PKG}.test_{family}']
    if pattern:
        argv += ['-k', pattern]
    lines = []
    proc = subprocess.Popen(argv, cwd=dest, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors='replace',
                            start_new_session=True)
    timer = threading.Timer(timeout, _kill_group, (proc, lines, family, timeout))
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if echo:
                print(line, end='', flush=True)
        proc.wait()
    finally:
        timer.cancel()
        _kill_group(proc, None, family, timeout)
    return ''.join(lines)


def _kill_group(proc, lines, family, timeout):
    if lines is not None and proc.poll() is None:
        lines.append(f'\n*** {family}: timed out after {timeout} s\n')
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_OUTCOMES = (('ok', 'ok'), ('FAIL', 'FAIL'), ('ERROR', 'ERROR'), ('skipped', 'skipped'),
             ('expected failure', 'xfail'), ('unexpected success', 'FAIL'))


def _test_id(name, cls):
    # 3.11 writes "test (module.Class)", 3.12+ "test (module.Class.test)".
    if cls.endswith('.' + name):
        cls = cls[: -len(name) - 1]
    return cls.split('.')[-1] + '.' + name


def parse(out):
    """{test id: outcome} from unittest -v output: ok, FAIL, ERROR, skipped, xfail.

    A test's line is "test_x (module.Class) ... ok"; with a docstring the
    outcome ends the next line; output of the test itself may come between.
    """
    results, pending = {}, None
    for line in out.splitlines():
        m = re.match(r'^(test\w+) \(([\w.]+)\)', line)
        if m:
            pending = _test_id(m.group(1), m.group(2))
        if pending is None or ' ... ' not in line:
            continue
        tail = line.rsplit(' ... ', 1)[1].strip()
        for prefix, outcome in _OUTCOMES:
            if tail.startswith(prefix):
                results[pending] = outcome
                pending = None
                break
    if pending is not None:
        results[pending] = 'ERROR'          # the run ended inside it (crash, timeout)
    # The summary blocks are authoritative for failures.
    for m in re.finditer(r'^(ERROR|FAIL): (test\w+) \(([\w.]+)\)', out, re.M):
        results[_test_id(m.group(2), m.group(3))] = m.group(1)
    return results


def load_differences():
    """({test id: reason} expected to fail, {test id: reason} not run).

    Test ids are Class.test: the class as the family names it
    (WithProcessesTestCondition) for that family only, or with the family's
    With... prefix written "_" (_TestCondition) for every family. A line
    "not-run Class.test reason" is a test that would hang or break the run,
    skipped with its reason."""
    fails, not_run = {}, {}
    with open(os.path.join(HERE, 'differences.txt')) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            table = fails
            if line.startswith('not-run '):
                table, line = not_run, line[len('not-run '):]
            tid, _, reason = line.partition(' ')
            table[tid] = reason.strip()
    return fails, not_run


def _key(tid):
    cls, _, name = tid.partition('.')
    return re.sub(r'^With(Processes|Threads|Manager)', '_', cls) + '.' + name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--stdlib', action='store_true', help='run the unchanged suite on stdlib (the baseline)')
    ap.add_argument('-f', '--family', action='append', choices=FAMILIES,
                    help='a family to run (repeatable; default all four)')
    ap.add_argument('-k', dest='pattern', help="unittest's -k: only tests matching it")
    ap.add_argument('--timeout', type=int, default=1200, help='seconds per family')
    ap.add_argument('-v', '--verbose', action='store_true', help="print unittest's output")
    args = ap.parse_args(argv)

    dragon = not args.stdlib
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [ROOT, env.get('PYTHONPATH')]))
    diffs, not_run = load_differences() if dragon else ({}, {})
    dest = tempfile.mkdtemp(prefix='dmp-cpython-')
    try:
        make_package(dest, dragon, not_run)
        totals, bad = {}, []
        for family in args.family or FAMILIES:
            out = run_family(dest, family, args.pattern, args.timeout, env, args.verbose)
            results = parse(out)
            counts = {}
            for tid, outcome in sorted(results.items()):
                counts[outcome] = counts.get(outcome, 0) + 1
                totals[outcome] = totals.get(outcome, 0) + 1
                listed = tid in diffs or _key(tid) in diffs
                if outcome in ('FAIL', 'ERROR') and not listed:
                    bad.append(f'{outcome} {tid}')
                elif outcome == 'ok' and listed:
                    bad.append(f'passes but is listed in differences.txt: {tid}')
            if 'timed out' in out[-200:] or not results:
                bad.append(f'{family}: no results (crash or timeout); the end of its output:\n{out[-3000:]}')
            print(f'{family:10s} ' + ', '.join(f'{k} {v}' for k, v in sorted(counts.items())), flush=True)
        which = 'dragon_mp' if dragon else 'stdlib'
        print(f'{which} on Python {sys.version.split()[0]}: ' +
              ', '.join(f'{k} {v}' for k, v in sorted(totals.items())))
        if bad:
            print('\n'.join(bad))
            return 1
        if dragon:
            print('every test that did not pass is listed in tests/cpython/differences.txt')
        return 0
    finally:
        shutil.rmtree(dest, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
