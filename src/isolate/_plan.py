"""Spawn plans: the set-up operations a child runs between clone and exec, and their builders.

Public as :mod:`isolate.lowlevel.plan`. A plan is a :class:`Plan` (clone flags, mode) holding
an ordered list of :class:`Op` records, one per step the C child takes; the builder functions
below make each record from named, validated arguments, so a plan reads as a list::

    from isolate.lowlevel import Plan, Mode, plan as P

    p = Plan(P.CLONE_NEWNS | P.CLONE_NEWUTS, Mode.VFORK).extend([
        P.mount(None, "/", flags=P.MS_REC | P.MS_PRIVATE),
        P.sethostname("box"),
        P.chdir("/tmp"),
        P.exec_("sh", ["sh", "-c", "hostname"], {"PATH": "/bin:/usr/bin"}),
    ])

Every builder raises :class:`~isolate.errors.ConfigError` naming the argument and the bad value
before anything runs; :meth:`Op.describe` says in words what an op will do; :meth:`Plan.check`
(which :func:`isolate.lowlevel.spawn` calls) refuses a hand-made ``Op`` whose fields do not fit
its kind. This module owns the Python half of the protocol with the C child
(``_native/isolate.h``): the numbers, the buffer layout, and a decoder for tests. It chooses no
operations and no order -- callers do -- and makes no system calls.
"""

from __future__ import annotations

import os
import stat as _stat
import struct

from isolate import _record
from isolate._enum import IntEnum, IntFlag
from isolate._sig import signal as _signal
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError

__all__ = [
    "CLONE_NEWCGROUP",
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWTIME",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "MNT_DETACH",
    "MNT_EXPIRE",
    "MNT_FORCE",
    "MOUNT_ATTR_IDMAP",
    "MOUNT_ATTR_NOATIME",
    "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NODIRATIME",
    "MOUNT_ATTR_NOEXEC",
    "MOUNT_ATTR_NOSUID",
    "MOUNT_ATTR_NOSYMFOLLOW",
    "MOUNT_ATTR_RDONLY",
    "MOUNT_ATTR_RELATIME",
    "MOUNT_ATTR_STRICTATIME",
    "MOUNT_ATTR__ATIME",
    "MS_BIND",
    "MS_DIRSYNC",
    "MS_LAZYTIME",
    "MS_MOVE",
    "MS_NOATIME",
    "MS_NODEV",
    "MS_NODIRATIME",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_NOSYMFOLLOW",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_RELATIME",
    "MS_REMOUNT",
    "MS_SHARED",
    "MS_SILENT",
    "MS_SLAVE",
    "MS_STRICTATIME",
    "MS_SYNCHRONOUS",
    "MS_UNBINDABLE",
    "RLIMIT_NAMES",
    "RLIM_INFINITY",
    "UMOUNT_NOFOLLOW",
    "Fd",
    "Mode",
    "Op",
    "OpFlag",
    "OpKind",
    "Plan",
    "Report",
    "Step",
    "bounding_set",
    "capabilities",
    "cgroup_join",
    "chdir",
    "chroot",
    "console",
    "ctty",
    "decode",
    "exec_",
    "exec_tail",
    "fds",
    "fork_into_pidns",
    "fsencode",
    "init",
    "keep_caps",
    "keep_fds",
    "loopback_up",
    "mask",
    "mkdir",
    "mknod",
    "mount",
    "mount_setattr",
    "move_mount",
    "no_new_privs",
    "open_",
    "open_tree",
    "overlay",
    "pdeathsig",
    "pivot_root",
    "reroot",
    "rlimit",
    "root",
    "seccomp",
    "setattr_",
    "setdomainname",
    "setgroups",
    "sethostname",
    "setns",
    "setresgid",
    "setresuid",
    "setsid",
    "socket_",
    "symlink",
    "umask",
    "umount",
    "unshare",
    "wait_parent",
    "write_file",
]

# -- kernel constants (the one definition in isolate; fs.mounts and others import them) -------
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# mount(2) flags (linux/mount.h)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000

# mount_setattr(2) attributes (linux/mount.h)
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# umount2(2) flags
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8

#: "No limit" for :func:`rlimit` (``resource.RLIM_INFINITY``).
RLIM_INFINITY = -1

PLAN_MAGIC = 1230197553
PLAN_VERSION = 3
PLAN_RESET_SIGNALS = 1
PLAN_SHARE_FILES = 2

_CLONE_NAMES = {CLONE_NEWNS: "mnt", CLONE_NEWUTS: "uts", CLONE_NEWIPC: "ipc",
                CLONE_NEWPID: "pid", CLONE_NEWNET: "net", CLONE_NEWUSER: "user",
                CLONE_NEWCGROUP: "cgroup", CLONE_NEWTIME: "time"}
_ALL_NEW = sum(_CLONE_NAMES)
# What unshare(2) takes besides new namespaces: CLONE_FS, CLONE_FILES, CLONE_SYSVSEM.
_UNSHARE_OTHER = 0x200 | 0x400 | 0x40000
_MS_NAMES = {v: k for k, v in globals().items() if k.startswith("MS_")}
_ATTR_NAMES = {v: k for k, v in globals().items()
               if k.startswith("MOUNT_ATTR_") and v and k != "MOUNT_ATTR__ATIME"}
_UMOUNT_NAMES = {MNT_FORCE: "MNT_FORCE", MNT_DETACH: "MNT_DETACH", MNT_EXPIRE: "MNT_EXPIRE",
                 UMOUNT_NOFOLLOW: "UMOUNT_NOFOLLOW"}
_PROPAGATION = {0: "unchanged", MS_PRIVATE: "private", MS_SLAVE: "slave", MS_SHARED: "shared",
                MS_UNBINDABLE: "unbindable"}
#: The ``RLIMIT_*`` resources by number (Linux's, on every architecture): ``RLIMIT_NAMES[7]``
#: is ``"NOFILE"``.
RLIMIT_NAMES = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK",
                "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME")
_SLOTS = 64  # ISO_SLOTS in spawn.c
_MAX_FDS = 256
_ID_MAX = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel, never an id
_HOST_NAME_MAX = 64
_SIGRTMAX = 64


class Mode(IntEnum):
    """How the child is cloned (``ISO_MODE_*``)."""

    VFORK = 1  #: shares the parent's memory until exec; no parent steps possible
    FORK = 2  #: copy-on-write child; may wait for parent steps


class OpKind(IntEnum):
    """Set-up operation kinds (``ISO_OP_*`` in isolate.h; a test checks they agree).

    Each kind has a builder of the same name in lowercase (``OpKind.CHDIR`` -> :func:`chdir`),
    except ``CAPBSET`` (:func:`bounding_set`), ``CAPS`` (:func:`capabilities`), ``KEEPCAPS``
    (:func:`keep_caps`), ``MOUNT_SETATTR`` (:func:`mount_setattr`), ``PDEATHSIG``
    (:func:`pdeathsig`), ``EXEC`` (:func:`exec_`), ``OPEN`` (:func:`open_`) and ``SOCKET``
    (:func:`socket_`); ``CONSOLE`` is :func:`console`.
    """

    WAIT_PARENT = 1
    SETNS = 2
    UNSHARE = 3
    SETHOSTNAME = 4
    SETDOMAINNAME = 5
    MOUNT = 6
    MOUNT_SETATTR = 7
    OPEN_TREE = 8
    MOVE_MOUNT = 9
    MKDIR = 10
    SYMLINK = 11
    WRITE_FILE = 12
    MASK = 13
    ROOT = 14
    PIVOT_ROOT = 15
    CHROOT = 16
    CHDIR = 17
    RLIMIT = 18
    SETGROUPS = 19
    SETRESGID = 20
    SETRESUID = 21
    CAPBSET = 22
    CAPS = 23
    KEEPCAPS = 24
    NO_NEW_PRIVS = 25
    SECCOMP = 26
    FDS = 27
    SETSID = 28
    CTTY = 29
    LOOPBACK_UP = 30
    CGROUP_JOIN = 31
    UMASK = 32
    PDEATHSIG = 33
    FORK_INTO_PIDNS = 34
    EXEC = 35
    OVERLAY = 36
    OPEN = 37
    INIT = 38
    KEEP_FDS = 39
    UMOUNT = 40
    MKNOD = 41
    SOCKET = 42
    CONSOLE = 43
    REROOT = 44


class Step(IntEnum):
    """Steps outside the operation list (``ISO_STEP_*``)."""

    CLONE = 100
    SIGNALS = 101
    PLAN = 102


class Report(IntEnum):
    """Kinds of record the child writes on the status fd (``ISO_REPORT_*``)."""

    ERROR = 1
    PID = 2
    FD = 3
    EXIT = 4  #: from an INIT, on the exit fd: the command's wait status


class Fd(IntEnum):
    """Placeholder fd numbers (``ISO_FD_*``): where a plan names one (an ``FDS`` source,
    ``PDEATHSIG``'s ``b``, ``CONSOLE``'s ``a``), the spawner puts an fd of its own.

    :func:`isolate.lowlevel.spawn` fills in ``STATUS``, ``SYNC`` and ``EXIT`` (its status pipe,
    sync socket and exit pipe); the container supervisor (``isolate-shim``) all five, in a plan
    encoded with them left in (``plan.encode(Fd.STATUS, Fd.SYNC, Fd.EXIT)``).
    """

    STATUS = -2  #: the status pipe: an init exec'd by the plan reports exec errors there
    SYNC = -3  #: the child's end of the sync socket
    EXIT = -4  #: the exit report pipe: an init exec'd by the plan reports the command's end
    PARENT = -5  #: a pidfd of the spawning process, for PDEATHSIG
    CONSOLE = -6  #: the socket a CONSOLE op sends the pty master to


class OpFlag(IntFlag):
    """Per-operation flags (``ISO_F_*``); the builders set them from keyword arguments."""

    NONE = 0
    IN_ROOT = 1  #: resolve the target below the ROOT dir; its symlinks cannot lead out
    MKDIR = 2  #: create a missing target directory (and its parents)
    MKFILE = 4  #: create a missing target as an empty file
    OPTIONAL = 8  #: a missing source or target (ENOENT) skips the op instead of failing
    RECURSIVE = 16  #: OPEN_TREE, MOUNT_SETATTR: the whole subtree
    SEARCH_PATH = 32  #: EXEC: look the program up in PATH of the new environment
    EXEC_FD = 64  #: EXEC: execveat(c, "", AT_EMPTY_PATH)
    IF_MOUNTED = 128  #: MOUNT_SETATTR: a target that is not a mount (EINVAL) skips the op


_HEADER = struct.Struct("=IIQIIiiiIIIiI")
_OP = struct.Struct("=IIqqqIIII")
REPORT = struct.Struct("=iiiiq")
assert _HEADER.size == 56 and _OP.size == 48 and REPORT.size == 24

Blob = bytes | None
#: Paths and strings the builders take.
PathArg = str | bytes | os.PathLike[str]


# What the builders take for an fd or a capability set: protocols for the type checker only
# (typing is not loaded at run time; the annotations are strings).
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Protocol

    class SupportsFileno(Protocol):
        """Anything with ``fileno()``: a :class:`~isolate.namespaces.Namespace`, a file."""

        def fileno(self) -> int:
            """The file descriptor."""
            ...  # pragma: no cover

    class SupportsMask(Protocol):
        """A capability set with a 64-bit ``mask`` (:class:`isolate.security.CapabilitySet`)."""

        @property
        def mask(self) -> int:
            """Bit N set for capability N."""
            ...  # pragma: no cover

    #: An fd, or anything with ``fileno()``.
    FdArg = int | SupportsFileno
    #: A capability set (anything with ``mask``) or a 64-bit mask.
    CapsArg = SupportsMask | int

