"""``docker top`` and ``docker stats`` for a container, from its cgroup and /proc.

Owns turning cgroup counters into what ``docker stats`` shows (cpu % over an interval, memory
use against the limit, pids, block I/O) and listing a container's processes as ``ps -ef``
would. Reads only.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from isolate import _record
from isolate.errors import StateError

if TYPE_CHECKING:
    from isolate.container._view import ContainerView

__all__ = ["ContainerStats", "processes", "stats", "stats_stream", "top"]

_TICKS = os.sysconf("SC_CLK_TCK")


@_record.record
class ContainerStats:
    """One reading of ``docker stats``: ``cpu_percent`` (100 is one whole cpu, over the
    interval before ``read_at``), memory use and limit in bytes (limit: the host's memory when
    none is set), pids, and block I/O bytes read and written since the start."""

    read_at: float
    cpu_percent: float
    cpu_usage_usec: int
    memory_usage: int
    memory_limit: int
    pids: int
    block_read: int
    block_write: int

    @property
    def memory_percent(self) -> float:
        """Memory use as a percentage of the limit, as ``docker stats`` shows it."""
        return 100.0 * self.memory_usage / self.memory_limit if self.memory_limit else 0.0


def _host_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _memory_limit(container: ContainerView) -> int:
    st = container.state
    cg = container._cgroup(st, "read the stats of")
    for controller, name in (("memory", "memory.max"), ("memory", "memory.limit_in_bytes")):
        try:
            text = cg.read_control(controller, name)
        except Exception:
            continue
        if text is None:
            continue
        text = text.strip()
        if text.isdigit() and int(text) < _host_memory():
            return int(text)
        return _host_memory()
    return _host_memory()


def _sample(container: ContainerView) -> tuple[float, int, ContainerStats]:
    st = container.state
    if not st.status.running:
        raise StateError(f"Container {container.id} is not running", current=st.status.value,
                         requested="stats")
    raw = container._cgroup(st, "read the stats of").stats()
    now = time.monotonic()
    usage = raw.cpu_usage_usec or 0
    return now, usage, ContainerStats(
        read_at=time.time(), cpu_percent=0.0, cpu_usage_usec=usage,
        memory_usage=raw.memory_current or 0, memory_limit=_memory_limit(container),
        pids=raw.pids_current or len(processes(container)),
        block_read=raw.io_read_bytes or 0, block_write=raw.io_write_bytes or 0)


def stats(container: ContainerView, interval: float = 0.5) -> ContainerStats:
    """One reading, the cpu % measured over ``interval`` seconds (``docker stats
    --no-stream``).

    Raises:
        StateError: the container is not running.
        UnsupportedError: it has no cgroup (rootless without delegation).
    """
    t0, u0, _ = _sample(container)
    time.sleep(interval)
    t1, u1, now = _sample(container)
    pct = 100.0 * (u1 - u0) / max(1.0, (t1 - t0) * 1e6)
    return _record.evolve(now, cpu_percent=round(pct, 2))


def stats_stream(container: ContainerView, interval: float = 1.0) -> Iterator[ContainerStats]:
    """A reading every ``interval`` seconds (``docker stats``), until the container stops.

    Raises:
        UnsupportedError: it has no cgroup.
    """
    try:
        t0, u0, _ = _sample(container)
    except StateError:
        return
    while True:
        time.sleep(interval)
        try:
            t1, u1, now = _sample(container)
        except StateError:
            return
        yield _record.evolve(now, cpu_percent=round(100.0 * (u1 - u0) / max(1.0, (t1 - t0) * 1e6),
                                                  2))
        t0, u0 = t1, u1


def processes(container: ContainerView) -> list[int]:
    """The pids (in our pid namespace) of every process of the running container: those of
    its cgroup, or -- without one -- those in its pid namespace or below."""
    st = container.state
    if not st.status.running:
        return []
    if st.cgroup:
        dirs = list(st.cgroup.values())
        pids: set[int] = set()
        for dirpath, _, files in os.walk(dirs[0]):
            if "cgroup.procs" in files:
                try:
                    with open(os.path.join(dirpath, "cgroup.procs")) as f:
                        pids.update(int(p) for p in f.read().split())
                except OSError:
                    continue
        return sorted(pids)
    try:
        ns = os.stat(f"/proc/{st.pid}/ns/pid").st_ino
    except OSError:
        return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == ns or _below(int(entry), st.pid):
                    out.append(int(entry))
            except OSError:
                continue
    return sorted(out)


def _below(pid: int, ancestor: int) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid <= 1:
            return False
    return False


def _cpu_time(ticks: int) -> str:
    seconds = ticks // _TICKS
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    base = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{days}-{base}" if days else base


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def top(container: ContainerView) -> tuple[list[str], list[list[str]]]:
    """The container's processes as ``docker top`` shows them (``ps -ef``'s columns: UID PID
    PPID C STIME TTY TIME CMD; host pids and user names).

    Raises:
        StateError: the container is not running.
    """
    st = container.state
    if not st.status.running:
        raise StateError(f"Container {container.id} is not running", current=st.status.value,
                         requested="top")
    titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    rows = []
    boot = _boot_time()
    now = time.time()
    for pid in processes(container):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").strip().decode("utf-8", "replace")
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue  # it ended meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        ppid, tty_nr = int(fields[1]), int(fields[4])
        cpu_ticks = int(fields[11]) + int(fields[12])
        started = boot + int(fields[19]) / _TICKS
        age = max(now - started, 1e-6)
        c = int(100 * (cpu_ticks / _TICKS) / age)
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        tty = "?"
        if tty_nr:
            major, minor = os.major(tty_nr), os.minor(tty_nr)
            tty = f"pts/{minor}" if major == 136 else f"tty{minor}"
        stime = time.strftime("%H:%M", time.localtime(started)) if now - started < 86400 \
            else time.strftime("%b%d", time.localtime(started))
        rows.append([user, str(pid), str(ppid), str(c), stime, tty, _cpu_time(cpu_ticks),
                     cmdline or f"[{comm}]"])
    return titles, rows
