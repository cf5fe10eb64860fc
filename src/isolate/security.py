"""Capability sets and seccomp profiles, turned into the masks and BPF bytes a child applies.

Owns: the Linux capability vocabulary, seccomp profiles (ours and Docker/OCI JSON), a compiler
from a profile to a classic-BPF program, an interpreter of such programs for tests, and a reader
of a process's capabilities. Builds everything in the parent; it must never apply anything to
the calling process (the spawner's C child does that) and does no I/O at import time.
"""

from __future__ import annotations

import errno as _errno
import os
import struct

# collections.abc's classes, from the module the interpreter has loaded at start: importing
# collections.abc loads the collections package too (~2 ms of a run's start).
from _collections_abc import Iterable, Iterator, Mapping, Sequence

from isolate import _memo, _record, _syscalls
from isolate._enum import Enum, IntEnum
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError, IsolateOSError, UnsupportedError

if TYPE_CHECKING:
    from typing import Any, Final

    import attrs

__all__ = [
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_READONLY_PATHS",
    "MAX_PROGRAM_INSTRUCTIONS",
    "SUPPORTED_ARCHES",
    "ArgCondition",
    "ArgOp",
    "Capability",
    "CapabilitySet",
    "ProcessCaps",
    "SeccompAction",
    "SeccompProfile",
    "SeccompRule",
    "audit_arch",
    "cache_programs",
    "host_arch",
    "read_process_caps",
    "simulate",
    "syscall_number",
]

# --------------------------------------------------------------------------------------------
# Paths Docker (moby's oci defaults, the same as containerd's and the OCI runtime-spec's
# examples) hides or makes read-only inside /proc and /sys. Masked: a file gets /dev/null bound
# over it, a directory an empty read-only tmpfs. /proc/interrupts joined the list in Docker 28.
DEFAULT_MASKED_PATHS: Final[tuple[str, ...]] = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)
DEFAULT_READONLY_PATHS: Final[tuple[str, ...]] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


# ============================================================================================
# Capabilities
# ============================================================================================


class Capability(IntEnum):
    """A Linux capability; the value is its bit number (``linux/capability.h``)."""

    CAP_CHOWN = 0
    CAP_DAC_OVERRIDE = 1
    CAP_DAC_READ_SEARCH = 2
    CAP_FOWNER = 3
    CAP_FSETID = 4
    CAP_KILL = 5
    CAP_SETGID = 6
    CAP_SETUID = 7
    CAP_SETPCAP = 8
    CAP_LINUX_IMMUTABLE = 9
    CAP_NET_BIND_SERVICE = 10
    CAP_NET_BROADCAST = 11
    CAP_NET_ADMIN = 12
    CAP_NET_RAW = 13
    CAP_IPC_LOCK = 14
    CAP_IPC_OWNER = 15
    CAP_SYS_MODULE = 16
    CAP_SYS_RAWIO = 17
    CAP_SYS_CHROOT = 18
    CAP_SYS_PTRACE = 19
    CAP_SYS_PACCT = 20
    CAP_SYS_ADMIN = 21
    CAP_SYS_BOOT = 22
    CAP_SYS_NICE = 23
    CAP_SYS_RESOURCE = 24
    CAP_SYS_TIME = 25
    CAP_SYS_TTY_CONFIG = 26
    CAP_MKNOD = 27
    CAP_LEASE = 28
    CAP_AUDIT_WRITE = 29
    CAP_AUDIT_CONTROL = 30
    CAP_SETFCAP = 31
    CAP_MAC_OVERRIDE = 32
    CAP_MAC_ADMIN = 33
    CAP_SYSLOG = 34
    CAP_WAKE_ALARM = 35
    CAP_BLOCK_SUSPEND = 36
    CAP_AUDIT_READ = 37
    CAP_PERFMON = 38
    CAP_BPF = 39
    CAP_CHECKPOINT_RESTORE = 40

    @classmethod
    def parse(cls, name: str | int | Capability) -> Capability:
        """Return the capability named ``name``: ``"CAP_NET_ADMIN"``, ``"net_admin"``, a number.

        Raises:
            ConfigError: the name or number is not a capability this library knows.
        """
        if isinstance(name, Capability):
            return name
        if isinstance(name, int) and not isinstance(name, bool):
            try:
                return cls(name)
            except ValueError:
                raise ConfigError(f"capability number {name} is unknown (0..{_LAST_CAP})") from None
        if not isinstance(name, str):
            raise ConfigError(f"capability must be a name or number, got {name!r}")
        key = name.strip().upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        try:
            return cls[key]
        except KeyError:
            raise ConfigError(f"unknown capability {name!r}") from None


_LAST_CAP: Final = max(Capability)
_CAP_STATUS_FIELDS: Final = {
    "CapInh": "inheritable",
    "CapPrm": "permitted",
    "CapEff": "effective",
    "CapBnd": "bounding",
    "CapAmb": "ambient",
}


def _to_caps(value: Iterable[Capability | str | int]) -> frozenset[Capability]:
    if isinstance(value, (str, bytes)):
        # A bare string is one name, not an iterable of letters.
        value = [value.decode() if isinstance(value, bytes) else value]
    try:
        items = list(value)
    except TypeError:
        raise ConfigError(f"caps must be an iterable of capabilities, got {value!r}") from None
    return frozenset(Capability.parse(item) for item in items)


