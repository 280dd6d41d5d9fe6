"""Worker processes for the data commands."""

from __future__ import annotations

import os
import signal
from multiprocessing import Pool
from multiprocessing.pool import Pool as PoolType


def _ignore_sigint() -> None:
    # Ctrl-C reaches every process of the group: only the main process reports it
    # ("afm: interrupted"); workers would each print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_pool(workers: int, jobs: int | None = None) -> PoolType:
    """A process pool of ``workers`` processes (0 = all cores), no more than ``jobs``."""
    n = workers or os.cpu_count() or 1
    return Pool(max(1, min(n, jobs) if jobs else n), initializer=_ignore_sigint)
