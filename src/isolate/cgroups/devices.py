"""Device policy: which device nodes a cgroup's processes may open or create.

Owns the rules (Docker's default allow-list plus additions) and their two kernel forms -- the
v1 ``devices`` controller's allow lines (:meth:`DeviceRule.v1`), and a
``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to a v2 cgroup (:func:`attach_program`). The
backends write them for the directories they own; this module never decides which cgroup gets
a policy.

Mount flags (``nodev``) keep device nodes found in a root or a bind unusable; this policy is the
second wall, and the only one that also holds for nodes a process could create or be given.
"""

from __future__ import annotations

import _thread  # (not threading: a container's start loads no threading)
import errno
import os
import stat
import struct
from _collections_abc import Sequence

from isolate import _record
from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    import attrs

from isolate.errors import CgroupError, ConfigError, IsolateOSError, UnsupportedError

__all__ = ["DEFAULT_RULES", "DeviceRule", "attach_program", "compile_program", "forget_programs",
           "kept_program_fds", "rule_for_node"]

_TYPES = {"c": 2, "b": 1, "a": 0}  # BPF_DEVCG_DEV_CHAR, BPF_DEVCG_DEV_BLOCK; "a": either
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE (as v1's ACC_*)


def _check_kind(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _TYPES:
        raise ConfigError(f"device rule {attribute.name}: {value!r} is not 'c', 'b' or 'a'")


def _check_number(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value < 2**31):
        raise ConfigError(f"device rule {attribute.name}: {value!r} is not a device number "
                          "or None (any)")


def _check_access(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if (not isinstance(value, str) or not value or len(set(value)) != len(value)
            or set(value) - set(_ACCESS)):
        raise ConfigError(f"device rule {attribute.name}: {value!r} is not made of 'r', 'w' "
                          "and 'm', each at most once")


@_record.record
class DeviceRule:
    """Allow ``access`` (``r`` read, ``w`` write, ``m`` mknod) to ``kind`` devices (``c``
    character, ``b`` block, ``a`` both) numbered ``major:minor`` (None: any)."""

    kind: str = _record.field(validator=_check_kind)
    major: int | None = _record.field(default=None, validator=_check_number)
    minor: int | None = _record.field(default=None, validator=_check_number)
    access: str = _record.field(default="rwm", validator=_check_access)

    def v1(self) -> str:
        """The rule as the v1 ``devices.allow`` file takes it: ``c 1:3 rwm``."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.kind} {major}:{minor} {self.access}"


#: Docker's default: make any node (``m``; a node made is still unusable), and read and write
#: null, zero, full, random, urandom, tty, console, ptmx and the pty slaves (136:*).
DEFAULT_RULES: tuple[DeviceRule, ...] = (
    DeviceRule("c", None, None, "m"),
    DeviceRule("b", None, None, "m"),
    DeviceRule("c", 1, 3),  # null
    DeviceRule("c", 1, 5),  # zero
    DeviceRule("c", 1, 7),  # full
    DeviceRule("c", 1, 8),  # random
    DeviceRule("c", 1, 9),  # urandom
    DeviceRule("c", 5, 0),  # tty
    DeviceRule("c", 5, 1),  # console
    DeviceRule("c", 5, 2),  # ptmx
    DeviceRule("c", 136, None),  # /dev/pts/*
)


def rule_for_node(path: str, access: str = "rwm") -> DeviceRule:
    """The rule that allows the device node at ``path`` (its type and numbers, read now).

    Raises:
        ConfigError: ``path`` does not exist or is not a character or block device.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"device {path!r}: {exc.strerror}") from None
    if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ConfigError(f"device {path!r} is not a character or block device")
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
    return DeviceRule(kind, os.major(st.st_rdev), os.minor(st.st_rdev), access)


# -- the v2 program ----------------------------------------------------------------------------
# The kernel runs it on every open(2) and mknod(2) of a device node by a task of the cgroup (or
# below) with a struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor;} in r1,
# access_type = (access bits << 16) | device type; 1 in r0 allows, 0 denies (EPERM).

_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W: dst = *(u32 *)(src + off)
_MOV_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_MOV_X = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
_AND_K = 0x57  # BPF_ALU64 | BPF_AND | BPF_K
_RSH_K = 0x77  # BPF_ALU64 | BPF_RSH | BPF_K
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K: if dst != imm goto +off
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K: if dst & imm goto +off
_EXIT = 0x95
_TYPE, _ACC, _MAJOR, _MINOR = 3, 4, 5, 6  # registers holding the context's fields

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def compile_program(rules: Sequence[DeviceRule]) -> bytes:
    """The eBPF program (``struct bpf_insn[]`` as bytes) that allows exactly ``rules``.

    One block per rule, tried in order: each test that fails jumps past the block, and a
    block that passes every test returns 1 (allow); after the last block, 0 (deny).
    """
    out = [
        _insn(_LDX_W, 2, 1, 0),  # r2 = access_type
        _insn(_MOV_X, _TYPE, 2), _insn(_AND_K, _TYPE, imm=0xFFFF),
        _insn(_MOV_X, _ACC, 2), _insn(_RSH_K, _ACC, imm=16),
        _insn(_LDX_W, _MAJOR, 1, 4),
        _insn(_LDX_W, _MINOR, 1, 8),
    ]
    for rule in rules:
        tests: list[tuple[int, int, int]] = []
        if rule.kind != "a":
            tests.append((_JNE_K, _TYPE, _TYPES[rule.kind]))
        if rule.major is not None:
            tests.append((_JNE_K, _MAJOR, rule.major))
        if rule.minor is not None:
            tests.append((_JNE_K, _MINOR, rule.minor))
        denied = 7 & ~sum(_ACCESS[a] for a in rule.access)
        if denied:
            tests.append((_JSET_K, _ACC, denied))  # asks for an access the rule lacks
        size = len(tests) + 2
        for i, (code, reg, imm) in enumerate(tests):
            out.append(_insn(code, reg, off=size - i - 1, imm=imm))
        out += [_insn(_MOV_K, 0, imm=1), _insn(_EXIT)]
    out += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]
    return b"".join(out)


#: Loaded programs this process keeps, by rule set, oldest first: loading one is a verifier
#: run (0.4 ms here, more under load) per start, attaching a kept one is not. A few only, each
#: an fd; in a forked child they are the parent's copies (dropped, below).
_KEEP = 4
_kept: dict[tuple[DeviceRule, ...], tuple[int, int]] = {}  # rules -> (fd, prog_id)
_kept_pid = os.getpid()
_kept_lock = _thread.RLock()  # held from the lookup to the attach: no eviction between


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork; the kept fds are dropped on next use.
    global _kept_lock
    _kept_lock = _thread.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _prog_id(fd: int) -> int | None:
    """The id of the BPF program open at ``fd``, None if ``fd`` holds no program (closed by
    someone else, or the number reused)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
            info = f.read()
    except OSError:
        return None
    for line in info.splitlines():
        if line.startswith(b"prog_id:"):
            return int(line.split()[1])
    return None


def _program(rules: Sequence[DeviceRule]) -> int:
    """An fd of the loaded program for ``rules``, kept for the next caller with the same
    rules. Raises IsolateOSError (from the load)."""
    global _kept_pid
    from isolate import _sys  # the native core: only where a program is attached

    key = tuple(rules)
    with _kept_lock:
        if _kept_pid != os.getpid():  # a forked child: the fds are copies of the parent's
            _forget_locked()
            _kept_pid = os.getpid()
        held = _kept.pop(key, None)
        if held is not None and _prog_id(held[0]) != held[1]:
            held = None  # its fd was closed behind our back: never close that number
        if held is None:
            fd = _sys.bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, compile_program(key))
            prog_id = _prog_id(fd)
            held = (fd, -1 if prog_id is None else prog_id)
        _kept[key] = held  # the newest last
        while len(_kept) > _KEEP:
            old = next(iter(_kept))
            os.close(_kept.pop(old)[0])
        return held[0]


def _forget_locked() -> None:
    for fd, prog_id in _kept.values():
        if _prog_id(fd) == prog_id:
            os.close(fd)
    _kept.clear()


def forget_programs() -> None:
    """Close the device programs this process keeps loaded (cgroups they are attached to
    keep theirs); the next :func:`attach_program` loads anew. Raises nothing."""
    with _kept_lock:
        if _kept_pid == os.getpid():
            _forget_locked()
        else:
            _kept.clear()


def kept_program_fds() -> frozenset[int]:
    """The fds of the device programs this process keeps loaded for the next
    :func:`attach_program` (at most a few; :func:`forget_programs` closes them).
    Raises nothing."""
    with _kept_lock:
        return frozenset(fd for fd, _ in _kept.values()) if _kept_pid == os.getpid() \
            else frozenset()


def attach_program(directory: str, rules: Sequence[DeviceRule]) -> None:
    """Attach the program for ``rules`` to the v2 cgroup ``directory``.

    It is attached with ``BPF_F_ALLOW_MULTI``: the kernel runs it and any an ancestor has,
    and a device must pass all of them. The cgroup holds the program; it goes with the cgroup.
    The loaded program is kept (an fd of this process, :func:`kept_program_fds`) for the
    next cgroup with the same rules: one program serves any number of cgroups.

    Raises:
        UnsupportedError: the kernel refuses to load it (EPERM: not root, ENOSYS: no BPF).
        CgroupError: the directory cannot be opened, or the attach fails otherwise.
    """
    from isolate import _sys  # the native core: only where a program is attached

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupError(exc.errno or errno.EIO, f"cannot open cgroup {directory}",
                          directory, step="devices") from exc
    try:
        with _kept_lock:
            try:
                prog = _program(rules)
            except IsolateOSError as exc:
                if exc.errno in (errno.EPERM, errno.ENOSYS):
                    raise UnsupportedError(f"cannot load a device program for cgroup "
                                           f"{directory}: {exc}",
                                           missing="cgroup device programs") from exc
                raise
            try:
                _sys.bpf_prog_attach(fd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
            except IsolateOSError as exc:
                raise CgroupError(exc.errno or errno.EIO, f"cannot attach the device program "
                                  f"to cgroup {directory}", directory, step="devices") from exc
    finally:
        os.close(fd)
