"""Sharing sockets and file descriptors: stdlib's multiprocessing.resource_sharer.

Pickling a socket or a `reduction.DupFd` outside a process start registers it
here; the receiving process connects back to this process's sharer thread
(a Listener with the process's authkey) to get a duplicate. It works between
dragon_mp processes of one node unchanged, so these are stdlib's objects.
"""

from ._stdlib import complete as _complete
_stdlib = _complete(globals(), 'resource_sharer')

__all__ = list(_stdlib.__all__)
