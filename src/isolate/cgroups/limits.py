"""Resource limits for a cgroup, as one frozen value validated at construction.

Owns the vocabulary of limits (sizes, cpu quota, weights, cpusets, per-device io) and its
parsing from human units. Does no I/O: backends translate a :class:`Limits` into files.
"""

from __future__ import annotations

from _collections_abc import Iterable

from isolate import _match, _record
from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    import attrs

from isolate._units import MAX_SIZE, human_size, parse_number, parse_size
from isolate.errors import ConfigError

__all__ = [
    "DEFAULT_CPU_PERIOD",
    "MAX_CPU_QUOTA",
    "MAX_PIDS",
    "MAX_SIZE",
    "MIN_MEMORY",
    "IoDeviceLimit",
    "Limits",
    "parse_cpuset",
    "parse_size",
]

#: The kernel's default CFS period (100 ms), used when only ``cpus`` or a quota is given.
DEFAULT_CPU_PERIOD = 100_000
#: The largest cpu quota the kernel keeps, in microseconds (2**44 - 1; it silently caps larger
#: ones on v1). With the default period that is about 176 million cpus.
MAX_CPU_QUOTA = 2**44 - 1
#: The smallest memory limit a process can start in; docker run refuses less too.
MIN_MEMORY = 6 << 20
#: The largest pids limit the kernel takes (its most pids, PID_MAX_LIMIT).
MAX_PIDS = 1 << 22



def parse_cpuset(value: str, *, name: str = "cpuset") -> frozenset[int]:
    """Parse a cpu or memory-node list such as ``"0-3,6"`` into the set of numbers.

    Raises :class:`ConfigError` on a malformed list or a reversed range.
    """
    text = value.replace(" ", "")
    if not _match.cpuset(text):
        raise ConfigError(f"{name}: expected a list like 0-3,6, got {value!r}")
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ConfigError(f"{name}: range {part!r} is reversed in {value!r}")
        out.update(range(first, last + 1))
    return frozenset(out)


def _optional_size(value: int | str | None, name: str) -> int | None:
    return None if value is None else parse_size(value, name=name)


# One named converter per field, so an error names the attribute (and mypy's attrs plugin,
# which only understands named converters, can type the constructor).
def _memory_max(value: int | str | None) -> int | None:
    size = _optional_size(value, "memory_max")
    if size is not None and size < MIN_MEMORY:
        raise ConfigError(f"memory_max: {value!r} is below the smallest memory limit, "
                          f"{human_size(MIN_MEMORY)} (a process needs more to start)")
    return size


def _memory_high(value: int | str | None) -> int | None:
    return _optional_size(value, "memory_high")


def _memory_swap_max(value: int | str | None) -> int | None:
    return _optional_size(value, "memory_swap_max")


def _read_bps(value: int | str | None) -> int | None:
    return _optional_size(value, "read_bps")


def _write_bps(value: int | str | None) -> int | None:
    return _optional_size(value, "write_bps")


