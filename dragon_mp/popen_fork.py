"""stdlib's multiprocessing.popen_fork, for code that imports it.

dragon_mp starts every process through its own Popen (dragon_mp.popen_dragon:
a fork of the run's zygote, which never loads the Go runtime), whatever start
method was chosen; 'fork', 'spawn' and 'forkserver' all name that start
(dragon_mp.context). This module is stdlib's own, so that imports of it and
the names in it keep working; a dragon_mp program never goes through it.
"""

from ._stdlib import complete as _complete
_stdlib = _complete(globals(), 'popen_fork')

__all__ = list(getattr(_stdlib, '__all__', ()))
