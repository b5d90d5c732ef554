"""The resource tracker: stdlib's multiprocessing.resource_tracker, the very same one.

dragon_mp uses it as stdlib does, for named POSIX shared memory
(dragon_mp.shared_memory): a segment a process created is unlinked by the
tracker if every process using it dies without doing so. A dragon_mp child
shares its parent's tracker (the parent passes the tracker's fd). The run's own
pool needs no tracker: the reaper removes it when the run ends.
"""

from ._stdlib import complete as _complete
_stdlib = _complete(globals(), 'resource_tracker')

__all__ = list(_stdlib.__all__)
