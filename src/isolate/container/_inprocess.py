"""The in-process supervisor: a container's first process as a child of this Python process.

Used where ``isolate-shim`` (the C supervisor that outlives its caller) is not built. It keeps
the shim's files in the state dir (``shim.lock`` held while it supervises, ``shim.pid``,
``container.pid``, ``start.json``, ``exit.json``, the json-file log), so every reader treats
both alike. The container dies with this process (a parent-death signal): a reader then finds
the lock free and no exit record, and reports it dead. No restart policies, no attach.
"""

from __future__ import annotations

import _thread
import fcntl
import os
import select
import threading
from collections.abc import Callable, Sequence

from isolate import _json as json
from isolate import lowlevel
from isolate.container.state import format_time, now, write_json
from isolate.runtime import ContainerPlan

__all__ = ["InProcessSupervisor", "end_recorded"]

_LINE_MAX = 16384

#: state dir -> (pid, set once that run's exit.json is written): a waiter in this process
#: wakes when the end is recorded instead of polling for the file.
_RECORDING: dict[str, tuple[int, threading.Event]] = {}
# A forked child has none of the watching threads: its waiters poll.
os.register_at_fork(after_in_child=_RECORDING.clear)


def end_recorded(state_dir: str, pid: int) -> threading.Event | None:
    """The event set when this process's supervisor has recorded the end of the run of
    ``pid`` in ``state_dir`` (exit.json written, or given up), or None when this process
    does not supervise that run (any more)."""
    got = _RECORDING.get(state_dir)
    return got[1] if got is not None and got[0] == pid else None


def _oom_kills(cgroup_dir: str | None) -> int:
    if cgroup_dir is None:
        return -1
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(os.path.join(cgroup_dir, name), encoding="ascii") as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return -1