@_record.record
class CapabilitySet:
    """An immutable set of capabilities; ``mask`` is the 64-bit word ``capset`` wants.

    Build one with ``CapabilitySet(["CAP_CHOWN", "kill"])`` or the constructors below; combine
    with ``|``, ``&`` and ``-``.
    """

    caps: frozenset[Capability] = _record.field(default=frozenset(), converter=_to_caps)

    @classmethod
    def none(cls) -> CapabilitySet:
        """The empty set."""
        return cls()

    @classmethod
    def all(cls, last_cap: int | None = None) -> CapabilitySet:
        """Every capability the running kernel knows (``/proc/sys/kernel/cap_last_cap``).

        ``last_cap`` overrides the kernel's answer. When the file cannot be read, every
        capability this library knows is returned. Raises nothing.
        """
        if last_cap is None:
            last_cap = _kernel_last_cap()
        top = min(last_cap, int(_LAST_CAP))
        return cls(c for c in Capability if c <= top)

    @classmethod
    def docker_default(cls) -> CapabilitySet:
        """The 14 capabilities Docker gives a container by default."""
        return cls(_DOCKER_DEFAULT_CAPS)

    @classmethod
    def from_names(cls, names: Iterable[str | int | Capability]) -> CapabilitySet:
        """Parse names case-insensitively, with or without ``CAP_``.

        Raises:
            ConfigError: a name is not a capability.
        """
        return cls(names)

    @classmethod
    def from_mask(cls, mask: int, *, strict: bool = True) -> CapabilitySet:
        """The set whose bits are set in ``mask``.

        Raises:
            ConfigError: ``mask`` is negative or wider than 64 bits, or (``strict``) has a bit
                no known capability uses.
        """
        if not 0 <= mask < 1 << 64:
            raise ConfigError(f"capability mask {mask:#x} is not a 64-bit unsigned value")
        unknown = mask & ~_KNOWN_MASK
        if strict and unknown:
            raise ConfigError(f"capability mask {mask:#x} has unknown bits {unknown:#x}")
        return cls(c for c in Capability if mask >> c & 1)

    @property
    def mask(self) -> int:
        """The set as a 64-bit integer, bit N for capability N."""
        result = 0
        for cap in self.caps:
            result |= 1 << cap
        return result

    @property
    def words(self) -> tuple[int, int]:
        """``mask`` as the (low, high) 32-bit words of ``struct __user_cap_data_struct[2]``."""
        mask = self.mask
        return mask & 0xFFFF_FFFF, mask >> 32

    def names(self) -> list[str]:
        """The members' names in bit order (``["CAP_CHOWN", ...]``)."""
        return [c.name for c in sorted(self.caps)]

    def __contains__(self, item: object) -> bool:
        if isinstance(item, (str, int)):
            try:
                item = Capability.parse(item)
            except ConfigError:
                return False
        return item in self.caps

    def __iter__(self) -> Iterator[Capability]:
        return iter(sorted(self.caps))

    def __len__(self) -> int:
        return len(self.caps)

    def __or__(self, other: CapabilitySet) -> CapabilitySet:
        return CapabilitySet(self.caps | other.caps)

    def __and__(self, other: CapabilitySet) -> CapabilitySet:
        return CapabilitySet(self.caps & other.caps)

    def __sub__(self, other: CapabilitySet) -> CapabilitySet:
        return CapabilitySet(self.caps - other.caps)


_KNOWN_MASK: Final = (1 << (int(_LAST_CAP) + 1)) - 1
_DOCKER_DEFAULT_CAPS: Final = (
    Capability.CAP_CHOWN,
    Capability.CAP_DAC_OVERRIDE,
    Capability.CAP_FSETID,
    Capability.CAP_FOWNER,
    Capability.CAP_MKNOD,
    Capability.CAP_NET_RAW,
    Capability.CAP_SETGID,
    Capability.CAP_SETUID,
    Capability.CAP_SETFCAP,
    Capability.CAP_SETPCAP,
    Capability.CAP_NET_BIND_SERVICE,
    Capability.CAP_SYS_CHROOT,
    Capability.CAP_KILL,
    Capability.CAP_AUDIT_WRITE,
)


def _kernel_last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        # No /proc (or a strange one): assume the kernel knows what we know.
        return int(_LAST_CAP)


@_record.record
class ProcessCaps:
    """The five capability sets of a process as ``/proc/PID/status`` shows them.

    ``unknown`` holds bits (from any set) that no :class:`Capability` names — a kernel newer
    than this library — so that "holds nothing" stays provable: see :attr:`is_empty`.
    """

    effective: CapabilitySet
    permitted: CapabilitySet
    bounding: CapabilitySet
    inheritable: CapabilitySet
    ambient: CapabilitySet
    unknown: int = 0

    @property
    def is_empty(self) -> bool:
        """True when the process holds no capability in any of the five sets."""
        return self.unknown == 0 and not any(
            (self.effective, self.permitted, self.bounding, self.inheritable, self.ambient)
        )


def read_process_caps(pid: int | str = "self") -> ProcessCaps:
    """Read the capability sets of process ``pid`` (or ``"self"``) from ``/proc/PID/status``.

    A kernel that predates ambient capabilities (no ``CapAmb`` line) reports an empty ambient
    set.

    Raises:
        ConfigError: ``pid`` is not a positive integer or ``"self"``.
        IsolateOSError: the status file cannot be read (``ESRCH`` when the process is gone).
        UnsupportedError: the status file lacks the capability lines.
    """
    if pid != "self" and not (isinstance(pid, int) and not isinstance(pid, bool) and pid > 0):
        raise ConfigError(f"pid must be a positive integer or 'self', got {pid!r}")
    path = f"/proc/{pid}/status"
    pid_or_none = pid if isinstance(pid, int) else None
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise IsolateOSError(
            _errno.ESRCH, f"reading capabilities of process {pid}: no such process", path,
            step="read capabilities", pid=pid_or_none,
        ) from None
    except OSError as e:
        raise IsolateOSError(
            e.errno or _errno.EIO, f"reading capabilities of process {pid}", path,
            step="read capabilities", pid=pid_or_none,
        ) from e
    masks: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in _CAP_STATUS_FIELDS:
            masks[_CAP_STATUS_FIELDS[key]] = int(value.strip(), 16)
    masks.setdefault("ambient", 0)
    missing = set(_CAP_STATUS_FIELDS.values()) - set(masks)
    if missing:
        raise UnsupportedError(
            f"{path} lacks capability lines for {sorted(missing)}",
            missing=", ".join(sorted(missing)),
        )
    unknown = 0
    for mask in masks.values():
        unknown |= mask & ~_KNOWN_MASK
    return ProcessCaps(
        **{k: CapabilitySet.from_mask(v & _KNOWN_MASK) for k, v in masks.items()},
        unknown=unknown,
    )


# ============================================================================================
# Seccomp: profile model
# ============================================================================================

# AUDIT_ARCH_* values (linux/audit.h): the ELF machine | 64-bit | little-endian flags.
_AUDIT_ARCH: Final[Mapping[str, int]] = {"x86_64": 0xC000_003E, "aarch64": 0xC000_00B7}
_TABLES: Final[Mapping[str, Mapping[str, int]]] = {
    "x86_64": _syscalls.X86_64,
    "aarch64": _syscalls.AARCH64,
}
_ARCH_ALIASES: Final[Mapping[str, str]] = {
    "x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
}
SUPPORTED_ARCHES: Final[tuple[str, ...]] = ("x86_64", "aarch64")
_ALL_SYSCALL_NAMES: Final = frozenset(_syscalls.X86_64) | frozenset(_syscalls.AARCH64)
# On x86_64, numbers with this bit select the x32 ABI under the same AUDIT_ARCH; a filter that
# ignored it would let x32 calls of denied syscalls through.
_X32_SYSCALL_BIT: Final = 0x4000_0000
MAX_PROGRAM_INSTRUCTIONS: Final = 4096  # BPF_MAXINSNS
_U64: Final = (1 << 64) - 1


def _arch_name(arch: str | None) -> str:
    if arch is None:
        return host_arch()
    name = _ARCH_ALIASES.get(str(arch).lower())
    if name is None:
        raise ConfigError(f"architecture {arch!r} is not supported (supported: x86_64, aarch64)")
    return name


