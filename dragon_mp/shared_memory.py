"""Shared memory blocks: stdlib's multiprocessing.shared_memory, re-exported.

SharedMemory and ShareableList are named POSIX shared memory segments
(/dev/shm/psm_*, mode 0600), independent of the run's pool: any process may
attach to one by name, dragon_mp or not, and a segment lives until someone
unlinks it. Like stdlib's, a created segment is registered with stdlib's
resource tracker, which unlinks what is left when the last process using the
tracker exits. dragon_mp children share their parent's tracker (the parent
passes its fd, as stdlib's spawn does), so a child that attaches to a segment
and exits does not unlink it.
"""

from multiprocessing import shared_memory as _stdlib
from multiprocessing.shared_memory import SharedMemory, ShareableList   # noqa: F401

from ._stdlib import complete as _complete    # noqa: E402
_complete(globals(), 'shared_memory')

__all__ = list(_stdlib.__all__)
