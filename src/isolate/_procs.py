"""Small facts about processes, for code that cleans up after a process that died.

Imports nothing from isolate; makes no changes to any process.
"""

from __future__ import annotations

import fcntl
import os

__all__ = ["lock_held", "pid_alive"]


def lock_held(path: str) -> bool:
    """Whether some open file holds an flock on ``path`` (a missing file: no). It never
    blocks, and a lock cannot outlive its holder (a pid can be reused)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
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
