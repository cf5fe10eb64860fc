"""Hazardous low-level API: spawn a child from a plan, raw system calls, feature probes.

A :class:`Plan` lists the set-up operations a child runs between clone and exec; the builders
that make them are in :mod:`isolate.lowlevel.plan` (``from isolate.lowlevel import plan as P``:
``P.mount``, ``P.pivot_root``, ``P.setresuid``, ``P.capabilities``, ``P.seccomp``,
``P.exec_`` ... one per :class:`OpKind`), and so are the kernel's ``CLONE_*``, ``MS_*``,
``MOUNT_ATTR_*`` and ``MNT_*`` constants; :func:`spawn` runs a plan and returns a
:class:`Child`.

The functions named after system calls (:func:`setns`, :func:`unshare`, :func:`pivot_root`,
:func:`mount` ...) act on the *calling* process or thread, hence the name: misuse can break
the caller. The friendly API is :class:`isolate.Sandbox`.

Owns the parent's half of the spawn protocol (status pipe, sync socket, parent steps, turning
the child's error report into a typed exception). It makes no choices about isolation: the plan
says what the child does.
"""

from __future__ import annotations

import _thread
import errno
import os
import sys

from isolate import _memo, _plan, _sys
from isolate._plan import Mode, Op, OpFlag, OpKind, Plan, Report, Step
from isolate._sig import signal
from isolate._sys import (
    mount,
    mount_setattr,
    move_mount,
    open_tree,
    openat2,
    pidfd_open,
    pidfd_send_signal,
    pivot_root,
    sethostname,
    setns,
    umount2,
    unshare,
)
from isolate._typing import TYPE_CHECKING
from isolate.errors import (
    CgroupError,
    ConfigError,
    IsolateOSError,
    MountError,
    NamespaceError,
    SpawnError,
)

if TYPE_CHECKING:
    import queue
    import socket
    import threading
    from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "Child",
    "Mode",
    "Op",
    "OpFlag",
    "OpKind",
    "Plan",
    "Report",
    "Step",
    "clone3_works",
    "command_status",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "openat2",
    "pidfd_open",
    "pidfd_send_signal",
    "pivot_root",
    "plan",
    "sethostname",
    "setns",
    "spawn",
    "stdio_pairs",
    "umount2",
    "unshare",
    "userns_available",
]

#: The op builders and plan types (the module :mod:`isolate._plan`, public under this name):
#: ``lowlevel.plan.mount(...)``, ``lowlevel.plan.exec_(...)``; ``help(lowlevel.plan)`` lists
#: them all.
plan = _plan

_ERROR_CLASS: dict[OpKind, type[IsolateOSError]] = {
    OpKind.SETNS: NamespaceError,
    OpKind.UNSHARE: NamespaceError,
    OpKind.FORK_INTO_PIDNS: NamespaceError,
    OpKind.MOUNT: MountError,
    OpKind.MOUNT_SETATTR: MountError,
    OpKind.OPEN_TREE: MountError,
    OpKind.MOVE_MOUNT: MountError,
    OpKind.OVERLAY: MountError,
    OpKind.MASK: MountError,
    OpKind.MKDIR: MountError,
    OpKind.SYMLINK: MountError,
    OpKind.PIVOT_ROOT: MountError,
    OpKind.REROOT: MountError,
    OpKind.CGROUP_JOIN: CgroupError,
}


