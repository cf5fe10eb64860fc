"""The spawn plan: an ordered list of set-up operations, compiled into one flat buffer.

Owns the Python side of the protocol with the C child (``_native/isolate.h``): the operation
numbers, the buffer layout, and a decoder used by tests. It validates nothing about what the
operations mean -- callers (sandbox, containers) choose the operations and their order -- but it
refuses what cannot be encoded (NUL bytes, too many fds). It makes no system calls.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterable, Mapping, Sequence

import attrs

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
    "Mode",
    "Op",
    "OpFlag",
    "OpKind",
    "Plan",
    "Report",
    "Step",
    "decode",
]

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PLAN_MAGIC = 1230197553
PLAN_VERSION = 2
PLAN_RESET_SIGNALS = 1
PLAN_SHARE_FILES = 2


class Mode(enum.IntEnum):
    """How the child is cloned (``ISO_MODE_*``)."""

    VFORK = 1  #: shares the parent's memory until exec; no parent steps possible
    FORK = 2  #: copy-on-write child; may wait for parent steps


class OpKind(enum.IntEnum):
    """Set-up operation kinds (``ISO_OP_*`` in isolate.h; a test checks they agree)."""

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
    REROOT = 39


class Step(enum.IntEnum):
    """Steps outside the operation list (``ISO_STEP_*``)."""

    CLONE = 100
    SIGNALS = 101
    PLAN = 102


class Report(enum.IntEnum):
    """Kinds of record the child writes on the status fd (``ISO_REPORT_*``)."""

    ERROR = 1
    PID = 2
    FD = 3
    EXIT = 4  #: from an INIT, on the exit fd: the command's wait status


class OpFlag(enum.IntFlag):
    """Per-operation flags (``ISO_F_*``)."""

    NONE = 0
    IN_ROOT = 1
    MKDIR = 2
    MKFILE = 4
    OPTIONAL = 8
    RECURSIVE = 16
    SEARCH_PATH = 32
    EXEC_FD = 64


_HEADER = struct.Struct("=IIQIIiiiIIIiI")
_OP = struct.Struct("=IIqqqIIII")
REPORT = struct.Struct("=iiiiq")
assert _HEADER.size == 56 and _OP.size == 48 and REPORT.size == 24

Blob = bytes | None


@attrs.frozen
class Op:
    """One set-up operation. Strings are ``bytes``; ``note`` is what error messages call it."""

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

    def describe(self) -> str:
        """A short human description: ``mount proc on /proc``."""
        if self.note:
            return self.note
        return self.kind.name.lower().replace("_", " ")


def _check_blob(value: bytes, what: str) -> bytes:
    if b"\0" in value:
        raise ConfigError(f"{what} contains a NUL byte: {value!r}")
    return value


def fsencode(value: str | bytes | os.PathLike[str], what: str) -> bytes:
    """Encode a path or string for the child, refusing NUL bytes."""
    raw = os.fsencode(value)
    return _check_blob(raw, what)


class Plan:
    """An ordered list of set-up operations plus the clone parameters.

    Build it with the verb methods, in the order the child must run them; ``encode()`` makes
    the buffer ``isolate._sys.spawn`` takes.
    """

    def __init__(self, clone_flags: int = 0, mode: Mode = Mode.VFORK,
                 reset_signals: bool = True, share_files: bool = False) -> None:
        self.clone_flags = clone_flags
        self.mode = mode
        self.reset_signals = reset_signals
        # The child shares our fd table (VFORK mode only): what its OPEN ops open is ours.
        self.share_files = share_files
        self.ops: list[Op] = []
        self.cgroup_fd = -1
        self._frozen: tuple[int, bytes, list[bytes]] | None = None
        self._frozen_kinds: frozenset[OpKind] = frozenset()

    # -- generic ------------------------------------------------------------------------------
    def add(self, op: Op) -> Plan:
        self.ops.append(op)
        return self

    def extend(self, ops: Iterable[Op]) -> Plan:
        self.ops.extend(ops)
        return self

    @property
    def needs_sync(self) -> bool:
        """Whether the child waits for a parent step (a ``WAIT_PARENT`` op)."""
        return self._has(OpKind.WAIT_PARENT)

    @property
    def has_init(self) -> bool:
        """Whether an ``INIT`` op stays behind as the command's init (and reports its end)."""
        return self._has(OpKind.INIT)

    def _has(self, kind: OpKind) -> bool:
        # A frozen prefix was scanned once; only the ops after it are looked at.
        start = 0
        if self._frozen is not None and self._frozen[0] <= len(self.ops):
            start = self._frozen[0]
            if kind in self._frozen_kinds:
                return True
        return any(op.kind is kind for op in self.ops[start:])

    # -- encoding -----------------------------------------------------------------------------
    def freeze(self) -> Plan:
        """Pre-encode the operations so far; plans made by :meth:`extended` reuse that work.

        A sandbox runs many processes whose plans share a long prefix (mounts, credentials,
        the seccomp program); encoding it once keeps the per-process cost small.
        """
        blob = bytearray()
        records = _encode_ops(self.ops, blob)
        self._frozen = (len(self.ops), bytes(blob), records)
        self._frozen_kinds = frozenset(op.kind for op in self.ops)
        return self

    def extended(self, ops: Iterable[Op]) -> Plan:
        """A new plan: this one's (frozen) operations followed by ``ops``."""
        p = Plan(self.clone_flags, self.mode, self.reset_signals, self.share_files)
        p.cgroup_fd = self.cgroup_fd
        p.ops = list(self.ops)
        p.ops.extend(ops)
        p._frozen = self._frozen
        p._frozen_kinds = self._frozen_kinds
        return p

    def encode(self, status_fd: int, sync_fd: int = -1, exit_fd: int = -1) -> bytearray:
        """Lay the plan out as ``[header][strings][ops]``; references are byte offsets.

        ``exit_fd`` is where an ``INIT`` op reports the command's wait status when it ends.

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
        return buf


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
        if op.kind in (OpKind.SECCOMP, OpKind.FDS, OpKind.SETGROUPS):
            s1 = put(op.s1, 8, False)
        else:
            s1 = put(op.s1)
        s3 = put(op.s3, 1, op.kind is not OpKind.WRITE_FILE)
        records.append(_OP.pack(op.kind, op.flags, a, b, op.c, s1, put(op.s2), s3, put(op.s4)))
    return records


def decode(buf: bytes | bytearray) -> tuple[dict[str, int], list[Op]]:
    """Read a buffer made by :meth:`Plan.encode` back into its header fields and ops.

    Used by tests to check the encoder, and handy when debugging a plan.
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
        if k is OpKind.SECCOMP:
            s1b = bytes(buf[s1:s1 + 8 * a])
        elif k is OpKind.FDS:
            s1b = bytes(buf[s1:s1 + 12 * a])
        elif k is OpKind.SETGROUPS:
            s1b = bytes(buf[s1:s1 + 4 * a])
        elif k is OpKind.OVERLAY:
            s1b = strings(s1, a)
        else:
            s1b = cstr(s1)
        s4b = strings(s4, c) if k is OpKind.OVERLAY else cstr(s4)
        ops.append(Op(k, OpFlag(flags), a, b, c, s1b, cstr(s2), s3b, s4b, argv, envp))
    return header, ops