def host_arch() -> str:
    """The running machine's architecture as a seccomp arch name (``"x86_64"``, ``"aarch64"``).

    Raises:
        UnsupportedError: the machine is neither x86_64 nor aarch64.
    """
    machine = os.uname().machine
    name = _ARCH_ALIASES.get(machine.lower())
    if name is None:
        raise UnsupportedError(
            f"seccomp programs can only be built for x86_64 and aarch64, not {machine}",
            missing=f"seccomp syscall table for {machine}",
        )
    return name


def audit_arch(arch: str | None = None) -> int:
    """The ``AUDIT_ARCH_*`` value the kernel puts in ``seccomp_data.arch`` for ``arch``.

    Raises:
        ConfigError: the architecture is not supported.
        UnsupportedError: ``arch`` is None and the host is not supported.
    """
    return _AUDIT_ARCH[_arch_name(arch)]


def syscall_number(name: str, arch: str | None = None) -> int | None:
    """The number of syscall ``name`` on ``arch`` (host by default), or None if it has none.

    Raises:
        ConfigError: the architecture is not supported.
    """
    return _TABLES[_arch_name(arch)].get(name)


class SeccompAction(IntEnum):
    """What the kernel does when a filter returns this; the values are ``SECCOMP_RET_*``."""

    KILL_PROCESS = 0x8000_0000
    KILL_THREAD = 0x0000_0000
    TRAP = 0x0003_0000
    ERRNO = 0x0005_0000
    USER_NOTIF = 0x7FC0_0000
    TRACE = 0x7FF0_0000
    LOG = 0x7FFC_0000
    ALLOW = 0x7FFF_0000

    @classmethod
    def parse(cls, value: str | int | SeccompAction) -> SeccompAction:
        """Accept a member, its name (any case, ``kill``/``kill_process``...) or its value.

        Raises:
            ConfigError: not an action.
        """
        if isinstance(value, SeccompAction):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise ConfigError(f"unknown seccomp action value {value:#x}") from None
        if isinstance(value, str):
            key = value.strip().upper().removeprefix("SCMP_ACT_")
            key = {"KILL": "KILL_THREAD", "NOTIFY": "USER_NOTIF"}.get(key, key)
            if key in cls.__members__:
                return cls[key]
        raise ConfigError(f"unknown seccomp action {value!r}")


# Actions a profile may use: USER_NOTIF needs a listener fd (SECCOMP_FILTER_FLAG_NEW_LISTENER),
# which the spawner does not create, so the kernel would just fail such calls with ENOSYS.
_PROFILE_ACTIONS: Final = frozenset(SeccompAction) - {SeccompAction.USER_NOTIF}
_RET_DATA: Final = 0xFFFF
_MAX_ERRNO: Final = 4095  # the kernel clamps larger SECCOMP_RET_ERRNO data to this


class ArgOp(Enum):
    """A comparison of one 64-bit syscall argument (libseccomp's ``SCMP_CMP_*``)."""

    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    MASKED_EQ = "masked_eq"

    @classmethod
    def parse(cls, value: str | ArgOp) -> ArgOp:
        """Accept a member, ``"eq"``, ``"EQ"`` or ``"SCMP_CMP_EQ"``.

        Raises:
            ConfigError: not a comparison.
        """
        if isinstance(value, ArgOp):
            return value
        if isinstance(value, str):
            key = value.strip().lower().removeprefix("scmp_cmp_")
            for op in cls:
                if op.value == key:
                    return op
        raise ConfigError(f"unknown argument comparison {value!r}")


def _to_op(value: str | ArgOp) -> ArgOp:
    return ArgOp.parse(value)


def _to_action(value: str | int | SeccompAction) -> SeccompAction:
    return SeccompAction.parse(value)


def _check_u64(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be an unsigned 64-bit integer, "
            f"got {value!r}"
        )


def _check_arg_index(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise ConfigError(f"ArgCondition.{attribute.name} must be 0..5, got {value!r}")


@_record.record
class ArgCondition:
    """A test of syscall argument ``index`` against ``value``, all 64 bits, unsigned.

    ``MASKED_EQ`` tests ``arg & mask == value``; the other ops ignore ``mask``.
    """

    index: int = _record.field(validator=_check_arg_index)
    op: ArgOp = _record.field(converter=_to_op)
    value: int = _record.field(validator=_check_u64)
    mask: int = _record.field(default=_U64, validator=_check_u64)

    def matches(self, arg: int) -> bool:
        """Whether the (64-bit) argument value ``arg`` satisfies the condition."""
        arg &= _U64
        op = self.op
        if op is ArgOp.EQ:
            return arg == self.value
        if op is ArgOp.NE:
            return arg != self.value
        if op is ArgOp.LT:
            return arg < self.value
        if op is ArgOp.LE:
            return arg <= self.value
        if op is ArgOp.GT:
            return arg > self.value
        if op is ArgOp.GE:
            return arg >= self.value
        return arg & self.mask == self.value


def _to_names(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    try:
        return tuple(value)
    except TypeError:
        raise ConfigError(f"SeccompRule.names must be syscall names, got {value!r}") from None


def _check_names(instance: SeccompRule, attribute: attrs.Attribute[Any], value: tuple[str, ...]
                 ) -> None:
    if not value:
        raise ConfigError("SeccompRule.names must name at least one syscall")
    for name in value:
        if not isinstance(name, str) or name not in _ALL_SYSCALL_NAMES:
            raise ConfigError(
                f"SeccompRule.names: {name!r} is not a syscall on x86_64 or aarch64"
            )


def _check_action(instance: object, attribute: attrs.Attribute[Any], value: SeccompAction
                  ) -> None:
    if value not in _PROFILE_ACTIONS:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name}: {value.name} needs a notification "
            "listener, which isolate does not set up"
        )


def _check_errno(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ERRNO:
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be 0..{_MAX_ERRNO}, got {value!r}"
        )


def _to_conditions(value: Iterable[ArgCondition]) -> tuple[ArgCondition, ...]:
    result = tuple(value)
    for cond in result:
        if not isinstance(cond, ArgCondition):
            raise ConfigError(f"SeccompRule.args must hold ArgCondition values, got {cond!r}")
    return result