class Child:
    """A process started by :func:`spawn`: its pid (in the caller's pid namespace) and a pidfd.

    Waiting uses the pidfd, so event loops can wait on :meth:`fileno`. Close it (or use it as a
    context manager) to release the pidfd; a Child collected while open warns.
    """

    def __init__(self, pid: int, pidfd: int, exit_fd: int = -1) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self.returncode: int | None = None
        #: fds the child opened for us with OPEN ops (plans with ``share_files``), by op index;
        #: the caller owns and closes them.
        self.opened: dict[int, int] = {}
        self._exit_fd = exit_fd

    def take_exit_fd(self) -> int:
        """With an ``INIT`` op: hand over the read end of the exit report (the caller then
        passes it to :func:`command_status` once the child is reaped, and closes it); -1
        without one."""
        fd, self._exit_fd = self._exit_fd, -1
        return fd

    def _reaped(self, status: int) -> int:
        code = os.waitstatus_to_exitcode(status)
        fd = self.take_exit_fd()
        return code if fd < 0 else command_status(fd, code)

    def fileno(self) -> int:
        """The pidfd: readable once the child has exited."""
        if self._pidfd < 0:
            raise ValueError("the Child handle is closed")
        return self._pidfd

    def poll(self) -> int | None:
        """The exit status (negative signal number if killed), or None while it runs."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return self.returncode
            if pid:
                self.returncode = self._reaped(status)
        return self.returncode

    def wait(self) -> int:
        """Wait for the child to exit and return its status."""
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                break
            self.returncode = self._reaped(status)
        return self.returncode if self.returncode is not None else 0

    def send_signal(self, sig: int) -> None:
        """Signal the child through its pidfd: never a recycled pid."""
        if self.returncode is None and self._pidfd >= 0:
            try:
                pidfd_send_signal(self._pidfd, sig)
            except IsolateOSError as exc:
                if exc.errno != errno.ESRCH:
                    raise

    def kill(self) -> None:
        """Send SIGKILL (see :meth:`send_signal`)."""
        self.send_signal(signal.SIGKILL)

    def close(self) -> None:
        """Release the pidfd (and an INIT's exit pipe); the process is not waited for."""
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        if self._exit_fd >= 0:
            os.close(self.take_exit_fd())

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.returncode is None:
            self.kill()
            self.wait()
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_pidfd", -1) >= 0:
            try:
                import warnings  # (here: a program that closes its handles never loads it)

                warnings.warn(f"isolate Child {self.pid} was not closed", ResourceWarning,
                              stacklevel=2, source=self)
            finally:
                self.close()

    def __repr__(self) -> str:
        return f"<Child pid={self.pid} returncode={self.returncode}>"


def stdio_pairs(stdio: Sequence[int] = (-1, -1, -1), pass_fds: Iterable[int] = ()
                ) -> list[tuple[int, int]]:
    """The (source, target) fd pairs of a child's stdio and passed fds, for a plan's
    :func:`~isolate.lowlevel.plan.fds` op: ``stdio[n]`` becomes fd n, where -1 means this
    process's own fd n (left out when it is not open here); each of ``pass_fds`` keeps its
    number."""
    pairs = []
    for target, source in enumerate(stdio):
        if source == -1:
            source = target
            try:
                os.get_inheritable(source)  # (F_GETFD: is it open at all)
            except OSError:
                continue
        pairs.append((source, target))
    pairs.extend((fd, fd) for fd in pass_fds)
    return pairs


def command_status(exit_fd: int, init_status: int) -> int:
    """The exit status of the command under an ``INIT`` op, given the init's own
    (``init_status``, as :func:`os.waitstatus_to_exitcode` gives it) once it is reaped.

    The init exits with the command's code, or 128 + N when a signal N killed it (an init
    cannot die by a signal from inside its pid namespace); its report on ``exit_fd`` tells
    which, so this returns -N then, as for a process without an init. Without a report (the
    init itself was killed: a timeout, ``kill()``, the caller's death) the init's status is the
    answer. Closes ``exit_fd``.
    """
    try:
        data = os.read(exit_fd, _plan.REPORT.size)
    except BlockingIOError:  # a writer is still open somewhere (a fork elsewhere): no report
        data = b""
    finally:
        os.close(exit_fd)
    if len(data) == _plan.REPORT.size:
        kind, _, _, _, value = _plan.REPORT.unpack(data)
        if kind == Report.EXIT:
            return os.waitstatus_to_exitcode(int(value))
    return init_status


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


# What an errno means for the few ops whose failure is not the syscall's own.
_HINTS: dict[tuple[OpKind, int], str] = {
    (OpKind.PDEATHSIG, errno.ESRCH): "the parent had already exited",
    (OpKind.PDEATHSIG, errno.EINVAL): "the child is outside its parent's pid namespace, where "
                                      "getppid() says 0: pass parent_pidfd to pdeathsig()",
    (OpKind.PDEATHSIG, errno.EBADF): "parent_pidfd is not a pidfd",
    (OpKind.WAIT_PARENT, errno.ECANCELED): "the parent closed the sync socket without go",
    (OpKind.KEEP_FDS, errno.EBADF): "an fd to keep (pass_fds) is not open",
    (OpKind.INIT, errno.EINVAL): "an init cannot run in the caller's memory (VFORK)",
}


def error_for(p: Plan, err: int, step: int, op_index: int, pid: int | None) -> IsolateOSError:
    """Turn a child's error report into the exception that names the failing step."""
    if 0 <= op_index < len(p.ops):
        op = p.ops[op_index]
        cls = _ERROR_CLASS.get(op.kind, SpawnError)
        filename: str | None = None
        if op.kind is OpKind.EXEC:
            filename = os.fsdecode(op.argv[0] if op.argv else op.s1 or b"")
            message = f"exec {filename}"
        else:
            message = op.note or op.describe()
            if op.s2 is not None:
                filename = os.fsdecode(op.s2)
        hint = _HINTS.get((op.kind, err))
        if hint:
            message += f" ({hint})"
        return cls(err, message, filename, step=op.kind.name.lower(), pid=pid,
                   op_index=op_index)
    name = _plan.Step(step).name.lower() if step in _plan.Step._value2member_map_ else str(step)
    return SpawnError(err, f"child set-up step {name}", step=name, pid=pid)


def spawn(p: Plan, *, parent_step: Callable[[int], None] | None = None,
          close_fds: bool = True, pass_fds: Iterable[int] = ()) -> Child:
    """Clone a child that runs plan ``p`` and wait until it has exec'd.

    ``parent_step(pid)`` runs in the parent while the child waits at its ``WAIT_PARENT``
    operation (the plan must be in FORK mode): write uid/gid maps, move it into a cgroup, move
    a network device into its namespace.

    File descriptors: like :mod:`subprocess`, the child keeps only stdio and ``pass_fds``
    (``close_fds=True``, the default): a plan with an EXEC and no ``FDS`` or ``KEEP_FDS`` op
    gets a :func:`~isolate.lowlevel.plan.keep_fds` op of ``pass_fds`` right before its exec
    (before a seccomp op that directly precedes it), on a copy -- ``p`` is not changed, and
    error op indexes refer to ``p``. A plan that has an ``FDS`` op decides itself: that op
    closes every fd it does not map (list the fds to pass there, not in ``pass_fds``); so
    does a plan with its own ``KEEP_FDS``. ``close_fds=False`` leaves every inheritable fd of
    the caller open in the child. A ``share_files`` plan shares our fd table and closes
    nothing.

    The kernel sends a ``PDEATHSIG`` signal when the *thread* that cloned the child ends, not
    the process. So that the signal means "the caller's process died", a plan with a
    ``PDEATHSIG`` op asked for from any thread but the main one is cloned by a daemon thread
    that lives as long as the process (``parent_step`` then runs there too).

    A child that fails before its exec always reports why: this raises instead of returning.
    Only a child killed outright by a signal before exec (``SIGKILL``, a seccomp filter that
    kills) cannot say so: its wait status tells.

    Raises:
        ConfigError: the plan does not pass :meth:`Plan.check`; WAIT_PARENT without
            Mode.FORK or without ``parent_step``; ``pass_fds`` with ``close_fds=False``, with
            a plan that has an FDS or KEEP_FDS op, or with one without EXEC.
        SpawnError: (or :class:`MountError`, :class:`NamespaceError`, :class:`CgroupError`
            for those steps) naming the operation that failed (``op_index``, ``step``), with
            the child's errno; nothing of the child is left running.
    """
    p.check()
    run, inserted = _with_fds_closed(p, close_fds, tuple(pass_fds))
    if run.has(OpKind.PDEATHSIG) and not _on_main_thread():
        return _LastingThread.call(lambda: _spawn(run, parent_step, inserted))
    return _spawn(run, parent_step, inserted)


def _with_fds_closed(p: Plan, close_fds: bool, pass_fds: tuple[int, ...]
                     ) -> tuple[Plan, int]:
    """``p``, or a copy with a KEEP_FDS op before its exec; and where that op went (-1)."""
    owns_fds = p.has(OpKind.FDS) or p.has(OpKind.KEEP_FDS)
    if not pass_fds and (not close_fds or owns_fds or p.share_files):
        return p, -1  # (a sandbox's plans, which arrange their fds: nothing more to look at)
    execs = [i for i, op in enumerate(p.ops) if op.kind is OpKind.EXEC]
    if pass_fds:
        if not close_fds:
            raise ConfigError("pass_fds needs close_fds=True (without it every inheritable "
                              "fd is passed anyway)")
        if owns_fds:
            raise ConfigError("the plan has its own FDS or KEEP_FDS op, which decides what "
                              "the child keeps: list the fds there, not in pass_fds")
        if not execs:
            raise ConfigError("pass_fds: the plan has no EXEC to pass fds to")
    if not close_fds or owns_fds or p.share_files or not execs:
        return p, -1
    at = execs[-1]
    while at > 0 and p.ops[at - 1].kind is OpKind.SECCOMP:
        at -= 1  # the filter may not allow what closing needs
    keep = _plan.keep_fds(pass_fds)
    run = Plan(p.clone_flags, p.mode, p.reset_signals, p.share_files, cgroup_fd=p.cgroup_fd)
    run.ops = [*p.ops[:at], keep, *p.ops[at:]]
    return run, at


def _on_main_thread() -> bool:
    """Whether this is the main thread. Without :mod:`threading` loaded no thread of it runs,
    and this process need not load it (~1.5 ms of a command's start) to know that."""
    threading = sys.modules.get("threading")
    return threading is None or threading.current_thread() is threading.main_thread()


class _LastingThread:
    """One daemon thread per process that runs calls handed to it, for the caller to wait on."""

    _lock = _thread.allocate_lock()
    _jobs: queue.SimpleQueue[tuple[Callable[[], Child], list[object], threading.Event]] | None \
        = None
    _pid = -1

    @classmethod
    def call(cls, fn: Callable[[], Child]) -> Child:
        with cls._lock:
            if cls._jobs is None or cls._pid != os.getpid():  # none yet, or forked (no hook)
                import queue  # here: most processes never need this thread
                import threading

                cls._jobs = queue.SimpleQueue()
                cls._pid = os.getpid()
                threading.Thread(target=cls._serve, args=(cls._jobs,),
                                 name="isolate-spawner", daemon=True).start()
            jobs = cls._jobs
        import threading  # loaded already: the caller is not the main thread

        out: list[object] = []
        done = threading.Event()
        jobs.put((fn, out, done))
        done.wait()
        result = out[0]
        if isinstance(result, BaseException):
            raise result
        assert isinstance(result, Child)
        return result

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[
            tuple[Callable[[], Child], list[object], threading.Event]]) -> None:
        while True:
            fn, out, done = jobs.get()
            try:
                out.append(fn())
            except BaseException as exc:  # handed to the caller, raised there
                out.append(exc)
            done.set()
            del fn, out, done

    @classmethod
    def _after_fork_in_child(cls) -> None:
        # The thread is not in the child, and another thread may have held the lock at fork.
        cls._lock = _thread.allocate_lock()
        cls._jobs = None