# -- builders for common operations ------------------------------------------------------------
# Small functions returning Op records, so callers write plans as lists.

def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0,
          data: str | None = None, *, in_root: bool = False, mkdir: bool = False,
          optional: bool = False, note: str = "") -> Op:
    f = OpFlag.NONE
    if in_root:
        f |= OpFlag.IN_ROOT
    if mkdir:
        f |= OpFlag.MKDIR
    if optional:
        f |= OpFlag.OPTIONAL
    if not note:
        note = f"mount {fstype or 'bind'} on {target}"
        if data:
            note += f" ({data})"
    return Op(OpKind.MOUNT, f, a=flags,
              s1=None if source is None else fsencode(source, "mount source"),
              s2=fsencode(target, "mount target"),
              s3=None if fstype is None else fsencode(fstype, "filesystem type"),
              s4=None if data is None else fsencode(data, "mount options"), note=note)


def setattr_(target: str, attr_set: int = 0, attr_clr: int = 0, propagation: int = 0, *,
             in_root: bool = False, recursive: bool = False, optional: bool = False,
             what: str = "") -> Op:
    f = OpFlag.NONE
    if in_root:
        f |= OpFlag.IN_ROOT
    if recursive:
        f |= OpFlag.RECURSIVE
    if optional:
        f |= OpFlag.OPTIONAL
    return Op(OpKind.MOUNT_SETATTR, f, a=attr_set, b=attr_clr, c=propagation,
              s2=fsencode(target, "mount target"), note=what or f"change mount {target}")


def open_tree(source: str, slot: int, *, recursive: bool = True, optional: bool = False) -> Op:
    f = OpFlag.RECURSIVE if recursive else OpFlag.NONE
    if optional:
        f |= OpFlag.OPTIONAL
    return Op(OpKind.OPEN_TREE, f, a=slot, s1=fsencode(source, "bind source"),
              note=f"open bind source {source}")


def move_mount(slot: int, target: str, *, in_root: bool = True, is_file: bool = False,
               create: bool = True, source: str = "") -> Op:
    f = OpFlag.IN_ROOT if in_root else OpFlag.NONE
    if create:
        f |= OpFlag.MKFILE if is_file else OpFlag.MKDIR
    return Op(OpKind.MOVE_MOUNT, f, a=slot, s2=fsencode(target, "bind target"),
              note=f"bind {source or f'slot {slot}'} on {target}")


def mkdir(path: str, *, in_root: bool = True, is_file: bool = False) -> Op:
    f = OpFlag.IN_ROOT if in_root else OpFlag.NONE
    if is_file:
        f |= OpFlag.MKFILE
    return Op(OpKind.MKDIR, f, s2=fsencode(path, "directory"),
              note=f"create {'file' if is_file else 'directory'} {path}")