# Binary s1 blobs: the record width; the count is in ``a``.
_COUNTED_S1 = {OpKind.SECCOMP: 8, OpKind.FDS: 12, OpKind.SETGROUPS: 4, OpKind.KEEP_FDS: 4}
_FIELDS = ("a", "b", "c", "s1", "s2", "s3", "s4", "argv", "envp")


@_record.record(cache_hash=True)
class Op:
    """One set-up operation, as the C child reads it.

    Make ops with the builder functions of this module (:func:`mount`, :func:`chdir` ...):
    they fill the fields a kind uses from named arguments and validate them. The raw fields
    (``a``, ``b``, ``c`` integers; ``s1``..``s4`` byte strings; ``argv``/``envp`` for EXEC)
    mean something different for every kind -- :meth:`describe` says what -- and
    :meth:`check` refuses a combination the kind does not take. ``note`` is how error messages
    name the op (the builders set a short one).
    """

    kind: OpKind
    flags: OpFlag = OpFlag.NONE
    a: int = 0
    b: int = 0
    c: int = 0
    s1: Blob = None
    s2: Blob = None
    s3: Blob = None
    s4: Blob = None
    argv: tuple[bytes, ...] = ()
    envp: tuple[bytes, ...] = ()
    note: str = ""

    def __init__(self, kind: OpKind, flags: OpFlag = OpFlag.NONE, a: int = 0, b: int = 0,
                 c: int = 0, s1: Blob = None, s2: Blob = None, s3: Blob = None,
                 s4: Blob = None, argv: tuple[bytes, ...] = (), envp: tuple[bytes, ...] = (),
                 note: str = "") -> None:
        """Make an op from its raw fields (a plan holds about a hundred: written out, since a
        record's shared ``__init__`` takes twice as long)."""
        self.__dict__.update(kind=kind, flags=flags, a=a, b=b, c=c, s1=s1, s2=s2, s3=s3, s4=s4,
                             argv=argv, envp=envp, note=note)

    def describe(self) -> str:
        """What the child will do with this op's arguments, in words.

        ``"mount tmpfs 'tmpfs' on /tmp inside the root, creating it (flags MS_NOSUID, data
        'mode=755')"``. An op whose fields do not fit its kind says which (see :meth:`check`).
        Raises nothing.
        """
        problem = self._problem()
        text = _DESCRIBE[self.kind](self)
        return f"{text} [invalid: {problem}]" if problem else text

    def check(self) -> Op:
        """Return this op if its fields fit its kind, else raise.

        Raises:
            ConfigError: a field the kind needs is missing, a field it does not use is set
                (``Op(OpKind.CHDIR, s1=b"/x")``: chdir reads ``s2``), or a value is out of
                range; the message names the field and what the kind takes.
        """
        problem = self._problem()
        if problem:
            raise ConfigError(f"{self.kind.name} op: {problem}")
        return self

    def _problem(self) -> str | None:
        uses = _USES[self.kind]
        for name in _FIELDS:
            value = getattr(self, name)
            if name not in uses and value not in (0, None, ()):
                return (f"{self.kind.name.lower()} does not use {name} (set to {value!r}); "
                        f"it takes {_takes(self.kind)}")
        for name in _NEEDS.get(self.kind, ()):
            if getattr(self, name) in (None, ()):
                return f"{self.kind.name.lower()} needs {name} ({uses[name]})"
        extra = _EXTRA_CHECKS.get(self.kind)
        return extra(self) if extra is not None else None


def _takes(kind: OpKind) -> str:
    uses = _USES[kind]
    if not uses:
        return "no arguments"
    return ", ".join(f"{name} = {meaning}" for name, meaning in uses.items())


# What each kind reads, field -> meaning (also what check() and describe() say).
_USES: dict[OpKind, dict[str, str]] = {
    OpKind.WAIT_PARENT: {},
    OpKind.SETNS: {"a": "namespace fd, or -1 to open s2", "b": "CLONE_NEW* type, 0 any",
                   "s2": "namespace file path (with a=-1)"},
    OpKind.UNSHARE: {"a": "CLONE_NEW* flags"},
    OpKind.SETHOSTNAME: {"s1": "host name"},
    OpKind.SETDOMAINNAME: {"s1": "domain name"},
    OpKind.MOUNT: {"a": "MS_* flags", "s1": "source", "s2": "target", "s3": "filesystem type",
                   "s4": "mount data"},
    OpKind.MOUNT_SETATTR: {"a": "MOUNT_ATTR_* to set", "b": "MOUNT_ATTR_* to clear",
                           "c": "propagation MS_*", "s2": "target"},
    OpKind.OPEN_TREE: {"a": "slot", "s1": "source path"},
    OpKind.MOVE_MOUNT: {"a": "slot", "s2": "target"},
    OpKind.MKDIR: {"s2": "path"},
    OpKind.SYMLINK: {"s1": "link content", "s2": "link path"},
    OpKind.WRITE_FILE: {"a": "content length", "b": "mode of a created file", "s2": "path",
                        "s3": "content"},
    OpKind.MASK: {"s1": "an empty read-only dir to bind over directories", "s2": "path"},
    OpKind.ROOT: {"s2": "root directory"},
    OpKind.PIVOT_ROOT: {"s2": "new root"},
    OpKind.CHROOT: {"s2": "new root"},
    OpKind.CHDIR: {"s2": "directory"},
    OpKind.RLIMIT: {"a": "RLIMIT_* resource", "b": "soft limit", "c": "hard limit"},
    OpKind.SETGROUPS: {"a": "count", "s1": "uint32 gids"},
    OpKind.SETRESGID: {"a": "gid"},
    OpKind.SETRESUID: {"a": "uid"},
    OpKind.CAPBSET: {"a": "mask of capabilities to keep"},
    OpKind.CAPS: {"a": "permitted mask", "b": "inheritable mask", "c": "ambient mask",
                  "s1": "effective mask (8 bytes; none: the permitted set)"},
    OpKind.KEEPCAPS: {"a": "0 or 1"},
    OpKind.NO_NEW_PRIVS: {},
    OpKind.SECCOMP: {"a": "instruction count", "s1": "sock_filter array"},
    OpKind.FDS: {"a": "count", "s1": "int32 (source, target, cloexec) triples"},
    OpKind.KEEP_FDS: {"a": "count", "s1": "int32 fds to keep, ascending"},
    OpKind.SETSID: {},
    OpKind.CTTY: {"a": "terminal fd"},
    OpKind.LOOPBACK_UP: {},
    OpKind.CGROUP_JOIN: {"a": "fd of a cgroup.procs file"},
    OpKind.UMASK: {"a": "mask"},
    OpKind.PDEATHSIG: {"a": "signal", "b": "parent's pidfd, or -1: compare getppid()"},
    OpKind.FORK_INTO_PIDNS: {"a": "pid namespace fd, or -1: a new one"},
    OpKind.EXEC: {"c": "fd (with EXEC_FD)", "s1": "program", "argv": "arguments",
                  "envp": "environment"},
    OpKind.OVERLAY: {"a": "lower dir count", "b": "slot (no target)", "c": "option count",
                     "s1": "lower dirs, top first", "s2": "target", "s3": "upper and work dir",
                     "s4": "options"},
    OpKind.OPEN: {"a": "open flags", "s2": "path"},
    OpKind.INIT: {},
    OpKind.UMOUNT: {"a": "MNT_* flags", "s2": "target"},
    OpKind.MKNOD: {"a": "file type and mode", "b": "device number",
                   "c": "uid << 32 | gid, all ones: unchanged", "s2": "path"},
    OpKind.SOCKET: {"a": "address family", "b": "socket type", "c": "protocol"},
    OpKind.CONSOLE: {"a": "socket for the pty master (SCM_RIGHTS)",
                     "b": "rows << 16 | cols (0: as is)", "s2": "ptmx path"},
    OpKind.REROOT: {},
}
_NEEDS: dict[OpKind, tuple[str, ...]] = {
    OpKind.SETHOSTNAME: ("s1",), OpKind.SETDOMAINNAME: ("s1",), OpKind.MOUNT: ("s2",),
    OpKind.MOUNT_SETATTR: ("s2",), OpKind.OPEN_TREE: ("s1",), OpKind.MOVE_MOUNT: ("s2",),
    OpKind.MKDIR: ("s2",), OpKind.SYMLINK: ("s1", "s2"), OpKind.WRITE_FILE: ("s2",),
    OpKind.MASK: ("s2",), OpKind.ROOT: ("s2",), OpKind.PIVOT_ROOT: ("s2",),
    OpKind.CHROOT: ("s2",), OpKind.CHDIR: ("s2",), OpKind.SETGROUPS: ("s1",),
    OpKind.SECCOMP: ("s1",), OpKind.FDS: ("s1",), OpKind.EXEC: ("s1", "argv"),
    OpKind.OVERLAY: ("s1",), OpKind.OPEN: ("s2",), OpKind.UMOUNT: ("s2",),
    OpKind.MKNOD: ("s2",),
}


def _check_counted(op: Op) -> str | None:
    width = _COUNTED_S1[op.kind]
    size = len(op.s1) if op.s1 is not None else 0
    if op.a < 0 or size != width * op.a:
        return f"s1 must hold a={op.a} records of {width} bytes, not {size} bytes"
    if op.kind is OpKind.SECCOMP and op.a == 0:
        return "a seccomp program has at least one instruction"
    return None


def _check_slot(op: Op) -> str | None:
    return None if 0 <= op.a < _SLOTS else f"slot a={op.a} is not in [0, {_SLOTS - 1}]"


def _check_setns(op: Op) -> str | None:
    if (op.a < 0) != (op.s2 is not None):
        return "give either an fd in a (>= 0) or a=-1 and a path in s2"
    return None


def _check_unshare(op: Op) -> str | None:
    if not op.a or op.a & ~(_ALL_NEW | _UNSHARE_OTHER):
        return f"a={op.a:#x} is not a set of CLONE_NEW* flags"
    return None


def _check_write(op: Op) -> str | None:
    size = len(op.s3) if op.s3 is not None else 0
    return None if op.a == size else f"a={op.a} must be the content length {size}"


def _check_caps(op: Op) -> str | None:
    if op.s1 is not None and len(op.s1) != 8:
        return f"s1 (the effective mask) must be 8 bytes, not {len(op.s1)}"
    return None


def _check_pdeathsig(op: Op) -> str | None:
    if not 1 <= op.a <= _SIGRTMAX:
        return f"a={op.a} is not a signal number"
    if op.b < -1:
        return f"b={op.b} is neither a pidfd nor -1"
    return None


def _check_exec(op: Op) -> str | None:
    if op.a or op.b:
        return "a and b are filled in by the encoder (argv and envp go in argv/envp)"
    if op.flags & OpFlag.EXEC_FD and op.c < 0:
        return f"EXEC_FD needs an fd in c, not {op.c}"
    return None


def _check_mknod(op: Op) -> str | None:
    if not 0 <= op.a <= 0o177777 or _stat.S_IFMT(op.a) not in _NODE_TYPES.values() or \
            op.a & ~(_stat.S_IFMT(op.a) | 0o7777):
        return f"a={op.a:#o} is not S_IFCHR, S_IFBLK or S_IFIFO with permission bits"
    return None


_EXTRA_CHECKS: dict[OpKind, Callable[[Op], str | None]] = {
    OpKind.SECCOMP: _check_counted, OpKind.FDS: _check_counted,
    OpKind.SETGROUPS: _check_counted, OpKind.KEEP_FDS: _check_counted,
    OpKind.OPEN_TREE: _check_slot, OpKind.MOVE_MOUNT: _check_slot,
    OpKind.SETNS: _check_setns, OpKind.UNSHARE: _check_unshare,
    OpKind.WRITE_FILE: _check_write, OpKind.CAPS: _check_caps,
    OpKind.PDEATHSIG: _check_pdeathsig, OpKind.EXEC: _check_exec,
    OpKind.MKNOD: _check_mknod,
}


# -- describing ops in words -------------------------------------------------------------------

def _text(value: bytes | None) -> str:
    return "(none)" if value is None else os.fsdecode(value)


