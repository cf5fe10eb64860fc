"""The three ways of driving one cgroup's files: v2, v1 and hybrid.

Owns the translation of cgroup operations and :class:`Limits` into reads and writes of control
files in the directories it is handed. Must not decide where cgroups live or create/remove
directories (``cgroup.py`` does), and never signals a pid it did not read from its own group.
"""

from __future__ import annotations

import abc
import errno
import os
from _collections_abc import Callable, Mapping, Sequence

from isolate import _record
from isolate.cgroups.detect import V2_KEY, BackendKind, Layout
from isolate.cgroups.devices import DeviceRule, attach_program
from isolate.cgroups.limits import Limits
from isolate.errors import CgroupError, UnsupportedError

__all__ = ["Backend", "Events", "Stats", "make_backend"]


@_record.record
class Events:
    """What a cgroup has been through.

    ``populated``: some process is in it or below it. ``frozen``: the freeze completed.
    ``oom``: times the memory limit was hit and reclaim failed; ``oom_kill``: processes the OOM
    killer ended. On v1 only the kill count exists, so ``oom`` reports it too.
    """

    populated: bool
    frozen: bool
    oom: int = 0
    oom_kill: int = 0


@_record.record
class Stats:
    """Resource use of a cgroup and its descendants; ``None`` where the controller is absent.

    Memory in bytes, cpu times in microseconds, io as bytes and operations summed over devices.
    """

    memory_current: int | None = None
    memory_peak: int | None = None
    cpu_usage_usec: int | None = None
    cpu_user_usec: int | None = None
    cpu_system_usec: int | None = None
    pids_current: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    io_read_ops: int | None = None
    io_write_ops: int | None = None

    def fill_from(self, other: Stats) -> Stats:
        """This record with each missing (``None``) value taken from ``other``."""
        mine = _record.asdict(self)
        theirs = _record.asdict(other)
        return Stats(**{k: theirs[k] if v is None else v for k, v in mine.items()})


# ---------------------------------------------------------------------------- file helpers


