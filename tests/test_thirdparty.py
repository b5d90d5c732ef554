"""Libraries people use with multiprocessing, run against stdlib and dragon_mp.

Each program runs twice, as a script of its own (its children import it by
name): with stdlib's 'spawn' context and with dragon_mp, and both must print
the same. Versions are pinned in tests/requirements-thirdparty.txt (`make
test` installs them); without them the tests skip, except under CI.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from conftest import clean_env, require_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRELUDE = '''
import sys, time
if sys.argv[1] == 'dragon':
    import dragon_mp as mp
    ctx = mp.get_context()
else:
    import multiprocessing as mp
    ctx = mp.get_context('spawn')

def sq(x):
    return x * x

def add(*xs):
    return sum(xs)

def boom(x):
    raise ValueError(f'boom {x}')

def slow(x):
    time.sleep(x)
    return x
'''

PROGRAMS = {
    # pebble polls the result connection's file descriptor.
    'pebble': '''
        from concurrent.futures import TimeoutError as FutureTimeout
        from pebble import ProcessPool
        if __name__ == '__main__':
            out = []
            with ProcessPool(max_workers=2, context=ctx) as pool:
                futures = [pool.schedule(sq, args=(i,)) for i in range(10)]
                out.append([f.result(timeout=60) for f in futures])
                try:
                    pool.schedule(boom, args=(3,)).result(timeout=60)
                except ValueError as e:
                    out.append(repr(e))
                try:
                    pool.schedule(slow, args=(30,), timeout=0.5).result(timeout=60)
                except FutureTimeout:
                    out.append('timed out')
                out.append(list(pool.map(sq, range(5), timeout=60).result()))
            print(out)
    ''',
    # dask accepts pool= only if it is a multiprocessing.pool.Pool (or an Executor).
    'dask': '''
        import dask
        import dask.bag as db
        from dask import delayed
        from concurrent.futures import ProcessPoolExecutor
        if __name__ == '__main__':
            out = []
            total = delayed(add)(*[delayed(sq)(i) for i in range(20)])
            with ctx.Pool(2) as pool:
                out.append(total.compute(scheduler='processes', pool=pool))
                with dask.config.set(scheduler='processes', pool=pool):
                    out.append(db.from_sequence(range(30), npartitions=6).map(sq).sum().compute())
            with ProcessPoolExecutor(2, mp_context=ctx) as ex:
                out.append(total.compute(scheduler='processes', pool=ex))
            print(out)
    ''',
    # tqdm's default lock is made by stdlib's default (fork) context: with
    # any other context, as with stdlib's spawn, give it one of that context.
    'tqdm': '''
        import tqdm
        from tqdm.contrib.concurrent import process_map
        if __name__ == '__main__':
            tqdm.tqdm.set_lock(ctx.RLock())
            print(process_map(sq, range(50), max_workers=2, chunksize=4, mp_context=ctx,
                              disable=True))
            print(process_map(sq, range(10), max_workers=2, mp_context=ctx, file=sys.stderr)[-1])
    ''',
}


@pytest.mark.parametrize('library', sorted(PROGRAMS))
def test_same_results_as_stdlib(tmp_path, library):
    require_module(library)
    prog = tmp_path / f'prog_{library}.py'
    prog.write_text(PRELUDE + textwrap.dedent(PROGRAMS[library]))
    env = clean_env()
    env['PYTHONPATH'] = ROOT
    outputs = {}
    for which in ('stdlib', 'dragon'):
        r = subprocess.run([sys.executable, str(prog), which], capture_output=True, text=True,
                           timeout=180, cwd=str(tmp_path), env=env)
        assert r.returncode == 0, (which, r.stderr[-3000:])
        outputs[which] = r.stdout
    assert outputs['dragon'] == outputs['stdlib'] and outputs['stdlib'].strip()
