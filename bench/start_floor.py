"""The least a fork server costs: start+join of a pre-forked no-op child, next to stdlib fork.

    python bench/start_floor.py [--starts N]

dragon_mp starts processes through a fork server (the zygote: a process that
has loaded Go never forks). This measures how much of a start+join the design
itself costs on this machine, without anything dragon_mp or stdlib adds: a
server that imported multiprocessing keeps one spare forked ahead; a start is
one byte to the server, which hands it to the spare (a no-op, then _exit),
forks the next spare while that runs, reaps it through a pidfd and sends the
exit code back. The same run times stdlib's fork start+join of a no-op
target, so the two numbers compare. Neither has spawn semantics, descriptors
passed, or a Process object on the server's side.
"""

import argparse
import gc
import multiprocessing
import os
import select
import socket
import time


def noop():
    pass


def _fork_spare(conn):
    """(pid, write end of its start pipe, pidfd) of a new spare."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        conn.close()
        os.read(r, 1)              # wait for the start
        noop()
        os._exit(0)
    os.close(r)
    return pid, w, os.pidfd_open(pid)


def _serve(conn):
    gc.freeze()
    spare = _fork_spare(conn)
    while conn.recv(1):
        pid, w, pidfd = spare
        os.write(w, b's')
        os.close(w)
        spare = _fork_spare(conn)  # the next one, while this one runs
        select.select([pidfd], [], [])
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        conn.send(bytes([os.waitstatus_to_exitcode(status) & 0xff]))
    pid, w, pidfd = spare
    os.close(w)                    # the spare reads EOF, runs and exits
    os.waitpid(pid, 0)
    os._exit(0)


def fork_server(starts):
    """ms per start+join through a minimal fork server."""
    ours, theirs = socket.socketpair()
    server = os.fork()
    if server == 0:
        ours.close()
        _serve(theirs)
    theirs.close()
    try:
        for _ in range(20):
            ours.send(b's')
            ours.recv(1)
        t = time.perf_counter()
        for _ in range(starts):
            ours.send(b's')
            if ours.recv(1) != b'\0':
                raise RuntimeError('the no-op child failed')
        return (time.perf_counter() - t) / starts * 1e3
    finally:
        ours.close()
        os.waitpid(server, 0)


def stdlib_fork(starts):
    """ms per start+join of stdlib's fork start method."""
    ctx = multiprocessing.get_context('fork')

    def one():
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        if p.exitcode != 0:
            raise RuntimeError('exit code %s' % p.exitcode)
    for _ in range(20):
        one()
    t = time.perf_counter()
    for _ in range(starts):
        one()
    return (time.perf_counter() - t) / starts * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--starts', type=int, default=1000)
    args = ap.parse_args()
    server = fork_server(args.starts)
    fork = stdlib_fork(args.starts)
    print('| per start+join (%d starts) | ms |' % args.starts)
    print('|---|--:|')
    print('| minimal fork server (pre-forked no-op child) | %.3f |' % server)
    print('| stdlib fork, no-op target | %.3f |' % fork)


if __name__ == '__main__':
    main()
