"""Utilities: stdlib's multiprocessing.util (logging, Finalize, ...).

dragon_mp reuses stdlib's process bookkeeping, so its finalizer registry and
logger are the ones this module exposes.
"""

from multiprocessing.util import *        # noqa: F401,F403
from multiprocessing.util import (        # noqa: F401
    Finalize, ForkAwareLocal, ForkAwareThreadLock, get_logger, get_temp_dir,
    is_exiting, log_to_stderr, register_after_fork)
from multiprocessing import util as _stdlib

__all__ = list(_stdlib.__all__)


from ._stdlib import complete as _complete    # noqa: E402  (last: every stdlib name not defined above)
_complete(globals(), 'util')