def _to_arches(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    return frozenset(_arch_name(a) for a in value)


@_record.record
class SeccompRule:
    """Syscalls ``names`` get ``action`` when every condition in ``args`` holds.

    ``errno`` is the error returned for ``ERRNO`` (and the data passed to a tracer for
    ``TRACE``). ``arches`` limits the rule to some architectures (None: all).
    """

    names: tuple[str, ...] = _record.field(converter=_to_names, validator=_check_names)
    action: SeccompAction = _record.field(converter=_to_action, validator=_check_action)
    errno: int = _record.field(default=_errno.EPERM, validator=_check_errno)
    args: tuple[ArgCondition, ...] = _record.field(default=(), converter=_to_conditions)
    arches: frozenset[str] | None = _record.field(default=None, converter=_to_arches)

    def matches(self, args: Sequence[int]) -> bool:
        """Whether every argument condition holds for the six argument values ``args``."""
        return all(c.matches(args[c.index]) for c in self.args)


def _to_rules(value: Iterable[SeccompRule]) -> tuple[SeccompRule, ...]:
    result = tuple(value)
    for rule in result:
        if not isinstance(rule, SeccompRule):
            raise ConfigError(f"SeccompProfile.rules must hold SeccompRule values, got {rule!r}")
    return result


def _ret(action: SeccompAction, data: int) -> int:
    # Only ERRNO and TRACE carry data; the kernel ignores it for the others.
    if action in (SeccompAction.ERRNO, SeccompAction.TRACE):
        return int(action) | (data & _RET_DATA)
    return int(action)


@_record.record(cache_hash=True)
class SeccompProfile:
    """A seccomp policy: ``rules`` checked in order, first match wins, else ``default_action``.

    A syscall that a rule names but the target architecture lacks is skipped, as libseccomp
    does. A call from another architecture (a 32-bit ABI, or x32 on x86_64) gets
    ``bad_arch_action``: the program only knows one architecture's numbers.
    ``architectures`` (None: any) restricts which architectures ``compile`` accepts.
    """

    default_action: SeccompAction = _record.field(
        default=SeccompAction.ALLOW, converter=_to_action, validator=_check_action
    )
    default_errno: int = _record.field(default=_errno.EPERM, validator=_check_errno)
    rules: tuple[SeccompRule, ...] = _record.field(default=(), converter=_to_rules)
    architectures: frozenset[str] | None = _record.field(default=None, converter=_to_arches)
    bad_arch_action: SeccompAction = _record.field(
        default=SeccompAction.KILL_PROCESS, converter=_to_action, validator=_check_action
    )

    # ---- constructors --------------------------------------------------------------------

    @classmethod
    def default(cls) -> SeccompProfile:
        """Isolate's default: a Docker-like deny-list; see ``docs/security.md``.

        Everything is allowed except what a sandboxed process must not do: mount and the new
        mount API, namespaces (``unshare``, ``setns``, ``clone`` with ``CLONE_NEW*``), kernel
        keyrings, BPF, perf, modules, kexec, reboot, swap, clocks, accounting, quotas, file
        handles, userfaultfd, raw I/O ports, the kernel log, io_uring and obsolete calls.
        ``clone3`` fails with ``ENOSYS`` (its flags live in memory a filter cannot read) so libc
        falls back to ``clone``; ``personality`` only accepts the values Docker allows.
        """
        return _DEFAULT_PROFILE

    @classmethod
    def from_docker_json(
        cls,
        data: str | bytes | Mapping[str, Any],
        *,
        capabilities: CapabilitySet | None = None,
        kernel_version: tuple[int, int] | None = None,
    ) -> SeccompProfile:
        """Read a Docker/OCI seccomp profile (``defaultAction``, ``syscalls``, ``archMap``...).

        Entries' ``includes``/``excludes`` are resolved here, as Docker does when it starts a
        container: ``caps`` against ``capabilities`` (Docker's default set if None),
        ``minKernel`` against ``kernel_version`` (the running kernel if None) and ``arches``
        kept on the rule. Syscall names unknown on x86_64 and aarch64 are dropped (the
        published profiles name other architectures' calls too). Entries keep their order and
        the first that matches decides; for the published profiles, whose entries for one
        syscall never disagree, that is what libseccomp does too.

        Raises:
            ConfigError: the JSON is malformed or uses an action or comparison isolate cannot
                express (``SCMP_ACT_NOTIFY``).
        """
        return _parse_docker_profile(data, capabilities, kernel_version)

    # ---- semantics -----------------------------------------------------------------------

    def evaluate(
        self, syscall: str | int, args: Sequence[int] = (), arch: str | None = None
    ) -> tuple[SeccompAction, int]:
        """What this profile decides for ``syscall`` (a name or number) with ``args`` on ``arch``.

        This is the meaning ``compile`` must implement; returns ``(action, data)`` as
        :func:`simulate` does (``data`` is the errno for ``ERRNO``, else 0 unless TRACE).

        Raises:
            ConfigError: the arch is not supported, or a name unknown on it.
        """
        name = _arch_name(arch)
        table = _TABLES[name]
        if isinstance(syscall, str):
            if syscall not in table:
                raise ConfigError(f"syscall {syscall!r} does not exist on {name}")
            nr = table[syscall]
        else:
            nr = syscall & 0xFFFF_FFFF
        if name == "x86_64" and nr >= _X32_SYSCALL_BIT:
            return _split_ret(_ret(self.bad_arch_action, 0))
        full = _padded_args(args)
        for rule in self.rules:
            if rule.arches is not None and name not in rule.arches:
                continue
            if any(table.get(n) == nr for n in rule.names) and rule.matches(full):
                return _split_ret(_ret(rule.action, rule.errno))
        return _split_ret(_ret(self.default_action, self.default_errno))

    def compile(self, arch: str | None = None) -> bytes:
        """Compile to a classic-BPF program: ``struct sock_filter[]`` as bytes (8 per insn).

        The result is cached per (profile, arch). Load it with ``SECCOMP_SET_MODE_FILTER``
        (``struct sock_fprog`` with ``len = len(program) // 8``).

        Raises:
            ConfigError: the architecture is unsupported or excluded by ``architectures``, or
                the program exceeds 4096 instructions.
            UnsupportedError: ``arch`` is None and the host architecture is not supported.
        """
        name = _arch_name(arch)
        if self.architectures is not None and name not in self.architectures:
            raise ConfigError(
                f"this seccomp profile covers {sorted(self.architectures)}, not {name}"
            )
        return _compile_cached(self, name)


def _padded_args(args: Sequence[int]) -> list[int]:
    if len(args) > 6:
        raise ConfigError(f"a syscall has at most 6 arguments, got {len(args)}")
    return [a & _U64 for a in args] + [0] * (6 - len(args))


def _split_ret(value: int) -> tuple[SeccompAction, int]:
    full = value & 0xFFFF_0000
    try:
        action = SeccompAction(full)
    except ValueError:
        # The kernel treats an unknown action as KILL_PROCESS.
        return SeccompAction.KILL_PROCESS, 0
    return action, value & _RET_DATA


# ============================================================================================
# Seccomp: classic-BPF encoding
# ============================================================================================

# Instruction classes and modes (linux/bpf_common.h).
_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = range(8)
_W, _ABS, _IMM, _MEM, _LEN = 0x00, 0x20, 0x00, 0x60, 0x80
_K, _X, _A = 0x00, 0x08, 0x10
_JA, _JEQ, _JGT, _JGE, _JSET = 0x00, 0x10, 0x20, 0x30, 0x40
_ADD, _SUB, _MUL, _DIV, _OR, _AND, _LSH, _RSH, _NEG, _XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0xA0
)
_TAX, _TXA = 0x00, 0x80
_INSN: Final = struct.Struct("<HBBI")  # struct sock_filter; both supported arches are LE
_SECCOMP_DATA_SIZE: Final = 64  # int nr; u32 arch; u64 ip; u64 args[6]
_OFF_NR, _OFF_ARCH = 0, 4