def read_file(path: str, step: str = "read") -> str:
    """Read a control file. Raises :class:`CgroupError` with the file's errno."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError as e:
        raise CgroupError(e.errno or errno.EIO, f"cannot read {path}", path, step=step) from e


def read_optional(path: str) -> str | None:
    """Read a control file, or ``None`` when it does not exist (controller absent)."""
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CgroupError(e.errno or errno.EIO, f"cannot read {path}", path, step="read") from e


def write_file(path: str, value: str, step: str = "write", pid: int | None = None) -> None:
    """Write ``value`` to a control file in one write(2); no create, no truncate.

    Raises :class:`CgroupError` carrying the kernel's errno (EINVAL: value refused, EBUSY,
    ENOENT: no such cgroup or file, EACCES: not delegated).
    """
    write_each(path, (value,), step, pid)


def write_each(path: str, values: Sequence[str], step: str = "write",
               pid: int | None = None) -> None:
    """Write each of ``values`` to a control file in a write(2) of its own, through one open
    (a file that takes one entry per write, as v1's ``devices.allow``). Raises as
    :func:`write_file`, for the first value refused (the ones before it are in force)."""
    if not values:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(
            e.errno or errno.EIO, f"cannot open {path} to write {values[0]!r}", path,
            step=step, pid=pid,
        ) from e
    try:
        for value in values:
            try:
                os.write(fd, value.encode())
            except OSError as e:
                raise CgroupError(
                    e.errno or errno.EIO, f"cannot write {value!r} to {path}", path,
                    step=step, pid=pid,
                ) from e
    finally:
        os.close(fd)


def parse_kv(text: str | None) -> dict[str, int]:
    """Parse ``key value`` lines (memory.events, cpu.stat, cgroup.events …)."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def parse_pids(text: str) -> list[int]:
    return [int(x) for x in text.split()]


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


# ---------------------------------------------------------------------------- limit writes


@_record.record
class LimitWrite:
    """Files to write for one limit. ``files`` pairs candidate names (first that exists wins)
    with the value; written in order, and in reverse when the first order is refused with
    EINVAL (v1 insists memsw >= memory limit, whichever way the limits move)."""

    field: str
    controller: str
    files: tuple[tuple[tuple[str, ...], str], ...]


def _write(field: str, controller: str, name: str | tuple[str, ...], value: object) -> LimitWrite:
    names = (name,) if isinstance(name, str) else name
    return LimitWrite(field, controller, ((names, str(value)),))


def _same_on_v1_and_v2(limits: Limits) -> list[LimitWrite]:
    # cpuset and pids files have the same names and formats in both versions.
    out = []
    if limits.cpuset_cpus is not None:
        out.append(_write("cpuset_cpus", "cpuset", "cpuset.cpus", limits.cpuset_cpus))
    if limits.cpuset_mems is not None:
        out.append(_write("cpuset_mems", "cpuset", "cpuset.mems", limits.cpuset_mems))
    if limits.pids_max is not None:
        out.append(_write("pids_max", "pids", "pids.max", limits.pids_max))
    return out


def weight_to_shares(weight: int) -> int:
    """Map a v2 cpu weight (1..10000, default 100) to v1 cpu.shares (2..262144, default 1024)."""
    return 2 + ((weight - 1) * 262142) // 9999


def weight_to_blkio(weight: int) -> int:
    """Map a v2 io weight (1..10000) to a v1 blkio weight (10..1000)."""
    return 10 + ((weight - 1) * 990) // 9999


# ---------------------------------------------------------------------------- backends


class Backend(abc.ABC):
    """Operations on one cgroup whose directory in each hierarchy is given in ``dirs``."""

    kind: BackendKind

    def __init__(self, layout: Layout, dirs: Mapping[str, str]) -> None:
        self.layout = layout
        self.dirs = dict(dirs)

    def procs_files(self) -> list[str]:
        """Every cgroup.procs path the group spans, one per hierarchy."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def procs(self) -> list[int]:
        """Pids in the group (union over hierarchies, sorted)."""
        pids: set[int] = set()
        for path in self.procs_files():
            try:
                pids.update(parse_pids(read_file(path, step="procs")))
            except CgroupError as e:
                if e.errno != errno.ENOENT:
                    raise
        return sorted(pids)

    def add(self, pid: int) -> None:
        """Move ``pid`` into the group in every hierarchy."""
        for path in self.procs_files():
            write_file(path, str(pid), step="add", pid=pid)

    @abc.abstractmethod
    def populated(self) -> bool: ...

    def events_file(self) -> str | None:
        """A file that can be poll(2)ed for POLLPRI when ``populated`` changes, if any."""
        return None

    @abc.abstractmethod
    def can_freeze(self) -> bool: ...

    @abc.abstractmethod
    def set_frozen(self, frozen: bool) -> None: ...

    @abc.abstractmethod
    def frozen(self) -> bool: ...

    def kill_all(self) -> bool:
        """Kill every process at once if the kernel can (cgroup.kill); False when it cannot."""
        return False

    @abc.abstractmethod
    def events(self) -> Events: ...

    @abc.abstractmethod
    def stats(self) -> Stats: ...

    @abc.abstractmethod
    def limit_writes(self, limits: Limits) -> list[LimitWrite]: ...

    @abc.abstractmethod
    def set_devices(self, rules: Sequence[DeviceRule]) -> None:
        """Allow the group's processes only the devices ``rules`` name (see
        :mod:`isolate.cgroups.devices`)."""

    @abc.abstractmethod
    def controller_dir(self, controller: str) -> str:
        """Directory holding ``controller``'s files; raises UnsupportedError saying why not."""

    def apply(self, limits: Limits, best_effort: bool) -> tuple[str, ...]:
        """Write ``limits``; return the ones skipped (only when ``best_effort``).

        Raises :class:`UnsupportedError` naming the controller and why it is unusable, and
        :class:`CgroupError` when the kernel refuses a value.
        """
        skipped: list[str] = []
        for w in self.limit_writes(limits):
            try:
                self._apply_one(w)
            except UnsupportedError as e:
                if not best_effort:
                    raise
                skipped.append(f"{w.field}: {e}")
        return tuple(skipped)

    def _apply_one(self, w: LimitWrite) -> None:
        d = self.controller_dir(w.controller)
        resolved: list[tuple[str, str]] = []
        for names, value in w.files:
            path = next((os.path.join(d, n) for n in names
                         if os.path.exists(os.path.join(d, n))), None)
            if path is None:
                raise UnsupportedError(
                    f"{w.field} needs {' or '.join(names)} of the {w.controller} controller, "
                    f"which this kernel does not provide in {d}",
                    missing=names[0],
                )
            resolved.append((path, value))
        try:
            for path, value in resolved:
                write_file(path, value, step=f"limit {w.field}")
        except CgroupError as e:
            if e.errno != errno.EINVAL or len(resolved) < 2:
                raise
            for path, value in reversed(resolved):
                write_file(path, value, step=f"limit {w.field}")


