"""The runtime config: what one isolated process tree is, shaped like the OCI runtime spec.

Owns the vocabulary every front-end fills in -- :class:`isolate.Sandbox` with its strict
defaults, containers with Docker's, an OCI bundle's ``config.json`` -- and its validation. The
records mirror ``config.json``'s ``process``, ``root``, ``mounts``, ``hostname`` and ``linux``
sections; where isolate needs a word the spec lacks it says so (``Mount.per_process``). Values
only: nothing here makes a system call; :mod:`isolate.runtime.compiler` turns a config into
plans.
"""

from __future__ import annotations

import os
import time

# collections.abc's classes, from the module the interpreter has loaded at start: importing
# collections.abc loads the collections package too (~2 ms of a run's start).
from _collections_abc import Iterable, Mapping

from isolate import _plan, _record
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError
from isolate.fs.mounts import Bind, Tmpfs, check_container_path
from isolate.namespaces import IdMap, NamespaceKind
from isolate.security import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    CapabilitySet,
    SeccompProfile,
)

if TYPE_CHECKING:
    from typing import Any, Final

    import attrs

__all__ = [
    "DEFAULT_DEVICES",
    "DEFAULT_PATH",
    "Capabilities",
    "Device",
    "Mount",
    "NamespaceSpec",
    "Process",
    "Rlimit",
    "Root",
    "RuntimeConfig",
    "User",
    "host_devices",
]

DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_MAX_ID = 2**32 - 2


