"""The benchmark tools run and report what they say (no timing is asserted)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import clean_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, 'bench')


def _run(args, timeout=300):
    return subprocess.run(args, cwd=ROOT, env=clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def test_start_cost_reports_every_row_for_both():
    out = _run([sys.executable, os.path.join(BENCH, 'start_cost.py'), '--starts', '5', '--rounds', '1'])
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 3 and not cells[0].startswith(('per start', '---')):
            rows[cells[0]] = cells[1:]
    assert len(rows) == 8, out.stdout
    number = re.compile(r'^\d+\.\d+( ms)?$')
    for label, (stdlib, dragon) in rows.items():
        assert number.match(dragon), (label, dragon)
        if 'zygote' in label:
            assert stdlib == '-'                     # stdlib fork has no zygote
        else:
            assert number.match(stdlib), (label, stdlib)
    # a start costs CPU somewhere: the columns are not empty measurements
    assert float(rows['CPU, all processes'][1].split()[0]) > 0
    assert float(rows['minor faults, children'][1]) > 0


CC = os.environ.get('CC') or shutil.which('cc') or shutil.which('gcc')


@pytest.mark.skipif(CC is None, reason='no C compiler')
def test_xcopy_builds_and_reports_shares_of_memcpy(tmp_path):
    exe = str(tmp_path / 'xcopy')
    build = _run([CC, '-O2', '-Wall', '-Werror', '-o', exe, os.path.join(BENCH, 'xcopy.c')])
    assert build.returncode == 0, build.stderr
    out = _run([exe, '2', '40'], timeout=60)
    assert out.returncode == 0, out.stderr
    shares = [int(m) for m in re.findall(r'= (\d+)% of memcpy', out.stdout)]
    assert len(shares) == 2 and all(s > 0 for s in shares), out.stdout
    assert _run([exe, '0']).returncode == 2                    # usage error


def test_idle_memory_counts_the_processes_of_each_implementation():
    out = _run([sys.executable, os.path.join(BENCH, 'idle_memory.py'), '--idle', '0.2'])
    assert out.returncode == 0, out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[0] in ('stdlib-fork', 'stdlib-spawn', 'dragon_mp'):
            rows[cells[0]] = cells
    assert set(rows) == {'stdlib-fork', 'stdlib-spawn', 'dragon_mp'}, out.stdout
    assert 'resource tracker' in rows['stdlib-spawn'][1]
    for role in ('program', 'reaper', 'zygote', 'shared memory'):
        assert role in rows['dragon_mp'][1], (role, rows['dragon_mp'])
    for impl, cells in rows.items():
        rss, pss = (float(c.split()[0]) for c in cells[2:])
        assert rss > 0 and 0 < pss <= rss, (impl, cells)


def test_start_floor_reports_every_row():
    # A child that fails (the spawn-semantics one re-runs this script's main
    # and unpickles a Process) makes the script raise, and this test fail.
    out = _run([sys.executable, os.path.join(BENCH, 'start_floor.py'), '--starts', '10',
                '--rounds', '1'])
    assert out.returncode == 0, out.stderr
    rows = re.findall(r'^\| ([a-z_ ,-]+) \| (\d+\.\d+) \| (\d+\.\d+)x \|$', out.stdout, re.M)
    assert [r[0] for r in rows] == ['minimal fork server, no-op child',
                                    'minimal fork server, spawn semantics', 'stdlib fork',
                                    'dragon_mp'], out.stdout
    assert all(float(ms) > 0 for _, ms, _ in rows)
    assert dict((r[0], r[2]) for r in rows)['stdlib fork'] == '1.00'


def test_start_parent_size_reports_every_size():
    out = _run([sys.executable, os.path.join(BENCH, 'start_parent_size.py'), '--mib', '0,8',
                '--starts', '3', '--rounds', '1'])
    assert out.returncode == 0, out.stderr
    rows = re.findall(r'^\| (\d+) MiB \| (\d+\.\d+) ms \| (\d+\.\d+) ms \| (\d+\.\d+)x \|$',
                      out.stdout, re.M)
    assert [r[0] for r in rows] == ['0', '8'], out.stdout
    for _, fork, ours, ratio in rows:
        assert float(fork) > 0 and float(ours) > 0
        assert abs(float(ratio) - float(fork) / float(ours)) < 0.02 * float(ratio) + 0.01


def test_many_children_reports_start_times_and_memory(tmp_path):
    out = _run([sys.executable, os.path.join(BENCH, 'many_children.py'), '--n', '6', '--step', '3',
                '--spawn-n', '3', '--out', str(tmp_path / 'mc')])
    assert out.returncode == 0, out.stderr
    import json
    with open(tmp_path / 'mc.json') as f:
        got = json.load(f)
    assert set(got) == {'dragon_mp', 'fork', 'spawn'}
    assert [w['live'] for w in got['dragon_mp']['windows']] == [3, 6]
    assert [w['live'] for w in got['spawn']['windows']] == [3]
    for method, r in got.items():
        assert all(w['start_ms'] > 0 for w in r['windows']), (method, r)
        assert all(0 < m['pss_kib'] <= m['rss_kib'] for m in r['memory']), (method, r)


def test_start_imports_program_puts_the_module_first_or_last():
    sys.path.insert(0, BENCH)
    try:
        import start_imports
    finally:
        sys.path.remove(BENCH)
    first = start_imports.program('numpy+pandas', 'dragon_mp')
    last = start_imports.program('numpy+pandas', 'dragon_mp, imported last')
    stdlib = start_imports.program('numpy+pandas', 'fork')
    assert first.index('import dragon_mp as mp') < first.index('import numpy, pandas')
    assert last.index('import dragon_mp as mp') > last.index('import numpy, pandas')
    assert 'import multiprocessing as mp' in stdlib and 'import dragon_mp' not in stdlib