class V2Backend(Backend):
    """A cgroup of the unified hierarchy: core and controllers in one directory."""

    kind = BackendKind.V2

    @property
    def dir(self) -> str:
        return self.dirs[V2_KEY]

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def populated(self) -> bool:
        return parse_kv(read_file(self._file("cgroup.events"), "events")).get("populated", 0) == 1

    def events_file(self) -> str | None:
        return self._file("cgroup.events")

    def can_freeze(self) -> bool:
        return os.path.exists(self._file("cgroup.freeze"))

    def set_frozen(self, frozen: bool) -> None:
        write_file(self._file("cgroup.freeze"), "1" if frozen else "0", step="freeze")

    def frozen(self) -> bool:
        return parse_kv(read_file(self._file("cgroup.events"), "events")).get("frozen", 0) == 1

    def kill_all(self) -> bool:
        path = self._file("cgroup.kill")
        if not os.path.exists(path):  # before Linux 5.14
            return False
        write_file(path, "1", step="kill")
        return True

    def events(self) -> Events:
        core = parse_kv(read_file(self._file("cgroup.events"), "events"))
        mem = parse_kv(read_optional(self._file("memory.events")))
        return Events(
            populated=core.get("populated", 0) == 1,
            frozen=core.get("frozen", 0) == 1,
            oom=mem.get("oom", 0),
            oom_kill=mem.get("oom_kill", 0),
        )

    def stats(self) -> Stats:
        cpu = parse_kv(read_optional(self._file("cpu.stat")))
        io_read_bytes = io_write_bytes = io_read_ops = io_write_ops = None
        io_text = read_optional(self._file("io.stat"))
        if io_text is not None:
            totals = {"rbytes": 0, "wbytes": 0, "rios": 0, "wios": 0}
            for line in io_text.splitlines():
                for item in line.split()[1:]:
                    key, _, value = item.partition("=")
                    if key in totals and value.isdigit():
                        totals[key] += int(value)
            io_read_bytes, io_write_bytes = totals["rbytes"], totals["wbytes"]
            io_read_ops, io_write_ops = totals["rios"], totals["wios"]
        return Stats(
            memory_current=_int_or_none(read_optional(self._file("memory.current"))),
            memory_peak=_int_or_none(read_optional(self._file("memory.peak"))),
            cpu_usage_usec=cpu.get("usage_usec"),
            cpu_user_usec=cpu.get("user_usec"),
            cpu_system_usec=cpu.get("system_usec"),
            pids_current=_int_or_none(read_optional(self._file("pids.current"))),
            io_read_bytes=io_read_bytes,
            io_write_bytes=io_write_bytes,
            io_read_ops=io_read_ops,
            io_write_ops=io_write_ops,
        )

    def set_devices(self, rules: Sequence[DeviceRule]) -> None:
        attach_program(self.dir, rules)

    def controller_dir(self, controller: str) -> str:
        have = read_file(self._file("cgroup.controllers"), "limits").split()
        if controller in have:
            return self.dir
        parent = os.path.dirname(self.dir)
        offered = (read_optional(os.path.join(parent, "cgroup.controllers")) or "").split()
        if controller not in offered:
            why = f"it is not delegated to {parent} (not in its cgroup.controllers)"
        else:
            why = (f"it is not enabled in {parent}/cgroup.subtree_control (a cgroup with "
                   f"processes of its own cannot enable controllers for its children)")
        raise UnsupportedError(f"the {controller} controller is unavailable: {why}",
                               missing=controller)

    def limit_writes(self, limits: Limits) -> list[LimitWrite]:
        out: list[LimitWrite] = []
        if limits.memory_max is not None:
            out.append(_write("memory_max", "memory", "memory.max", limits.memory_max))
        if limits.memory_high is not None:
            out.append(_write("memory_high", "memory", "memory.high", limits.memory_high))
        if limits.memory_swap_max is not None:
            out.append(_write("memory_swap_max", "memory", "memory.swap.max",
                              limits.memory_swap_max))
        if limits.has_cpu_bandwidth:
            quota, period = limits.quota_period()
            out.append(_write("cpu_quota", "cpu", "cpu.max",
                              f"{quota if quota is not None else 'max'} {period}"))
        if limits.cpu_weight is not None:
            out.append(_write("cpu_weight", "cpu", "cpu.weight", limits.cpu_weight))
        out.extend(_same_on_v1_and_v2(limits))
        if limits.io_weight is not None:
            out.append(_write("io_weight", "io", "io.weight", f"default {limits.io_weight}"))
        for dev in limits.io_devices:
            parts = [f"{k}={v}" for k, v in (
                ("rbps", dev.read_bps), ("wbps", dev.write_bps),
                ("riops", dev.read_iops), ("wiops", dev.write_iops)) if v is not None]
            if parts:
                out.append(_write("io_devices", "io", "io.max", f"{dev.key} {' '.join(parts)}"))
        return out