def _arg_lo(index: int) -> int:
    return 16 + 8 * index


def _arg_hi(index: int) -> int:
    return 20 + 8 * index


# The assembler's records are plain tuples: it makes thousands, and a tuple is the cheapest
# record to make, on the start path of every sandbox and container. Typed NamedTuples for the
# type checker; at run time tuple types of the same fields (typing is not loaded).
if TYPE_CHECKING:
    from typing import NamedTuple

    class _Label(NamedTuple):
        name: int

    class _Stmt(NamedTuple):
        code: int
        k: int

    class _Jump(NamedTuple):
        """A conditional jump to labels (always forward); the assembler adds far-jump
        trampolines."""

        code: int
        k: int
        jt: int
        jf: int
else:
    from _operator import itemgetter

    def _tuple_type(name, fields):
        """namedtuple's essentials (its module loads the collections package: ~2 ms)."""
        def new(cls, *values):
            return tuple.__new__(cls, values)

        namespace = {"__slots__": (), "__new__": new}
        for i, field in enumerate(fields.split()):
            namespace[field] = property(itemgetter(i))
        return type(name, (tuple,), namespace)

    _Label = _tuple_type("_Label", "name")
    _Stmt = _tuple_type("_Stmt", "code k")
    _Jump = _tuple_type("_Jump", "code k jt jf")

_Item = _Label | _Stmt | _Jump


class _Assembler:
    """Collects instructions with symbolic forward jumps, then lays them out.

    Conditional jumps have 8-bit offsets; a branch whose target is further away jumps to a
    ``BPF_JA`` (32-bit offset) placed right after it. Adding those only lengthens distances, so
    marking branches "far" until nothing changes terminates.
    """

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self._next_label = 0

    def label(self) -> int:
        self._next_label += 1
        return self._next_label

    def place(self, label: int) -> None:
        self.items.append(_Label(label))

    def stmt(self, code: int, k: int = 0) -> None:
        self.items.append(_Stmt(code, k & 0xFFFF_FFFF))

    def jump(self, code: int, k: int, jt: int, jf: int) -> None:
        self.items.append(_Jump(code, k & 0xFFFF_FFFF, jt, jf))

    def ret(self, value: int) -> None:
        self.stmt(_RET | _K, value)

    def assemble(self) -> bytes:
        far_t: set[int] = set()
        far_f: set[int] = set()
        while True:
            starts, labels = self._layout(far_t, far_f)
            changed = False
            for i, item in enumerate(self.items):
                if not isinstance(item, _Jump):
                    continue
                after = starts[i] + 1
                if i not in far_t and labels[item.jt] - after > 255:
                    far_t.add(i)
                    changed = True
                if i not in far_f and labels[item.jf] - after > 255:
                    far_f.add(i)
                    changed = True
            if not changed:
                break
        out = bytearray()
        for i, item in enumerate(self.items):
            if isinstance(item, _Label):
                continue
            if isinstance(item, _Stmt):
                out += _INSN.pack(item.code, 0, 0, item.k)
                continue
            pos = starts[i]
            slot = pos + 1
            trampolines: list[int] = []
            offsets = []
            for target, far in ((item.jt, i in far_t), (item.jf, i in far_f)):
                if far:
                    offsets.append(slot - (pos + 1))
                    trampolines.append(labels[target] - (slot + 1))
                    slot += 1
                else:
                    offsets.append(labels[target] - (pos + 1))
            for off in offsets:
                assert 0 <= off <= 255, "backward or unresolved jump"
            out += _INSN.pack(item.code, offsets[0], offsets[1], item.k)
            for off in trampolines:
                assert off >= 0, "backward jump"
                out += _INSN.pack(_JMP | _JA, 0, 0, off)
        return bytes(out)

    def _layout(self, far_t: set[int], far_f: set[int]) -> tuple[list[int], dict[int, int]]:
        pos = 0
        starts: list[int] = []
        labels: dict[int, int] = {}
        for i, item in enumerate(self.items):
            starts.append(pos)
            if isinstance(item, _Label):
                labels[item.name] = pos
            elif isinstance(item, _Jump):
                pos += 1 + (i in far_t) + (i in far_f)
            else:
                pos += 1
        return starts, labels


def _emit_condition(asm: _Assembler, cond: ArgCondition, passed: int, failed: int) -> None:
    """Emit a 64-bit comparison of one argument as two 32-bit halves (cBPF is 32-bit)."""
    hi_v, lo_v = cond.value >> 32, cond.value & 0xFFFF_FFFF
    hi, lo = _arg_hi(cond.index), _arg_lo(cond.index)
    ld = _LD | _W | _ABS
    op = cond.op
    check_lo = asm.label()
    if op is ArgOp.EQ or op is ArgOp.NE:
        yes, no = (passed, failed) if op is ArgOp.EQ else (failed, passed)
        asm.stmt(ld, hi)
        asm.jump(_JMP | _JEQ | _K, hi_v, check_lo, no)
        asm.place(check_lo)
        asm.stmt(ld, lo)
        asm.jump(_JMP | _JEQ | _K, lo_v, yes, no)
    elif op is ArgOp.MASKED_EQ:
        asm.stmt(ld, hi)
        asm.stmt(_ALU | _AND | _K, cond.mask >> 32)
        asm.jump(_JMP | _JEQ | _K, hi_v, check_lo, failed)
        asm.place(check_lo)
        asm.stmt(ld, lo)
        asm.stmt(_ALU | _AND | _K, cond.mask & 0xFFFF_FFFF)
        asm.jump(_JMP | _JEQ | _K, lo_v, passed, failed)
    else:
        # Unsigned 64-bit order: the high words decide unless they are equal.
        greater = op in (ArgOp.GT, ArgOp.GE)
        above, below = (passed, failed) if greater else (failed, passed)
        hi_equal = asm.label()
        asm.stmt(ld, hi)
        asm.jump(_JMP | _JGT | _K, hi_v, above, hi_equal)
        asm.place(hi_equal)
        asm.jump(_JMP | _JEQ | _K, hi_v, check_lo, below)
        asm.place(check_lo)
        asm.stmt(ld, lo)
        if op is ArgOp.GT:
            asm.jump(_JMP | _JGT | _K, lo_v, passed, failed)
        elif op is ArgOp.GE:
            asm.jump(_JMP | _JGE | _K, lo_v, passed, failed)
        elif op is ArgOp.LT:
            asm.jump(_JMP | _JGE | _K, lo_v, failed, passed)
        else:  # LE
            asm.jump(_JMP | _JGT | _K, lo_v, failed, passed)


