"""The container supervisor's Python side: start ``isolate-shim`` for a plan, read what it leaves
in its state dir, talk to its attach/control socket.

Owns the protocol with the C program in ``_native/shim/`` (its command line, the records on the
ready fd, the state files, the socket's frames; the numbers are in ``shim.h`` and a test checks
that they agree). It holds no container logic -- names, images, the lifecycle state machine
belong to the container layer: it is handed a plan, a directory and fds, nothing more.
"""

from __future__ import annotations

import errno
import os
import struct
import time
from _collections_abc import Iterable, Sequence

from isolate import _memo as functools
from isolate import _plan, _record, lowlevel
from isolate._enum import IntEnum
from isolate._plan import Fd, Mode, Plan
from isolate._procs import lock_held
from isolate._shim_files import read_json
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.errors import (
    ConfigError,
    IsolateOSError,
    NamespaceError,
    UnsupportedError,
)
from isolate.lowlevel import error_for

if TYPE_CHECKING:
    import socket

    import attrs

__all__ = [
    "CLIENT_QUEUE_MAX",
    "LOG_LINE_MAX",
    "MAX_PAYLOAD",
    "STDIN_QUEUE_MAX",
    "STOP_NO_TIMEOUT",
    "AttachClient",
    "ExitRecord",
    "Message",
    "ReportKind",
    "RestartPolicy",
    "ShimConfig",
    "ShimStep",
    "StartRecord",
    "Started",
    "binary",
    "init_binary",
    "is_alive",
    "read_exit",
    "read_json",
    "read_pid",
    "read_start",
    "start",
    "wait_exit",
]

BINARY_NAME = "isolate-shim"
#: Files of a state dir (see the header of ``_native/shim/exit.c``).
PLAN_FILE = "plan"
LOCK_FILE = "shim.lock"
SOCKET_FILE = "attach.sock"
SHIM_PID_FILE = "shim.pid"
CONTAINER_PID_FILE = "container.pid"
START_FILE = "start.json"
EXIT_FILE = "exit.json"

#: Limits of the protocol (``SHIM_*`` in shim.h).
MAX_PAYLOAD = 65536
STOP_NO_TIMEOUT = 4294967295
LOG_LINE_MAX = 16384
CLIENT_QUEUE_MAX = 256 * 1024
STDIN_QUEUE_MAX = 65536
_MAX_CGROUPS = 32
_MAX_EXIT_ARGS = 256

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_FRAME = struct.Struct(">B3xI")


class ReportKind(IntEnum):
    """Records on the ready fd (``SHIM_REPORT_*``), laid out as :data:`isolate._plan.REPORT`."""

    ERROR = 1  #: the container's set-up failed: errno, step, op_index (value: its pid)
    SHIM = 16  #: value: the supervising daemon's pid
    STARTED = 17  #: value: the container's pid
    FAILED = 18  #: the shim's own work failed: errno, step (a :class:`ShimStep`)


class ShimStep(IntEnum):
    """What the shim was doing when it failed (``SHIM_STEP_*``)."""

    ARGS = 200
    PLAN = 201
    DAEMON = 202
    LOCK = 203
    STATE = 204
    SOCKET = 205
    LOG = 206
    STDIO = 207
    SETGROUPS = 208
    UID_MAP = 209
    GID_MAP = 210
    NEWUIDMAP = 211
    NEWGIDMAP = 212
    CONSOLE = 213