class V1Backend(Backend):
    """A cgroup spread over v1 hierarchies, one directory per (co-mounted) controller set."""

    kind = BackendKind.V1

    def _dir_for(self, controller: str) -> str | None:
        h = self.layout.v1_for(controller)
        return None if h is None else self.dirs.get(h.key)

    def _file(self, controller: str, name: str) -> str | None:
        d = self._dir_for(controller)
        return None if d is None else os.path.join(d, name)

    def _read(self, controller: str, name: str) -> str | None:
        path = self._file(controller, name)
        return None if path is None else read_optional(path)

    def populated(self) -> bool:
        return bool(self.procs())

    def can_freeze(self) -> bool:
        return self._dir_for("freezer") is not None

    def set_frozen(self, frozen: bool) -> None:
        path = self._file("freezer", "freezer.state")
        if path is None:
            raise UnsupportedError("freezing needs the freezer controller, which is not mounted",
                                   missing="freezer")
        write_file(path, "FROZEN" if frozen else "THAWED", step="freeze")

    def frozen(self) -> bool:
        return (self._read("freezer", "freezer.state") or "").strip() == "FROZEN"

    def events(self) -> Events:
        oom = parse_kv(self._read("memory", "memory.oom_control"))
        return Events(
            populated=self.populated(),
            frozen=self.frozen(),
            oom=oom.get("oom_kill", 0),
            oom_kill=oom.get("oom_kill", 0),
        )

    def stats(self) -> Stats:
        def ns_to_us(value: int | None) -> int | None:
            return None if value is None else value // 1000

        usage = _int_or_none(self._read("cpuacct", "cpuacct.usage"))
        user = ns_to_us(_int_or_none(self._read("cpuacct", "cpuacct.usage_user")))
        system = ns_to_us(_int_or_none(self._read("cpuacct", "cpuacct.usage_sys")))
        if user is None and usage is not None:
            # Older kernels only count clock ticks (USER_HZ) in cpuacct.stat.
            ticks = parse_kv(self._read("cpuacct", "cpuacct.stat"))
            hz = os.sysconf("SC_CLK_TCK")
            if "user" in ticks:
                user = ticks["user"] * 1_000_000 // hz
                system = ticks.get("system", 0) * 1_000_000 // hz

        def blkio(name: str) -> tuple[int | None, int | None]:
            text = self._read("blkio", f"blkio.throttle.{name}_recursive")
            if text is None:
                text = self._read("blkio", f"blkio.throttle.{name}")
            if text is None:
                return None, None
            read = write = 0
            for line in text.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[2].isdigit():
                    if parts[1] == "Read":
                        read += int(parts[2])
                    elif parts[1] == "Write":
                        write += int(parts[2])
            return read, write

        rbytes, wbytes = blkio("io_service_bytes")
        rops, wops = blkio("io_serviced")
        return Stats(
            memory_current=_int_or_none(self._read("memory", "memory.usage_in_bytes")),
            memory_peak=_int_or_none(self._read("memory", "memory.max_usage_in_bytes")),
            cpu_usage_usec=ns_to_us(usage),
            cpu_user_usec=user,
            cpu_system_usec=system,
            pids_current=_int_or_none(self._read("pids", "pids.current")),
            io_read_bytes=rbytes,
            io_write_bytes=wbytes,
            io_read_ops=rops,
            io_write_ops=wops,
        )

    def set_devices(self, rules: Sequence[DeviceRule]) -> None:
        # Deny all, then allow each rule (a child group can only narrow its parent's).
        d = self.controller_dir("devices")
        write_file(os.path.join(d, "devices.deny"), "a", step="devices")
        write_each(os.path.join(d, "devices.allow"), [r.v1() for r in rules], step="devices")

    def controller_dir(self, controller: str) -> str:
        name = "blkio" if controller == "io" else controller
        d = self._dir_for(name)
        if d is None:
            raise UnsupportedError(
                f"the {name} controller is unavailable: no cgroup v1 hierarchy carries it "
                f"(mounted: {', '.join(h.key for h in self.layout.v1) or 'none'})",
                missing=name,
            )
        return d

    def limit_writes(self, limits: Limits) -> list[LimitWrite]:
        out: list[LimitWrite] = []
        if limits.memory_max is not None:
            files: list[tuple[tuple[str, ...], str]] = [
                (("memory.limit_in_bytes",), str(limits.memory_max))]
            if limits.memory_swap_max is not None:
                files.append((("memory.memsw.limit_in_bytes",),
                              str(limits.memory_max + limits.memory_swap_max)))
            out.append(LimitWrite("memory_max", "memory", tuple(files)))
        if limits.memory_high is not None:
            out.append(_write("memory_high", "memory", "memory.soft_limit_in_bytes",
                              limits.memory_high))
        if limits.has_cpu_bandwidth:
            quota, period = limits.quota_period()
            out.append(LimitWrite("cpu_quota", "cpu", (
                (("cpu.cfs_period_us",), str(period)),
                (("cpu.cfs_quota_us",), str(quota if quota is not None else -1)),
            )))
        if limits.cpu_weight is not None:
            out.append(_write("cpu_weight", "cpu", "cpu.shares",
                              weight_to_shares(limits.cpu_weight)))
        out.extend(_same_on_v1_and_v2(limits))
        if limits.io_weight is not None:
            out.append(_write("io_weight", "blkio", ("blkio.weight", "blkio.bfq.weight"),
                              weight_to_blkio(limits.io_weight)))
        for dev in limits.io_devices:
            for attr, fname in (("read_bps", "read_bps_device"),
                                ("write_bps", "write_bps_device"),
                                ("read_iops", "read_iops_device"),
                                ("write_iops", "write_iops_device")):
                value = getattr(dev, attr)
                if value is not None:
                    out.append(_write("io_devices", "blkio", f"blkio.throttle.{fname}",
                                      f"{dev.key} {value}"))
        return out