# A leaf of the dispatch tree compares this many numbers one after another.
_LEAF_SIZE: Final = 4


# -- programs kept across processes ------------------------------------------------------------

_program_dir: str | None = None


def cache_programs(directory: str | None) -> None:
    """Keep compiled seccomp programs in ``directory`` (made when first needed), where the
    next process that compiles the same profile finds them: assembling Docker's profile is
    ~2.5 ms of every container's start, and a short-lived process (the CLI) would pay it each
    time. None (the default): programs are kept in this process only.

    A program's file is named by the SHA-256 of what it was compiled from (the profile, the
    architecture, and this module's file, so that another version of the compiler never
    shares it) and ends with the SHA-256 of that and the program: a stale, torn or foreign
    file is never loaded, only compiled and written again. A cache is written without fsync
    (temp + rename): losing it costs one compile.
    """
    global _program_dir
    _program_dir = None if directory is None else os.fspath(directory)


def _program_key(profile: SeccompProfile, arch: str) -> bytes:
    """What a program is compiled from, as canonical text (no set's order in it)."""
    def arches(value: frozenset[str] | None) -> str:
        return "*" if value is None else ",".join(sorted(value))

    try:
        st = os.stat(__file__)
        code = f"{__file__}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        code = __file__
    lines = [f"isolate.security {code}", arch, f"{int(profile.default_action)} "
             f"{profile.default_errno} {int(profile.bad_arch_action)} "
             f"{arches(profile.architectures)}"]
    for r in profile.rules:
        conds = ";".join(f"{c.index},{c.op.value},{c.value},{c.mask}" for c in r.args)
        lines.append(f"{' '.join(r.names)}|{int(r.action)}|{r.errno}|{conds}|"
                     f"{arches(r.arches)}")
    return "\n".join(lines).encode()


def _cached_program(profile: SeccompProfile, arch: str, directory: str) -> bytes:
    """The program from ``directory``, or compiled and left there for the next process."""
    from isolate._digest import sha256_hex

    key = _program_key(profile, arch)
    path = os.path.join(directory, sha256_hex(key)[:32] + ".bpf")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    program, check = data[:-64], data[-64:]
    if len(data) > 64 and len(program) % _INSN.size == 0 \
            and sha256_hex(key + program).encode() == check:
        return program
    program = _compile_program(profile, arch)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        with open(tmp, "wb") as f:
            f.write(program + sha256_hex(key + program).encode())
        os.rename(tmp, path)
    except OSError:
        pass  # a cache: a store we cannot write to still runs (and compiles each time)
    return program


@_memo.lru_cache(maxsize=128)
def _compile_cached(profile: SeccompProfile, arch: str) -> bytes:
    directory = _program_dir
    if directory is None:
        return _compile_program(profile, arch)
    return _cached_program(profile, arch, directory)


def _compile_program(profile: SeccompProfile, arch: str) -> bytes:
    table = _TABLES[arch]
    default_ret = _ret(profile.default_action, profile.default_errno)
    bad_arch_ret = _ret(profile.bad_arch_action, 0)

    # Rules per syscall number, in profile order; rules after an unconditional one are dead.
    per_nr: dict[int, list[SeccompRule]] = {}
    for rule in profile.rules:
        if rule.arches is not None and arch not in rule.arches:
            continue
        for name in dict.fromkeys(rule.names):
            nr = table.get(name)
            if nr is None:
                continue
            chain = per_nr.setdefault(nr, [])
            if not (chain and not chain[-1].args) and rule not in chain:
                chain.append(rule)
    # A syscall whose only rule is unconditional and returns the default needs no code.
    for nr in [n for n, ch in per_nr.items()
               if len(ch) == 1 and not ch[0].args and _ret(ch[0].action, ch[0].errno)
               == default_ret]:
        del per_nr[nr]

    asm = _Assembler()
    arch_ok, bad_arch = asm.label(), asm.label()
    asm.stmt(_LD | _W | _ABS, _OFF_ARCH)
    asm.jump(_JMP | _JEQ | _K, _AUDIT_ARCH[arch], arch_ok, bad_arch)
    asm.place(bad_arch)
    asm.ret(bad_arch_ret)
    asm.place(arch_ok)
    asm.stmt(_LD | _W | _ABS, _OFF_NR)
    if arch == "x86_64":
        native, x32 = asm.label(), asm.label()
        asm.jump(_JMP | _JGE | _K, _X32_SYSCALL_BIT, x32, native)
        asm.place(x32)
        asm.ret(bad_arch_ret)
        asm.place(native)

    nrs = sorted(per_nr)
    blocks = {nr: asm.label() for nr in nrs}

    # Dispatch: a binary search on the number (A holds it throughout), leaves compare a few.
    def dispatch(lo: int, hi: int) -> None:
        if hi - lo <= _LEAF_SIZE:
            for nr in nrs[lo:hi]:
                miss = asm.label()
                asm.jump(_JMP | _JEQ | _K, nr, blocks[nr], miss)
                asm.place(miss)
            asm.ret(default_ret)
            return
        mid = (lo + hi) // 2
        left, right = asm.label(), asm.label()
        asm.jump(_JMP | _JGE | _K, nrs[mid], right, left)
        asm.place(left)
        dispatch(lo, mid)
        asm.place(right)
        dispatch(mid, hi)

    dispatch(0, len(nrs))

    for nr in nrs:
        asm.place(blocks[nr])
        chain = per_nr[nr]
        for rule in chain:
            if not rule.args:
                asm.ret(_ret(rule.action, rule.errno))
                break
            next_rule = asm.label()
            for cond in rule.args:
                passed = asm.label()
                _emit_condition(asm, cond, passed, next_rule)
                asm.place(passed)
            asm.ret(_ret(rule.action, rule.errno))
            asm.place(next_rule)
        else:
            asm.ret(default_ret)

    program = asm.assemble()
    count = len(program) // _INSN.size
    if count > MAX_PROGRAM_INSTRUCTIONS:
        raise ConfigError(
            f"seccomp program for {arch} has {count} instructions, more than the kernel's "
            f"limit of {MAX_PROGRAM_INSTRUCTIONS}; use fewer rules or argument conditions"
        )
    return program


# ============================================================================================
# Seccomp: a classic-BPF interpreter (what the kernel runs), for tests and debugging
# ============================================================================================


