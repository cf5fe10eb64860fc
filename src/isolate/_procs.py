"""Small facts about processes, for code that cleans up after a process that died.

Imports nothing from isolate; makes no changes to any process.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["lock_held", "pid_alive"]


def lock_held(path: str, *, shared: bool = False) -> bool:
    """Whether some open file holds an exclusive flock on ``path`` (with ``shared``: any
    flock, shared ones too -- the probe then conflicts with another such probe, so use it
    where the holders take shared locks and nobody else probes at once). A missing file: no.
    It never blocks, and a lock cannot outlive its holder (a pid can be reused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if shared else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