class Message(IntEnum):
    """Frame kinds on the attach socket (``SHIM_MSG_*``): ``[kind u8][3 zero bytes][length u32
    big-endian][payload]``, the shape of Docker's multiplexed stream."""

    STDOUT = 1  #: shim -> client: output (Docker's stream 1); raw bytes, no frames, with a tty
    STDERR = 2  #: shim -> client: output (Docker's stream 2)
    NOTE = 3  #: shim -> client: a line from the shim itself (Docker's systemerr stream)
    ATTACH = 16  #: client -> shim: send me output; payload u8: 1 stdout, 2 stderr
    STDIN = 17  #: client -> shim: bytes for the container's stdin
    CLOSE_STDIN = 18  #: client -> shim: the container reads EOF (pipes only)
    RESIZE = 19  #: client -> shim: u16 rows, u16 cols
    STOP = 20  #: client -> shim: u32 signal (0: the stop signal), u32 ms until SIGKILL
    KILL = 21  #: client -> shim: u32 signal


# -- the binary ---------------------------------------------------------------------------------

def binary() -> str:
    """The path of the installed ``isolate-shim`` program.

    Raises:
        UnsupportedError: it was not built (an install without a C compiler, or a source tree
            that was never built).
    """
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_native", BINARY_NAME)
    if not os.access(path, os.X_OK):
        raise UnsupportedError(f"{path} is missing: isolate-shim is built at install time "
                               "(pip install needs a C compiler)", missing=BINARY_NAME)
    return path


@functools.cache
def _is_static(path: str) -> bool:
    # An ELF program with no PT_INTERP segment needs no dynamic loader.
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def init_binary() -> str | None:
    """The program to exec as a tiny init inside any root (``isolate-shim`` in init mode), or
    None when it is missing or not statically linked (then it could not run in an image)."""
    try:
        path = binary()
    except UnsupportedError:
        return None
    return path if _is_static(path) else None


# -- configuration ------------------------------------------------------------------------------

_POLICIES = ("no", "on-failure", "always", "unless-stopped")