def simulate(
    program: bytes,
    nr: int,
    arch: str | int | None = None,
    args: Sequence[int] = (),
    instruction_pointer: int = 0,
) -> tuple[SeccompAction, int]:
    """Run a seccomp BPF ``program`` on one syscall as the kernel would; return (action, data).

    ``arch`` is an arch name (host by default) or a raw ``AUDIT_ARCH_*`` number, to feed a
    foreign architecture. ``args`` are up to six values (taken modulo 2**64). The program is
    checked as the kernel's ``seccomp_check_filter`` does: only the instructions seccomp
    accepts, aligned loads inside ``seccomp_data``, forward jumps inside the program, a return
    at the end.

    Raises:
        ConfigError: the program is malformed or uses an instruction seccomp rejects.
    """
    if not isinstance(program, (bytes, bytearray, memoryview)):
        raise ConfigError(f"a seccomp program must be bytes, got {type(program).__name__}")
    insns = _decode_program(bytes(program))
    if isinstance(arch, int) and not isinstance(arch, bool):
        audit = arch
    else:
        audit = audit_arch(arch if isinstance(arch, str) else None)
    words = struct.pack(
        "<iIQ6Q", _to_i32(nr), audit & 0xFFFF_FFFF, instruction_pointer & _U64, *_padded_args(args)
    )
    a = x = 0
    mem = [0] * 16
    pc = 0
    mask = 0xFFFF_FFFF
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if cls == _LD:
            mode = code & 0xE0
            if mode == _ABS:
                a = struct.unpack_from("<I", words, k)[0]
            elif mode == _LEN:
                a = _SECCOMP_DATA_SIZE
            elif mode == _IMM:
                a = k
            else:  # MEM
                a = mem[k]
        elif cls == _LDX:
            mode = code & 0xE0
            x = _SECCOMP_DATA_SIZE if mode == _LEN else (k if mode == _IMM else mem[k])
        elif cls == _ST:
            mem[k] = a
        elif cls == _STX:
            mem[k] = x
        elif cls == _ALU:
            op = code & 0xF0
            src = x if code & _X else k
            if op == _NEG:
                a = -a & mask
            elif op == _DIV:
                if src == 0:
                    # Classic BPF aborts the program with return value 0 (KILL_THREAD).
                    return _split_ret(0)
                a //= src
            else:
                a = _alu(op, a, src) & mask
        elif cls == _JMP:
            op = code & 0xF0
            if op == _JA:
                pc += k
                continue
            src = x if code & _X else k
            if op == _JEQ:
                taken = a == src
            elif op == _JGT:
                taken = a > src
            elif op == _JGE:
                taken = a >= src
            else:  # JSET
                taken = bool(a & src)
            pc += jt if taken else jf
        elif cls == _RET:
            return _split_ret(a if code & 0x18 == _A else k)
        else:  # MISC
            if code & 0xF8 == _TAX:
                x = a
            else:
                a = x


def _to_i32(nr: int) -> int:
    nr &= 0xFFFF_FFFF
    return nr - (1 << 32) if nr >= 1 << 31 else nr


def _alu(op: int, a: int, src: int) -> int:
    if op == _ADD:
        return a + src
    if op == _SUB:
        return a - src
    if op == _MUL:
        return a * src
    if op == _OR:
        return a | src
    if op == _AND:
        return a & src
    if op == _XOR:
        return a ^ src
    if op == _LSH:
        return a << (src & 31) if src < 32 else 0
    return a >> src if src < 32 else 0  # RSH


# The opcodes seccomp_check_filter lets through (kernel/seccomp.c).
_ALLOWED_CODES: Final = frozenset(
    [_LD | _W | _ABS, _LD | _W | _LEN, _LDX | _W | _LEN, _LD | _IMM, _LDX | _IMM,
     _LD | _MEM, _LDX | _MEM, _ST, _STX, _RET | _K, _RET | _A, _MISC | _TAX, _MISC | _TXA,
     _ALU | _NEG, _JMP | _JA]
    + [_ALU | op | src for op in (_ADD, _SUB, _MUL, _DIV, _AND, _OR, _XOR, _LSH, _RSH)
       for src in (_K, _X)]
    + [_JMP | op | src for op in (_JEQ, _JGE, _JGT, _JSET) for src in (_K, _X)]
)


@_memo.lru_cache(maxsize=32)
def _decode_program(program: bytes) -> tuple[tuple[int, int, int, int], ...]:
    if not program:
        raise ConfigError("a seccomp program must not be empty")
    if len(program) % _INSN.size:
        raise ConfigError(f"program length {len(program)} is not a multiple of 8")
    insns = tuple(_INSN.iter_unpack(program))
    count = len(insns)
    if count > MAX_PROGRAM_INSTRUCTIONS:
        raise ConfigError(f"program has {count} instructions, more than {MAX_PROGRAM_INSTRUCTIONS}")
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code not in _ALLOWED_CODES:
            raise ConfigError(f"instruction {pc}: opcode {code:#06x} is not allowed in seccomp")
        cls = code & 0x07
        if code == _LD | _W | _ABS and (k % 4 or k >= _SECCOMP_DATA_SIZE):
            raise ConfigError(f"instruction {pc}: load offset {k} is outside seccomp_data")
        if code in (_LD | _MEM, _LDX | _MEM, _ST, _STX) and k >= 16:
            raise ConfigError(f"instruction {pc}: scratch memory index {k} is out of range")
        if code == _ALU | _DIV | _K and k == 0:
            raise ConfigError(f"instruction {pc}: division by constant zero")
        if cls == _JMP:
            targets = [pc + 1 + k] if code == _JMP | _JA else [pc + 1 + jt, pc + 1 + jf]
            if any(t >= count for t in targets):
                raise ConfigError(f"instruction {pc}: jump past the end of the program")
    if insns[-1][0] & 0x07 != _RET:
        raise ConfigError("the last instruction of a seccomp program must be a return")
    return insns


# ============================================================================================
# Profiles: the default and Docker/OCI JSON
# ============================================================================================

# Flags of clone(2) that create namespaces; CLONE_NEWTIME (0x80) overlaps the exit-signal byte
# of clone(2) and is only accepted by clone3/unshare, which the profile handles whole.
_CLONE_NEW_MASK: Final = 0x7E02_0000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32
# and 0xffffffff (query the current persona).
_PERSONALITY_ALLOWED: Final = (0x0, 0x8, 0x20000, 0x20008, 0xFFFF_FFFF)

