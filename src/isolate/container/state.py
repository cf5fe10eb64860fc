"""A container's lifecycle: the :class:`Status` enum and its guards, and the state record.

Owns which moves are legal from which status (one place: :meth:`Status.check`, with Docker's
messages) and ``state.json``, written atomically (temp, fsync, rename, fsync of the dir: see
:func:`write_json` for the lighter writes of a run's records). It
decides nothing about processes: :mod:`isolate.container.container` observes them and calls the
guards.
"""

from __future__ import annotations

import os
import time
from _collections_abc import Mapping

from isolate import _json as json
from isolate import _record
from isolate._enum import Enum
from isolate._typing import TYPE_CHECKING
from isolate.errors import StateError
from isolate.image._disk import fsync_dir

if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["State", "Status", "format_time", "now", "parse_time"]

#: How Docker writes an unset time (Go's zero time.Time).
ZERO_TIME: Final = "0001-01-01T00:00:00Z"


class Status(Enum):
    """What a container is doing, as ``docker ps`` and ``docker inspect`` name it."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    EXITED = "exited"
    DEAD = "dead"
    REMOVING = "removing"

    # -- guards --------------------------------------------------------------------------------
    def can_start(self) -> bool:
        """Whether :meth:`Container.start` may run now (created or exited)."""
        return self in (Status.CREATED, Status.EXITED)

    def can_stop(self) -> bool:
        """Whether there is something to stop (running, paused or restarting)."""
        return self in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)

    def can_kill(self) -> bool:
        """Whether a signal can be sent (running or restarting; not paused, as Docker)."""
        return self in (Status.RUNNING, Status.RESTARTING)

    def can_pause(self) -> bool:
        """Whether the container can be frozen (running)."""
        return self is Status.RUNNING

    def can_unpause(self) -> bool:
        """Whether the container can be thawed (paused)."""
        return self is Status.PAUSED

    def can_exec(self) -> bool:
        """Whether a process can be started in it (running)."""
        return self is Status.RUNNING

    def can_restart(self) -> bool:
        """Whether it can be stopped and started again (not dead, not being removed)."""
        return self not in (Status.DEAD, Status.REMOVING)

    def can_rename(self) -> bool:
        """Whether it can get another name (not while being removed)."""
        return self is not Status.REMOVING

    def can_commit(self) -> bool:
        """Whether an image can be made of it (not dead, not being removed)."""
        return self not in (Status.DEAD, Status.REMOVING)

    def can_remove(self, *, force: bool = False) -> bool:
        """Whether it can be removed: when it runs not at all, or with ``force`` (which kills it
        first) unless it is being removed already."""
        if force:
            return self is not Status.REMOVING
        return self in (Status.CREATED, Status.EXITED, Status.DEAD)

    @property
    def running(self) -> bool:
        """Docker's ``State.Running``: true while paused or restarting too."""
        return self in (Status.RUNNING, Status.PAUSED, Status.RESTARTING)

    def check(self, action: str, container: str, *, force: bool = False) -> None:
        """Raise :class:`StateError` (``current``, ``requested=action``) with Docker's
        message unless ``action`` is legal now.

        Raises:
            StateError: the move is illegal from this status.
        """
        guard = getattr(self, f"can_{action}")
        allowed = guard(force=force) if action == "remove" else guard()
        if allowed:
            return
        raise StateError(_message(self, action, container), current=self.value,
                         requested=action)


def _message(status: Status, action: str, cid: str) -> str:
    if status is Status.REMOVING:
        return f"removal of container {cid} is already in progress"
    if status is Status.DEAD and action != "remove":
        return f"container {cid} is marked for removal and cannot be {action}ed" \
            if action in ("start", "restart") else f"Container {cid} is dead"
    if action == "start":
        return f"Container {cid} is already {status.value}" if status.running else \
            f"Container {cid} cannot be started from {status.value}"
    if action == "remove":
        if status is Status.PAUSED:
            return (f"cannot remove container \"{cid}\": container is paused and must be "
                    "unpaused first")
        return (f"You cannot remove a {status.value} container {cid}. Stop the container "
                "before attempting removal or force remove")
    if action == "exec":
        if status is Status.PAUSED:
            return f"Container {cid} is paused, unpause the container before exec"
        if status is Status.RESTARTING:
            return f"Container {cid} is restarting, wait until the container is running"
        return f"Container {cid} is not running"
    if action == "kill":
        if status is Status.PAUSED:
            return (f"Cannot kill container: {cid}: Container {cid} is paused. Unpause the "
                    "container before stopping or killing")
        return f"Cannot kill container: {cid}: Container {cid} is not running"
    if action == "pause":
        if status is Status.PAUSED:
            return f"Container {cid} is already paused"
        return f"Container {cid} is not running"
    if action == "unpause":
        return f"Container {cid} is not paused"
    if action == "stop":
        return f"Container {cid} is not running"
    return f"cannot {action} container {cid}: it is {status.value}"


# -- times --------------------------------------------------------------------------------------

