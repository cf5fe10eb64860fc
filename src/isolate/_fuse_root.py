"""fuse-overlayfs as an image root, for hosts whose kernel will not mount overlayfs rootless.

Owns one sandbox's fuse-overlayfs process, the mount namespace it mounts in (held by fd), and
the probe that decides whether the kernel can mount the overlay itself. It never mounts or
changes namespaces in the calling process: a spawned child does, and sandbox processes join.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import time
from collections.abc import Sequence

from isolate import _plan, lowlevel
from isolate._plan import Mode, Op, Plan
from isolate.errors import ConfigError, MountError, UnsupportedError

__all__ = ["FUSE_OVERLAYFS", "FuseRoot", "kernel_overlay_works"]

FUSE_OVERLAYFS = "fuse-overlayfs"
#: What a kernel that cannot mount overlayfs here answers: no overlay in user namespaces
#: (EPERM: before 5.11, or disabled by the distribution), an option it lacks (EINVAL:
#: userxattr, lowerdir+), or no overlayfs at all (ENODEV).
FALLBACK_ERRNOS = frozenset({errno.EPERM, errno.EINVAL, errno.ENODEV})
_START_TIMEOUT = 30.0  # only bounds a fuse-overlayfs that hangs before mounting
_probed: dict[tuple[int, tuple[str, ...]], bool] = {}


def kernel_overlay_works(overlay: Op, userns_fd: int | None, options: Sequence[str] = (),
                         ) -> bool:
    """Whether the kernel mounts ``overlay`` (an OVERLAY op into a slot) in the user
    namespace ``userns_fd`` (None: ours). A throwaway child tries it in a mount namespace of
    its own; the answer is kept per filesystem of the first lower dir and option set.

    Raises:
        MountError: the mount failed for another reason than a missing kernel feature.
        SpawnError, NamespaceError: the probe child could not be started.
    """
    first = os.fsdecode((overlay.s1 or b"").split(b"\0")[-1])
    key = (os.stat(first).st_dev, tuple(options))
    if key in _probed:
        return _probed[key]
    p = Plan(0, Mode.VFORK)
    if userns_fd is not None:
        p.add(_plan.setns(userns_fd, _plan.CLONE_NEWUSER,
                          note="join the sandbox's user namespace"))
    p.add(_plan.unshare(_plan.CLONE_NEWNS, note="unshare mount namespace"))
    p.add(overlay)  # no EXEC: the child exits once the mount is made (and dropped)
    try:
        with lowlevel.spawn(p) as child:
            child.wait()
        works = True
    except MountError as exc:
        if exc.step != "overlay" or exc.errno not in FALLBACK_ERRNOS:
            raise
        works = False
    _probed[key] = works
    return works


def _find_binary() -> str:
    import shutil  # only where the kernel's overlay cannot be used (~2 ms of a run's start)

    binary = shutil.which(FUSE_OVERLAYFS)
    if binary is None:
        raise UnsupportedError(
            f"the kernel cannot mount this image's overlay here and {FUSE_OVERLAYFS} is not "
            f"installed: install it (Debian package {FUSE_OVERLAYFS!r}), or run as root",
            missing=FUSE_OVERLAYFS)
    return binary


def _option_path(path: str, what: str) -> str:
    # fuse-overlayfs splits its -o string on ',' and lower dirs on ':'; it has no escapes.
    if not path or any(c in path for c in ",:\\\0\n"):
        raise ConfigError(f"{what} {path!r} cannot be passed to {FUSE_OVERLAYFS}: it contains "
                          "',', ':', '\\', a newline or NUL")
    return path


def _mounted_at(mountinfo: bytes, target: str) -> bool:
    want = target.encode()
    for line in mountinfo.splitlines():
        fields = line.split(b" ")
        if len(fields) > 4:
            point = fields[4]
            # mountinfo escapes space, tab, newline and backslash as octal.
            for esc, raw in ((b"\\040", b" "), (b"\\011", b"\t"), (b"\\012", b"\n"),
                             (b"\\134", b"\\")):
                point = point.replace(esc, raw)
            if point == want:
                return True
    return False


class FuseRoot:
    """A running fuse-overlayfs whose mount at :attr:`merged` is an image's root.

    It lives in a mount namespace of its own (:meth:`join_op` joins it; a process then
    unshares to get a copy with the mount in it) and, when ``userns_fd`` was given, in that
    user namespace. :meth:`close` kills and reaps it and drops the namespace.
    """

    def __init__(self, child: lowlevel.Child, mnt_fd: int, merged: str, upper: str | None,
                 in_userns: bool, pid: int | None = None) -> None:
        #: The process we started: fuse-overlayfs itself, or the init it runs under.
        self.child = child
        self._pid = child.pid if pid is None else pid
        self.mnt_fd = mnt_fd
        self.merged = merged
        self.upper = upper
        #: True: the process lives in the sandbox's user namespace (join its mount namespace
        #: after the user namespace); False: in ours (join it before).
        self.in_userns = in_userns

    @property
    def pid(self) -> int:
        """The pid of fuse-overlayfs (in the caller's pid namespace)."""
        return self._pid

    @classmethod
    def start(cls, lowers: Sequence[str], merged: str, *,
              upper: tuple[str, str] | None = None, userns_fd: int | None = None,
              log: str, die_with_parent: bool = True) -> FuseRoot:
        """Mount ``lowers`` (lowest first; with ``upper`` = (upper, work) writable) on the
        existing empty directory ``merged`` with fuse-overlayfs, in a new mount namespace
        (inside the user namespace ``userns_fd`` when given); return once it is mounted.
        fuse-overlayfs writes its messages to the file ``log``. With ``die_with_parent`` it
        ends when the calling process dies (also SIGKILLed), as the sandbox processes that use
        its mount do: it runs under a tiny init, pid 1 of a pid namespace of its own, which
        gets the parent-death signal (:attr:`pid` is then the init's).

        Raises:
            ConfigError: a path fuse-overlayfs cannot take (with ',' or ':').
            UnsupportedError: fuse-overlayfs is not installed.
            MountError: it exited (or hung) before mounting; the message has its output.
            SpawnError, NamespaceError: it could not be started.
        """
        binary = _find_binary()
        if not lowers:
            raise ConfigError("an overlay needs at least one lower directory")
        opts = ["lowerdir=" + ":".join(_option_path(d, "lower dir") for d in reversed(lowers))]
        if upper is not None:
            opts.append("upperdir=" + _option_path(upper[0], "upper dir"))
            opts.append("workdir=" + _option_path(upper[1], "work dir"))
        # Sandbox processes may run as another uid than fuse-overlayfs (an image's User), and,
        # when it runs outside their user namespace, in a namespace it did not mount in.
        opts.append("allow_other")
        argv = [binary, "-f", "-o", ",".join(opts), _option_path(merged, "mount point")]
        p = Plan(0, Mode.VFORK)
        if userns_fd is not None:
            p.add(_plan.setns(userns_fd, _plan.CLONE_NEWUSER,
                              note="join the sandbox's user namespace"))
        p.add(_plan.unshare(_plan.CLONE_NEWNS, note="unshare mount namespace"))
        # The caller's root (also a chroot's) is the namespace's root, where the sandbox's
        # processes land when they join it; the fuse mount does not propagate out.
        p.add(_plan.reroot())
        # Its own session: a Ctrl-C to the caller's process group must not end the root
        # under the sandbox's processes; close() ends it.
        p.add(_plan.setsid())
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        parent = os.pidfd_open(os.getpid()) if die_with_parent else -1
        try:
            if parent >= 0:
                # fuse-overlayfs changes its credentials as it serves requests (setfsuid),
                # and each change clears a parent-death signal: so the signal goes to a tiny
                # init that never changes them, pid 1 of a pid namespace of its own, and the
                # kernel ends fuse-overlayfs with that namespace. Set in the forked init
                # (a fork does not inherit it), after the user namespace is joined; the
                # pidfd tells whether the caller died before.
                p.add(_plan.fork_into_pidns())
                p.add(_plan.pdeathsig(signal.SIGKILL, parent_pidfd=parent,
                                      note="die with the parent"))
                p.add(_plan.init())
            p.add(_plan.fds([(null, 0, False), (out, 1, False), (out, 2, False)]))
            p.add(_plan.exec_(binary, argv, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                              search_path=False))
            child = lowlevel.spawn(p)
        finally:
            os.close(null)
            os.close(out)
            if parent >= 0:
                os.close(parent)
        mnt_fd = -1
        try:
            # Under an init, the command is its only child, exec'd by now. (The init is not
            # dumpable, so its namespace files are not ours to open when we are not root.)
            try:
                pid = _only_child(child.pid) if parent >= 0 else child.pid
                mnt_fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            except (MountError, FileNotFoundError):
                # fuse-overlayfs exited already (a bad option, a missing layer): its init
                # follows it with its status, and its log says why.
                child.wait()
                raise _exited(child, merged, log) from None
            _wait_mounted(child, merged, log)
        except BaseException:
            if mnt_fd >= 0:
                os.close(mnt_fd)
            child.kill()
            child.wait()
            child.close()
            raise
        return cls(child, mnt_fd, merged, upper[0] if upper else None, userns_fd is not None,
                   pid)

    def join_op(self) -> Op:
        """The op that joins the mount namespace holding the fuse mount."""
        return _plan.setns(self.mnt_fd, _plan.CLONE_NEWNS,
                           note="join the fuse-overlayfs root's mount namespace")

    def root_op(self, slot: int, note: str = "") -> Op:
        """The op that clones the fuse mount into ``slot`` (after :meth:`join_op`)."""
        return _plan.open_tree(self.merged, slot,
                               note=note or f"open the {FUSE_OVERLAYFS} root {self.merged}")

    def close(self) -> None:
        """Kill and reap fuse-overlayfs and drop its mount namespace (so its mount)."""
        if self.mnt_fd >= 0:
            os.close(self.mnt_fd)
            self.mnt_fd = -1
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self.child.close()


def _only_child(pid: int) -> int:
    """The one child of ``pid`` (an init whose command has exec'd).

    Raises:
        MountError: it has none (the command exited already) or more than one.
    """
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            children = [int(c) for c in f.read().split()]
    except OSError as exc:
        raise MountError(exc.errno or errno.EIO, f"cannot find {FUSE_OVERLAYFS} under its "
                         f"init {pid}", step="fuse-overlayfs", pid=pid) from exc
    if len(children) != 1:
        raise MountError(errno.ESRCH, f"{FUSE_OVERLAYFS} is not running under its init {pid} "
                         f"(children: {children})", step="fuse-overlayfs", pid=pid)
    return children[0]


def _exited(child: lowlevel.Child, merged: str, log: str) -> MountError:
    """fuse-overlayfs (or its init) exited before mounting. No system call of ours failed:
    its exit status and its own messages say why, with no errno made up for them."""
    return MountError(None, f"{FUSE_OVERLAYFS} exited with status {child.returncode} before "
                      f"mounting: {_tail(log)}", merged, step="fuse-overlayfs", pid=child.pid)


def _wait_mounted(child: lowlevel.Child, merged: str, log: str) -> None:
    """Wait until ``merged`` is a mount point in ``child``'s mount namespace, or it exits.

    /proc/PID/mountinfo signals POLLPRI when that namespace's mount table changes, and the
    pidfd POLLIN when the process exits, so this sleeps on both instead of polling a timer.
    """
    info = os.open(f"/proc/{child.pid}/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(info, select.POLLPRI | select.POLLERR)
        poller.register(child.fileno(), select.POLLIN)
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            os.lseek(info, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(info, 65536):
                chunks.append(chunk)
            if _mounted_at(b"".join(chunks), merged):
                return
            if child.poll() is not None:
                raise _exited(child, merged, log)
            left = deadline - time.monotonic()
            if left <= 0:
                raise MountError(errno.ETIMEDOUT, f"{FUSE_OVERLAYFS} did not mount within "
                                 f"{_START_TIMEOUT:.0f} s: {_tail(log)}", merged,
                                 step="fuse-overlayfs", pid=child.pid)
            poller.poll(left * 1000)
    finally:
        os.close(info)


def _tail(log: str) -> str:
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            text = f.read()[-2000:]
    except OSError as exc:
        return f"(no output: {exc})"
    # Debian's build complains about an option libfuse passes it; that line is noise.
    lines = [ln for ln in text.splitlines() if ln and "unknown argument ignored" not in ln]
    return "; ".join(lines) or "(no output)"