_DEFAULT_DENIED: Final = (
    # mounts and the new mount API
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick",
    # namespaces
    "unshare", "setns",
    # kernel keyrings
    "keyctl", "add_key", "request_key",
    # kernel-wide facilities: BPF, perf, modules, kexec, reboot, swap, accounting, quotas
    "bpf", "perf_event_open", "init_module", "finit_module", "delete_module", "create_module",
    "get_kernel_syms", "query_module", "kexec_load", "kexec_file_load", "reboot", "swapon",
    "swapoff", "acct", "quotactl", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl",
    "lookup_dcookie",
    # clocks
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # file handles bypass path permission checks (the "shocker" escape)
    "open_by_handle_at", "name_to_handle_at",
    # memory and I/O tricks, the kernel log, terminals
    "userfaultfd", "iopl", "ioperm", "syslog", "vhangup",
    # io_uring performs syscalls the filter never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)

_DEFAULT_PROFILE: Final = SeccompProfile(
    default_action=SeccompAction.ALLOW,
    rules=(
        SeccompRule(
            "clone", SeccompAction.ALLOW,
            args=(ArgCondition(0, ArgOp.MASKED_EQ, 0, mask=_CLONE_NEW_MASK),),
        ),
        SeccompRule("clone", SeccompAction.ERRNO, errno=_errno.EPERM),
        SeccompRule("clone3", SeccompAction.ERRNO, errno=_errno.ENOSYS),
        *(
            SeccompRule("personality", SeccompAction.ALLOW, args=(ArgCondition(0, ArgOp.EQ, v),))
            for v in _PERSONALITY_ALLOWED
        ),
        SeccompRule("personality", SeccompAction.ERRNO, errno=_errno.EPERM),
        SeccompRule(_DEFAULT_DENIED, SeccompAction.ERRNO, errno=_errno.EPERM),
    ),
)

# Docker's architecture names (SCMP_ARCH_* in profiles, Go's in includes.arches) -> ours.
_DOCKER_ARCHES: Final[Mapping[str, str]] = {
    "SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AARCH64": "aarch64",
    "amd64": "x86_64", "arm64": "aarch64", "x86_64": "x86_64", "aarch64": "aarch64",
}


def _parse_docker_profile(
    data: str | bytes | Mapping[str, Any],
    capabilities: CapabilitySet | None,
    kernel_version: tuple[int, int] | None,
) -> SeccompProfile:
    if isinstance(data, (str, bytes)):
        from isolate import _json as json  # here: only a profile given as JSON text needs it

        try:
            data = json.loads(data)
        except ValueError as e:
            raise ConfigError(f"seccomp profile is not valid JSON: {e}") from None
    if not isinstance(data, Mapping):
        raise ConfigError("seccomp profile must be a JSON object")
    caps = CapabilitySet.docker_default() if capabilities is None else capabilities
    kernel = _running_kernel() if kernel_version is None else kernel_version
    if "defaultAction" not in data:
        raise ConfigError("seccomp profile lacks defaultAction")
    default_action = _docker_action(data["defaultAction"], "defaultAction")
    default_errno = _docker_int(data.get("defaultErrnoRet", _errno.EPERM), "defaultErrnoRet")

    arch_names: list[str] = list(_docker_list(data.get("architectures"), "architectures"))
    for entry in _docker_list(data.get("archMap"), "archMap"):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"archMap entry must be an object, got {entry!r}")
        arch_names.append(entry.get("architecture", ""))
        arch_names.extend(_docker_list(entry.get("subArchitectures"), "subArchitectures"))
    architectures = None
    if arch_names:
        architectures = frozenset(_DOCKER_ARCHES[a] for a in arch_names if a in _DOCKER_ARCHES)

    rules: list[SeccompRule] = []
    for i, entry in enumerate(_docker_list(data.get("syscalls"), "syscalls")):
        where = f"syscalls[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be an object, got {entry!r}")
        rule = _docker_rule(entry, where, caps, kernel)
        if rule is not None:
            rules.append(rule)
    return SeccompProfile(
        default_action=default_action,
        default_errno=default_errno,
        rules=rules,
        architectures=architectures,
    )


def _docker_rule(
    entry: Mapping[str, Any], where: str, caps: CapabilitySet, kernel: tuple[int, int]
) -> SeccompRule | None:
    names = list(_docker_list(entry.get("names"), f"{where}.names"))
    if entry.get("name"):
        names.append(entry["name"])
    includes = entry.get("includes") or {}
    excludes = entry.get("excludes") or {}
    if not isinstance(includes, Mapping) or not isinstance(excludes, Mapping):
        raise ConfigError(f"{where}: includes/excludes must be objects")
    # Docker: every included cap must be held; any excluded cap held drops the entry.
    # Capabilities this library does not know cannot be held, so count as absent.
    if not all(_held(c, caps) for c in _docker_list(includes.get("caps"), f"{where}.includes")):
        return None
    if any(_held(c, caps) for c in _docker_list(excludes.get("caps"), f"{where}.excludes")):
        return None
    min_kernel = includes.get("minKernel")
    if min_kernel and kernel < _parse_kernel_version(str(min_kernel), where):
        return None
    arches: set[str] | None = None
    inc_arches = list(_docker_list(includes.get("arches"), f"{where}.includes.arches"))
    if inc_arches:
        arches = {_DOCKER_ARCHES[a] for a in inc_arches if a in _DOCKER_ARCHES}
    exc_arches = {_DOCKER_ARCHES[a] for a in _docker_list(excludes.get("arches"), where)
                  if a in _DOCKER_ARCHES}
    if exc_arches:
        arches = (set(SUPPORTED_ARCHES) if arches is None else arches) - exc_arches
    if arches is not None and not arches:
        return None
    known = [n for n in dict.fromkeys(names) if n in _ALL_SYSCALL_NAMES]
    if not known:
        return None
    action = _docker_action(entry.get("action"), f"{where}.action")
    errno_ret = _docker_int(entry.get("errnoRet", _errno.EPERM), f"{where}.errnoRet")
    conditions = []
    for j, arg in enumerate(_docker_list(entry.get("args"), f"{where}.args")):
        if not isinstance(arg, Mapping):
            raise ConfigError(f"{where}.args[{j}] must be an object, got {arg!r}")
        op = ArgOp.parse(arg.get("op", ""))
        index = _docker_int(arg.get("index"), f"{where}.args[{j}].index")
        value = _docker_int(arg.get("value", 0), f"{where}.args[{j}].value")
        two = _docker_int(arg.get("valueTwo", 0), f"{where}.args[{j}].valueTwo")
        if op is ArgOp.MASKED_EQ:
            # libseccomp: SCMP_CMP_MASKED_EQ compares (arg & value) with valueTwo.
            conditions.append(ArgCondition(index, op, two, mask=value))
        else:
            conditions.append(ArgCondition(index, op, value))
    return SeccompRule(
        known, action, errno=errno_ret if action is SeccompAction.ERRNO else 0,
        args=conditions, arches=arches,
    )


def _held(name: object, caps: CapabilitySet) -> bool:
    try:
        return Capability.parse(name) in caps.caps  # type: ignore[arg-type]
    except ConfigError:
        return False


def _docker_action(value: object, where: str) -> SeccompAction:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be an SCMP_ACT_* string, got {value!r}")
    action = SeccompAction.parse(value)
    if action not in _PROFILE_ACTIONS:
        raise ConfigError(f"{where}: {value} needs a notification listener, not supported")
    return action


def _docker_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    return value


def _docker_list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    return value


def _parse_kernel_version(text: str, where: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ConfigError(f"{where}: minKernel {text!r} is not MAJOR.MINOR") from None


def _running_kernel() -> tuple[int, int]:
    release = os.uname().release
    digits = release.split("-")[0].split(".")
    try:
        return int(digits[0]), int(digits[1]) if len(digits) > 1 else 0
    except ValueError:
        return (0, 0)