def symlink(content: str, path: str, *, in_root: bool = True) -> Op:
    return Op(OpKind.SYMLINK, OpFlag.IN_ROOT if in_root else OpFlag.NONE,
              s1=fsencode(content, "symlink content"), s2=fsencode(path, "symlink path"),
              note=f"symlink {path} -> {content}")


def write_file(path: str, content: bytes, *, in_root: bool = False, create: bool = False,
               mode: int = 0o644) -> Op:
    f = OpFlag.IN_ROOT if in_root else OpFlag.NONE
    if create:
        f |= OpFlag.MKFILE
    return Op(OpKind.WRITE_FILE, f, a=len(content), b=mode, s2=fsencode(path, "file"),
              s3=bytes(content), note=f"write {path}")


def exec_(file: str | bytes, argv: Sequence[str | bytes], env: Mapping[str, str] | None,
          *, search_path: bool = True, fd: int = -1) -> Op:
    if not argv:
        raise ConfigError("argv must not be empty")
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
    prog = fsencode(file, "program")
    return Op(OpKind.EXEC, flags, c=fd, s1=prog, argv=args, envp=tuple(envp),
              note=f"exec {os.fsdecode(prog)}")


def init() -> Op:
    """Stay behind as a tiny init (pid 1, when the child is its pid namespace's first process)
    while the rest of the plan runs in a child of it: reap every zombie, forward every signal
    to that child, exit with its status (128 + N for signal N) and report its wait status on
    the spawn's exit fd. Needs a process of its own: ``Mode.FORK``, or in ``Mode.VFORK`` a
    ``FORK_INTO_PIDNS`` op before it (otherwise the spawn fails with EINVAL)."""
    return Op(OpKind.INIT, note="start the init (pid 1) and fork the command")


def reroot() -> Op:
    """Make the calling process's root the root of its (new, private) mount namespace, and
    every mount in it a slave (nothing mounted later propagates out).

    A process chrooted into a mount point that is not its namespace's root has, in a copy of
    that namespace, everything above its root still there, and ``setns(2)`` into the copy
    lands on that, not on the root: this pivots the root to the top and detaches the rest.
    Where the root is the namespace's already, it only makes the mounts slaves. A root that
    is not a mount point at all (a chroot into a plain directory) fails with EINVAL before
    anything changes: what lies above it cannot be told apart from what belongs to it.
    """
    return Op(OpKind.REROOT, note="make the caller's root the root of the mount namespace")


def fds(mapping: Sequence[tuple[int, int, bool]]) -> Op:
    """Arrange fds: each ``(source, target, cloexec)``; every other fd is closed."""
    if len(mapping) > 256:
        raise ConfigError(f"at most 256 fds can be passed, not {len(mapping)}")
    raw = b"".join(struct.pack("=iii", s, d, int(c)) for s, d, c in mapping)
    return Op(OpKind.FDS, a=len(mapping), s1=raw, note="arrange file descriptors")


def seccomp(program: bytes) -> Op:
    if len(program) % 8 or not program:
        raise ConfigError("a seccomp program is a non-empty array of 8-byte instructions")
    return Op(OpKind.SECCOMP, a=len(program) // 8, s1=program, note="load seccomp filter")


def open_(path: str, flags: int = os.O_RDONLY, *, note: str = "") -> Op:
    """Open ``path`` in the child and report the fd (useful with a shared fd table)."""
    return Op(OpKind.OPEN, a=flags, s2=fsencode(path, "path"), note=note or f"open {path}")


def setgroups(gids: Sequence[int]) -> Op:
    raw = struct.pack(f"={len(gids)}I", *gids)
    return Op(OpKind.SETGROUPS, a=len(gids), s1=raw if gids else b"\0\0\0\0",
              note=f"setgroups {list(gids)}")


def overlay(lowers: Sequence[str], target: str | None = None, upper: str | None = None,
            work: str | None = None, *, options: Sequence[str] = (), slot: int = -1,
            in_root: bool = False, mkdir: bool = False, note: str = "") -> Op:
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
    if not lowers:
        raise ConfigError("an overlay needs at least one lower directory")
    if (upper is None) != (work is None):
        raise ConfigError(f"overlay upper and work dirs go together, not upper={upper!r} "
                          f"work={work!r}")
    if (target is None) == (slot < 0):
        raise ConfigError("an overlay goes either to a target or into a slot")
    if not -1 <= slot < 64:
        raise ConfigError(f"overlay slot must be in [0, 63], not {slot!r}")
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
    f = OpFlag.NONE
    if in_root:
        f |= OpFlag.IN_ROOT
    if mkdir:
        f |= OpFlag.MKDIR
    updirs = None
    if upper is not None and work is not None:
        updirs = fsencode(upper, "overlay upper dir") + b"\0" + fsencode(work, "overlay work dir")
    where = target if target is not None else f"slot {slot}"
    # The child passes them in overlayfs' order, topmost first.
    return Op(OpKind.OVERLAY, f, a=len(raw), b=slot, c=len(opts), s1=b"\0".join(raw[::-1]),
              s2=None if target is None else fsencode(target, "overlay target"), s3=updirs,
              s4=b"\0".join(opts) if opts else None,
              note=note or f"mount overlay of {len(raw)} layer(s) on {where}")