class HybridBackend(Backend):
    """v2 core (procs, freeze, kill, events) from the unified mount; v1 for controllers."""

    kind = BackendKind.HYBRID

    def __init__(self, layout: Layout, dirs: Mapping[str, str]) -> None:
        super().__init__(layout, dirs)
        self.core = V2Backend(layout, {V2_KEY: dirs[V2_KEY]})
        self.ctl = V1Backend(layout, {k: v for k, v in dirs.items() if k != V2_KEY})

    def procs(self) -> list[int]:
        return self.core.procs()

    def populated(self) -> bool:
        return self.core.populated()

    def events_file(self) -> str | None:
        return self.core.events_file()

    def can_freeze(self) -> bool:
        return self.core.can_freeze() or self.ctl.can_freeze()

    def _freezer(self) -> Backend:
        return self.core if self.core.can_freeze() else self.ctl

    def set_frozen(self, frozen: bool) -> None:
        self._freezer().set_frozen(frozen)

    def frozen(self) -> bool:
        return self._freezer().frozen()

    def kill_all(self) -> bool:
        return self.core.kill_all()

    def events(self) -> Events:
        core = self.core.events()
        if self.layout.v1_for("memory") is None:
            return core
        ctl = self.ctl.events()
        return _record.evolve(core, oom=ctl.oom, oom_kill=ctl.oom_kill)

    def stats(self) -> Stats:
        return self.ctl.stats().fill_from(self.core.stats())

    def controller_dir(self, controller: str) -> str:
        return self.ctl.controller_dir(controller)

    def limit_writes(self, limits: Limits) -> list[LimitWrite]:
        return self.ctl.limit_writes(limits)

    def set_devices(self, rules: Sequence[DeviceRule]) -> None:
        # The kernel checks both: the v1 controller where it is mounted, and the program of
        # the task's v2 cgroup whatever controllers that hierarchy has.
        has_v1 = self.layout.v1_for("devices") is not None
        if has_v1:
            self.ctl.set_devices(rules)
        try:
            self.core.set_devices(rules)
        except (UnsupportedError, CgroupError):
            if not has_v1:
                raise


_BACKENDS: dict[BackendKind, Callable[[Layout, Mapping[str, str]], Backend]] = {
    BackendKind.V2: V2Backend,
    BackendKind.V1: V1Backend,
    BackendKind.HYBRID: HybridBackend,
}


def make_backend(layout: Layout, dirs: Mapping[str, str]) -> Backend:
    """The backend for ``layout.kind`` over the directories ``dirs`` (hierarchy key -> dir)."""
    return _BACKENDS[layout.kind](layout, dirs)

