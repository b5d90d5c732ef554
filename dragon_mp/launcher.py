"""The `dragon` command: run a multiprocessing program under a dragon_mp runtime.

    dragon prog.py [args...]
    dragon -m package.module [args...]
    dragon -c "code" [args...]

The launcher is the run's head: it creates the runtime, runs the program as a
process of the run (stdin, stdout and stderr are the launcher's), waits for
it, tears the runtime down and exits with the program's exit code (128+N if a
signal N ended it). SIGTERM and SIGHUP are forwarded to the program; SIGINT is
not, because the terminal already delivers Ctrl-C to the program itself.
"""

import argparse
import os
import signal
import sys

from . import __version__, _core, _runtime

EPILOG = """\
Without the launcher, `python prog.py` works too: the runtime then starts on
first use inside the program and ends with it. Leftovers of killed runs can be
removed with dragon-cleanup.
"""


def parse(argv):
    parser = argparse.ArgumentParser(
        prog='dragon', description='Run a Python multiprocessing program on dragon_mp.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--version', action='version', version=f'dragon_mp {__version__}')
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('-m', dest='module', metavar='MODULE', help='run a library module as a script')
    what.add_argument('-c', dest='command', metavar='CMD', help='run a program passed as a string')
    what.add_argument('program', nargs='?', metavar='prog.py', help='the program to run')
    parser.add_argument('args', nargs=argparse.REMAINDER, help='arguments for the program')
    return parser.parse_args(argv)


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
    argv = program_argv(ns)
    if os.environ.get(_runtime.ENV_RUN):
        # Already inside a run (dragon under dragon): start a run of our own.
        del os.environ[_runtime.ENV_RUN]
    _runtime.current()
    gc = _core.gocore()
    handle = _runtime.start_process({'argv': argv, 'env': _runtime.child_environment(),
                                     'files': [0, 1, 2], 'kill_with_parent': True})

    def forward(signum, frame):
        try:
            _core.call(gc.ProcSignal, handle, signum)
        except Exception:
            pass

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        while True:
            try:
                code = _core.call(gc.ProcWait, handle, 100_000_000)
                break
            except TimeoutError:
                continue
    finally:
        _core.call(gc.ProcRelease, handle)
        _runtime.shutdown()
    return exit_status(code)


if __name__ == '__main__':
    sys.exit(main())
