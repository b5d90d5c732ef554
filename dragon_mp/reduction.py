"""Pickling support: stdlib's, unchanged.

dragon_mp objects (queues, locks, ...) pickle as addresses in the run's shared
memory, through their own __reduce__; everything else pickles as stdlib does.
"""

from multiprocessing.reduction import *          # noqa: F401,F403
from multiprocessing.reduction import (          # noqa: F401
    ACKNOWLEDGE, AbstractReducer, DupFd, ForkingPickler, HAVE_SEND_HANDLE,
    dump, recvfds, register, sendfds)
from multiprocessing import reduction as _stdlib

__all__ = list(_stdlib.__all__)
