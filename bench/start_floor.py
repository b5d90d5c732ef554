"""The least a fork server costs: start+join through minimal servers, next to stdlib fork and dragon_mp.

    python bench/start_floor.py [--starts N] [--rounds R]

dragon_mp starts processes through a fork server (the zygote: a process that
has loaded Go never forks) with spawn semantics. This measures, on this
machine and in one run, what that design costs before anything dragon_mp
adds. Each server imported multiprocessing, keeps one spare forked ahead,
hands a start to it, forks the next spare while it runs, reaps it through a
pidfd and sends the exit code back:

- no-op: a start is one byte; the spare calls a no-op and exits;
- spawn semantics: the client makes a Process and pickles it and spawn's
  preparation data for every start, as stdlib spawn does; the bytes go
  through the server to the spare, which does what a spawn child does:
  prepare (re-running this script as __mp_main__, compiled once in the server
  as dragon_mp's zygote does), unpickle the Process, _bootstrap, exit.
  Nothing else: no descriptors passed, no stdio of the client's, no
  authentication, the exit status from the real parent.

The same run times stdlib fork and dragon_mp (in a subprocess, since this
process forks and so must not load Go), alternating by round; the table has
the medians.
"""

import argparse
import gc
import io
import multiprocessing
import os
import select
import socket
import statistics
import subprocess
import sys
import time
import types
from multiprocessing import context as mp_context
from multiprocessing import process, reduction, spawn

WARMUP = 20


def noop():
    pass


# -- the servers -------------------------------------------------------------

def _fork_spare(conn, become_child):
    """(pid, write end of its start pipe, pidfd) of a new spare; it runs become_child(data, pipe)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        conn.close()
        code = 1
        try:
            data = os.read(r, 1 << 20)  # wait for the start
            code = become_child(data, r) if data else 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(r)
    return pid, w, os.pidfd_open(pid)


def _serve(conn, become_child):
    gc.freeze()
    spare = _fork_spare(conn, become_child)
    while True:
        data = conn.recv(1 << 20)
        if not data:
            break
        pid, w, pidfd = spare
        os.write(w, data)
        os.close(w)
        spare = _fork_spare(conn, become_child)    # the next one, while this one runs
        select.select([pidfd], [], [])
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        conn.send(bytes([os.waitstatus_to_exitcode(status) & 0xff]))
    pid, w, pidfd = spare
    os.close(w)                    # the spare reads EOF and exits
    os.waitpid(pid, 0)
    os._exit(0)


def _noop_child(data, pipe):
    noop()
    return 0


def _spawn_child(data, pipe):
    """What a spawn child does with its parent's pickles (spawn._main), then its exit code."""
    n = int.from_bytes(data[:4], 'little')
    process.current_process()._inheriting = True
    try:
        spawn.prepare(reduction.pickle.loads(data[4:4 + n]))
        proc = reduction.pickle.loads(data[4 + n:])
    finally:
        del process.current_process()._inheriting
    return proc._bootstrap(parent_sentinel=pipe)


def _main_compiled_once(path):
    """spawn._fixup_main_from_path running the main script's code compiled here (a zygote's code cache)."""
    with open(path, 'rb') as f:
        code = compile(f.read(), path, 'exec')

    def fixup(main_path):
        if main_path != path:
            raise RuntimeError('unexpected main path %r' % main_path)
        module = types.ModuleType('__mp_main__')
        module.__dict__.update(__name__='__mp_main__', __file__=main_path, __cached__=None,
                               __loader__=None, __package__='', __spec__=None)
        sys.modules['__mp_main__'] = module
        exec(code, module.__dict__)
        sys.modules['__main__'] = module
    return fixup


def _spawn_server(conn):
    # As in any fork server, this script is not the server's __main__: each child re-runs it.
    main_path = os.path.abspath(sys.modules['__main__'].__file__)
    sys.modules['__main__'] = types.ModuleType('__main__')
    spawn._fixup_main_from_path = _main_compiled_once(main_path)
    _serve(conn, _spawn_child)


def _noop_request():
    return b's'


_spawn_ctx = multiprocessing.get_context('spawn')


def _spawn_request():
    """The bytes a spawn start sends: preparation data and the Process, pickled as stdlib does."""
    p = _spawn_ctx.Process(target=noop)
    prep, proc = io.BytesIO(), io.BytesIO()
    mp_context.set_spawning_popen(p)      # pickling a Process (its authkey) is allowed only here
    try:
        reduction.dump(spawn.get_preparation_data(p._name), prep)
        reduction.dump(p, proc)
    finally:
        mp_context.set_spawning_popen(None)
    prep = prep.getvalue()
    return len(prep).to_bytes(4, 'little') + prep + proc.getvalue()


def through_server(serve, request, starts):
    """ms per start+join through a server run by serve(conn); request() makes each start's bytes."""
    ours, theirs = socket.socketpair()
    server = os.fork()
    if server == 0:
        ours.close()
        serve(theirs)
    theirs.close()
    try:
        def one():
            ours.send(request())
            if ours.recv(1) != b'\0':
                raise RuntimeError('the child failed')
        return ms_per(one, starts)
    finally:
        ours.close()
        os.waitpid(server, 0)


# -- stdlib fork and dragon_mp -------------------------------------------------

def ms_per(one, starts):
    """ms per call of one(), after WARMUP calls."""
    for _ in range(WARMUP):
        one()
    t = time.perf_counter()
    for _ in range(starts):
        one()
    return (time.perf_counter() - t) / starts * 1e3


def start_join(ctx, starts, target=noop):
    """ms per Process start+join of target (a no-op) in ctx."""
    def one():
        p = ctx.Process(target=target)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError('exit code %s' % p.exitcode)
    return ms_per(one, starts)


def run_script(script, *args):
    """The last word script printed, run with this repository's dragon_mp, as the head of its own run."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    env.pop('DRAGON_MP_RUN', None)
    out = subprocess.run([sys.executable, os.path.abspath(script)] + [str(a) for a in args],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


def dragon_mp_start_join(starts):
    """start_join for dragon_mp, in a subprocess (it loads Go, which must never fork)."""
    return float(run_script(__file__, '--dragon-mp', starts))


ROWS = [
    ('minimal fork server, no-op child', lambda n: through_server(
        lambda c: _serve(c, _noop_child), _noop_request, n)),
    ('minimal fork server, spawn semantics', lambda n: through_server(
        _spawn_server, _spawn_request, n)),
    ('stdlib fork', lambda n: start_join(multiprocessing.get_context('fork'), n)),
    ('dragon_mp', dragon_mp_start_join),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--starts', type=int, default=500)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--dragon-mp', type=int, metavar='N', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dragon_mp is not None:
        import dragon_mp
        print(start_join(dragon_mp, args.dragon_mp))
        return
    times = {name: [] for name, _ in ROWS}
    for r in range(args.rounds):
        rows = ROWS if r % 2 == 0 else ROWS[::-1]
        for name, measure in rows:
            times[name].append(measure(args.starts))
            print('  round %d  %-38s %.3f ms' % (r + 1, name, times[name][-1]), file=sys.stderr)
    fork = statistics.median(times['stdlib fork'])
    print('| per start+join (median of %d rounds x %d starts) | ms | time / stdlib fork\'s (<1: faster) |'
          % (args.rounds, args.starts))
    print('|---|--:|--:|')
    for name, _ in ROWS:
        ms = statistics.median(times[name])
        print('| %s | %.3f | %.2fx |' % (name, ms, ms / fork))


if __name__ == '__main__':
    main()