class _Log:
    """Docker's json-file format, one record per line of output (16 KiB at most)."""

    def __init__(self, path: str | None) -> None:
        self.fd = -1 if path is None else os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.partial = {"stdout": b"", "stderr": b""}

    def _record(self, stream: str, data: bytes) -> None:
        if self.fd < 0:
            return
        rec = json.dumps({"log": data.decode("utf-8", "replace"), "stream": stream,
                          "time": now()}, ensure_ascii=False)
        try:
            os.write(self.fd, rec.encode() + b"\n")
        except OSError:
            pass  # a full disk never stops the container

    def data(self, stream: str, data: bytes) -> None:
        buf = self.partial[stream] + data
        while True:
            nl = buf.find(b"\n")
            if nl < 0 or nl >= _LINE_MAX:
                break
            self._record(stream, buf[:nl + 1])
            buf = buf[nl + 1:]
        while len(buf) >= _LINE_MAX:
            self._record(stream, buf[:_LINE_MAX])
            buf = buf[_LINE_MAX:]
        self.partial[stream] = buf

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._record(stream, rest)
            self.partial[stream] = b""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class InProcessSupervisor:
    """Start one run of a container and watch it from a daemon thread of this process."""

    def __init__(self, state_dir: str) -> None:
        self.dir = state_dir

    def start(self, make_plan: Callable[[Sequence[tuple[int, int]]], ContainerPlan], *,
              log: str | None, oom_cgroup: str | None,
              on_end: Callable[[], object] | None = None,
              hold: Sequence[int] = ()) -> tuple[int, int]:
        """Spawn the first process of ``make_plan(fds)`` (the fds are stdio for it) and
        return (its pid, the supervisor's pid). ``on_end`` is called from the watching
        thread once the end is recorded and the lock is free (what it raises is dropped:
        the next reader does what it could not). The watching thread holds copies of
        ``hold`` (the cgroup's lock, see :meth:`isolate.cgroups.CGroup.hold_fds`) until
        then, as a supervisor holds its container's group for its whole life.

        Raises:
            StateError: another supervisor holds the container.
            what :func:`isolate.lowlevel.spawn` raises.
        """
        from isolate.errors import StateError

        lock = os.open(os.path.join(self.dir, "shim.lock"),
                       os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise StateError("another supervisor holds the container", current="running",
                             requested="start") from None
        fds: list[int] = []
        held: list[int] = []  # copies of hold: the same open files, the same lock
        try:
            for name in ("exit.json", "start.json", "container.pid"):
                try:
                    os.unlink(os.path.join(self.dir, name))
                except FileNotFoundError:
                    pass
            with open(os.path.join(self.dir, "shim.pid"), "w") as f:
                f.write(f"{os.getpid()}\n")
            null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            out_r, out_w = os.pipe2(os.O_CLOEXEC)
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            fds = [null, out_r, out_w, err_r, err_w]
            for fd in hold:
                held.append(os.dup(fd))
            started_ns = 0
            plan = make_plan([(null, 0), (out_w, 1), (err_w, 2)])
            oom_before = _oom_kills(oom_cgroup)
            import time
            started_ns = time.time_ns()
            child = lowlevel.spawn(plan.plan,
                                   parent_step=plan.parent_step if plan.needs_parent else None)
        except BaseException:
            for fd in (*fds, *held):
                os.close(fd)
            os.close(lock)
            raise
        for fd in (null, out_w, err_w):
            os.close(fd)
        started = format_time(started_ns)
        _RECORDING[self.dir] = (child.pid, threading.Event())
        with open(os.path.join(self.dir, "container.pid"), "w") as f:
            f.write(f"{child.pid}\n")
        # The run's records are not synced (durable=False): they mean nothing once the
        # machine is down (no run survives it), and what lasts is state.json, synced at the
        # start and, once the run has ended, by on_end's settling in this process.
        write_json(os.path.join(self.dir, "start.json"),
                   {"pid": child.pid, "started_at": started, "restart_count": 0},
                   durable=False)
        # A bare thread (daemon-like: it dies with the process, as the container does):
        # threading.Thread.start() would wait until the new thread runs (~0.3 ms here).
        _thread.start_new_thread(self._watch, (child, lock, out_r, err_r, log, oom_cgroup,
                                               oom_before, started, on_end, held))
        return child.pid, os.getpid()

    def _watch(self, child: lowlevel.Child, lock: int, out_r: int, err_r: int,
               log_path: str | None, oom_cgroup: str | None, oom_before: int,
               started: str, on_end: Callable[[], object] | None = None,
               held: Sequence[int] = ()) -> None:
        log = _Log(log_path)
        streams = {out_r: "stdout", err_r: "stderr"}
        try:
            poller = select.poll()
            for fd in streams:
                poller.register(fd, select.POLLIN)
            while streams:
                for fd, _ in poller.poll():
                    data = os.read(fd, 65536)
                    if data:
                        log.data(streams[fd], data)
                        continue
                    poller.unregister(fd)
                    os.close(fd)
                    del streams[fd]
            status = child.wait()
            log.flush()
            code = status if status >= 0 else 128 - status
            oom = oom_before >= 0 and _oom_kills(oom_cgroup) > oom_before
            write_json(os.path.join(self.dir, "exit.json"), {
                "pid": child.pid, "status": status, "exit_code": code,
                "signal": -status if status < 0 else 0, "oom_killed": oom,
                "started_at": started, "finished_at": now(), "restart_count": 0,
                "restarting": False, "stopped": False, "error": None}, durable=False)
        except OSError:
            pass  # the state dir was removed under us (a forced remove): nothing to record
        finally:
            for fd in streams:
                os.close(fd)
            pid = child.pid
            child.close()
            os.close(lock)
            recording = _RECORDING.get(self.dir)
            if recording is not None and recording[0] == pid:
                del _RECORDING[self.dir]
                recording[1].set()
        try:
            if on_end is not None:
                try:
                    on_end()
                except Exception:  # a daemon thread: the next reader settles what is left
                    pass
        finally:
            for fd in held:
                os.close(fd)