os.register_at_fork(after_in_child=_LastingThread._after_fork_in_child)


def _spawn(p: Plan, parent_step: Callable[[int], None] | None, inserted: int = -1) -> Child:
    if p.needs_sync and p.mode is not Mode.FORK:
        raise ConfigError("a plan that waits for its parent needs Mode.FORK")
    if p.needs_sync and parent_step is None:
        raise ConfigError("a plan with WAIT_PARENT needs a parent_step")
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    sync_parent: socket.socket | None = None
    sync_child = -1
    # An init reports the command's end here; read (without blocking) once it is reaped.
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC) if p.reports_exit else (-1, -1)
    if exit_r >= 0:
        os.set_blocking(exit_r, False)
    try:
        if p.needs_sync:
            import socket  # only plans with parent steps need it (start-up cost)

            sync_parent, child_sock = socket.socketpair(
                socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
            sync_child = child_sock.detach()
        buf = p.encode(status_w, sync_child, exit_w)
        try:
            pid, pidfd = _sys.spawn(buf)
        finally:
            os.close(status_w)
            status_w = -1
            if sync_child >= 0:
                os.close(sync_child)
            if exit_w >= 0:
                os.close(exit_w)
                exit_w = -1
        try:
            if sync_parent is not None and parent_step is not None:
                parent_step(pid)
                try:
                    sync_parent.send(b"G")
                except OSError:
                    pass  # it died before WAIT_PARENT: its error report is on the status pipe
            data = _read_all(status_r)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
            os.close(pidfd)
            raise
    except BaseException:
        if exit_r >= 0:
            os.close(exit_r)
        raise
    finally:
        if status_w >= 0:
            os.close(status_w)
        if exit_w >= 0:
            os.close(exit_w)
        os.close(status_r)
        if sync_parent is not None:
            sync_parent.close()

    error: IsolateOSError | None = None
    real_pid = pid
    opened: dict[int, int] = {}
    for offset in range(0, len(data) - len(data) % _plan.REPORT.size, _plan.REPORT.size):
        kind, err, step, op_index, value = _plan.REPORT.unpack_from(data, offset)
        if kind == Report.PID:
            real_pid = int(value)
        elif kind == Report.FD and p.share_files:
            opened[op_index] = int(value)
        elif kind == Report.ERROR and error is None:
            error = error_for(p, err, step, op_index, pid)
            if inserted >= 0 and error.op_index is not None:
                # Indexes of the caller's plan, which has no KEEP_FDS op of ours.
                if error.op_index == inserted:
                    error.op_index = None
                elif error.op_index > inserted:
                    error.op_index -= 1
    if error is not None:
        for fd in opened.values():
            os.close(fd)
        opened.clear()
    if real_pid != pid:
        # The first child only forked the real one into a pid namespace and exited.
        _reap(pid)
        os.close(pidfd)
        pid = real_pid
        pidfd = -1
        if error is None:
            try:
                pidfd = pidfd_open(pid)
            except IsolateOSError:
                os.kill(pid, signal.SIGKILL)
                _reap(pid)
                if exit_r >= 0:
                    os.close(exit_r)
                raise
    if error is not None:
        _reap(pid)
        if pidfd >= 0:
            os.close(pidfd)
        if exit_r >= 0:
            os.close(exit_r)
        raise error
    child = Child(pid, pidfd, exit_r)
    child.opened = opened
    return child


@_memo.cache
def clone3_works() -> bool:
    """Whether the kernel has clone3 (Linux 5.3+)."""
    return _sys.clone3_works()


@_memo.cache
def userns_available() -> bool:
    """Whether this process may create a user namespace (probed once, by trying it)."""
    p = Plan(_plan.CLONE_NEWUSER, Mode.VFORK, reset_signals=True)
    try:
        child = spawn(p)
    except IsolateOSError:
        return False
    with child:
        return child.wait() == 0