def _names(value: int, table: Mapping[int, str]) -> str:
    parts = [name for bit, name in sorted(table.items()) if bit and value & bit == bit]
    rest = value
    for bit in table:
        if bit and value & bit == bit:
            rest &= ~bit
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts) or "0"


def _clone_names(flags: int) -> str:
    return _names(flags, {k: f"CLONE_NEW{v.upper()}" if v != "mnt" else "CLONE_NEWNS"
                          for k, v in _CLONE_NAMES.items()})


def _where(op: Op) -> str:
    bits = []
    if op.flags & OpFlag.IN_ROOT:
        bits.append(" inside the root")
    if op.flags & (OpFlag.MKDIR | OpFlag.MKFILE):
        bits.append(", creating it")
    if op.flags & OpFlag.OPTIONAL:
        bits.append(" (skipped if missing)")
    return "".join(bits)


def _signame(number: int) -> str:
    try:
        import signal  # (its names: loaded for a message only)

        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _mask_text(mask: int) -> str:
    return f"{mask:#x}" if mask else "none"


def _d_setns(op: Op) -> str:
    kind = _CLONE_NAMES.get(op.b, "") if op.b else ""
    what = f"{kind} namespace" if kind else "namespace"
    return f"join the {what} of fd {op.a}" if op.a >= 0 else f"join the {what} at {_text(op.s2)}"


def _d_mount(op: Op) -> str:
    target = _text(op.s2)
    flags = op.a
    if op.s3 is None and flags & MS_BIND:
        text = f"bind {_text(op.s1)}{' recursively' if flags & MS_REC else ''} on {target}"
    elif op.s3 is None and op.s1 is None and flags & (MS_PRIVATE | MS_SLAVE | MS_SHARED
                                                     | MS_UNBINDABLE):
        text = f"change the propagation of {target}"
    else:
        text = f"mount {_text(op.s3)} {_text(op.s1)!r} on {target}"
    detail = []
    if flags:
        detail.append(f"flags {_names(flags, _MS_NAMES)}")
    if op.s4 is not None:
        detail.append(f"data {_text(op.s4)!r}")
    return text + _where(op) + (f" ({', '.join(detail)})" if detail else "")


def _d_setattr(op: Op) -> str:
    parts = []
    if op.a:
        parts.append(f"set {_names(op.a, _ATTR_NAMES)}")
    if op.b:
        parts.append(f"clear {_names(op.b, _ATTR_NAMES)}")
    if op.c:
        parts.append(f"propagation {_PROPAGATION.get(op.c, hex(op.c))}")
    sub = " and every mount below" if op.flags & OpFlag.RECURSIVE else ""
    mounted = " (if it is one)" if op.flags & OpFlag.IF_MOUNTED else ""
    return (f"change the mount at {_text(op.s2)}{mounted}{sub}{_where(op)}: "
            f"{', '.join(parts) or 'nothing'}")