def _int_range(lo: int, hi: int | None = None) -> Any:
    def check(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{attr.name}: expected an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(f"{attr.name}: must be {bound}, got {value!r}")

    return check


def _cpuset_str(inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError(f"{attr.name}: expected a string like 0-3,6, got {value!r}")
    parse_cpuset(value, name=attr.name)


def _device(value: object) -> tuple[int, int]:
    if isinstance(value, tuple) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return (value[0], value[1])
    if isinstance(value, str):
        pair = _match.decimal_pair(value.strip())
        if pair is not None:
            return (int(pair[0]), int(pair[1]))
    raise ConfigError(f"device: expected 'MAJOR:MINOR' or (major, minor), got {value!r}")


@_record.record
class IoDeviceLimit:
    """Throttle one block device: bytes and operations per second, each optional.

    ``device`` is ``"MAJOR:MINOR"`` or a ``(major, minor)`` pair; use :meth:`for_path` to look
    one up from a device node. Raises :class:`ConfigError` on bad values.
    """

    device: tuple[int, int] = _record.field(converter=_device)
    read_bps: int | None = _record.field(default=None, converter=_read_bps)
    write_bps: int | None = _record.field(default=None, converter=_write_bps)
    read_iops: int | None = _record.field(default=None, validator=_int_range(1))
    write_iops: int | None = _record.field(default=None, validator=_int_range(1))

    @classmethod
    def for_path(cls, path: str, **limits: Any) -> IoDeviceLimit:
        """Limit the block device whose node is ``path`` (e.g. ``/dev/vda``).

        Raises :class:`ConfigError` if ``path`` is missing or not a block device.
        """
        import os
        import stat

        try:
            st = os.stat(path)
        except OSError as e:
            raise ConfigError(f"device: cannot stat {path!r}: {e.strerror}") from e
        if not stat.S_ISBLK(st.st_mode):
            raise ConfigError(f"device: {path!r} is not a block device")
        return cls((os.major(st.st_rdev), os.minor(st.st_rdev)), **limits)

    @property
    def key(self) -> str:
        """The device as the kernel writes it, ``"MAJOR:MINOR"``."""
        return f"{self.device[0]}:{self.device[1]}"


def _io_devices(value: Iterable[IoDeviceLimit] | None) -> tuple[IoDeviceLimit, ...]:
    items = tuple(value or ())
    for item in items:
        if not isinstance(item, IoDeviceLimit):
            raise ConfigError(f"io_devices: expected IoDeviceLimit items, got {item!r}")
    keys = [d.key for d in items]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ConfigError(f"io_devices: device {sorted(dup)[0]} is listed more than once")
    return items


def _cpus(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float, str)):
        raise ConfigError(f"cpus: expected a number of cpus like 1.5, got {value!r}")
    cpus = parse_number(value, name="cpus", what="cpus like 1.5")
    if not cpus > 0 or cpus != cpus or cpus == float("inf"):
        raise ConfigError(f"cpus: must be a positive number, got {value!r}")
    return cpus


@_record.record
class Limits:
    """Resource limits; ``None`` leaves a limit at the kernel's default (unlimited).

    Sizes accept ints or human units (``"512M"``), up to the kernel's largest (2**63 - 1
    bytes); ``memory_max`` is at least 6M. ``cpus=1.5`` is shorthand for a quota of 1.5
    periods; give it or ``cpu_quota``, not both (either is 1 ms to 2**44 - 1 us).
    ``pids_max`` is 1 to 2**22. Weights use the cgroup v2 range 1..10000 (mapped to
    ``cpu.shares`` / ``blkio.weight`` on v1). ``memory_swap_max`` is swap alone, as on v2 (on
    v1 it becomes ``memsw = memory_max + memory_swap_max``).

    Raises :class:`ConfigError`, naming the attribute and the bad value, before any I/O.
    """

    memory_max: int | None = _record.field(default=None, converter=_memory_max)
    memory_high: int | None = _record.field(default=None, converter=_memory_high)
    memory_swap_max: int | None = _record.field(
        default=None, converter=_memory_swap_max
    )
    cpus: float | None = _record.field(default=None, converter=_cpus)
    cpu_quota: int | None = _record.field(default=None, validator=_int_range(1000, MAX_CPU_QUOTA))
    cpu_period: int | None = _record.field(default=None, validator=_int_range(1000, 1_000_000))
    cpu_weight: int | None = _record.field(default=None, validator=_int_range(1, 10_000))
    cpuset_cpus: str | None = _record.field(default=None, validator=_cpuset_str)
    cpuset_mems: str | None = _record.field(default=None, validator=_cpuset_str)
    pids_max: int | None = _record.field(default=None, validator=_int_range(1, MAX_PIDS))
    io_weight: int | None = _record.field(default=None, validator=_int_range(1, 10_000))
    io_devices: tuple[IoDeviceLimit, ...] = _record.field(default=(), converter=_io_devices)

    def __attrs_post_init__(self) -> None:
        if self.cpus is not None and self.cpu_quota is not None:
            raise ConfigError(
                f"cpus={self.cpus!r} and cpu_quota={self.cpu_quota!r}: give one, not both"
            )
        if self.cpus is not None:
            period = self.cpu_period or DEFAULT_CPU_PERIOD
            if self.cpus * period > MAX_CPU_QUOTA:
                raise ConfigError(f"cpus: {self.cpus!r} is more than the kernel's largest cpu "
                                  f"quota ({MAX_CPU_QUOTA} us, {MAX_CPU_QUOTA // period} cpus "
                                  f"at a period of {period} us)")
            if round(self.cpus * period) < 1000:
                raise ConfigError(f"cpus: {self.cpus!r} is below the kernel minimum quota "
                                  "of 1 ms")
        if self.memory_swap_max is not None and self.memory_max is None:
            # v1 can only express swap as memory+swap, so the memory part must be known.
            raise ConfigError("memory_swap_max: needs memory_max as well")
        if self.memory_swap_max is not None and self.memory_max is not None and \
                self.memory_max + self.memory_swap_max > MAX_SIZE:
            raise ConfigError(f"memory_swap_max: memory_max + memory_swap_max is more than the "
                              f"kernel's largest size, {MAX_SIZE} bytes")
        if (
            self.memory_high is not None
            and self.memory_max is not None
            and self.memory_high > self.memory_max
        ):
            raise ConfigError(
                f"memory_high: {self.memory_high!r} is above memory_max={self.memory_max!r}"
            )

    def quota_period(self) -> tuple[int | None, int]:
        """The cpu quota and period in microseconds; quota ``None`` means unlimited."""
        period = self.cpu_period or DEFAULT_CPU_PERIOD
        if self.cpus is not None:
            return round(self.cpus * period), period
        return self.cpu_quota, period

    @property
    def has_cpu_bandwidth(self) -> bool:
        """Whether a quota or period is set (``cpu.max`` / ``cpu.cfs_*``)."""
        return self.cpus is not None or self.cpu_quota is not None or self.cpu_period is not None

    @staticmethod
    def parse_size(value: int | str) -> int:
        """Parse ``"512M"`` and friends to bytes; see :func:`parse_size`. Raises ConfigError."""
        return parse_size(value)
