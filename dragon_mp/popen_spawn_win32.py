"""stdlib's multiprocessing.popen_spawn_win32, for code that imports it.

Windows only: its import fails elsewhere, as stdlib's does (it needs msvcrt
and _winapi). dragon_mp starts processes through popen_dragon.
"""

from ._stdlib import complete as _complete
_stdlib = _complete(globals(), 'popen_spawn_win32')

__all__ = list(_stdlib.__all__)