def _check_policy(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _POLICIES:
        raise ConfigError(f"restart policy must be one of {', '.join(_POLICIES)}, not {value!r}")


def _check_retries(instance: RestartPolicy, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0x7FFFFFFF:
        raise ConfigError(f"restart max_retries must be an int >= 0, not {value!r}")
    if value and instance.name != "on-failure":
        raise ConfigError(f"only on-failure takes a retry count, not {instance.name}")


@_record.record
class RestartPolicy:
    """Docker's restart policies: ``no``, ``on-failure`` (at most ``max_retries`` restarts, 0:
    no limit), ``always``, ``unless-stopped``, with Docker's back-off (100 ms, doubled each
    time, back to 100 ms after a run of 10 s or more). A stop request ends restarting."""

    name: str = _record.field(default="no", validator=_check_policy)
    max_retries: int = _record.field(default=0, validator=_check_retries)

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """``"no"``, ``"on-failure"``, ``"on-failure:3"``, ``"always"``, ``"unless-stopped"``.

        Raises:
            ConfigError: anything else.
        """
        name, sep, count = text.partition(":")
        if not sep:
            return cls(name)
        if name != "on-failure" or not count.isdigit():
            raise ConfigError(f"bad restart policy {text!r}: only on-failure:N takes a count")
        return cls(name, int(count))

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


def _check_signal(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= 64:
        raise ConfigError(f"{attribute.name} must be a signal number 1..64, not {value!r}")


def _check_text(instance: object, attribute: attrs.Attribute[str | None],
                value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or "\0" in value):
        raise ConfigError(f"{attribute.name} must be text without NUL bytes, not {value!r}")


def _idmap_args(value: Sequence[int] | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    args = tuple(value)
    if not args or len(args) % 3 or not all(isinstance(v, int) and v >= 0 for v in args):
        raise ConfigError(f"newuidmap/newgidmap take triples of ids (inside, outside, count), "
                          f"not {value!r}")
    return args


def _fd_tuple(value: Iterable[int]) -> tuple[int, ...]:
    # A function, not converter=tuple: mypy's attrs plugin types the constructor from a named
    # converter's argument.
    return tuple(value)


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _check_texts(instance: object, attribute: attrs.Attribute[tuple[str, ...]],
                 value: tuple[str, ...]) -> None:
    if len(value) > _MAX_CGROUPS or any(not d or "\0" in d for d in value):
        raise ConfigError(f"{attribute.name} must be at most {_MAX_CGROUPS} non-empty paths "
                          "without NUL")


def _check_command(instance: object, attribute: attrs.Attribute[tuple[str, ...]],
                   value: tuple[str, ...]) -> None:
    if not value:
        return
    if not value[0].startswith("/") or len(value) > _MAX_EXIT_ARGS or \
            any("\0" in a for a in value):
        raise ConfigError(f"exit_command must be an absolute path and at most "
                          f"{_MAX_EXIT_ARGS - 1} arguments without NUL, not {value[:2]!r}...")


def _check_positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    minimum = 1 if attribute.name == "log_max_file" else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{attribute.name} must be an int >= {minimum}, not {value!r}")


@_record.record
class ShimConfig:
    """How one container is supervised; the options ``isolate-shim run`` takes.

    ``state_dir`` (existing) receives the plan, the lock, pid files, ``start.json``,
    ``exit.json`` and the socket. ``log_path``: Docker's json-file log (None: none), rotated at
    ``log_max_size`` bytes (0: never) keeping ``log_max_file`` files. ``tty``: the plan has a
    ``CONSOLE`` op and the output is one stream; ``stdin``: a pipe the attach clients write
    to (else /dev/null). ``oom_cgroup``: the container's memory cgroup dir, to tell an OOM kill.
    Parent steps for a plan that waits for its parent: ``setgroups``, ``uid_map``,
    ``gid_map`` (written to /proc/PID/...) or ``newuidmap``/``newgidmap`` (id triples for those
    programs). ``keep_fds``: fds the shim keeps open, at their numbers, for the plan to name
    (cgroup.procs and namespace fds) or to hold for its whole life (the container cgroup's
    lock, :meth:`isolate.cgroups.CGroup.hold_fds`, which keeps the orphan sweep from the
    group while the shim lives). Once the container has ended for good, the shim removes
    the ``cgroups`` dirs (the run's group in each hierarchy) and then starts ``exit_command``
    (an absolute path and its arguments), without waiting for it, as conmon's exit command;
    with ``exit_lock``, once that file can be locked exclusively (``flock``), and not at all
    when it was removed meanwhile.
    """

    state_dir: str
    log_path: str | None = _record.field(default=None, validator=_check_text)
    log_max_size: int = _record.field(default=0, validator=_check_positive)
    log_max_file: int = _record.field(default=1, validator=_check_positive)
    tty: bool = False
    stdin: bool = False
    restart: RestartPolicy = _record.field(factory=RestartPolicy)
    stop_signal: int = _record.field(default=int(signal.SIGTERM), validator=_check_signal)
    oom_cgroup: str | None = _record.field(default=None, validator=_check_text)
    setgroups: str | None = _record.field(default=None, validator=_check_text)
    uid_map: str | None = _record.field(default=None, validator=_check_text)
    gid_map: str | None = _record.field(default=None, validator=_check_text)
    newuidmap: tuple[int, ...] | None = _record.field(default=None, converter=_idmap_args)
    newgidmap: tuple[int, ...] | None = _record.field(default=None, converter=_idmap_args)
    keep_fds: tuple[int, ...] = _record.field(default=(), converter=_fd_tuple)
    cgroups: tuple[str, ...] = _record.field(default=(), converter=_strings,
                                           validator=_check_texts)
    exit_command: tuple[str, ...] = _record.field(default=(), converter=_strings,
                                                validator=_check_command)
    exit_lock: str | None = _record.field(default=None, validator=_check_text)

    def argv(self, ready_fd: int) -> list[str]:
        """The shim's command line (after the program path); paths made absolute, since the
        daemon works from /."""
        state_dir = os.path.abspath(self.state_dir)
        args = ["run", "--state-dir", state_dir,
                "--plan", os.path.join(state_dir, PLAN_FILE), "--ready-fd", str(ready_fd),
                "--log", os.path.abspath(self.log_path) if self.log_path else "",
                "--log-max-size", str(self.log_max_size),
                "--log-max-file", str(self.log_max_file),
                "--restart", str(self.restart), "--stop-signal", str(int(self.stop_signal))]
        if self.tty:
            args.append("--tty")
        if self.stdin:
            args.append("--stdin")
        oom = os.path.abspath(self.oom_cgroup) if self.oom_cgroup else None
        for flag, value in (("--oom-cgroup", oom), ("--setgroups", self.setgroups),
                            ("--uid-map", self.uid_map), ("--gid-map", self.gid_map)):
            if value is not None:
                args += [flag, value]
        for flag, ids in (("--newuidmap", self.newuidmap), ("--newgidmap", self.newgidmap)):
            if ids is not None:
                args += [flag, " ".join(map(str, ids))]
        for d in self.cgroups:
            args += ["--cgroup", os.path.abspath(d)]
        if self.exit_command:
            args += ["--exit-command", self.exit_command[0]]
            for arg in self.exit_command[1:]:
                args += ["--exit-arg", arg]
        if self.exit_lock is not None:
            args += ["--exit-lock", os.path.abspath(self.exit_lock)]
        return args


# -- starting -----------------------------------------------------------------------------------

@_record.record
class Started:
    """A supervised container that has exec'd: the shim's pid and the container's."""

    shim_pid: int
    pid: int


def _write_replacing(path: str, data: bytes) -> None:
    """``path`` replaced by ``data`` at once (temp + rename), not made durable: the plan is
    read by the shim started right after, once, and every start writes it anew, so after a
    crash (no shim, no run) nothing needs the old one -- an fsync would only slow each start
    on a disk."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o600)
    try:
        with os.fdopen(fd, "wb", closefd=True) as f:
            f.write(data)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_STEP_TEXT = {
    ShimStep.ARGS: "isolate-shim refused its command line",
    ShimStep.PLAN: "isolate-shim could not read the plan file {plan}",
    ShimStep.DAEMON: "isolate-shim could not become a daemon",
    ShimStep.LOCK: "another isolate-shim supervises {dir} (it holds {dir}/shim.lock)",
    ShimStep.STATE: "isolate-shim could not write its state dir {dir}",
    ShimStep.SOCKET: "isolate-shim could not listen on {dir}/attach.sock",
    ShimStep.LOG: "isolate-shim could not open the log {log}",
    ShimStep.STDIO: "isolate-shim could not make the container's stdio",
    ShimStep.SETGROUPS: "isolate-shim could not write setgroups {setgroups!r} of pid {pid}",
    ShimStep.UID_MAP: "isolate-shim could not write uid_map {uid_map!r} of pid {pid}",
    ShimStep.GID_MAP: "isolate-shim could not write gid_map {gid_map!r} of pid {pid}",
    ShimStep.NEWUIDMAP: "newuidmap {newuidmap} failed",
    ShimStep.NEWGIDMAP: "newgidmap {newgidmap} failed",
    ShimStep.CONSOLE: "no terminal came from the plan's CONSOLE op (the shim runs with tty)",
}


def _shim_error(config: ShimConfig, err: int, step: int, value: int) -> Exception:
    try:
        kind = ShimStep(step)
    except ValueError:
        return IsolateOSError(err or errno.EIO, f"isolate-shim failed at step {step}")
    fields = {"dir": config.state_dir, "plan": os.path.join(config.state_dir, PLAN_FILE),
              "log": config.log_path, "setgroups": config.setgroups, "uid_map": config.uid_map,
              "gid_map": config.gid_map, "pid": value,
              "newuidmap": " ".join(map(str, config.newuidmap or ())),
              "newgidmap": " ".join(map(str, config.newgidmap or ()))}
    message = _STEP_TEXT[kind].format(**fields)
    name = kind.name.lower()
    if kind in (ShimStep.NEWUIDMAP, ShimStep.NEWGIDMAP):
        tool = name
        if err == errno.ENOENT:
            return UnsupportedError(f"{tool} is needed to map ids other than your own into a "
                                    "user namespace; install the 'uidmap' package",
                                    missing=tool)
        if value:
            message += f" (wait status {value})"
        return NamespaceError(err or errno.EPERM, message, step=tool)
    if kind in (ShimStep.SETGROUPS, ShimStep.UID_MAP, ShimStep.GID_MAP):
        return NamespaceError(err, message, f"/proc/{value}/{name}", step=name, pid=value)
    return IsolateOSError(err or errno.EIO, message, step=f"shim {name}")


def start(plan: Plan, config: ShimConfig) -> Started:
    """Write ``plan`` to the state dir and exec a shim that supervises it; return once the
    container has exec'd (or failed to).

    The shim becomes a daemon (it survives the caller), starts the container as its own child
    and reports. The plan is encoded with its :class:`~isolate._plan.Fd` placeholders left in
    for the shim to fill; its stdio is the shim's fds 0, 1, 2 (keep them with an ``FDS`` op),
    or with ``config.tty`` the pty of its ``CONSOLE`` op. It should end with the shim: give
    it a ``PDEATHSIG`` op with ``b=Fd.PARENT``.

    Raises:
        ConfigError: a plan that waits for its parent outside ``Mode.FORK``, or a state dir
            that is not a directory.
        SpawnError, MountError, NamespaceError, CgroupError: the container's set-up failed,
            exactly as :func:`isolate.lowlevel.spawn` raises it for that op.
        NamespaceError, UnsupportedError: a parent step (id maps) failed, or newuidmap is
            missing.
        UnsupportedError: isolate-shim is not built.
        IsolateOSError: the shim's own work failed (another shim holds the state dir's lock:
            EBUSY; the log cannot be opened ...).
    """
    if plan.needs_sync and plan.mode is not Mode.FORK:
        raise ConfigError("a plan that waits for its parent needs Mode.FORK")
    if not os.path.isdir(config.state_dir):
        raise ConfigError(f"the state dir {config.state_dir!r} is not a directory")
    program = binary()
    if is_alive(config.state_dir):
        # The shim's lock decides; this only keeps a live shim's plan file as it is.
        raise _shim_error(config, errno.EBUSY, ShimStep.LOCK, 0)
    _write_replacing(os.path.join(config.state_dir, PLAN_FILE),
                  bytes(plan.encode(Fd.STATUS, Fd.SYNC, Fd.EXIT)))
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            # Our own spawn, not subprocess's (~2.5 ms of a CLI's start with what it loads):
            # stdio on /dev/null, the ready pipe and the kept fds at their numbers, a session
            # of its own, a PATH only.
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            try:
                kept = [(null, 0, False), (null, 1, False), (null, 2, False),
                        *((fd, fd, False) for fd in dict.fromkeys((ready_w, *config.keep_fds)))]
                start = Plan().extend([
                    _plan.setsid(), _plan.fds(kept),
                    _plan.exec_(program, [program, *config.argv(ready_w)],
                                {"PATH": os.environ.get("PATH", _DEFAULT_PATH)},
                                search_path=False)])
                first = lowlevel.spawn(start)
            finally:
                os.close(null)
        finally:
            os.close(ready_w)
        # The first process only forks the daemon and exits.
        with first:
            status = first.wait()
        data = b""
        while chunk := os.read(ready_r, 4096):
            data += chunk
    finally:
        os.close(ready_r)
    shim_pid = pid = 0
    size = _plan.REPORT.size
    for offset in range(0, len(data) - len(data) % size, size):
        kind, err, step, op_index, value = _plan.REPORT.unpack_from(data, offset)
        if kind == ReportKind.SHIM:
            shim_pid = int(value)
        elif kind == ReportKind.STARTED:
            pid = int(value)
        elif kind == ReportKind.ERROR:
            raise error_for(plan, err, step, op_index, int(value) or None)
        elif kind == ReportKind.FAILED:
            raise _shim_error(config, err, step, int(value))
    if not pid:
        raise IsolateOSError(errno.EIO, f"isolate-shim exited with status {status} and "
                             "reported no start", step="shim")
    return Started(shim_pid, pid)


# -- what the shim leaves behind ----------------------------------------------------------------

@_record.record
class StartRecord:
    """``start.json``: the current (or last) run."""

    pid: int
    started_at: str
    restart_count: int


@_record.record
class ExitRecord:
    """``exit.json``: how the last run ended.

    ``status`` is the wait status; ``exit_code`` Docker's (the code, or 128 + N for signal N);
    ``restarting``: the shim will start it again; ``stopped``: a stop request came; ``error``:
    ``(errno, step, op_index)`` of a restart whose set-up failed (then the shim gave up).
    """

    pid: int
    status: int
    exit_code: int
    signal: int
    oom_killed: bool
    started_at: str
    finished_at: str
    restart_count: int
    restarting: bool
    stopped: bool
    error: tuple[int, int, int] | None = None

    @property
    def returncode(self) -> int:
        """As :mod:`subprocess` says it: the code, or -N for signal N."""
        return os.waitstatus_to_exitcode(self.status)


def read_pid(state_dir: str, name: str = SHIM_PID_FILE) -> int | None:
    """A pid file of the state dir (``shim.pid`` or ``container.pid``), or None if missing
    (or empty: the shim writes it unsynced, and a crash of the machine may empty it)."""
    try:
        with open(os.path.join(state_dir, name), encoding="ascii") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


def read_start(state_dir: str) -> StartRecord | None:
    """``start.json``, or None before the first start."""
    data = read_json(os.path.join(state_dir, START_FILE))
    if data is None:
        return None
    return StartRecord(int(data["pid"]), str(data["started_at"]), int(data["restart_count"]))


def read_exit(state_dir: str) -> ExitRecord | None:
    """``exit.json``, or None while the first run has not ended."""
    data = read_json(os.path.join(state_dir, EXIT_FILE))
    if data is None:
        return None
    error = data.get("error")
    return ExitRecord(
        pid=int(data["pid"]), status=int(data["status"]), exit_code=int(data["exit_code"]),
        signal=int(data["signal"]), oom_killed=bool(data["oom_killed"]),
        started_at=str(data["started_at"]), finished_at=str(data["finished_at"]),
        restart_count=int(data["restart_count"]), restarting=bool(data["restarting"]),
        stopped=bool(data["stopped"]),
        error=None if error is None else (int(error["errno"]), int(error["step"]),
                                          int(error["op_index"])))


def is_alive(state_dir: str) -> bool:
    """Whether a shim is supervising ``state_dir`` now: it holds the lock for its whole life,
    so a dead shim is told apart from a live one even if its pid was reused."""
    return lock_held(os.path.join(state_dir, LOCK_FILE))


def wait_exit(state_dir: str, timeout: float | None = None) -> bool:
    """Wait until no shim supervises ``state_dir`` (its container has exited for good); False
    if ``timeout`` seconds passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.002
    while is_alive(state_dir):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


# -- the attach/control socket ------------------------------------------------------------------

class AttachClient:
    """A connection to a shim's socket: send stdin, resize, stop, kill; read output.

    Get one with :meth:`connect`; use it as a context manager (or :meth:`close` it). Output
    arrives after :meth:`attach`: as ``(Message, bytes)`` frames from :meth:`read_frame`, or,
    for a container with a tty, as raw bytes from :meth:`read_raw`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock: socket.socket | None = sock

    @classmethod
    def connect(cls, state_dir: str, *, timeout: float | None = None) -> AttachClient:
        """Connect to the shim supervising ``state_dir``; with ``timeout``, a read or send
        that waits longer raises :class:`TimeoutError`.

        Raises:
            IsolateOSError: no shim listens there (ENOENT, ECONNREFUSED).
        """
        import socket  # here: starting and reading a container needs no socket

        dirfd = os.open(state_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(timeout)
        try:
            # Through the directory's fd: a state dir's path may be longer than sun_path.
            sock.connect(f"/proc/self/fd/{dirfd}/{SOCKET_FILE}")
        except OSError as exc:
            sock.close()
            raise IsolateOSError(exc.errno or errno.EIO,
                                 f"connect to the shim of {state_dir}",
                                 os.path.join(state_dir, SOCKET_FILE), step="connect") from exc
        finally:
            os.close(dirfd)
        return cls(sock)

    def _live(self) -> socket.socket:
        if self._sock is None:
            raise ValueError("the AttachClient is closed")
        return self._sock

    def fileno(self) -> int:
        return self._live().fileno()

    def send(self, kind: Message, payload: bytes = b"") -> None:
        """Send one frame. Raises :class:`ConfigError` for a payload over 64 KiB."""
        if len(payload) > MAX_PAYLOAD:
            raise ConfigError(f"a frame carries at most {MAX_PAYLOAD} bytes, not {len(payload)}")
        self._live().sendall(_FRAME.pack(kind, len(payload)) + payload)

    def attach(self, stdout: bool = True, stderr: bool = True) -> None:
        """Ask for the container's output from now on."""
        self.send(Message.ATTACH, bytes([(1 if stdout else 0) | (2 if stderr else 0)]))

    def write_stdin(self, data: bytes) -> None:
        """Send ``data`` to the container's stdin (in frames of at most 64 KiB)."""
        view = memoryview(data)
        for i in range(0, len(view), MAX_PAYLOAD):
            self.send(Message.STDIN, bytes(view[i:i + MAX_PAYLOAD]))

    def close_stdin(self) -> None:
        self.send(Message.CLOSE_STDIN)

    def resize(self, rows: int, cols: int) -> None:
        """Set the container's terminal size (with a tty). Raises :class:`ConfigError` for a
        size outside 0..65535."""
        if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
            raise ConfigError(f"a terminal size is 0..65535 rows and columns, not {rows}x{cols}")
        self.send(Message.RESIZE, struct.pack(">HH", rows, cols))

    def stop(self, sig: int = 0, timeout: float | None = None) -> None:
        """Stop it: no more restarts, ``sig`` (0: the configured stop signal), and SIGKILL
        after ``timeout`` seconds if it is still running (None: never)."""
        ms = STOP_NO_TIMEOUT if timeout is None else min(int(timeout * 1000), STOP_NO_TIMEOUT - 1)
        self.send(Message.STOP, struct.pack(">II", sig, ms))

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal it; the stop signal or SIGKILL also ends restarting (as ``docker kill``)."""
        self.send(Message.KILL, struct.pack(">I", sig))

    def _recv_exact(self, n: int) -> bytes | None:
        sock = self._live()
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def read_frame(self) -> tuple[Message, bytes] | None:
        """The next output frame (without a tty), or None once the shim has gone."""
        header = self._recv_exact(_FRAME.size)
        if header is None:
            return None
        kind, length = _FRAME.unpack(header)
        payload = self._recv_exact(length) if length else b""
        if payload is None:
            return None
        return Message(kind), payload

    def read_raw(self, size: int = 65536) -> bytes:
        """Output bytes as they come (with a tty); b"" once the shim has gone."""
        return self._live().recv(size)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> AttachClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sock", None) is not None:
            import warnings

            warnings.warn("an isolate AttachClient was not closed", ResourceWarning,
                          stacklevel=2, source=self)
            self.close()