def _check_id(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise ConfigError(f"{attribute.name} must be an int in [0, {_MAX_ID}], not {value!r}")


def _ids(value: Iterable[int]) -> tuple[int, ...]:
    out = tuple(value)
    for gid in out:
        if isinstance(gid, bool) or not isinstance(gid, int) or not 0 <= gid <= _MAX_ID:
            raise ConfigError(f"additional_gids must be ints in [0, {_MAX_ID}], not {gid!r}")
    if len(out) > 65536:
        raise ConfigError(f"at most 65536 additional groups, not {len(out)}")
    return out


def _umask(_: object, attribute: attrs.Attribute[int | None], value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 <= value <= 0o777):
        raise ConfigError(f"umask must be an int in [0, 0o777] or None, not {value!r}")


@_record.record
class User:
    """Who the process runs as inside (``process.user``): numeric ids only. Names are the
    front-end's business (a container looks them up in its image)."""

    uid: int = _record.field(default=0, validator=_check_id)
    gid: int = _record.field(default=0, validator=_check_id)
    additional_gids: tuple[int, ...] = _record.field(default=(), converter=_ids)
    umask: int | None = _record.field(default=None, validator=_umask)


def _capset(value: CapabilitySet | Iterable[str] | None) -> CapabilitySet:
    if value is None:
        return CapabilitySet.none()
    if isinstance(value, CapabilitySet):
        return value
    if isinstance(value, str):
        value = [value]
    return CapabilitySet.from_names(list(value))


@_record.record
class Capabilities:
    """The five capability sets of ``process.capabilities``.

    ``bounding`` limits what the process and its children can ever gain; ``ambient`` is kept
    across the exec of an unprivileged program. Use :meth:`of` for the usual case, one set in
    all of them.
    """

    bounding: CapabilitySet = _record.field(factory=CapabilitySet.none, converter=_capset)
    effective: CapabilitySet = _record.field(factory=CapabilitySet.none, converter=_capset)
    permitted: CapabilitySet = _record.field(factory=CapabilitySet.none, converter=_capset)
    inheritable: CapabilitySet = _record.field(factory=CapabilitySet.none, converter=_capset)
    ambient: CapabilitySet = _record.field(factory=CapabilitySet.none, converter=_capset)

    def __attrs_post_init__(self) -> None:
        for name in ("effective", "permitted", "inheritable", "ambient"):
            extra = getattr(self, name) - self.bounding
            if name != "inheritable" and extra:
                raise ConfigError(f"capabilities.{name} has {extra.names()}, which the "
                                  "bounding set lacks")
        if self.effective - self.permitted:
            raise ConfigError("capabilities.effective must be a subset of permitted")
        if self.ambient - (self.permitted & self.inheritable):
            raise ConfigError("capabilities.ambient must be a subset of permitted and "
                              "inheritable")

    @classmethod
    def of(cls, caps: CapabilitySet | Iterable[str] | None) -> Capabilities:
        """``caps`` in the bounding, effective and permitted sets, none inheritable or
        ambient: what Docker (since 20.10) and runc give a container. A non-root user then
        keeps none across exec, as in Docker; give ``inheritable`` and ``ambient`` too for a
        command that should."""
        s = _capset(caps)
        none = CapabilitySet.none()
        return cls(bounding=s, effective=s, permitted=s, inheritable=none, ambient=none)


# (From the plan's table, not the resource module's names, which cost a start ~0.3 ms to load;
# "ofile" is BSD's name of "nofile", which resource has too.)
_RLIMITS: Final = {**{name.lower(): number for number, name in enumerate(_plan.RLIMIT_NAMES)},
                   "ofile": _plan.RLIMIT_NAMES.index("NOFILE")}
RLIM_INFINITY: Final = 2**64 - 1


def _rlimit_type(value: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"rlimit type must be a name like 'RLIMIT_NOFILE' or 'nofile', "
                          f"not {value!r}")
    key = value.lower().removeprefix("rlimit_")
    if key not in _RLIMITS:
        raise ConfigError(f"unknown rlimit {value!r} (known: {', '.join(sorted(_RLIMITS))})")
    return key


def _rlimit_value(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= RLIM_INFINITY:
        raise ConfigError(f"rlimit {attribute.name} must be an int in [0, 2**64-1] "
                          f"(2**64-1: unlimited), not {value!r}")


@_record.record
class Rlimit:
    """One of ``process.rlimits``: ``type`` as ``"nofile"`` or ``"RLIMIT_NOFILE"``."""

    type: str = _record.field(converter=_rlimit_type)
    soft: int = _record.field(validator=_rlimit_value)
    hard: int = _record.field(validator=_rlimit_value)

    def __attrs_post_init__(self) -> None:
        if self.soft > self.hard:
            raise ConfigError(f"rlimit {self.type}: soft {self.soft} is above hard {self.hard}")

    @property
    def number(self) -> int:
        """The ``RLIMIT_*`` constant."""
        return int(_RLIMITS[self.type])

    @classmethod
    def parse(cls, spec: str) -> Rlimit:
        """``NAME=SOFT[:HARD]`` as ``docker run --ulimit`` takes it (``-1``: unlimited).

        Raises ConfigError."""
        name, sep, values = spec.partition("=")
        soft_s, _, hard_s = values.partition(":")
        try:
            soft = int(soft_s)
            hard = int(hard_s) if hard_s else soft
        except ValueError:
            soft = hard = -2
        if not sep or soft < -1 or hard < -1:
            raise ConfigError(f"--ulimit must be NAME=SOFT[:HARD], not {spec!r}")
        return cls(name, RLIM_INFINITY if soft == -1 else soft,
                   RLIM_INFINITY if hard == -1 else hard)


def _args(value: Iterable[str | bytes]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise ConfigError("args must be a sequence of arguments, not a string")
    out = tuple(os.fsdecode(a) for a in value)
    for a in out:
        if "\0" in a:
            raise ConfigError(f"an argument contains a NUL byte: {a!r}")
    return out


def _env(value: Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[str]
         ) -> tuple[tuple[str, str], ...]:
    items: Iterable[Any] = value.items() if isinstance(value, Mapping) else value
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            key, sep, val = item.partition("=")
            if not sep:
                raise ConfigError(f"an environment entry must be KEY=VALUE, not {item!r}")
        else:
            key, val = item
        if not isinstance(key, str) or not isinstance(val, str):
            raise ConfigError(f"env must map str to str, not {key!r}: {val!r}")
        if not key or "=" in key or "\0" in key or "\0" in val:
            raise ConfigError(f"invalid environment variable {key!r}")
        out[key] = val
    return tuple(out.items())


#: ``process.env`` as the config takes it (a mapping, pairs or ``KEY=VALUE`` strings, later
#: keys win), for front-ends that take environments too. Raises ConfigError.
parse_env = _env


def _cwd(value: str) -> str:
    return check_container_path(value, "cwd")


def _rlimits(value: Iterable[Rlimit]) -> tuple[Rlimit, ...]:
    out = tuple(value)
    seen = set()
    for r in out:
        if not isinstance(r, Rlimit):
            raise ConfigError(f"rlimits must be Rlimit records, not {r!r}")
        if r.type in seen:
            raise ConfigError(f"rlimit {r.type} is given twice")
        seen.add(r.type)
    return out


@_record.record
class Process:
    """``process``: what runs and with which identity and privileges.

    ``args`` may be empty in a config that runs many processes (a sandbox gives each its own
    argv); ``env`` is kept in order, later keys win.
    """

    args: tuple[str, ...] = _record.field(default=(), converter=_args)
    env: tuple[tuple[str, str], ...] = _record.field(default=(), converter=_env)
    cwd: str = _record.field(default="/", converter=_cwd)
    user: User = _record.field(factory=User, validator=_record.instance_of(User))
    capabilities: Capabilities = _record.field(
        factory=Capabilities, validator=_record.instance_of(Capabilities))
    rlimits: tuple[Rlimit, ...] = _record.field(default=(), converter=_rlimits)
    no_new_privileges: bool = True
    terminal: bool = False
    oom_score_adj: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.oom_score_adj is not None and not -1000 <= self.oom_score_adj <= 1000:
            raise ConfigError(f"oom_score_adj must be in [-1000, 1000], not "
                              f"{self.oom_score_adj!r}")

    @property
    def env_dict(self) -> dict[str, str]:
        """``env`` as a dict."""
        return dict(self.env)


def _root_path(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    raw = os.fspath(value)
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise ConfigError(f"root path must be a non-empty str path without NUL, not {raw!r}")
    return os.path.abspath(raw)


@_record.record
class Root:
    """``root``: the root filesystem. ``path=None`` is the caller's own root (a sandbox's
    default); a compiled image overlay is passed to the compiler as an op instead.

    ``nodev`` (isolate's, not the spec's): no device node anywhere in the root can be opened
    (the host's disks, an image's nodes; a read-only root does not stop writes to a device);
    ``/dev`` gets the config's ``devices`` on a mount of its own. Off only for a privileged
    process tree.
    """

    path: str | None = _record.field(default=None, converter=_root_path)
    readonly: bool = True
    nodev: bool = True


_MOUNT_TYPES: Final = frozenset({"bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue",
                                 "cgroup", "cgroup2"})
_FLAG_OPTIONS: Final = frozenset({
    "bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
    "private", "rprivate", "slave", "rslave", "shared", "rshared", "strictatime",
    "relatime", "noatime", "nodiratime", "recursive",
})


def _mount_options(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    out = tuple(value)
    for o in out:
        if not isinstance(o, str) or not o or "\0" in o or "," in o:
            raise ConfigError(f"a mount option must be a non-empty string without ',' or "
                              f"NUL, not {o!r}")
    return out


def _destination(value: str) -> str:
    return check_container_path(value, "mount destination")


@_record.record
class Mount:
    """One of ``mounts``: ``type`` is ``bind`` (``source`` a host path), ``tmpfs``, ``proc``,
    ``sysfs``, ``devpts``, ``mqueue`` or ``cgroup2``; ``options`` are OCI's strings (``ro``,
    ``nosuid``, ``nodev``, ``noexec``, ``rbind``, ``mode=1777``, ``size=64m`` ...).

    ``per_process`` (isolate's, not the spec's) marks a mount each process of a config that
    runs many gets for itself (a sandbox's private ``/tmp``); ``/proc`` always is, since each
    process has a pid namespace of its own there.
    """

    destination: str = _record.field(converter=_destination)
    type: str = "bind"
    source: str | None = None
    options: tuple[str, ...] = _record.field(default=(), converter=_mount_options)
    per_process: bool = False

    def __attrs_post_init__(self) -> None:
        if self.type not in _MOUNT_TYPES:
            raise ConfigError(f"mount type {self.type!r} is not supported (one of "
                              f"{', '.join(sorted(_MOUNT_TYPES))})")
        if self.type == "bind":
            if not self.source:
                raise ConfigError(f"a bind mount on {self.destination} needs a source")
            if "\0" in self.source:
                raise ConfigError(f"bind source contains a NUL byte: {self.source!r}")
            object.__setattr__(self, "source", os.path.abspath(self.source))
        if self.destination == "/":
            raise ConfigError("cannot mount over the root directory '/'")

    @property
    def readonly(self) -> bool:
        """Whether the mount is read-only (the ``ro`` option)."""
        return "ro" in self.options

    def option(self, key: str) -> str | None:
        """The value of a ``key=value`` option, or None."""
        for o in self.options:
            k, sep, v = o.partition("=")
            if sep and k == key:
                return v
        return None

    @property
    def data(self) -> str | None:
        """The options that are not mount flags, joined for mount(2)'s data argument."""
        rest = [o for o in self.options if o not in _FLAG_OPTIONS]
        return ",".join(rest) if rest else None

    @classmethod
    def from_bind(cls, bind: Bind) -> Mount:
        """A mount record for a :class:`isolate.Bind` (``nodev`` unless it asks for ``dev``)."""
        options = ("rbind", *(("ro",) if bind.readonly else ()),
                   *(() if bind.dev else ("nodev",)))
        return cls(bind.target, "bind", bind.source, options)

    @classmethod
    def from_tmpfs(cls, tmpfs: Tmpfs, *, per_process: bool = False) -> Mount:
        """A mount record for a :class:`isolate.Tmpfs` (nosuid, nodev)."""
        options = ["nosuid", "nodev", f"mode={tmpfs.mode:o}"]
        if tmpfs.size is not None:
            options.append(f"size={tmpfs.size}")
        return cls(tmpfs.target, "tmpfs", "tmpfs", options, per_process=per_process)


def _node(value: Iterable[Any] | None) -> tuple[str, int, int, int, int, int] | None:
    if value is None:
        return None
    try:
        kind, major, minor, mode, uid, gid = value  # a list from JSON, too
    except (TypeError, ValueError):
        kind = major = minor = mode = uid = gid = None
    if kind not in ("c", "b") or not all(isinstance(n, int) and n >= 0
                                         for n in (major, minor, mode, uid, gid)):
        raise ConfigError(f"device node must be (c|b, major, minor, mode, uid, gid), not "
                          f"{value!r}")
    return (kind, major, minor, mode, uid, gid)


@_record.record
class Device:
    """One of ``linux.devices``: a device node made visible at ``path`` inside by binding the
    host's node ``source`` (default: the same path) -- which works in user namespaces too,
    where mknod cannot. ``access`` (``r``, ``w``, ``m`` letters) is what the device cgroup
    allows for it.

    With ``node`` (``(kind, major, minor, mode, uid, gid)``, kind ``"c"`` or ``"b"``; see
    :meth:`of_host_node`) the node is made with mknod outside a user namespace instead, as
    runc makes ``linux.devices``: no mount per node (a privileged container gets every host
    device this way); in a user namespace it is bound from ``source`` still."""

    path: str = _record.field(converter=_destination)
    source: str | None = None
    access: str = "rwm"
    optional: bool = False
    node: tuple[str, int, int, int, int, int] | None = _record.field(default=None,
                                                                   converter=_node)

    @classmethod
    def of_host_node(cls, path: str, *, optional: bool = True) -> Device:
        """The host's device node at ``path``, to be made at the same path inside.

        Raises:
            ConfigError: ``path`` is not a character or block device.
        """
        import stat

        from isolate.cgroups.devices import rule_for_node

        rule = rule_for_node(path)  # its type and numbers, or the ConfigError
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError(f"device {path!r}: {exc.strerror}") from None
        return cls(path, optional=optional,
                   node=(rule.kind, rule.major or 0, rule.minor or 0, stat.S_IMODE(st.st_mode),
                         st.st_uid, st.st_gid))

    def __attrs_post_init__(self) -> None:
        if not self.path.startswith("/dev/"):
            raise ConfigError(f"device path must be under /dev, not {self.path!r}")
        if not self.access or set(self.access) - set("rwm"):
            raise ConfigError(f"device access must be letters of 'rwm', not {self.access!r}")
        if self.source is None:
            object.__setattr__(self, "source", self.path)
        elif "\0" in self.source:
            raise ConfigError(f"device source contains a NUL byte: {self.source!r}")

    @classmethod
    def parse(cls, spec: str) -> Device:
        """``HOST[:CONTAINER][:ACCESS]`` as ``docker run --device`` takes it (``/dev/fuse``,
        ``/dev/sdb:/dev/xvdb:r``, ``/dev/kvm:rw``).

        Raises ConfigError."""
        parts = spec.split(":") if isinstance(spec, str) else []
        if len(parts) == 2 and parts[1] and not parts[1].startswith("/"):
            parts = [parts[0], parts[0], parts[1]]
        if not 1 <= len(parts) <= 3 or not all(parts) or not parts[0].startswith("/"):
            raise ConfigError(f"device must look like HOST[:CONTAINER][:rwm], not {spec!r}")
        host, inside = parts[0], parts[1] if len(parts) > 1 else parts[0]
        access = parts[2] if len(parts) == 3 else "rwm"
        if len(set(access)) != len(access):
            raise ConfigError(f"device access must be letters of 'rwm', not {access!r}")
        return cls(inside, host, access)


#: The device nodes every sandbox and container gets (Docker's, but for the console, which
#: comes from the terminal a process is given).
DEFAULT_DEVICES: Final = tuple(Device(f"/dev/{name}", optional=True)
                               for name in ("null", "zero", "full", "random", "urandom", "tty"))

# Below /dev, what a host's device list leaves out (as runc's and Docker's): the terminals
# and memories of the host's own sessions (/dev/ptmx: a link to the container's own devpts), and
# udev's and LXC's state.
_NOT_HOST_DEVICES: Final = frozenset({"/dev/pts", "/dev/shm", "/dev/fd", "/dev/mqueue",
                                      "/dev/.lxc", "/dev/.lxd-mounts", "/dev/.udev",
                                      "/dev/console", "/dev/ptmx"})


def host_devices(root: str = "/dev") -> tuple[Device, ...]:
    """Every character and block device node below the host's ``/dev`` (``--privileged``'s
    devices), each to be made at the same path, ``optional`` (one that vanishes is skipped).
    Symlinks, the host's terminals, shared memory and udev state are left out.

    The walk (a stat of every node, ~1.4 ms here for 100 nodes) is kept per process and
    ``root`` while no directory of it changed: every directory walked is stat'ed again (its
    device, inode, size, mtime and ctime; a node made, removed or renamed changes its
    directory), and any difference walks again. Directory times are coarse (a kernel tick), so
    a walk that saw a directory changed less than ``_RACY_NS`` before is not kept (as git
    treats a "racily clean" index entry): two changes within one tick cannot hide behind one
    time. A new mode or owner of a node that stays in place changes no directory: it shows once
    something in its directory changes.
    """
    kept = _HOST_DEVICES.get(root)
    if kept is not None and all(_dir_stamp(path) == stamp for path, stamp in kept[0]):
        return kept[1]
    started = time.time_ns()
    dirs, out = _walk_devices(root)
    _HOST_DEVICES.pop(root, None)
    if all(stamp is not None and started - max(stamp[3], stamp[4]) > _RACY_NS
           for _, stamp in dirs):
        if len(_HOST_DEVICES) >= 4:
            _HOST_DEVICES.pop(next(iter(_HOST_DEVICES)))
        _HOST_DEVICES[root] = (dirs, out)
    return out


_Stamp = tuple[int, int, int, int, int]
#: host_devices' walks: root -> ((directory, its stamp) for every directory walked, devices).
_HOST_DEVICES: dict[str, tuple[tuple[tuple[str, _Stamp | None], ...], tuple[Device, ...]]] = {}
#: A directory changed this recently (ns) may change again within the same coarse time.
_RACY_NS: Final = 100_000_000


def _dir_stamp(path: str) -> _Stamp | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _walk_devices(root: str) -> tuple[tuple[tuple[str, _Stamp | None], ...],
                                      tuple[Device, ...]]:
    import stat

    out: list[Device] = []
    dirs: list[tuple[str, _Stamp | None]] = []
    stack = [root]
    while stack:
        top = stack.pop()
        # Stamped before it is read: a change during the walk makes the next call walk again.
        dirs.append((top, _dir_stamp(top)))
        try:
            entries = sorted(os.scandir(top), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.path in _NOT_HOST_DEVICES:
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                stack.append(entry.path)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                try:
                    out.append(Device.of_host_node(entry.path))
                except ConfigError:
                    pass
    return tuple(dirs), tuple(out)


def _kind(value: NamespaceKind | str) -> NamespaceKind:
    return NamespaceKind.parse(value)


def _ns_path(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    raw = os.fspath(value)
    if not isinstance(raw, str) or not raw.startswith("/") or "\0" in raw:
        raise ConfigError(f"a namespace path must be absolute and without NUL, not {raw!r}")
    return raw


@_record.record
class NamespaceSpec:
    """One of ``linux.namespaces``: a new namespace of ``kind``, or -- with ``path`` (an
    nsfs file such as ``/proc/PID/ns/net``) or ``fd`` (an open one) -- an existing one to
    join. A kind that is not listed is shared with the caller."""

    kind: NamespaceKind = _record.field(converter=_kind)
    path: str | None = _record.field(default=None, converter=_ns_path)
    fd: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.path is not None and self.fd is not None:
            raise ConfigError(f"{self.kind.value} namespace: give a path or an fd, not both")
        if self.fd is not None and (isinstance(self.fd, bool) or not isinstance(self.fd, int)
                                    or self.fd < 0):
            raise ConfigError(f"{self.kind.value} namespace fd must be an int >= 0, "
                              f"not {self.fd!r}")

    @property
    def joins(self) -> bool:
        """Whether an existing namespace is joined (a path or fd) rather than made."""
        return self.path is not None or self.fd is not None


def _namespaces(value: Iterable[NamespaceSpec | NamespaceKind | str]
                ) -> tuple[NamespaceSpec, ...]:
    out = tuple(v if isinstance(v, NamespaceSpec) else NamespaceSpec(v) for v in value)
    kinds = [n.kind for n in out]
    for k in set(kinds):
        if kinds.count(k) > 1:
            raise ConfigError(f"the {k.value} namespace is listed twice")
    return out


def _maps(value: Iterable[IdMap]) -> tuple[IdMap, ...]:
    out = tuple(value)
    for m in out:
        if not isinstance(m, IdMap):
            raise ConfigError(f"id mappings must be IdMap records, not {m!r}")
    return out


def _hostname(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value.encode()) <= 64 or "\0" in value:
        raise ConfigError(f"hostname must be 1 to 64 bytes without NUL, not {value!r}")
    return value


def _paths(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(check_container_path(p, "path") for p in value)


def _sysctl(value: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    for key, val in items:
        if (not isinstance(key, str) or not key or "/" in key or ".." in key
                or not isinstance(val, str) or "\0" in key + val):
            raise ConfigError(f"invalid sysctl {key!r}={val!r}")
        out.append((key, val))
    return tuple(out)


def _mounts(value: Iterable[Mount]) -> tuple[Mount, ...]:
    out = tuple(value)
    for m in out:
        if not isinstance(m, Mount):
            raise ConfigError(f"mounts must be Mount records, not {m!r}")
    return out


def _devices(value: Iterable[Device]) -> tuple[Device, ...]:
    out = tuple(value)
    for d in out:
        if not isinstance(d, Device):
            raise ConfigError(f"devices must be Device records, not {d!r}")
    return out


@_record.record(cache_hash=True)
class RuntimeConfig:
    """Everything the compiler needs to build one isolated process tree, validated when made.

    Mirrors the OCI runtime spec: ``process``, ``root``, ``hostname``, ``mounts`` and the
    ``linux`` section flattened (``namespaces``, ``uid_mappings``/``gid_mappings``,
    ``devices``, ``masked_paths``, ``readonly_paths``, ``seccomp``, ``sysctl``). Besides those:
    ``sysfs_readonly`` (the spec says it with a mount option), ``die_with_parent`` (a
    parent-death signal for the first process, isolate's), ``init`` (a tiny init as pid 1).

    ``mounts`` are made in order after the root; the compiler adds nothing to them but the
    ``/dev`` it populates from ``devices`` when a tmpfs is mounted on ``/dev``.

    Raises:
        ConfigError: a bad value or combination, naming it.
    """

    process: Process = _record.field(factory=Process,
                                   validator=_record.instance_of(Process))
    root: Root = _record.field(factory=Root, validator=_record.instance_of(Root))
    hostname: str | None = _record.field(default=None, converter=_hostname)
    domainname: str | None = _record.field(default=None, converter=_hostname)
    mounts: tuple[Mount, ...] = _record.field(default=(), converter=_mounts)
    namespaces: tuple[NamespaceSpec, ...] = _record.field(default=(), converter=_namespaces)
    uid_mappings: tuple[IdMap, ...] = _record.field(default=(), converter=_maps)
    gid_mappings: tuple[IdMap, ...] = _record.field(default=(), converter=_maps)
    devices: tuple[Device, ...] = _record.field(default=DEFAULT_DEVICES, converter=_devices)
    masked_paths: tuple[str, ...] = _record.field(default=DEFAULT_MASKED_PATHS,
                                                converter=_paths)
    readonly_paths: tuple[str, ...] = _record.field(default=DEFAULT_READONLY_PATHS,
                                                  converter=_paths)
    seccomp: SeccompProfile | None = _record.field(
        default=None, validator=_record.optional(
            _record.instance_of(SeccompProfile)))
    sysctl: tuple[tuple[str, str], ...] = _record.field(default=(), converter=_sysctl)
    sysfs_readonly: bool = True
    die_with_parent: bool = True
    init: bool = False

    def __attrs_post_init__(self) -> None:
        kinds = {n.kind for n in self.namespaces}
        user = self.namespace(NamespaceKind.USER)
        if (self.uid_mappings or self.gid_mappings) and (user is None or user.joins):
            raise ConfigError("uid/gid mappings need a new user namespace")
        if user is not None and not user.joins:
            if not self.uid_mappings or not self.gid_mappings:
                raise ConfigError("a new user namespace needs uid_mappings and gid_mappings")
            ids = self.process.user
            for what, value, maps in (("uid", ids.uid, self.uid_mappings),
                                      ("gid", ids.gid, self.gid_mappings)):
                if not any(m.inside <= value < m.inside + m.count for m in maps):
                    mapped = ", ".join(f"{m.inside}-{m.inside + m.count - 1}" for m in maps)
                    raise ConfigError(f"the process's {what} {value} is not mapped in its user "
                                      f"namespace (mapped: {mapped})")
        if self.hostname is not None and NamespaceKind.UTS not in kinds:
            raise ConfigError("hostname needs a uts namespace of its own")
        if NamespaceKind.MNT not in kinds and (self.mounts or self.root.path is not None):
            raise ConfigError("mounts and a root need a mount namespace of its own")
        if self.sysctl and NamespaceKind.NET not in kinds and any(
                k.startswith("net.") for k, _ in self.sysctl):
            raise ConfigError("net.* sysctls need a network namespace of its own")

    def namespace(self, kind: NamespaceKind | str) -> NamespaceSpec | None:
        """The entry for ``kind``, or None when the caller's is shared."""
        k = NamespaceKind.parse(kind)
        return next((n for n in self.namespaces if n.kind is k), None)

    def has_new(self, kind: NamespaceKind | str) -> bool:
        """Whether the process gets a new namespace of ``kind``."""
        n = self.namespace(kind)
        return n is not None and not n.joins

    @property
    def in_user_namespace(self) -> bool:
        """Whether the process runs in a user namespace other than the caller's (new or
        joined): ids are mapped, and the kernel's rules for unprivileged mounts apply."""
        return self.namespace(NamespaceKind.USER) is not None