def _d_fds(op: Op) -> str:
    raw = op.s1 or b""
    triples = [struct.unpack_from("=iii", raw, i * 12) for i in range(len(raw) // 12)]
    moves = ", ".join(f"{s}->{d}{' (cloexec)' if c else ''}" for s, d, c in triples)
    return f"arrange fds {moves or '(none)'}; close every other fd now"


def _d_keep(op: Op) -> str:
    raw = op.s1 or b""
    kept = [str(v) for (v,) in struct.iter_unpack("=i", raw)]
    return f"close every fd but 0, 1, 2{''.join(', ' + k for k in kept)} at exec"


def _d_setgroups(op: Op) -> str:
    raw = op.s1 or b""
    return f"set the supplementary groups to {[v for (v,) in struct.iter_unpack('=I', raw)]}"


def _d_caps(op: Op) -> str:
    eff = struct.unpack("=Q", op.s1)[0] if op.s1 is not None and len(op.s1) == 8 else op.a
    return (f"set capabilities: permitted {_mask_text(op.a)}, effective {_mask_text(eff)}, "
            f"inheritable {_mask_text(op.b | op.c)}, ambient {_mask_text(op.c)}")


def _d_rlimit(op: Op) -> str:
    name = f"RLIMIT_{RLIMIT_NAMES[op.a]}" if 0 <= op.a < len(RLIMIT_NAMES) else f"resource {op.a}"

    def value(v: int) -> str:
        return "unlimited" if v == RLIM_INFINITY else str(v)

    return f"set {name} to soft {value(op.b)}, hard {value(op.c)}"


def _d_pdeathsig(op: Op) -> str:
    check = (f"parent pidfd {op.b}" if op.b >= 0 else "getppid()")
    return (f"ask for {_signame(op.a)} when the parent dies, and fail if it already has "
            f"(checked with {check})")


def _d_exec(op: Op) -> str:
    if op.flags & OpFlag.EXEC_FD:
        how = f"the program open at fd {op.c}"
    elif op.flags & OpFlag.SEARCH_PATH:
        how = f"{_text(op.s1)} (looked up in PATH)"
    else:
        how = _text(op.s1)
    args = [os.fsdecode(a) for a in op.argv]
    return f"exec {how} with argv {args} and {len(op.envp)} environment variable(s)"


def _d_mknod(op: Op) -> str:
    kinds = {_stat.S_IFCHR: "character device", _stat.S_IFBLK: "block device",
             _stat.S_IFIFO: "FIFO"}
    kind = _stat.S_IFMT(op.a & 0o177777)
    what = kinds.get(kind, f"node of type {kind:#o}")
    if kind != _stat.S_IFIFO:
        what += f" {os.major(op.b & (2**64 - 1))}:{os.minor(op.b & (2**64 - 1))}"
    owner = ""
    uid, gid = (op.c >> 32) & 0xFFFFFFFF, op.c & 0xFFFFFFFF
    if (uid, gid) != (0xFFFFFFFF, 0xFFFFFFFF):
        owner = f", owned by {uid if uid != 0xFFFFFFFF else '-'}:" \
                f"{gid if gid != 0xFFFFFFFF else '-'}"
    inside = " inside the root" if op.flags & OpFlag.IN_ROOT else ""
    return f"create the {what} {_text(op.s2)}{inside}, mode {op.a & 0o7777:04o}{owner}"


def _d_overlay(op: Op) -> str:
    where = f"on {_text(op.s2)}" if op.s2 is not None else f"into slot {op.b}"
    upper = " with an upper dir" if op.s3 is not None else " (read-only)"
    return f"mount an overlay of {op.a} lower dir(s){upper} {where}{_where(op)}"


_DESCRIBE: dict[OpKind, Callable[[Op], str]] = {
    OpKind.WAIT_PARENT: lambda op: "wait for the parent's go on the sync socket",
    OpKind.SETNS: _d_setns,
    OpKind.UNSHARE: lambda op: f"unshare into new namespaces {_clone_names(op.a)}",
    OpKind.SETHOSTNAME: lambda op: f"set the hostname to {_text(op.s1)!r}",
    OpKind.SETDOMAINNAME: lambda op: f"set the NIS domain name to {_text(op.s1)!r}",
    OpKind.MOUNT: _d_mount,
    OpKind.MOUNT_SETATTR: _d_setattr,
    OpKind.OPEN_TREE: lambda op: (
        f"clone the mount at {_text(op.s1)}"
        f"{' with the mounts below it' if op.flags & OpFlag.RECURSIVE else ''} into slot "
        f"{op.a}{' (skipped if missing)' if op.flags & OpFlag.OPTIONAL else ''}"),
    OpKind.MOVE_MOUNT: lambda op: f"attach the mount in slot {op.a} at {_text(op.s2)}"
                                  f"{_where(op)}",
    OpKind.MKDIR: lambda op: (f"create the {'file' if op.flags & OpFlag.MKFILE else 'directory'}"
                              f" {_text(op.s2)} and missing parents"
                              f"{' inside the root' if op.flags & OpFlag.IN_ROOT else ''}"),
    OpKind.SYMLINK: lambda op: f"create the symlink {_text(op.s2)} -> {_text(op.s1)}"
                               f"{' inside the root' if op.flags & OpFlag.IN_ROOT else ''}",
    OpKind.WRITE_FILE: lambda op: f"write {op.a} byte(s) to {_text(op.s2)}{_where(op)}",
    OpKind.MASK: lambda op: (f"hide {_text(op.s2)} (inside the root): "
                             f"{_text(op.s1) if op.s1 is not None else 'an empty tmpfs'} "
                             "over a directory, /dev/null over a file"),
    OpKind.ROOT: lambda op: f"open {_text(op.s2)} as the root in-root paths resolve in",
    OpKind.PIVOT_ROOT: lambda op: (f"pivot_root into {_text(op.s2)} (inside the root) and "
                                   "detach the old root"),
    OpKind.CHROOT: lambda op: f"chroot into {_text(op.s2)} (inside the root)",
    OpKind.CHDIR: lambda op: f"change the working directory to {_text(op.s2)}",
    OpKind.RLIMIT: _d_rlimit,
    OpKind.SETGROUPS: _d_setgroups,
    OpKind.SETRESGID: lambda op: f"set the real, effective and saved gid to {op.a}",
    OpKind.SETRESUID: lambda op: f"set the real, effective and saved uid to {op.a}",
    OpKind.CAPBSET: lambda op: (f"drop every capability but {_mask_text(op.a)} from the "
                                "bounding set"),
    OpKind.CAPS: _d_caps,
    OpKind.KEEPCAPS: lambda op: (f"{'keep' if op.a else 'do not keep'} permitted capabilities "
                                 "across a uid change"),
    OpKind.NO_NEW_PRIVS: lambda op: "set no_new_privs (no exec gains privileges from now on)",
    OpKind.SECCOMP: lambda op: f"load a seccomp filter of {op.a} instruction(s)",
    OpKind.FDS: _d_fds,
    OpKind.KEEP_FDS: _d_keep,
    OpKind.SETSID: lambda op: "start a new session",
    OpKind.CTTY: lambda op: f"make fd {op.a} the controlling terminal",
    OpKind.LOOPBACK_UP: lambda op: "bring up the loopback device lo",
    OpKind.CGROUP_JOIN: lambda op: f"join a cgroup (write 0 to the cgroup.procs at fd {op.a})",
    OpKind.UMASK: lambda op: f"set the umask to {op.a:04o}",
    OpKind.PDEATHSIG: _d_pdeathsig,
    OpKind.FORK_INTO_PIDNS: lambda op: (
        "fork the rest of the plan into "
        + ("a new pid namespace" if op.a < 0 else f"the pid namespace of fd {op.a}")),
    OpKind.EXEC: _d_exec,
    OpKind.OVERLAY: _d_overlay,
    OpKind.OPEN: lambda op: f"open {_text(op.s2)} (flags {op.a:#o}) and report the fd",
    OpKind.CONSOLE: lambda op: (f"open a terminal of {_text(op.s2) if op.s2 else '/dev/pts/ptmx'}"
                                f" as stdio and controlling terminal, sending its master over "
                                f"fd {op.a}"),
    OpKind.SOCKET: lambda op: (f"create a socket (family {op.a}, type {op.b}, protocol {op.c}) "
                               "in the child's network namespace and report the fd"),
    OpKind.INIT: lambda op: "stay behind as the init and run the rest of the plan in a child",
    OpKind.UMOUNT: lambda op: (f"unmount {_text(op.s2)}{_where(op)} "
                               f"(flags {_names(op.a, _UMOUNT_NAMES)})"),
    OpKind.MKNOD: _d_mknod,
    OpKind.REROOT: lambda op: ("make the caller's root the root of the mount namespace (a "
                               "chroot's too) and every mount a slave"),
}
assert set(_DESCRIBE) == set(OpKind) == set(_USES)


def _check_blob(value: bytes, what: str) -> bytes:
    if b"\0" in value:
        raise ConfigError(f"{what} contains a NUL byte: {value!r}")
    return value


def fsencode(value: str | bytes | os.PathLike[str], what: str) -> bytes:
    """Encode a path or string for the child.

    Raises:
        ConfigError: ``value`` is not a str, bytes or path, or holds a NUL byte (``what``
            names it in the message).
    """
    try:
        raw = os.fsencode(value)
    except TypeError:
        raise ConfigError(f"{what} must be a str, bytes or path, not {value!r}") from None
    return _check_blob(raw, what)


class Plan:
    """An ordered list of set-up operations plus how the child is cloned.

    ``clone_flags`` are the ``CLONE_NEW*`` namespaces the child is born in; ``mode`` is
    :attr:`Mode.VFORK` (the fast path: the child borrows our memory until it execs) or
    :attr:`Mode.FORK` (a copy: needed to wait for a parent step, or to unshare a user or enter
    a time namespace); ``reset_signals`` restores default signal dispositions and an empty mask
    before exec (the child runs with every signal blocked until then, so a plan without
    EXEC or INIT needs no reset and gets none); ``share_files`` (VFORK only) shares our fd
    table, so what OPEN ops open is ours (such a plan may not close fds: no FDS or KEEP_FDS
    op); ``cgroup_fd`` is a cgroup v2 directory fd to clone into (``CLONE_INTO_CGROUP``; in
    VFORK mode only where ``isolate._sys.vfork_into_cgroup_works()``), -1 for none.

    Add ops with :meth:`add` and :meth:`extend`, in the order the child must run them;
    :func:`isolate.lowlevel.spawn` runs the plan. :meth:`check` validates it, :meth:`encode`
    makes the buffer the C child reads, :func:`decode` reads one back.

    Raises:
        ConfigError: ``clone_flags`` holds more than ``CLONE_NEW*`` flags, ``mode`` is not a
            :class:`Mode`, or ``share_files`` is asked for in FORK mode.
    """

    def __init__(self, clone_flags: int = 0, mode: Mode = Mode.VFORK,
                 reset_signals: bool = True, share_files: bool = False, *,
                 cgroup_fd: int = -1) -> None:
        if not isinstance(clone_flags, int) or clone_flags & ~_ALL_NEW or clone_flags < 0:
            raise ConfigError(f"clone_flags must be CLONE_NEW* flags, not {clone_flags!r}")
        if not isinstance(mode, Mode):
            raise ConfigError(f"mode must be Mode.VFORK or Mode.FORK, not {mode!r}")
        if share_files and mode is not Mode.VFORK:
            raise ConfigError("share_files needs Mode.VFORK (a FORK child has its own fds)")
        self.clone_flags = clone_flags
        self.mode = mode
        self.reset_signals = reset_signals
        # The child shares our fd table (VFORK mode only): what its OPEN ops open is ours.
        self.share_files = share_files
        self.ops: list[Op] = []
        self.cgroup_fd = cgroup_fd
        self._frozen: tuple[int, bytes, list[bytes]] | None = None
        self._frozen_kinds: frozenset[OpKind] = frozenset()
        self._frozen_fds: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return (f"<Plan {_clone_names(self.clone_flags)} {self.mode.name} "
                f"{len(self.ops)} op(s)>")

    # -- generic ------------------------------------------------------------------------------
    def add(self, op: Op) -> Plan:
        """Append one op; returns the plan, so calls chain. Raises ConfigError for a non-Op."""
        if not isinstance(op, Op):
            raise ConfigError(f"a plan holds Op records (from the builders), not {op!r}")
        self.ops.append(op)
        return self

    def extend(self, ops: Iterable[Op]) -> Plan:
        """Append ops in order; returns the plan. Raises ConfigError for a non-Op."""
        for op in ops:
            self.add(op)
        return self

    def describe(self) -> str:
        """The plan in words, one numbered line per op (its index is what errors report)."""
        head = f"clone {self.mode.name} into {_clone_names(self.clone_flags)}"
        return "\n".join([head] + [f"{i:3}: {op.describe()}" for i, op in enumerate(self.ops)])

    @property
    def needs_sync(self) -> bool:
        """Whether the child waits for a parent step (a ``WAIT_PARENT`` op)."""
        return self._has(OpKind.WAIT_PARENT)

    @property
    def has_init(self) -> bool:
        """Whether an ``INIT`` op stays behind as the command's init (and reports its end)."""
        return self._has(OpKind.INIT)

    def has(self, kind: OpKind) -> bool:
        """Whether the plan holds an op of ``kind``."""
        return self._has(kind)

    @property
    def reports_exit(self) -> bool:
        """Whether something of the plan reports the command's end on the exit fd: an ``INIT``
        op, or an init it execs, handed ``Fd.EXIT`` by an ``FDS`` op."""
        return self.has_init or any(Fd.EXIT in _fd_sources(op) for _, op in self._fds_ops())

    def _fds_ops(self) -> Iterable[tuple[int, Op]]:
        # The FDS ops and their indices; those of a frozen prefix were found once.
        start = 0
        if self._frozen is not None and self._frozen[0] <= len(self.ops):
            start = self._frozen[0]
            for i in self._frozen_fds:
                yield i, self.ops[i]
        for i in range(start, len(self.ops)):
            if self.ops[i].kind is OpKind.FDS:
                yield i, self.ops[i]

    def _has(self, kind: OpKind) -> bool:
        # A frozen prefix was scanned once; only the ops after it are looked at.
        start = 0
        if self._frozen is not None and self._frozen[0] <= len(self.ops):
            start = self._frozen[0]
            if kind in self._frozen_kinds:
                return True
        return any(op.kind is kind for op in self.ops[start:])

    def check(self) -> Plan:
        """Validate every op (see :meth:`Op.check`) and how they combine; returns the plan.

        A frozen prefix was checked by :meth:`freeze` and is not checked again.

        Raises:
            ConfigError: naming the op's index and what is wrong: fields that do not fit an
                op's kind; an FDS or KEEP_FDS op in a ``share_files`` plan (it would close the
                caller's fds); an INIT, or an unshare of a user namespace, in a VFORK child
                that still shares the caller's memory (no FORK_INTO_PIDNS before it).
        """
        start = 0
        if self._frozen is not None and self._frozen[0] <= len(self.ops):
            start = self._frozen[0]
        forked = self.mode is Mode.FORK or (
            start > 0 and OpKind.FORK_INTO_PIDNS in self._frozen_kinds)
        for i in range(start, len(self.ops)):
            op = self.ops[i]
            try:
                op.check()
            except ConfigError as exc:
                raise ConfigError(f"op {i}: {exc}") from None
            self._check_in_plan(i, op, forked)
            if op.kind is OpKind.FORK_INTO_PIDNS:
                forked = True
        return self

    def _check_in_plan(self, i: int, op: Op, forked: bool) -> None:
        if self.share_files and op.kind in (OpKind.FDS, OpKind.KEEP_FDS):
            raise ConfigError(f"op {i}: a share_files plan shares the caller's fd table, so "
                              f"it cannot have an {op.kind.name} op (it would close our fds)")
        if forked:
            return
        if op.kind is OpKind.INIT:
            raise ConfigError(f"op {i}: an INIT outlives the exec, so it cannot run in a "
                              "VFORK child in the caller's memory: use Mode.FORK or a "
                              "fork_into_pidns() op before it")
        if op.kind is OpKind.UNSHARE and op.a & CLONE_NEWUSER:
            raise ConfigError(f"op {i}: the kernel refuses to unshare a user namespace while "
                              "memory is shared: use Mode.FORK (or new namespaces in "
                              "clone_flags)")

    # -- encoding -----------------------------------------------------------------------------
    def freeze(self) -> Plan:
        """Check and pre-encode the operations so far; plans made by :meth:`extended` reuse
        that work.

        A sandbox runs many processes whose plans share a long prefix (mounts, credentials,
        the seccomp program); checking and encoding it once keeps the per-process cost small.
        Raises ConfigError as :meth:`check` does.
        """
        self._frozen = None
        self.check()
        blob = bytearray()
        records = _encode_ops(self.ops, blob)
        self._frozen = (len(self.ops), bytes(blob), records)
        self._frozen_kinds = frozenset(op.kind for op in self.ops)
        self._frozen_fds = tuple(i for i, op in enumerate(self.ops) if op.kind is OpKind.FDS)
        return self

    def extended(self, ops: Iterable[Op]) -> Plan:
        """A new plan: this one's (frozen) operations followed by ``ops``."""
        p = Plan(self.clone_flags, self.mode, self.reset_signals, self.share_files,
                 cgroup_fd=self.cgroup_fd)
        p.ops = list(self.ops)
        p.extend(ops)
        p._frozen = self._frozen
        p._frozen_kinds = self._frozen_kinds
        p._frozen_fds = self._frozen_fds
        return p

    def with_fd(self, index: int, fd: int) -> Plan:
        """A copy of this frozen plan whose op ``index`` -- one that takes an fd in ``a`` and
        no strings (a :func:`setns` of an fd, a cgroup join) -- takes ``fd`` instead: a plan
        kept per config can name an fd that differs from one spawn to the next without
        being checked and encoded again.

        Raises ConfigError: ``index`` is not in the frozen part, the op has strings, or the
        op refuses ``fd`` (see :meth:`Op.check`)."""
        frozen = self._frozen
        if frozen is None or not 0 <= index < min(frozen[0], len(self.ops)):
            raise ConfigError(f"with_fd: op {index} is not in the frozen part of {self!r}")
        op = self.ops[index]
        if any(s is not None for s in (op.s1, op.s2, op.s3, op.s4)) or op.kind is OpKind.EXEC:
            raise ConfigError(f"with_fd: op {index} ({op.kind.name}) has strings, not only "
                              "an fd")
        new = Op(op.kind, op.flags, fd, op.b, op.c, note=op.note)
        try:
            new.check()
        except ConfigError as exc:
            raise ConfigError(f"op {index}: {exc}") from None
        p = self.extended(())
        p.ops[index] = new
        records = list(frozen[2])
        records[index] = _encode_ops([new], bytearray())[0]
        p._frozen = (frozen[0], frozen[1], records)
        return p

    def encode(self, status_fd: int, sync_fd: int = -1, exit_fd: int = -1) -> bytearray:
        """Lay the plan out as ``[header][strings][ops]``; references are byte offsets.

        ``exit_fd`` is where an ``INIT`` op reports the command's wait status when it ends.
        Encodes what it is given (see :meth:`check` for validation).

        Strings come before the operations so that the offsets of a frozen prefix stay valid
        whatever is appended after it.
        """
        frozen = self._frozen
        if frozen is not None and frozen[0] <= len(self.ops):
            done, blob_bytes, records = frozen
            blob = bytearray(blob_bytes)
            records = records + _encode_ops(self.ops[done:], blob)
        else:
            blob = bytearray()
            records = _encode_ops(self.ops, blob)
        pad = (-(_HEADER.size + len(blob))) % 8
        blob.extend(b"\0" * pad)
        ops_offset = _HEADER.size + len(blob)
        size = ops_offset + len(records) * _OP.size
        header = _HEADER.pack(
            PLAN_MAGIC, PLAN_VERSION, self.clone_flags, self.mode,
            (PLAN_RESET_SIGNALS if self.reset_signals else 0)
            | (PLAN_SHARE_FILES if self.share_files else 0),
            status_fd, sync_fd, self.cgroup_fd, len(records), ops_offset, size, exit_fd, 0,
        )
        buf = bytearray(header)
        buf += blob
        buf += b"".join(records)
        fill: dict[int, int] = {Fd.STATUS: status_fd, Fd.SYNC: sync_fd, Fd.EXIT: exit_fd}
        for i, _ in self._fds_ops():
            _fill_fd_sources(buf, ops_offset + i * _OP.size, fill)
        return buf


def _fd_sources(op: Op) -> list[int]:
    return [src for src, _, _ in struct.iter_unpack("=iii", op.s1 or b"")]


def _fill_fd_sources(buf: bytearray, record: int, fill: Mapping[int, int]) -> None:
    """Put the spawner's fds where the FDS op at ``record`` names a placeholder (left as it is
    when the spawner passes the placeholder itself, as for the shim's plan file)."""
    _, _, count, _, _, s1, _, _, _ = _OP.unpack_from(buf, record)
    for k in range(count):
        (src,) = struct.unpack_from("=i", buf, s1 + 12 * k)
        if src in fill:
            struct.pack_into("=i", buf, s1 + 12 * k, fill[src])


def _encode_ops(ops: Sequence[Op], blob: bytearray) -> list[bytes]:
    """Append the ops' strings to ``blob`` (which starts right after the header) and return
    the packed op records that point at them."""
    base = _HEADER.size

    def put(data: bytes | None, align: int = 1, terminate: bool = True) -> int:
        if data is None:
            return 0
        pad = (-(base + len(blob))) % align
        blob.extend(b"\0" * pad)
        offset = base + len(blob)
        blob.extend(data)
        if terminate:
            blob.append(0)
        return offset

    def put_table(items: Sequence[bytes]) -> int:
        offsets = [put(item) for item in items]
        return put(struct.pack(f"={len(offsets) + 1}Q", *offsets, 0), 8, False)

    records = []
    for op in ops:
        a, b = op.a, op.b
        if op.kind is OpKind.EXEC:
            a = put_table(op.argv)
            b = put_table(op.envp)
        if op.kind in _COUNTED_S1 or op.kind is OpKind.CAPS:
            s1 = put(op.s1, 8, False)
        else:
            s1 = put(op.s1)
        s3 = put(op.s3, 1, op.kind is not OpKind.WRITE_FILE)
        records.append(_OP.pack(op.kind, op.flags, a, b, op.c, s1, put(op.s2), s3, put(op.s4)))
    return records


def decode(buf: bytes | bytearray) -> tuple[dict[str, int], list[Op]]:
    """Read a buffer made by :meth:`Plan.encode` back into its header fields and ops.

    Used by tests to check the encoder, and handy when debugging a plan. The ops come back
    without notes. Raises ValueError (``struct.error``) for a buffer too short for its header.
    """

    def cstr(offset: int) -> bytes | None:
        if offset == 0:
            return None
        end = buf.index(b"\0", offset)
        return bytes(buf[offset:end])

    def table(offset: int) -> tuple[bytes, ...]:
        items: list[bytes] = []
        while True:
            (ptr,) = struct.unpack_from("=Q", buf, offset)
            if ptr == 0:
                return tuple(items)
            items.append(cstr(ptr) or b"")
            offset += 8

    def strings(offset: int, count: int) -> bytes | None:
        # A NUL-separated list of ``count`` strings, given back as the builder took it.
        if offset == 0:
            return None
        items = []
        for _ in range(count):
            item = cstr(offset) or b""
            items.append(item)
            offset += len(item) + 1
        return b"\0".join(items)

    fields = _HEADER.unpack_from(buf, 0)
    names = ("magic", "version", "clone_flags", "mode", "flags", "status_fd", "sync_fd",
             "cgroup_fd", "n_ops", "ops_offset", "size", "exit_fd", "reserved")
    header = dict(zip(names, fields, strict=True))
    ops = []
    for i in range(header["n_ops"]):
        kind, flags, a, b, c, s1, s2, s3, s4 = _OP.unpack_from(buf, header["ops_offset"] + i * 48)
        k = OpKind(kind)
        argv: tuple[bytes, ...] = ()
        envp: tuple[bytes, ...] = ()
        if k is OpKind.EXEC:
            argv, envp = table(a), table(b)
            a = b = 0
        if k is OpKind.WRITE_FILE:
            s3b: bytes | None = bytes(buf[s3:s3 + a]) if s3 else None
        elif k is OpKind.OVERLAY:
            s3b = strings(s3, 2)
        else:
            s3b = cstr(s3)
        s1b: bytes | None
        if k in _COUNTED_S1:
            s1b = bytes(buf[s1:s1 + _COUNTED_S1[k] * a]) if s1 else None
        elif k is OpKind.CAPS:
            s1b = bytes(buf[s1:s1 + 8]) if s1 else None
        elif k is OpKind.OVERLAY:
            s1b = strings(s1, a)
        else:
            s1b = cstr(s1)
        s4b = strings(s4, c) if k is OpKind.OVERLAY else cstr(s4)
        ops.append(Op(k, OpFlag(flags), a, b, c, s1b, cstr(s2), s3b, s4b, argv, envp))
    return header, ops


# -- argument checks shared by the builders ----------------------------------------------------

def _path(value: PathArg, what: str) -> bytes:
    raw = fsencode(value, what)
    if not raw:
        raise ConfigError(f"{what} must not be empty")
    return raw


def _int(value: object, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{what} must be in [{low}, {high}], not {value!r}")
    return value


def _fd(value: FdArg, what: str) -> int:
    if not isinstance(value, int) and hasattr(value, "fileno"):
        value = value.fileno()
    return _int(value, what, 0, 2**31 - 1)


def _mask(value: CapsArg, what: str) -> int:
    if not isinstance(value, int) and hasattr(value, "mask"):
        value = value.mask
    return _int(value, what, 0, 2**64 - 1)


def _flags(*, in_root: bool = False, mkdir: bool = False, mkfile: bool = False,
           optional: bool = False, recursive: bool = False) -> OpFlag:
    f = OpFlag.NONE
    for wanted, bit in ((in_root, OpFlag.IN_ROOT), (mkdir, OpFlag.MKDIR),
                        (mkfile, OpFlag.MKFILE), (optional, OpFlag.OPTIONAL),
                        (recursive, OpFlag.RECURSIVE)):
        if wanted:
            f |= bit
    return f


def _u64(value: int) -> int:
    # The op records hold signed 64-bit fields; masks use all 64 bits.
    return value - (1 << 64) if value >= 1 << 63 else value


# -- builders: namespaces and the process ------------------------------------------------------
# Small functions returning Op records, so callers write plans as lists. Each validates its
# arguments (ConfigError naming the argument and value) and sets a short note for errors.

def wait_parent(*, note: str = "") -> Op:
    """Block until the parent sends go: :func:`isolate.lowlevel.spawn` runs its
    ``parent_step(pid)`` meanwhile (write id maps, place the child in a cgroup, move a network
    device into its namespace). Needs :attr:`Mode.FORK`. If the parent closes the sync socket
    without go, the op fails with ECANCELED. Raises nothing."""
    return Op(OpKind.WAIT_PARENT, note=note or "wait for the parent")


def setns(ns: FdArg | PathArg, nstype: int = 0, *, note: str = "") -> Op:
    """Join the namespace ``ns``: an fd (or anything with ``fileno()``, such as a
    :class:`~isolate.namespaces.Namespace`), or a path the child opens then (e.g.
    ``/proc/self/ns/time_for_children`` after unsharing a time namespace). ``nstype`` is the
    ``CLONE_NEW*`` flag the kernel checks the namespace against (0: any). Joining a pid
    namespace moves only later children: use :func:`fork_into_pidns` for that.

    Raises:
        ConfigError: a negative fd, an empty path, or ``nstype`` not one CLONE_NEW* flag.
    """
    if nstype and nstype not in _CLONE_NAMES:
        raise ConfigError(f"setns nstype must be 0 or one CLONE_NEW* flag, not {nstype!r}")
    kind = _CLONE_NAMES.get(nstype, "")
    if isinstance(ns, (str, bytes, os.PathLike)):
        path = _path(ns, "setns path")
        return Op(OpKind.SETNS, a=-1, b=nstype, s2=path,
                  note=note or f"join {kind or 'the'} namespace {os.fsdecode(path)}")
    fd = _fd(ns, "setns fd")
    return Op(OpKind.SETNS, a=fd, b=nstype,
              note=note or f"join {kind + ' ' if kind else ''}namespace fd {fd}")


def unshare(flags: int, *, note: str = "") -> Op:
    """Move the child into new namespaces (``CLONE_NEW*`` flags; also ``CLONE_FS``,
    ``CLONE_FILES``, ``CLONE_SYSVSEM``). A new pid or time namespace applies to the children
    the child makes afterwards, not to itself (use :func:`fork_into_pidns` for pid). A user
    namespace needs :attr:`Mode.FORK` (the kernel refuses while memory is shared).

    Raises:
        ConfigError: no flag, or a flag unshare does not take.
    """
    _int(flags, "unshare flags", 1, 2**63 - 1)
    if flags & ~(_ALL_NEW | _UNSHARE_OTHER):
        raise ConfigError(f"unshare flags must be CLONE_NEW* flags, not {flags:#x}")
    return Op(OpKind.UNSHARE, a=flags, note=note or f"unshare {_clone_names(flags)}")


def fork_into_pidns(pidns: FdArg | None = None, *, note: str = "") -> Op:
    """Continue the plan in a grandchild born in a pid namespace: the one behind the fd
    ``pidns`` (or anything with ``fileno()``), or a new one (``None``). The grandchild is the
    caller's child (``CLONE_PARENT``): :func:`~isolate.lowlevel.spawn` returns its pid and
    pidfd. In a new namespace it is pid 1.

    Raises:
        ConfigError: a negative fd.
    """
    if pidns is None:
        return Op(OpKind.FORK_INTO_PIDNS, a=-1, note=note or "fork into a new pid namespace")
    fd = _fd(pidns, "pid namespace fd")
    return Op(OpKind.FORK_INTO_PIDNS, a=fd, note=note or f"fork into the pid namespace fd {fd}")


def _name(value: str, what: str) -> bytes:
    raw = fsencode(value, what)
    if not 0 < len(raw) <= _HOST_NAME_MAX:
        raise ConfigError(f"{what} must be 1 to {_HOST_NAME_MAX} bytes, not {value!r}")
    return raw


def sethostname(name: str, *, note: str = "") -> Op:
    """Set the host name of the child's uts namespace (clone it with ``CLONE_NEWUTS``, or
    join one, or it is the host's).

    Raises:
        ConfigError: empty, longer than 64 bytes, or with a NUL byte.
    """
    raw = _name(name, "hostname")
    return Op(OpKind.SETHOSTNAME, s1=raw, note=note or f"sethostname {name}")


def setdomainname(name: str, *, note: str = "") -> Op:
    """Set the NIS domain name of the child's uts namespace.

    Raises:
        ConfigError: empty, longer than 64 bytes, or with a NUL byte.
    """
    raw = _name(name, "domain name")
    return Op(OpKind.SETDOMAINNAME, s1=raw, note=note or f"setdomainname {name}")


def setsid(*, note: str = "") -> Op:
    """Start a new session (and process group), so signals to the caller's group and its
    terminal do not reach the child. Raises nothing."""
    return Op(OpKind.SETSID, note=note or "start a new session")


def ctty(fd: FdArg, *, note: str = "") -> Op:
    """Make the terminal at ``fd`` the controlling terminal (after :func:`setsid`).

    Raises:
        ConfigError: a negative fd.
    """
    n = _fd(fd, "terminal fd")
    return Op(OpKind.CTTY, a=n, note=note or f"take fd {n} as the controlling terminal")


def loopback_up(*, note: str = "") -> Op:
    """Bring up ``lo`` in the child's network namespace. Raises nothing."""
    return Op(OpKind.LOOPBACK_UP, note=note or "bring up lo")


def cgroup_join(procs_fd: FdArg, *, note: str = "") -> Op:
    """Move the child into a cgroup by writing ``0`` to the ``cgroup.procs`` (or v1
    ``tasks``) file open (for writing) at ``procs_fd``; one op per hierarchy on cgroup v1
    (:meth:`isolate.cgroups.CGroup.join_files`: a v1 ``tasks`` write of the child's only
    thread skips the kernel's global lock). Put it first, so nothing runs outside the
    limits; on cgroup v2, :attr:`Plan.cgroup_fd` clones straight into the group instead.

    Raises:
        ConfigError: a negative fd.
    """
    n = _fd(procs_fd, "cgroup.procs fd")
    return Op(OpKind.CGROUP_JOIN, a=n, note=note or "join the cgroup")


def umask(mask: int, *, note: str = "") -> Op:
    """Set the file mode creation mask.

    Raises:
        ConfigError: not in [0, 0o777].
    """
    _int(mask, "umask", 0, 0o777)
    return Op(OpKind.UMASK, a=mask, note=note or f"umask {mask:04o}")


def pdeathsig(signal: int = _signal.SIGKILL, *, parent_pidfd: int | None = None,
              note: str = "") -> Op:
    """Ask the kernel to send ``signal`` to the child when its parent ends, then make sure
    the parent had not ended already; if it had, the op fails (``ESRCH``).

    That check uses ``parent_pidfd`` (a pidfd of the caller, opened before spawning and kept
    open until it returns) when given, else ``getppid()``, which only works while the child is
    in the caller's pid namespace: in a new one (``CLONE_NEWPID``, after
    :func:`fork_into_pidns`) ``getppid()`` is 0 and the op fails with ``EINVAL`` -- pass a
    pidfd there. A fd that is not a pidfd fails with ``EBADF``.

    "Parent" is the thread that cloned the child (:func:`isolate.lowlevel.spawn` clones from a
    thread that lasts as long as the process), or the init after an :func:`init` op. The kernel
    clears the setting when the effective uid or gid changes, so put this op after
    :func:`setresgid`/:func:`setresuid`.

    Raises:
        ConfigError: ``signal`` not in [1, 64], a negative ``parent_pidfd`` (but
            ``Fd.PARENT``, which the container supervisor fills in with its own pidfd).
    """
    _int(signal, "pdeathsig signal", 1, _SIGRTMAX)
    if isinstance(parent_pidfd, Fd):
        fd = int(parent_pidfd)  # Fd.PARENT: the supervisor puts its own pidfd there
    else:
        fd = -1 if parent_pidfd is None else _int(parent_pidfd, "parent_pidfd", 0, 2**31 - 1)
    return Op(OpKind.PDEATHSIG, a=int(signal), b=fd,
              note=note or f"die by {_signame(signal)} with the parent")


def init(*, note: str = "") -> Op:
    """Stay behind as a tiny init (pid 1, when the child is its pid namespace's first process)
    while the rest of the plan runs in a child of it: reap every zombie, forward every signal
    to that child, exit with its status (128 + N for signal N) and report its wait status on
    the spawn's exit fd. Needs a process of its own: ``Mode.FORK``, or in ``Mode.VFORK`` a
    :func:`fork_into_pidns` op before it (:meth:`Plan.check` refuses it otherwise). Raises
    nothing.

    The init is a copy of the caller, so it overwrites its copy of the caller's argument area
    with ``isolate-init`` before the child exists: ``/proc/1/cmdline`` (and ``ps`` outside)
    never show the caller's command line. The spawn reads where that area lies in the caller's
    ``/proc/self/stat``; where it cannot, the op fails (ENOENT without a ``/proc``) rather
    than show it."""
    return Op(OpKind.INIT, note=note or "start the init (pid 1), hide the caller's command "
              "line and fork the command")


# -- builders: files and mounts ----------------------------------------------------------------

def reroot(*, note: str = "") -> Op:
    """Make the calling process's root the root of its (new, private) mount namespace, and
    every mount in it a slave (nothing mounted later propagates out). Raises nothing.

    A process chrooted into a mount point that is not its namespace's root has, in a copy of
    that namespace, everything above its root still there, and ``setns(2)`` into the copy
    lands on that, not on the root: this pivots the root to the top and detaches the rest.
    Where the root is the namespace's already, it only makes the mounts slaves. A root that
    is not a mount point at all (a chroot into a plain directory) fails with EINVAL before
    anything changes: what lies above it cannot be told apart from what belongs to it.
    """
    return Op(OpKind.REROOT, note=note or "make the caller's root the root of the mount "
              "namespace")


def mount(source: PathArg | None, target: PathArg, fstype: str | None = None, flags: int = 0,
          data: str | None = None, *, in_root: bool = False, mkdir: bool = False,
          optional: bool = False, note: str = "") -> Op:
    """mount(2) in the child: ``mount(source, target, fstype, flags, data)``.

    ``flags`` are ``MS_*`` (``MS_BIND | MS_REC`` for a recursive bind without ``fstype``;
    ``MS_REC | MS_PRIVATE`` with ``source=None`` to change propagation). With ``in_root`` the
    target is resolved below the directory of the last :func:`root` op (its symlinks cannot
    lead outside) and mounted through ``/proc/self/fd``; ``mkdir`` creates a missing target
    directory; ``optional`` skips the op when source or target is missing (ENOENT).

    Raises:
        ConfigError: an empty target, a NUL byte in any string, flags not a 64-bit integer.
    """
    _int(flags, "mount flags", 0, 2**63 - 1)
    t = _path(target, "mount target")
    if not note:
        note = f"mount {fstype or 'bind'} on {os.fsdecode(t)}"
        if data:
            note += f" ({data})"
    return Op(OpKind.MOUNT, _flags(in_root=in_root, mkdir=mkdir, optional=optional), a=flags,
              s1=None if source is None else fsencode(source, "mount source"), s2=t,
              s3=None if fstype is None else _path(fstype, "filesystem type"),
              s4=None if data is None else fsencode(data, "mount options"), note=note)


def setattr_(target: PathArg, attr_set: int = 0, attr_clr: int = 0, propagation: int = 0, *,
             in_root: bool = False, recursive: bool = False, optional: bool = False,
             if_mounted: bool = False, what: str = "", note: str = "") -> Op:
    """mount_setattr(2) on the mount at ``target``: set ``attr_set`` and clear ``attr_clr``
    (``MOUNT_ATTR_*``), change ``propagation`` (``MS_PRIVATE``, ``MS_SLAVE``, ``MS_SHARED``,
    ``MS_UNBINDABLE``, 0: unchanged); ``recursive`` for every mount below too. ``in_root``
    and ``optional`` as for :func:`mount`; ``if_mounted`` skips the op when ``target`` is
    not the root of a mount (the kernel's EINVAL); ``what`` is another name for ``note``.
    Also named :func:`mount_setattr`.

    Raises:
        ConfigError: an empty target, attributes outside 64 bits, an unknown propagation.
    """
    _int(attr_set, "attr_set", 0, 2**63 - 1)
    _int(attr_clr, "attr_clr", 0, 2**63 - 1)
    if propagation not in _PROPAGATION:
        raise ConfigError("propagation must be 0, MS_PRIVATE, MS_SLAVE, MS_SHARED or "
                          f"MS_UNBINDABLE, not {propagation!r}")
    t = _path(target, "mount target")
    flags = _flags(in_root=in_root, recursive=recursive, optional=optional)
    return Op(OpKind.MOUNT_SETATTR, flags | OpFlag.IF_MOUNTED if if_mounted else flags,
              a=attr_set, b=attr_clr, c=propagation, s2=t,
              note=note or what or f"change mount {os.fsdecode(t)}")


mount_setattr = setattr_


def _slot(slot: int) -> int:
    return _int(slot, "slot", 0, _SLOTS - 1)


def open_tree(source: PathArg, slot: int, *, recursive: bool = True, optional: bool = False,
              note: str = "") -> Op:
    """Clone the mount tree at ``source`` (``open_tree(OPEN_TREE_CLONE)``; with ``recursive``
    the mounts below it too) into ``slot`` (0-63), for a later :func:`move_mount`. Cloning
    first means later mounts cannot hide the source. ``optional`` skips a missing source.

    Raises:
        ConfigError: an empty source, a slot outside [0, 63].
    """
    s = _path(source, "bind source")
    return Op(OpKind.OPEN_TREE, _flags(recursive=recursive, optional=optional),
              a=_slot(slot), s1=s, note=note or f"open bind source {os.fsdecode(s)}")


def move_mount(slot: int, target: PathArg, *, in_root: bool = True, is_file: bool = False,
               create: bool = True, source: str = "", note: str = "") -> Op:
    """Attach the mount tree held in ``slot`` (from :func:`open_tree` or :func:`overlay`) at
    ``target``, resolved inside the root with ``in_root``. ``create`` makes a missing target
    (an empty file with ``is_file``, else a directory); ``source`` only names it in messages.

    Raises:
        ConfigError: an empty target, a slot outside [0, 63].
    """
    t = _path(target, "bind target")
    f = _flags(in_root=in_root, mkdir=create and not is_file, mkfile=create and is_file)
    return Op(OpKind.MOVE_MOUNT, f, a=_slot(slot), s2=t,
              note=note or f"bind {source or f'slot {slot}'} on {os.fsdecode(t)}")


def umount(target: PathArg, flags: int = MNT_DETACH, *, in_root: bool = False,
           optional: bool = False, note: str = "") -> Op:
    """umount2(2) of ``target`` with ``flags`` (``MNT_DETACH`` by default: the mount goes at
    once, its users keep it until they let go; ``MNT_FORCE``, ``MNT_EXPIRE``,
    ``UMOUNT_NOFOLLOW``). With ``in_root`` the target is resolved inside the root, which holds
    it open while it is unmounted, so only ``MNT_DETACH`` can succeed then.

    Raises:
        ConfigError: an empty target, unknown flags, ``in_root`` without ``MNT_DETACH``.
    """
    _int(flags, "umount flags", 0, 0xF)
    if in_root and not flags & MNT_DETACH:
        raise ConfigError("umount in_root needs MNT_DETACH (the resolved target is held "
                          "open while it is unmounted)")
    t = _path(target, "umount target")
    return Op(OpKind.UMOUNT, _flags(in_root=in_root, optional=optional), a=flags, s2=t,
              note=note or f"unmount {os.fsdecode(t)}")


def mkdir(path: PathArg, *, in_root: bool = True, is_file: bool = False,
          note: str = "") -> Op:
    """Create the directory ``path`` and its missing parents (an empty file at the end with
    ``is_file``); an existing one is fine. With ``in_root`` (the default) it is resolved and
    made inside the root, one component at a time, so a symlink cannot lead it outside.

    Raises:
        ConfigError: an empty path or a NUL byte.
    """
    p = _path(path, "directory")
    return Op(OpKind.MKDIR, _flags(in_root=in_root, mkfile=is_file), s2=p,
              note=note or f"create {'file' if is_file else 'directory'} {os.fsdecode(p)}")


_NODE_TYPES = {"c": _stat.S_IFCHR, "u": _stat.S_IFCHR, "b": _stat.S_IFBLK, "p": _stat.S_IFIFO}


def mknod(path: PathArg, kind: str = "c", major: int = 0, minor: int = 0, *,
          mode: int = 0o666, uid: int | None = None, gid: int | None = None,
          in_root: bool = True, note: str = "") -> Op:
    """Create a device node or FIFO at ``path``: ``kind`` is ``"c"`` (character device;
    ``"u"`` too), ``"b"`` (block device) or ``"p"`` (FIFO), as in the OCI runtime spec's
    ``linux.devices``; ``major``/``minor`` the device number; ``mode`` its permissions, set
    exactly (the umask does not apply); ``uid``/``gid`` its owner (``None``: the child's). With
    ``in_root`` (the default) the parent dirs are made inside the root. Needs
    ``CAP_MKNOD`` for devices (a user namespace does not grant it: bind the host's nodes with
    :func:`open_tree`/:func:`move_mount` there); an existing entry fails the op (EEXIST).

    Raises:
        ConfigError: an unknown kind, a device number or mode out of range, an id outside
            [0, 2**32 - 2].
    """
    if kind not in _NODE_TYPES:
        raise ConfigError(f"mknod kind must be 'c', 'u', 'b' or 'p', not {kind!r}")
    _int(major, "device major", 0, 2**32 - 1)
    _int(minor, "device minor", 0, 2**32 - 1)
    _int(mode, "device mode", 0, 0o7777)
    p = _path(path, "device path")
    owner = ((0xFFFFFFFF if uid is None else _id(uid, "uid")) << 32
             | (0xFFFFFFFF if gid is None else _id(gid, "gid")))
    return Op(OpKind.MKNOD, _flags(in_root=in_root), a=_NODE_TYPES[kind] | mode,
              b=_u64(os.makedev(major, minor)), c=_u64(owner), s2=p,
              note=note or f"create device {os.fsdecode(p)}")


def symlink(content: PathArg, path: PathArg, *, in_root: bool = True, note: str = "") -> Op:
    """Create the symlink ``path`` -> ``content``. With ``in_root`` (the default) its parent
    dirs are made inside the root and an existing entry at ``path`` is left alone; without,
    an existing entry fails the op (EEXIST).

    Raises:
        ConfigError: an empty content or path, or a NUL byte.
    """
    c = _path(content, "symlink content")
    p = _path(path, "symlink path")
    return Op(OpKind.SYMLINK, _flags(in_root=in_root), s1=c, s2=p,
              note=note or f"symlink {os.fsdecode(p)} -> {os.fsdecode(c)}")


def write_file(path: PathArg, content: bytes, *, in_root: bool = False, create: bool = False,
               mode: int = 0o644, note: str = "") -> Op:
    """Write ``content`` (any bytes) to the file at ``path``. With ``in_root`` the file is
    resolved inside the root (no symlink followed at the end) and truncated, and ``create``
    makes a missing one (mode 0644); without, it is opened as it is, not truncated -- the way
    to write ``/proc`` files (``/proc/self/uid_map``, ``/proc/self/timens_offsets``) -- and
    ``create`` makes a missing one with ``mode``.

    Raises:
        ConfigError: an empty path, content not bytes, a mode outside [0, 0o7777].
    """
    if not isinstance(content, (bytes, bytearray, memoryview)):
        raise ConfigError(f"write_file content must be bytes, not {type(content).__name__}")
    _int(mode, "file mode", 0, 0o7777)
    p = _path(path, "file")
    data = bytes(content)
    return Op(OpKind.WRITE_FILE, _flags(in_root=in_root, mkfile=create), a=len(data), b=mode,
              s2=p, s3=data, note=note or f"write {os.fsdecode(p)}")


def mask(path: PathArg, *, empty_dir: PathArg | None = None, note: str = "") -> Op:
    """Hide ``path`` (resolved inside the root): a directory gets an empty read-only tmpfs
    over it (or a bind of ``empty_dir``, an empty read-only directory, which is cheaper when
    many paths are masked), a file ``/dev/null``. A missing path is skipped.

    Raises:
        ConfigError: an empty path or a NUL byte.
    """
    p = _path(path, "mask path")
    return Op(OpKind.MASK, s1=None if empty_dir is None else _path(empty_dir, "empty_dir"),
              s2=p, note=note or f"mask {os.fsdecode(p)}")


def root(path: PathArg, *, note: str = "") -> Op:
    """Open the directory ``path`` as the root that later in-root paths (``in_root=True``,
    :func:`mask`, :func:`pivot_root`, :func:`chroot`) resolve in, like a chroot for lookups
    only. Typically the mount point of the new root filesystem.

    Raises:
        ConfigError: an empty path or a NUL byte.
    """
    p = _path(path, "root directory")
    return Op(OpKind.ROOT, s2=p, note=note or f"open the new root {os.fsdecode(p)}")


def pivot_root(new_root: PathArg = "/", *, note: str = "") -> Op:
    """Make ``new_root`` (resolved inside the root of the last :func:`root` op, so ``"/"``
    means that directory) the root of the mount namespace with ``pivot_root(2)``, detach the
    old root and change to ``/``. ``new_root`` must be a mount point, and the child needs its
    own mount namespace whose ``/`` is not shared.

    Raises:
        ConfigError: an empty path or a NUL byte.
    """
    p = _path(new_root, "new root")
    return Op(OpKind.PIVOT_ROOT, OpFlag.IN_ROOT, s2=p,
              note=note or f"pivot_root into {os.fsdecode(p)}")


def chroot(path: PathArg, *, note: str = "") -> Op:
    """chroot(2) into ``path`` (resolved inside the root) and change to ``/``: for a root
    that is not a mount point, or no mount namespace; :func:`pivot_root` is the safer switch.

    Raises:
        ConfigError: an empty path or a NUL byte.
    """
    p = _path(path, "chroot directory")
    return Op(OpKind.CHROOT, s2=p, note=note or f"chroot {os.fsdecode(p)}")


def chdir(path: PathArg, *, note: str = "") -> Op:
    """Change the working directory to ``path`` (a plain path, after any root switch).

    Raises:
        ConfigError: an empty path or a NUL byte.
    """
    p = _path(path, "working directory")
    return Op(OpKind.CHDIR, s2=p, note=note or f"chdir {os.fsdecode(p)}")


def open_(path: PathArg, flags: int = os.O_RDONLY, *, note: str = "") -> Op:
    """Open ``path`` in the child (close-on-exec) and report the fd; with a ``share_files``
    plan the fd is ours, in :attr:`isolate.lowlevel.Child.opened` by op index.

    Raises:
        ConfigError: an empty path, flags outside 32 bits.
    """
    _int(flags, "open flags", 0, 2**31 - 1)
    p = _path(path, "path")
    return Op(OpKind.OPEN, a=flags, s2=p, note=note or f"open {os.fsdecode(p)}")


def socket_(family: int, type_: int, proto: int = 0, *, note: str = "") -> Op:
    """Make a socket in the child's network namespace and report the fd (with a
    ``share_files`` plan it is ours: a socket of another namespace, without entering it).

    Raises:
        ConfigError: a value outside 32 bits.
    """
    _int(family, "socket family", 0, 2**31 - 1)
    _int(type_, "socket type", 0, 2**31 - 1)
    _int(proto, "socket protocol", 0, 2**31 - 1)
    return Op(OpKind.SOCKET, a=family, b=type_, c=proto,
              note=note or f"create a socket (family {family}, type {type_})")


def overlay(lowers: Sequence[PathArg], target: PathArg | None = None,
            upper: PathArg | None = None, work: PathArg | None = None, *,
            options: Sequence[str] = (), slot: int = -1, in_root: bool = False,
            mkdir: bool = False, note: str = "") -> Op:
    """Mount an overlay of ``lowers`` (lowest first) with an optional ``upper``/``work`` pair.

    With ``target`` the overlay is attached there; without, it is kept detached in ``slot`` for
    a later :func:`move_mount` (the lower dirs are looked up when this op runs, so they may be
    hidden by later mounts). ``options`` are extra overlay parameters, ``"key"`` or
    ``"key=value"`` (e.g. ``"userxattr"``). Each lower dir is passed on its own
    (``lowerdir+``), so the number of layers is not capped by the mount data size.

    Raises:
        ConfigError: no lower dir, only one of upper/work, a path with NUL or ``:`` in a lower
            dir, a bad slot, or neither target nor slot.
    """
    if isinstance(lowers, (str, bytes)) or not lowers:
        raise ConfigError(f"an overlay needs a list of lower directories, not {lowers!r}")
    if (upper is None) != (work is None):
        raise ConfigError(f"overlay upper and work dirs go together, not upper={upper!r} "
                          f"work={work!r}")
    if (target is None) == (slot < 0):
        raise ConfigError("an overlay goes either to a target or into a slot")
    if not -1 <= slot < _SLOTS:
        raise ConfigError(f"overlay slot must be in [0, {_SLOTS - 1}], not {slot!r}")
    raw = []
    for lower in lowers:
        item = fsencode(lower, "overlay lower dir")
        # overlayfs splits lower dir names on ':' (also for lowerdir+ it unescapes them).
        if not item or b":" in item or b"\\" in item:
            raise ConfigError(f"overlay lower dir {lower!r} is empty or contains ':' or '\\'")
        raw.append(item)
    opts = [fsencode(o, "overlay option") for o in options]
    for o in opts:
        if not o or len(o.partition(b"=")[0]) >= 64:
            raise ConfigError(f"overlay option {o!r} is empty or its key is too long")
    updirs = None
    if upper is not None and work is not None:
        updirs = _path(upper, "overlay upper dir") + b"\0" + _path(work, "overlay work dir")
    where = os.fsdecode(target) if target is not None else f"slot {slot}"
    # The child passes them in overlayfs' order, topmost first.
    return Op(OpKind.OVERLAY, _flags(in_root=in_root, mkdir=mkdir), a=len(raw), b=slot,
              c=len(opts), s1=b"\0".join(raw[::-1]),
              s2=None if target is None else _path(target, "overlay target"), s3=updirs,
              s4=b"\0".join(opts) if opts else None,
              note=note or f"mount overlay of {len(raw)} layer(s) on {where}")


# -- builders: credentials, privileges, limits -------------------------------------------------

def rlimit(resource: int | str, soft: int | None, hard: int | None = None, *,
           note: str = "") -> Op:
    """setrlimit(2): ``resource`` is a ``resource.RLIMIT_*`` number or a name (``"nofile"``,
    ``"RLIMIT_NOFILE"``); ``soft`` a limit, or :data:`RLIM_INFINITY` (``None`` too) for none;
    ``hard`` the same, or ``None`` (the default) for the same as ``soft``, as in
    ``docker run --ulimit nofile=1024``. Raising a hard limit needs ``CAP_SYS_RESOURCE``.
    An ``RLIMIT_NOFILE`` before the :func:`fds` op of its exec raises at its place and lowers
    once the fds are arranged, which needs the caller's fd numbers (the exec'd program sees
    the limit asked for, however high the caller's fds are numbered).

    Raises:
        ConfigError: an unknown resource, a negative limit, ``soft`` above ``hard``.
    """
    if isinstance(resource, str):
        name = resource.upper().removeprefix("RLIMIT_")
        if name not in RLIMIT_NAMES:
            raise ConfigError(f"unknown rlimit resource {resource!r}")
        number = RLIMIT_NAMES.index(name)
    else:
        number = _int(resource, "rlimit resource", 0, len(RLIMIT_NAMES) - 1)

    def limit(value: int | None, what: str) -> int:
        if value is None or value in (RLIM_INFINITY, 2**64 - 1):
            return RLIM_INFINITY
        return _int(value, what, 0, 2**63 - 1)

    s = limit(soft, "soft limit")
    h = s if hard is None and soft is not None else limit(hard, "hard limit")
    if h != RLIM_INFINITY and (s == RLIM_INFINITY or s > h):
        raise ConfigError(f"RLIMIT_{RLIMIT_NAMES[number]} soft limit {soft!r} is above the hard "
                          f"limit {hard!r}")
    return Op(OpKind.RLIMIT, a=number, b=s, c=h,
              note=note or f"set RLIMIT_{RLIMIT_NAMES[number]}")


def _id(value: int, what: str) -> int:
    return _int(value, what, 0, _ID_MAX)


def setgroups(gids: Iterable[int], *, note: str = "") -> Op:
    """Set the supplementary groups to ``gids`` (``[]`` drops them all). In a user namespace
    whose ``/proc/PID/setgroups`` says ``deny`` the kernel refuses (EPERM).

    Raises:
        ConfigError: a gid outside [0, 2**32 - 2], more than 65536 gids.
    """
    items = [_id(g, "gid") for g in gids]
    if len(items) > 65536:
        raise ConfigError(f"at most 65536 supplementary groups, not {len(items)}")
    raw = struct.pack(f"={len(items)}I", *items)
    return Op(OpKind.SETGROUPS, a=len(items), s1=raw, note=note or f"setgroups {items}")


def setresgid(gid: int, *, note: str = "") -> Op:
    """Set the real, effective and saved gid to ``gid`` (before :func:`setresuid`, which
    loses the right to). Raises ConfigError for a gid outside [0, 2**32 - 2]."""
    g = _id(gid, "gid")
    return Op(OpKind.SETRESGID, a=g, note=note or f"setresgid {g}")


def setresuid(uid: int, *, note: str = "") -> Op:
    """Set the real, effective and saved uid to ``uid``. Leaving uid 0 clears the
    capabilities unless :func:`keep_caps` came first; :func:`capabilities` then sets them.
    Raises ConfigError for a uid outside [0, 2**32 - 2]."""
    u = _id(uid, "uid")
    return Op(OpKind.SETRESUID, a=u, note=note or f"setresuid {u}")


def keep_caps(keep: bool = True, *, note: str = "") -> Op:
    """``PR_SET_KEEPCAPS``: keep the permitted capabilities across a change away from uid 0
    (put it before :func:`setresuid` when the child keeps some capabilities). Raises
    nothing."""
    return Op(OpKind.KEEPCAPS, a=int(bool(keep)),
              note=note or ("keep" if keep else "do not keep") + " capabilities across setuid")


def bounding_set(keep: CapsArg, *, note: str = "") -> Op:
    """Drop every capability not in ``keep`` (a :class:`~isolate.security.CapabilitySet` or
    a 64-bit mask) from the bounding set, so no exec can gain it back. Needs
    ``CAP_SETPCAP``: put it before the id change and :func:`capabilities`.

    Raises:
        ConfigError: a mask outside 64 bits.
    """
    m = _mask(keep, "bounding set")
    return Op(OpKind.CAPBSET, a=_u64(m), note=note or "drop capabilities from the bounding set")


def capabilities(permitted: CapsArg, *, effective: CapsArg | None = None,
                 inheritable: CapsArg = 0, ambient: CapsArg = 0, note: str = "") -> Op:
    """Set the child's capability sets (capset(2), then the ambient set): each a
    :class:`~isolate.security.CapabilitySet` or a 64-bit mask. ``effective`` defaults to
    ``permitted``; ``ambient`` capabilities are added to ``inheritable`` (the kernel wants
    them in both) and survive the exec of a program without file capabilities, which a
    process that is not root needs to keep any. Put it after the id change (which may clear
    them) and after :func:`bounding_set`, which limits what the exec can keep.

    Raises:
        ConfigError: a mask outside 64 bits, ``effective`` or ``ambient`` not within
            ``permitted``.
    """
    p = _mask(permitted, "permitted capabilities")
    e = p if effective is None else _mask(effective, "effective capabilities")
    i = _mask(inheritable, "inheritable capabilities")
    a = _mask(ambient, "ambient capabilities")
    if e & ~p:
        raise ConfigError(f"effective capabilities {e:#x} are not within permitted {p:#x}")
    if a & ~p:
        raise ConfigError(f"ambient capabilities {a:#x} are not within permitted {p:#x}")
    return Op(OpKind.CAPS, a=_u64(p), b=_u64(i), c=_u64(a),
              s1=None if effective is None else struct.pack("=Q", e),
              note=note or "set capabilities")


def no_new_privs(*, note: str = "") -> Op:
    """``PR_SET_NO_NEW_PRIVS``: no exec from now on can gain privileges (setuid bits, file
    capabilities); lets a process without ``CAP_SYS_ADMIN`` load a seccomp filter. Raises
    nothing."""
    return Op(OpKind.NO_NEW_PRIVS, note=note or "set no_new_privs")


def seccomp(program: bytes, *, note: str = "") -> Op:
    """Load the seccomp BPF ``program`` (``struct sock_filter[]`` bytes, e.g.
    :meth:`isolate.security.SeccompProfile.compile`). Needs :func:`no_new_privs` first unless
    the child has ``CAP_SYS_ADMIN``; put it last before :func:`exec_`, since it filters the
    set-up calls after it too.

    Raises:
        ConfigError: empty, or not a whole number of 8-byte instructions, or over 4096.
    """
    if not isinstance(program, (bytes, bytearray)) or len(program) % 8 or not program:
        raise ConfigError("a seccomp program is a non-empty array of 8-byte instructions")
    if len(program) // 8 > 4096:
        raise ConfigError(f"a seccomp program has at most 4096 instructions, not "
                          f"{len(program) // 8}")
    return Op(OpKind.SECCOMP, a=len(program) // 8, s1=bytes(program),
              note=note or "load seccomp filter")


# -- builders: fds and exec --------------------------------------------------------------------

def fds(mapping: Sequence[tuple[int, int, bool]], *, note: str = "") -> Op:
    """Arrange fds: each ``(source, target, cloexec)`` dups the parent's fd ``source`` onto
    ``target`` (close-on-exec if ``cloexec``); every other fd is closed right away, 0-2
    included unless they are targets. A plan with this op gets no :func:`keep_fds` from
    :func:`isolate.lowlevel.spawn`: the mapping is the whole list of what the child keeps.

    Raises:
        ConfigError: more than 256 entries, a negative fd (but an :class:`Fd` placeholder as a
            source, which the spawner fills in), a target listed twice.
    """
    if len(mapping) > _MAX_FDS:
        raise ConfigError(f"at most {_MAX_FDS} fds can be passed, not {len(mapping)}")
    seen = set()
    raw = []
    for entry in mapping:
        try:
            s, d, c = entry
        except (TypeError, ValueError):
            raise ConfigError(f"an fd mapping is (source, target, cloexec), not {entry!r}"
                              ) from None
        # A placeholder (Fd) is filled in by the spawner: lowlevel.spawn or the shim.
        src = int(s) if isinstance(s, Fd) else _int(s, "source fd", 0, 2**31 - 1)
        dst = _int(d, "target fd", 0, 2**31 - 1)
        if dst in seen:
            raise ConfigError(f"fd {dst} is a target twice")
        seen.add(dst)
        raw.append(struct.pack("=iii", src, dst, int(bool(c))))
    return Op(OpKind.FDS, a=len(raw), s1=b"".join(raw),
              note=note or "arrange file descriptors")


def keep_fds(keep: Iterable[FdArg] = (), *, note: str = "") -> Op:
    """At exec, close every fd but 0, 1, 2 and ``keep`` (those are made inheritable), as
    ``subprocess`` does with ``close_fds=True`` and ``pass_fds``. It marks the others
    close-on-exec, so a failing exec can still report. :func:`isolate.lowlevel.spawn` puts
    one before the exec of any plan without an FDS or KEEP_FDS op (``pass_fds=`` fills it).

    Raises:
        ConfigError: a negative fd, more than 256 fds.
    """
    items = sorted({_fd(fd, "fd to keep") for fd in keep} - {0, 1, 2})
    if len(items) > _MAX_FDS:
        raise ConfigError(f"at most {_MAX_FDS} fds can be kept, not {len(items)}")
    raw = struct.pack(f"={len(items)}i", *items) if items else None
    return Op(OpKind.KEEP_FDS, a=len(items), s1=raw,
              note=note or "close the caller's other file descriptors")


def exec_(file: str | bytes, argv: Sequence[str | bytes], env: Mapping[str, str] | None,
          *, search_path: bool = True, fd: int = -1, note: str = "") -> Op:
    """execve(2) ``file`` with ``argv`` and the environment ``env`` (``None``: ours). With
    ``search_path`` a ``file`` without ``/`` is looked up in ``env``'s PATH (a default PATH
    without one), like ``execvp``; with ``fd`` >= 0 the program open at that fd is run
    (``execveat``, ``file`` only names it). A failed exec is reported as the spawn's error
    (``step="exec"``).

    Raises:
        ConfigError: empty ``argv`` (or a str), a NUL byte anywhere, an environment name
            that is empty or holds ``=``.
    """
    if isinstance(argv, (str, bytes)) or not argv:
        raise ConfigError(f"argv must be a non-empty list of strings, not {argv!r}")
    args = tuple(fsencode(a, "argument") for a in argv)
    if env is None:
        env = os.environ
    envp = []
    for key, value in env.items():
        k = fsencode(key, "environment name")
        if not k or b"=" in k:
            raise ConfigError(f"invalid environment variable name: {key!r}")
        envp.append(k + b"=" + fsencode(value, f"environment value of {key}"))
    flags = OpFlag.NONE
    if fd >= 0:
        flags |= OpFlag.EXEC_FD
    elif search_path:
        flags |= OpFlag.SEARCH_PATH
    prog = _path(file, "program")
    return Op(OpKind.EXEC, flags, c=fd if fd >= 0 else 0, s1=prog, argv=args,
              envp=tuple(envp), note=note or f"exec {os.fsdecode(prog)}")


def console(socket_fd: int = Fd.CONSOLE, *, ptmx: str = "/dev/pts/ptmx", rows: int = 0,
            cols: int = 0) -> Op:
    """Give the child a pseudo-terminal from the devpts whose ``ptmx`` is given (the child's
    own, mounted by the plan before this op, e.g. ``devpts`` on ``/dev/pts`` with
    ``newinstance,ptmxmode=0666``): its peer becomes fds 0, 1, 2 and the controlling terminal
    (a new session unless the child leads one already), with ``rows`` x ``cols`` as its size
    (0: as the kernel makes it), and the master is sent over ``socket_fd`` (SCM_RIGHTS) -- by
    default the socket the container supervisor fills in. Put it before the ``FDS`` op, which
    must then keep 0, 1 and 2.

    Raises:
        ConfigError: a size outside 0..65535.
    """
    if not (0 <= rows <= 0xFFFF and 0 <= cols <= 0xFFFF):
        raise ConfigError(f"a terminal size is 0..65535 rows and columns, not {rows}x{cols}")
    return Op(OpKind.CONSOLE, a=socket_fd, b=rows << 16 | cols, s2=fsencode(ptmx, "ptmx path"),
              note=f"open a terminal of {ptmx}")


def exec_tail(command: Op, fd_map: Sequence[tuple[int, int, bool]],
              seccomp_op: Op | None = None, *, init_fd: int = -1, index: int = 0) -> list[Op]:
    """The last ops of a plan: arrange fds (:func:`fds`), load the seccomp filter, exec
    ``command`` (an ``EXEC`` op of :func:`exec_`).

    With ``init_fd`` (an fd of the isolate-init program, e.g. ``os.open(path, O_PATH)``,
    opened before the root changes) the plan execs the init instead, through that fd, and the
    init runs the command as its child. It gets the status and exit fds (``Fd.STATUS``,
    ``Fd.EXIT``) above the highest target of ``fd_map``; the command's own ``EXEC`` op follows
    the init's, never run by the plan but named by the init's report when the command cannot
    be exec'd, so the error is the one the plan would raise without an init. ``index`` is where
    these ops start in the plan. The init runs under the seccomp filter (as ``docker run
    --init`` does), so a profile must allow what it needs (clone, wait4, kill).

    Raises:
        ConfigError: with ``init_fd``, a command whose program is not its ``argv[0]``.
    """
    if init_fd < 0:
        return [fds(fd_map), *([seccomp_op] if seccomp_op else []), command]
    if command.kind is not OpKind.EXEC or not command.argv or command.s1 != command.argv[0]:
        raise ConfigError("an init runs argv[0]: the command's program must be its argv[0]")
    base = max([2, *(target for _, target, _ in fd_map)]) + 1
    status_fd, exit_fd, program_fd = base, base + 1, base + 2
    ops = [fds([*fd_map, (Fd.STATUS, status_fd, False), (Fd.EXIT, exit_fd, False),
                (init_fd, program_fd, True)])]
    if seccomp_op is not None:
        ops.append(seccomp_op)
    command_index = index + len(ops) + 1
    argv = (b"isolate-init", b"--status-fd", b"%d" % status_fd, b"--exit-fd", b"%d" % exit_fd,
            b"--report-op", b"%d" % command_index, b"--", *command.argv)
    ops.append(Op(OpKind.EXEC, OpFlag.EXEC_FD, c=program_fd, s1=b"isolate-init", argv=argv,
                  envp=command.envp, note="exec isolate-init"))
    ops.append(command)
    return ops
