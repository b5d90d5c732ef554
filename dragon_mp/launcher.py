"""The `dragon` command: run a multiprocessing program under a dragon_mp runtime.

    dragon prog.py [args...]
    dragon -m package.module [args...]
    dragon -c "code" [args...]
    dragon --hostfile hosts.txt prog.py      (many nodes, started over ssh)
    dragon prog.py                           (inside a Slurm allocation: its nodes)

The launcher is the run's head: it creates the runtime, runs the program as a
process of the run (stdin, stdout and stderr are the launcher's), waits for
it, tears the runtime down and exits with the program's exit code (128+N if a
signal N ended it). SIGTERM and SIGHUP are forwarded to the program; SIGINT is
not, because the terminal already delivers Ctrl-C to the program itself (in a
multi-node run the launcher passes it on to the processes on the other nodes).
"""

import argparse
import os
import signal
import sys
import time

from . import __version__, _core, _runtime, nodes

__all__ = ['main']

EPILOG = """\
Without the launcher, `python prog.py` works too: the runtime then starts on
first use inside the program and ends with it. Leftovers of killed runs can be
removed with dragon-cleanup.
"""


_VALUE_OPTIONS = ('--hostfile', '--launch', '--fanout', '--port')


def split_argv(argv):
    """(the launcher's options, the program, the program's arguments).

    As on python's own command line, the program is the first of `prog.py`,
    `-m MODULE` or `-c CMD`, and everything after it is the program's, even
    what looks like an option of ours (`dragon -m mod --label` passes
    --label to mod)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--':
            return argv[:i], argv[i + 1:i + 2], argv[i + 2:]
        if arg in ('-m', '-c'):
            return argv[:i], argv[i:i + 2], argv[i + 2:]
        if arg[:2] in ('-m', '-c') and not arg.startswith('--'):
            return argv[:i], [arg[:2], arg[2:]], argv[i + 1:]
        if not arg.startswith('-') or arg == '-':
            return argv[:i], [arg], argv[i + 1:]
        i += 2 if arg in _VALUE_OPTIONS else 1
    return argv, [], []


def parse(argv):
    parser = argparse.ArgumentParser(
        prog='dragon', description='Run a Python multiprocessing program on dragon_mp.',
        usage='dragon [options] (prog.py | -m MODULE | -c CMD) [args ...]',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument('--version', action='version', version=f'dragon_mp {__version__}')
    parser.add_argument('--hostfile', metavar='FILE',
                        help='run on these hosts (one per line); this host is node 0')
    parser.add_argument('--launch', metavar='TEMPLATE',
                        help='command that starts a node: {host} and {command} are replaced '
                             f'(default: {nodes.DEFAULT_SSH!r}; env DRAGON_MP_LAUNCH)')
    parser.add_argument('--no-slurm', action='store_true',
                        help='inside a Slurm allocation, run on this host only')
    parser.add_argument('--label', action='store_true',
                        help='prefix every line of output with the host it comes from')
    parser.add_argument('--fanout', type=int, default=nodes.DEFAULT_FANOUT, metavar='N',
                        help='launch sessions a host starts at most: the launcher starts N nodes, '
                             'each starts its share of the rest (default: %(default)s)')
    parser.add_argument('--port', type=int, default=0,
                        help='UDP port of the node agents (default: any free port)')
    options, what, args = split_argv(list(argv))
    ns = parser.parse_args(options)
    ns.module = ns.command = ns.program = None
    if not what:
        parser.error('the program to run is missing: prog.py, -m MODULE or -c CMD')
    if what[0] in ('-m', '-c') and (len(what) < 2 or not what[1]):
        parser.error(f'argument {what[0]}: expected one argument')
    if what[0] == '-m':
        ns.module = what[1]
    elif what[0] == '-c':
        ns.command = what[1]
    else:
        ns.program = what[0]
    ns.args = args
    return ns


def cluster_hosts(ns):
    """(hosts, slurm) of a multi-node run, or (None, False) for one node."""
    if ns.hostfile:
        hosts = nodes.order_hosts(nodes.read_hostfile(ns.hostfile))
        return (hosts, False) if len(hosts) > 1 else (None, False)
    if not ns.no_slurm:
        allocation = nodes.slurm_hosts()
        if allocation:
            hosts = nodes.order_hosts(allocation)
            return (hosts, True) if len(hosts) > 1 else (None, False)
    return None, False


def program_argv(ns):
    if ns.module:
        return [sys.executable, '-m', ns.module, *ns.args]
    if ns.command:
        return [sys.executable, '-c', ns.command, *ns.args]
    if not os.path.exists(ns.program):
        raise SystemExit(f"dragon: can't open file {ns.program!r}: No such file or directory")
    return [sys.executable, ns.program, *ns.args]


def exit_status(code):
    return code if code >= 0 else 128 - code


def main(argv=None):
    ns = parse(sys.argv[1:] if argv is None else argv)
    if ns.fanout < 1:
        raise SystemExit('dragon: --fanout must be at least 1')
    argv = program_argv(ns)
    hosts, slurm = cluster_hosts(ns)      # before Go is loaded: it may run commands
    for key in (_runtime.ENV_RUN, _runtime.ENV_NODE, _runtime.ENV_NODES, _runtime.ENV_NCPUS):
        # Already inside a run (dragon under dragon): start a run of our own.
        os.environ.pop(key, None)
    _runtime.current()
    gc = _core.gocore()
    cluster = None
    if hosts:
        cluster = nodes.Cluster(hosts, launch=ns.launch, slurm=slurm, label=ns.label, port=ns.port,
                                fanout=ns.fanout)
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            _runtime.shutdown()
            raise
    files, labeller = [0, 1, 2], None
    if ns.label:
        files, labeller = label_output(hosts[0] if hosts else nodes.socket.gethostname())
    handle = _runtime.start_process({'argv': argv, 'env': _runtime.child_environment(),
                                     'files': files, 'kill_with_parent': True})
    if labeller:
        labeller()

    def forward(signum, frame):
        try:
            _core.call(gc.ProcSignal, handle, signum)
        except Exception:
            pass

    if cluster is None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        # The terminal's Ctrl-C reaches the program and its local children (the
        # foreground group); the processes on the other nodes get it from here.
        signal.signal(signal.SIGINT, lambda signum, frame: cluster.signal(signum))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        code = wait_program(gc, handle, cluster)
    finally:
        _core.call(gc.ProcRelease, handle)
        if cluster is not None:
            cluster.stop()
        _runtime.shutdown()
    return exit_status(code)


# After a node is lost, operations waiting on it fail at once; the program
# gets this long to end by itself before it is terminated (SIGTERM, then
# SIGKILL 3 s later). With ~3 s to notice the loss, the launcher is gone
# ~11 s after a node is cut at the latest.
LOST_NODE_GRACE = 5.0


def wait_program(gc, handle, cluster):
    lost_at = None
    reported = set()
    signalled = set()
    while True:
        try:
            code = _core.call(gc.ProcWait, handle, 100_000_000)
        except TimeoutError:
            code = None
        if cluster is None:
            if code is not None:
                return code
            continue
        # Every lost node is reported (those of a launch subtree follow
        # their relay); the grace counts from the first.
        lost = {n: why for n, why in cluster.lost().items() if n not in reported}
        if lost:
            report_lost(cluster, lost, ending=code is None and lost_at is None)
            reported.update(lost)
            if lost_at is None:
                lost_at = time.monotonic()
        if code is not None:
            return code
        if lost_at is None:
            continue
        waited = time.monotonic() - lost_at
        for limit, sig in ((LOST_NODE_GRACE, signal.SIGTERM), (LOST_NODE_GRACE + 3, signal.SIGKILL)):
            if waited > limit and sig not in signalled:
                signalled.add(sig)
                try:
                    _core.call(gc.ProcSignal, handle, sig)
                except Exception:
                    pass


def report_lost(cluster, lost, ending):
    for n, why in sorted(lost.items()):
        print(f'dragon: node {n} ({cluster.hosts[n]}) lost: {why}', file=sys.stderr, flush=True)
    if ending:
        print(f'dragon: ending the run (the program has {LOST_NODE_GRACE:.0f} s to exit)',
              file=sys.stderr, flush=True)


def label_output(host):
    """Pipes for the program's stdout/stderr whose lines get "[host] " in front."""
    import threading
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()

    def forward(fd, stream):
        with open(fd, 'rb') as f:
            for line in f:
                stream.write(f'[{host}] '.encode() + line)
                stream.flush()

    def start():
        os.close(out_w)
        os.close(err_w)
        for fd, stream in ((out_r, sys.stdout.buffer), (err_r, sys.stderr.buffer)):
            threading.Thread(target=forward, args=(fd, stream), daemon=True).start()
    return [0, out_w, err_w], start


if __name__ == '__main__':
    sys.exit(main())