def format_time(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, as Docker writes times."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def now() -> str:
    """The current time as :func:`format_time` writes it."""
    return format_time(time.time_ns())


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date of the proleptic Gregorian calendar (what
    ``calendar.timegm`` counts, divided by 86400): March-based years, 400-year eras."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction, ``Z`` or an offset);
    0 for Docker's zero time or an empty string.

    Raises:
        ValueError: not an RFC 3339 time.
    """
    if not text or text.startswith("0001-01-01"):
        return 0
    if len(text) == 30 and text[4] == "-" and text[10] == "T" and text[19] == "." \
            and text[29] == "Z":
        # The shape isolate writes (format_time): read without strptime, which is slow, and
        # without calendar, which loads datetime (a 'ps' reads one of these per container).
        days = _days_since_epoch(int(text[0:4]), int(text[5:7]), int(text[8:10]))
        base = days * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 \
            + int(text[17:19])
        return base * 1_000_000_000 + int(text[20:29])
    import calendar
    main, _, rest = text.partition(".")
    frac = ""
    tz = ""
    if rest:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, tz = rest[:digits], rest[digits:]
    else:
        main, tz = main[:19], main[19:]
    base = calendar.timegm(time.strptime(main[:19], "%Y-%m-%dT%H:%M:%S"))
    offset = 0
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        hh, _, mm = tz[1:].partition(":")
        offset = sign * (int(hh) * 3600 + int(mm or 0) * 60)
    ns = int((frac + "000000000")[:9]) if frac else 0
    return (base - offset) * 1_000_000_000 + ns


# -- the record ---------------------------------------------------------------------------------

def _status(value: Status | str) -> Status:
    return value if isinstance(value, Status) else Status(value)


@_record.record
class State:
    """What ``state.json`` holds: the status as last recorded and the facts of the last run.

    ``pid`` is the container's first process (in the caller's pid namespace), ``run`` counts
    starts (so a record of an earlier run is never taken for the current one);
    ``supervisor`` is ``"shim"`` or ``"inprocess"``; ``cgroup`` the container's cgroup
    directories by hierarchy (None: none); ``error`` says why a container is dead or why its
    start failed; ``stopped`` that a stop was asked (``unless-stopped`` keeps it stopped).
    """

    status: Status = _record.field(default=Status.CREATED, converter=_status)
    pid: int = 0
    run: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ""
    finished_at: str = ""
    restart_count: int = 0
    supervisor: str = ""
    supervisor_pid: int = 0
    cgroup: Mapping[str, str] | None = _record.field(default=None, hash=False)
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        """The record as JSON values (what ``state.json`` holds)."""
        out = _record.asdict(self)
        out["status"] = self.status.value
        out["cgroup"] = dict(self.cgroup) if self.cgroup is not None else None
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        """The record of ``state.json``'s values (unknown keys are ignored).

        Raises:
            ValueError: a value of the wrong kind (an unknown status).
        """
        known = {f.name for f in _record.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_state(path: str) -> State | None:
    """The state at ``path``, or None when there is none (or a torn write from a tool that
    does not rename: treated as missing)."""
    try:
        with open(path, "rb") as f:
            return State.from_json(json.loads(f.read()))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (ValueError, TypeError):
        return None


def write_json(path: str, data: Mapping[str, Any], *, sync_dir: bool = True,
               durable: bool = True) -> None:
    """Atomically replace ``path`` with ``data`` as JSON: a temp file beside it (named for
    this process), fsync, rename, fsync of the directory (``sync_dir=False``: the caller
    syncs the directory once for several files, as a directory not yet visible needs).

    ``durable=False`` leaves out both fsyncs: a reader still sees the old content or the new,
    never a part, whatever happens to the writing process; only a crash of the machine may
    leave the old file, an empty one or none -- for records that mean nothing after a reboot
    (those of a run: no process outlives one), whose readers take an empty file as none."""
    directory, base = os.path.split(path)
    # (os.urandom: secrets.token_hex's bytes, without the hmac and OpenSSL hashlib it loads)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    # One line, as Docker's config.v2.json (and no indent: json's encoder in C takes none).
    payload = json.dumps(data, sort_keys=True).encode() + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            os.write(fd, payload)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir and durable:
        fsync_dir(directory)


def write_state(path: str, state: State, *, sync_dir: bool = True,
                durable: bool = True) -> None:
    """Persist ``state`` at ``path`` atomically (``sync_dir``, ``durable``: as
    :func:`write_json`)."""
    write_json(path, state.to_json(), sync_dir=sync_dir, durable=durable)


def clean_temp_files(directory: str) -> None:
    """Remove the temp files of writers that died (``.NAME.PID.TOKEN.tmp`` of a gone pid)."""
    from isolate._procs import pid_alive

    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name.split(".")
        pid = parts[-3] if len(parts) >= 5 else ""
        if not pid.isdigit() or pid_alive(int(pid)):
            continue  # a live writer's, or the supervisor's own (it cleans those itself)
        try:
            os.unlink(os.path.join(directory, name))
        except (FileNotFoundError, IsADirectoryError):
            pass
