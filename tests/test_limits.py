"""Programs under an address-space limit (RLIMIT_AS, `ulimit -v`), as batch
systems and containers set it: dragon_mp adapts its pool's reservation, or
raises a Python exception that names the setting. Never a Go abort."""

import os
import resource
import subprocess
import sys
import textwrap

import pytest

from conftest import clean_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROGRAM = textwrap.dedent('''
    import dragon_mp as mp

    def echo(q, r):
        r.put(len(q.get()))

    if __name__ == '__main__':
        try:
            q, r = mp.Queue(), mp.Queue()
        except OSError as e:
            print('OSError', e)
            raise SystemExit(0)
        p = mp.Process(target=echo, args=(q, r))
        p.start()
        q.put(b'x' * (1 << 20))
        print('echo', r.get(timeout=60))
        p.join(60)
        print('exit', p.exitcode)
''')


def run_limited(tmp_path, limit, **env):
    prog = tmp_path / 'prog.py'
    prog.write_text(PROGRAM)

    def limit_as():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = clean_env(**env)
    env['PYTHONPATH'] = ROOT
    return subprocess.run([sys.executable, str(prog)], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=env, preexec_fn=limit_as)


@pytest.mark.parametrize('gib', [4, 16])
def test_the_pool_adapts_to_the_limit(tmp_path, gib):
    r = run_limited(tmp_path, gib << 30)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ['echo', str(1 << 20), 'exit', '0'], r.stdout + r.stderr[-2000:]


# Go's runtime alone reserves ~0.95 GiB of address space when it starts
# (page-allocator summaries, arenas, thread stacks; measured): at 512 MiB a
# process cannot host it, which is checked before Go starts. At 1 GiB what Go
# leaves depends on how many threads it has started by then: usually too
# little for a pool (OSError), on a loaded machine sometimes enough for the
# smallest one (3 of 30 runs with a busy loop), and then the program runs.
# Never a Go abort.
@pytest.mark.parametrize('mib', [512, 1024])
def test_too_low_a_limit_is_a_python_exception(tmp_path, mib):
    r = run_limited(tmp_path, mib << 20)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'fatal error' not in r.stderr, r.stderr[-3000:]
    if mib == 1024 and r.stdout.split() == ['echo', str(1 << 20), 'exit', '0']:
        return
    assert r.stdout.startswith('OSError'), r.stdout + r.stderr[-2000:]
    assert 'ulimit -v' in r.stdout


def test_a_reservation_too_large_for_the_limit_names_the_setting(tmp_path):
    r = run_limited(tmp_path, 4 << 30, DRAGON_MP_POOL_RESERVE=str(16 << 30))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith('OSError') and 'DRAGON_MP_POOL_RESERVE' in r.stdout, r.stdout


@pytest.mark.parametrize('value', ['64G', '-1', str(1 << 19), str(4 << 40)])
def test_a_bad_reservation_setting_is_a_value_error(tmp_path, value):
    prog = tmp_path / 'bad.py'
    prog.write_text(textwrap.dedent("""
        import dragon_mp as mp
        try:
            mp.Queue()
        except ValueError as e:
            print('ValueError', e)
    """))
    env = clean_env(DRAGON_MP_POOL_RESERVE=value)
    env['PYTHONPATH'] = ROOT
    r = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, timeout=120,
                       cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith('ValueError') and 'DRAGON_MP_POOL_RESERVE' in r.stdout, r.stdout


# A container's /dev/shm: Docker gives 64 MB. A program that cycles bursts
# of large messages through it keeps working, and between bursts the memory
# goes back to the filesystem for others (gocore/pool/scavenge.go).
SMALL_SHM_PROGRAM = textwrap.dedent('''
    import os, sys, time
    import dragon_mp as mp

    def consumer(q, r, rounds):
        for _ in range(rounds):
            got = [q.get(timeout=60) for _ in range(58)]
            assert all(len(b) == 1 << 20 and b[0] == i % 256 for i, b in enumerate(got))
            r.put('drained')
            big = q.get(timeout=60)
            assert len(big) == 10 << 20 and big[-1] == 7
            r.put('big')

    if __name__ == '__main__':
        rounds = int(sys.argv[1])
        q, r = mp.Queue(), mp.Queue()
        p = mp.Process(target=consumer, args=(q, r, rounds))
        p.start()
        for _ in range(rounds):
            for i in range(58):
                q.put(bytes([i % 256]) * (1 << 20))
            assert r.get(timeout=60) == 'drained'
            q.put(b'\\0' * ((10 << 20) - 1) + b'\\7')
            assert r.get(timeout=60) == 'big'
        p.join(60)
        print('exit', p.exitcode, flush=True)
        pool = [n for n in os.listdir(os.environ['DRAGON_MP_SHM_DIR']) if n.endswith('.pool')][0]
        path = os.path.join(os.environ['DRAGON_MP_SHM_DIR'], pool)
        deadline = time.monotonic() + 10
        while os.stat(path).st_blocks * 512 > (8 << 20) and time.monotonic() < deadline:
            time.sleep(0.1)
        print('held', os.stat(path).st_blocks * 512, flush=True)
        # Someone else uses the memory between bursts.
        other = os.path.join(os.environ['DRAGON_MP_SHM_DIR'], 'someone-else')
        with open(other, 'wb') as f:
            f.write(b'o' * (48 << 20))
        os.unlink(other)
        print('others ok', flush=True)
''')


@pytest.fixture
def small_shm(tmp_path):
    d = tmp_path / 'shm'
    d.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64m,mode=1777', 'tmpfs', str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get('CI'):
            pytest.fail(f'cannot mount a tmpfs: {r.stderr}')
        pytest.skip(f'cannot mount a tmpfs: {r.stderr}')
    yield d
    subprocess.run(['umount', '-l', str(d)])


def test_bursts_through_a_64mb_dev_shm(tmp_path, small_shm):
    prog = tmp_path / 'bursts.py'
    prog.write_text(SMALL_SHM_PROGRAM)
    env = clean_env(DRAGON_MP_SHM_DIR=str(small_shm))
    env['PYTHONPATH'] = ROOT
    r = subprocess.run([sys.executable, str(prog), '100'], capture_output=True, text=True,
                       timeout=600, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    lines = r.stdout.split('\n')
    assert lines[0] == 'exit 0', r.stdout
    held = int(lines[1].split()[1])
    assert held <= 8 << 20, f'{held} bytes still held in /dev/shm after the bursts'
    assert lines[2] == 'others ok', r.stdout
    assert not os.listdir(small_shm), os.listdir(small_shm)
