"""The helper processes isolate.net leaves running (resolvers, proxies, pasta): how they are
started detached, recorded, recognised after a crash and stopped.

A record holds the pid and the kernel's start time of the process, so a recycled pid is never
mistaken for it; stopping goes through a pidfd opened *before* the start time is checked again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal

from isolate import _record, _sys
from isolate.errors import IsolateOSError

__all__ = ["HelperProcess", "boot_id", "start_time"]

_BOOT: list[str] = []


def boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``): what records of the kernel's
    state carry, so that one written before a reboot is known to describe nothing that still
    exists."""
    if not _BOOT:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _BOOT.append(f.read().strip())
        except OSError:  # pragma: no cover - every Linux since 2.6 has it
            _BOOT.append("unknown")
    return _BOOT[0]


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None if there is no such pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X", b"x"):
        # A zombie has stopped serving; and one its parent is reaping shows "X" (dead) for a
        # moment before its pid goes: read then, it looked alive after a stop that had ended it.
        return None
    return int(fields[19])


@_record.record
class HelperProcess:
    """A recorded helper: pid and start time (and what it is, for messages)."""

    pid: int
    started: int
    what: str = "helper"

    @classmethod
    def of(cls, pid: int, what: str) -> HelperProcess:
        started = start_time(pid)
        return cls(pid, started if started is not None else -1, what)

    def alive(self) -> bool:
        """Whether the very process recorded still runs."""
        return self.started >= 0 and start_time(self.pid) == self.started

    def stop(self, timeout: float = 10.0) -> None:
        """SIGKILL it (if it is still the recorded process) and wait until it is gone."""
        try:
            pidfd = _sys.pidfd_open(self.pid)
        except IsolateOSError:
            return  # gone
        try:
            if start_time(self.pid) != self.started:
                return  # another process has the pid now
            with contextlib.suppress(IsolateOSError):
                _sys.pidfd_send_signal(pidfd, signal.SIGKILL)
            # A pidfd is readable once the process has exited, our child or not; a child of
            # ours is reaped so that it leaves no zombie.
            select.select([pidfd], [], [], timeout)
            try:
                os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            except OSError as exc:  # pragma: no cover
                if exc.errno != errno.ECHILD:
                    raise
        finally:
            os.close(pidfd)

    def to_json(self) -> dict[str, object]:
        """The record as JSON-ready data, for the state files."""
        return {"pid": self.pid, "started": self.started, "what": self.what}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> HelperProcess | None:
        """The record back from what :meth:`to_json` wrote."""
        if not data:
            return None
        return cls(int(str(data["pid"])), int(str(data["started"])), str(data.get("what", "")))
