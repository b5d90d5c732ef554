"""dragon_mp.native.ProcessGroup: state machine, Python and executable members,
stop escalation, restart, walltime, pipes, start failures, nothing left behind.

Targets are module level: Python members are dragon_mp processes with spawn
semantics and import this module by name.
"""

import os
import signal
import sys
import time

import pytest

from dragon_mp.native import DEVNULL, PIPE, STDOUT, ProcessGroup, ProcessTemplate, State

from conftest import wait_until

SLEEP = '/bin/sleep'
SH = '/bin/sh'


def exit_with(code):
    sys.exit(code)


def sleep_for(seconds):
    time.sleep(seconds)


def ignore_sigterm_and_sleep(seconds):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


def say(text):
    print(text, flush=True)
    print('to stderr', file=sys.stderr, flush=True)


def echo_cwd_env():
    print(os.getcwd(), os.environ.get('PG_TEST'), flush=True)


def echo_stdin():
    sys.stdout.write(sys.stdin.read().upper())


def alive(pid):
    """pid is a live process (a zombie counts as gone)."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return f.read().rsplit(b')', 1)[1].split()[0] != b'Z'
    except OSError:
        return False


def group(*templates, **kw):
    """An initialized group of (nproc, template) pairs."""
    pg = ProcessGroup(**kw)
    for nproc, t in templates:
        pg.add_process(nproc, t)
    pg.init()
    return pg


# -- state machine ------------------------------------------------------------

def test_state_machine_and_exit_status():
    pg = ProcessGroup()
    assert pg.state == State.IDLE == 'Idle'
    with pytest.raises(RuntimeError):
        pg.start()                                  # before init()
    pg.add_process(2, ProcessTemplate(exit_with, args=(0,)))
    pg.add_process(1, ProcessTemplate(SH, args=('-c', 'exit 3')))
    pg.add_process(1, ProcessTemplate(sleep_for, args=(0.5,)))
    pg.init()
    with pytest.raises(RuntimeError):
        pg.add_process(1, ProcessTemplate(SLEEP, args=('1',)))   # after init()
    pg.start()
    assert pg.state == 'Running'
    with pytest.raises(RuntimeError):
        pg.start()                                  # already running
    pg.join(timeout=30)
    assert pg.state == 'Idle'
    assert pg.puids == []
    codes = sorted(code for _, code in pg.exit_status)
    assert codes == [0, 0, 0, 3]
    # Why each ended, in exit_status's order: None for exit code 0.
    assert [p for p, _ in pg.exit_reasons] == [p for p, _ in pg.exit_status]
    assert sorted(map(str, (r for _, r in pg.exit_reasons))) == ['None', 'None', 'None', 'exited 3']
    assert len({puid for puid, _ in pg.exit_status}) == 4
    # A group that has ended can be started again.
    pg.start()
    pg.join(timeout=30)
    assert len(pg.exit_status) == 4
    pg.close()
    pg.close()                                      # idempotent
    with pytest.raises(ValueError):
        pg.start()


def test_join_timeout_then_stop():
    pg = group((3, ProcessTemplate(SLEEP, args=('30',))), (1, ProcessTemplate(sleep_for, args=(30,))))
    pg.start()
    puids = pg.puids
    assert len(puids) == 4 and all(alive(p) for p in puids)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        pg.join(timeout=0.3)
    assert 0.25 <= time.monotonic() - t < 5
    assert pg.state == State.RUNNING
    pg.stop()
    assert pg.state == State.IDLE
    assert sorted(p for p, _ in pg.exit_status) == sorted(puids)
    assert {code for _, code in pg.exit_status} == {-signal.SIGTERM}
    pg.close()
    assert not any(alive(p) for p in puids)


@pytest.mark.parametrize('kind', ['exec', 'python'])
def test_stop_kills_a_member_ignoring_sigterm(kind):
    if kind == 'exec':
        stubborn = ProcessTemplate(SH, args=('-c', 'trap "" TERM; exec sleep 30'))
    else:
        stubborn = ProcessTemplate(ignore_sigterm_and_sleep, args=(30,))
    pg = group((1, stubborn), (1, ProcessTemplate(SLEEP, args=('30',))))
    pg.start()
    time.sleep(0.5)                                 # the trap / the handler is in place
    t = time.monotonic()
    pg.stop(patience=1.0)
    took = time.monotonic() - t
    assert 0.9 <= took < 10, took
    assert sorted(code for _, code in pg.exit_status) == sorted([-signal.SIGKILL, -signal.SIGTERM])
    pg.close()


def test_terminate_kill_and_send_signal():
    pg = group((2, ProcessTemplate(SLEEP, args=('30',))))
    pg.start()
    pg.send_signal(signal.SIGUSR1)                  # sleep dies of SIGUSR1
    pg.join(timeout=10)
    assert [code for _, code in pg.exit_status] == [-signal.SIGUSR1] * 2
    assert all(r.startswith('killed by SIGUSR1') for _, r in pg.exit_reasons), pg.exit_reasons
    pg.start()
    pg.kill()
    pg.join(timeout=10)
    assert [code for _, code in pg.exit_status] == [-signal.SIGKILL] * 2
    pg.close()


def test_context_manager_closes():
    with group((2, ProcessTemplate(SLEEP, args=('30',)))) as pg:
        pg.start()
        puids = pg.puids
    assert not any(alive(p) for p in puids)


# -- restart and walltime -------------------------------------------------------

def test_restart_counts_until_stop():
    pg = group((2, ProcessTemplate(SH, args=('-c', 'sleep 0.05; exit 1'))),
               (1, ProcessTemplate(exit_with, args=(2,))), restart=True)
    pg.start()
    assert wait_until(lambda: pg.restarts >= 9, timeout=30), pg.restarts
    with pytest.raises(TimeoutError):
        pg.join(timeout=0.2)                        # restarting: it never ends by itself
    live = pg.puids
    assert len(live) <= 3
    pg.stop(patience=2)
    restarts = pg.restarts
    assert len(pg.exit_status) == restarts + 3      # every process started has exited
    assert {code for _, code in pg.exit_status} <= {1, 2, -signal.SIGTERM}
    time.sleep(0.3)
    assert pg.restarts == restarts                  # none after stop()
    pg.close()
    assert not any(alive(p) for p in live)


def test_stop_restart_lets_join_finish():
    pg = group((2, ProcessTemplate(SH, args=('-c', 'sleep 0.1'))), restart=True)
    pg.start()
    assert wait_until(lambda: pg.restarts >= 2, timeout=30)
    pg.stop_restart()
    pg.join(timeout=10)
    assert pg.state == 'Idle'
    assert {code for _, code in pg.exit_status} == {0}
    pg.close()


def test_walltime_stops_the_group():
    pg = group((2, ProcessTemplate(SLEEP, args=('30',))), (1, ProcessTemplate(sleep_for, args=(30,))),
               walltime=0.5)
    t = time.monotonic()
    pg.start()
    pg.join(timeout=20)
    took = time.monotonic() - t
    assert 0.4 <= took < 5, took
    assert pg.state == 'Idle'
    assert [code for _, code in pg.exit_status] == [-signal.SIGTERM] * 3
    pg.close()


def test_walltime_ends_restarting():
    pg = group((2, ProcessTemplate(SH, args=('-c', 'sleep 0.1'))), restart=True, walltime=1.0)
    pg.start()
    pg.join(timeout=20)
    assert pg.restarts >= 2
    assert pg.puids == []
    pg.close()


# -- stdio, cwd, env ----------------------------------------------------------------

def test_pipes_of_executables():
    pg = group((2, ProcessTemplate(SH, args=('-c', 'echo out $0; echo err >&2', 'x'),
                                   stdout=PIPE, stderr=PIPE)),
               (1, ProcessTemplate('cat', stdin=PIPE, stdout=PIPE)),
               (1, ProcessTemplate(SH, args=('-c', 'echo a; echo b >&2'), stdout=PIPE, stderr=STDOUT)))
    pg.start()
    cat = [p for p in pg.puids if pg.pipes(p).stdin is not None]
    assert len(cat) == 1
    pipes = pg.pipes(cat[0])
    pipes.stdin.write(b'through cat\n')
    pipes.stdin.close()
    assert pipes.stdout.read() == b'through cat\n'
    pg.join(timeout=10)
    got = sorted((o.stdout.read(), o.stderr.read() if o.stderr else None)
                 for o in (pg.pipes(p) for p, _ in pg.exit_status) if o.stdin is None)
    assert got == [(b'a\nb\n', None), (b'out x\n', b'err\n'), (b'out x\n', b'err\n')]
    assert len(pg.exit_status) == 4
    with pytest.raises(KeyError):
        pg.pipes(-1)
    pg.close()


def test_pipes_of_python_targets():
    pg = group((2, ProcessTemplate(say, args=('hello',), stdout=PIPE, stderr=DEVNULL)),
               (1, ProcessTemplate(echo_stdin, stdin=PIPE, stdout=PIPE)))
    pg.start()
    reader = [p for p in pg.puids if pg.pipes(p).stdin is not None][0]
    pg.pipes(reader).stdin.write(b'shout\n')
    pg.pipes(reader).stdin.close()
    pg.join(timeout=30)
    assert {code for _, code in pg.exit_status} == {0}
    outs = sorted(pg.pipes(p).stdout.read() for p, _ in pg.exit_status)
    assert outs == [b'SHOUT\n', b'hello\n', b'hello\n']
    assert all(pg.pipes(p).stderr is None for p, _ in pg.exit_status)
    pg.close()


def test_cwd_env_and_file_output(tmp_path):
    out = tmp_path / 'out.txt'
    env = {'PG_TEST': 'yes'}
    pg = group((1, ProcessTemplate(SH, args=('-c', 'echo $(pwd) $PG_TEST'), cwd=tmp_path, env=env,
                                   stdout='out.txt')),
               (1, ProcessTemplate(echo_cwd_env, cwd=tmp_path, env=env, stdout=str(out))))
    pg.start()
    pg.join(timeout=30)
    assert [code for _, code in pg.exit_status] == [0, 0]
    assert out.read_text().splitlines() == [f'{tmp_path} yes'] * 2
    pg.close()


def test_members_carry_the_run_id():
    import dragon_mp._runtime as rt
    pg = group((1, ProcessTemplate(SH, args=('-c', 'echo $DRAGON_MP_RUN'), stdout=PIPE)))
    pg.start()
    pg.join(timeout=10)
    assert pg.pipes(pg.exit_status[0][0]).stdout.read().decode().strip() == rt.runid()
    pg.close()


# -- failures --------------------------------------------------------------------

def test_missing_executable_starts_nothing():
    pg = group((2, ProcessTemplate(SLEEP, args=('30',))), (1, ProcessTemplate(sleep_for, args=(30,))),
               (1, ProcessTemplate('/no/such/program')))
    with pytest.raises(FileNotFoundError, match='/no/such/program'):
        pg.start()
    assert pg.puids == [] and pg.exit_status == []
    pg.close()
    pg = group((1, ProcessTemplate('no-such-program-in-path')))
    with pytest.raises(FileNotFoundError, match='no-such-program-in-path'):
        pg.start()
    pg.close()


def test_failed_start_midway_leaves_nothing_running(tmp_path):
    gone = tmp_path / 'gone'
    pg = group((2, ProcessTemplate(SLEEP, args=('30',))), (1, ProcessTemplate(sleep_for, args=(30,))),
               (1, ProcessTemplate(SLEEP, args=('30',), cwd=gone)))
    with pytest.raises(OSError, match='gone'):
        pg.start()
    assert pg.state == State.ERROR
    assert isinstance(pg.error, OSError)
    assert pg.puids == []
    started = [p for p, _ in pg.exit_status]
    assert len(started) == 3
    assert not any(alive(p) for p in started)
    pg.close()


def test_bad_templates():
    with pytest.raises(TypeError):
        ProcessTemplate(42)
    with pytest.raises(TypeError):
        ProcessTemplate(SLEEP, args=(1,))           # argv entries are strings, as subprocess's
    with pytest.raises(ValueError):
        ProcessTemplate(SLEEP, stdout=STDOUT)
    with pytest.raises(ValueError):
        ProcessGroup(walltime=0)
    pg = ProcessGroup()
    with pytest.raises(ValueError):
        pg.add_process(0, ProcessTemplate(SLEEP))
    with pytest.raises(TypeError):
        pg.add_process(1, SLEEP)
