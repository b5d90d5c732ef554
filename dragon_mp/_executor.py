"""Why a worker of concurrent.futures.ProcessPoolExecutor died, in its BrokenProcessPool.

The executor is stdlib's (``ProcessPoolExecutor(mp_context=dragon_mp.get_context())``): when one of its
workers dies, its manager thread calls ``terminate_broken``, which fails every pending future with one
BrokenProcessPool ("A process in the process pool was terminated abruptly..."), saying nothing of the
cause. When the workers are dragon_mp processes, each knows its ``exit_reason`` ("killed by the OOM
killer (...)", "killed by SIGKILL from pid 1234 (bash)"). `install` wraps ``terminate_broken`` (once,
when the first executor worker starts as a dragon_mp process) so that the dead workers' reasons are
appended to that message (before any waiter sees it) and given as its ``__cause__`` (stdlib's own slot for "more information on the
error that lead the executor into becoming broken"), as dragon_mp's Pool puts them in WorkerLostError.
Executors over other contexts, and a break that already has a cause (a result that could not be
unpickled), are left as stdlib makes them.
"""

import sys
import threading

__all__ = ['install']

JOIN_DEAD = 2.0        # s: the longest wait for the status of a worker whose sentinel is ready

_lock = threading.Lock()
_installed = False


def install():
    """Wrap concurrent.futures.process's terminate_broken (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        cfp = sys.modules.get('concurrent.futures.process')
        manager = getattr(cfp, '_ExecutorManagerThread', None)
        original = getattr(manager, 'terminate_broken', None)
        if original is None:        # not the stdlib this was written against (3.9-3.13)
            return

        def terminate_broken(self, cause):
            reasons = _reasons(self.processes) if cause is None else []
            futures = [w.future for w in list(self.pending_work_items.values())]
            if reasons:
                # The futures' waiters wake as each gets the error: it carries
                # the reasons before the first one does.
                for f in futures:
                    f.set_exception = _amending(f.set_exception, reasons)
            try:
                original(self, cause if not reasons else [r + '\n' for r in reasons])
            finally:
                for f in futures:
                    f.__dict__.pop('set_exception', None)

        terminate_broken.__wrapped__ = original
        manager.terminate_broken = terminate_broken
        _installed = True


def _reasons(processes):
    """'process <pid> (<name>): <exit reason>' of each dragon_mp worker that has died."""
    from multiprocessing.connection import wait
    out = []
    for p in list(processes.values()):
        if not hasattr(p, 'exit_reason'):
            continue                        # not a dragon_mp process
        try:
            if wait([p.sentinel], 0):
                # Dead: its status follows its sentinel within moments (a
                # child of the zygote reports it through the zygote).
                p.join(JOIN_DEAD)
            reason = p.exit_reason          # None while alive
        except ValueError:                  # closed
            continue
        if reason:
            out.append(f'process {p.pid} ({p.name}): {reason}')
    return out


def _amending(set_exception, reasons):
    """set_exception that first adds the reasons to a BrokenProcessPool's message (once)."""
    def amend(e):
        if (not getattr(e, '_dragon_mp_reasons', False) and e.args and isinstance(e.args[0], str)):
            e.args = (e.args[0] + ' ' + '; '.join(reasons),) + e.args[1:]
            e._dragon_mp_reasons = True
        return set_exception(e)
    return amend
