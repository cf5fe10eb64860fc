"""Linux namespaces as handles: open, compare, create, persist, enter and join them; id maps.

Owns the ``Namespace`` handle (an O_CLOEXEC fd of an nsfs file), the eight kinds, user namespace
id maps (``IdMap``, /etc/subuid, newuidmap) and the plan operations that join a set of
namespaces. New namespaces are made by a short-lived child, never by the calling process; only
:meth:`Namespace.enter` changes the caller, and only the calling thread where the kernel allows.
"""

from __future__ import annotations

import errno
import itertools
import os
import pwd
import stat
import sys

# collections.abc's classes, from the module the interpreter has loaded at start: importing
# collections.abc loads the collections package too (~2 ms of a run's start).
from _collections_abc import Callable, Iterable, Iterator, Mapping, Sequence

from isolate import _plan, _record, _sys, lowlevel
from isolate._enum import Enum
from isolate._plan import MNT_DETACH, MS_BIND, MS_PRIVATE, MS_REC, MS_SLAVE, Mode, Op, Plan
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate._units import id_spans
from isolate.errors import (
    ConfigError,
    IsolateOSError,
    MountError,
    NamespaceError,
    UnsupportedError,
    errno_name,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from typing import Any, Literal, overload

    import attrs

__all__ = [
    "IdMap",
    "IdMaps",
    "Namespace",
    "NamespaceKind",
    "NamespaceSet",
    "join_ops",
    "parse_id_map",
    "rootless_maps",
    "spawn_in",
    "subordinate_ranges",
    "write_id_maps",
]

# ioctl requests on nsfs files (linux/nsfs.h): _IO(0xb7, n).
NS_GET_USERNS = 0xB701
NS_GET_PARENT = 0xB702
NS_GET_NSTYPE = 0xB703
NS_GET_OWNER_UID = 0xB704
NS_GET_MNTNS_ID = 0x8008B705  # _IOR(0xb7, 5, __u64), Linux 6.10+

#: The kernel accepts at most this many lines in a uid_map / gid_map (Linux 4.15+).
MAX_MAP_LINES = 340
_ID_LIMIT = 2**32 - 1  # (uid_t)-1 is "no id" and never mappable


def _ioctl(fd: int, request: int, arg: int | bytes | bytearray = 0) -> Any:
    """:func:`fcntl.ioctl`, with fcntl loaded on first use: a library of its own to load,
    which the start of a plain sandbox never needs."""
    import fcntl

    return fcntl.ioctl(fd, request, arg)


class NamespaceKind(Enum):
    """The eight namespace kinds. The value is the file name in ``/proc/PID/ns``."""

    MNT = "mnt"
    UTS = "uts"
    IPC = "ipc"
    PID = "pid"
    NET = "net"
    USER = "user"
    CGROUP = "cgroup"
    TIME = "time"

    @property
    def flag(self) -> int:
        """The ``CLONE_NEW*`` flag (also the ``nstype`` of setns)."""
        return _FLAGS[self]

    @property
    def for_children(self) -> str | None:
        """The ``/proc/PID/ns`` file naming the namespace the process's *children* get.

        Only pid and time namespaces have one: a process never changes its own pid or time
        namespace by unshare, only that of the children it makes afterwards.
        """
        return f"{self.value}_for_children" if self in (NamespaceKind.PID,
                                                          NamespaceKind.TIME) else None

    @classmethod
    def parse(cls, value: NamespaceKind | str) -> NamespaceKind:
        """``"net"``, ``"network"``, ``"mnt"``, ``"mount"``, ... or a kind.

        Raises ConfigError for an unknown name.
        """
        if isinstance(value, NamespaceKind):
            return value
        if isinstance(value, str):
            name = value.strip().lower()
            name = _ALIASES.get(name, name)
            try:
                return cls(name)
            except ValueError:
                pass
        known = ", ".join(k.value for k in cls)
        raise ConfigError(f"unknown namespace kind {value!r} (known: {known})")

    @classmethod
    def from_flag(cls, flag: int) -> NamespaceKind:
        """The kind whose ``CLONE_NEW*`` flag is ``flag``. Raises ConfigError for any other
        value (also a combination of flags)."""
        for kind, f in _FLAGS.items():
            if f == flag:
                return kind
        raise ConfigError(f"{flag:#x} is not a CLONE_NEW* flag of one namespace kind")

    def available(self) -> bool:
        """Whether this kernel has the kind (``/proc/self/ns/KIND`` exists)."""
        return os.path.exists(f"/proc/self/ns/{self.value}")


_FLAGS = {
    NamespaceKind.MNT: _plan.CLONE_NEWNS,
    NamespaceKind.UTS: _plan.CLONE_NEWUTS,
    NamespaceKind.IPC: _plan.CLONE_NEWIPC,
    NamespaceKind.PID: _plan.CLONE_NEWPID,
    NamespaceKind.NET: _plan.CLONE_NEWNET,
    NamespaceKind.USER: _plan.CLONE_NEWUSER,
    NamespaceKind.CGROUP: _plan.CLONE_NEWCGROUP,
    NamespaceKind.TIME: _plan.CLONE_NEWTIME,
}
_ALIASES = {"mount": "mnt", "network": "net", "ns": "mnt"}

# Joining order: user first (it grants the capabilities the other setns calls need), mnt late
# (it resets the root and cwd), time needs a private mm, pid is joined by forking.
_JOIN_ORDER = (NamespaceKind.USER, NamespaceKind.CGROUP, NamespaceKind.IPC, NamespaceKind.UTS,
               NamespaceKind.NET, NamespaceKind.MNT, NamespaceKind.TIME, NamespaceKind.PID)

KindLike = NamespaceKind | str


# -- id maps ------------------------------------------------------------------------------------

def _check_id(name: str) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_inst: object, _attr: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"IdMap.{name} must be an int, not {value!r}")
        if not 0 <= value < _ID_LIMIT:
            raise ConfigError(f"IdMap.{name} must be in 0..{_ID_LIMIT - 1}, not {value}")
    return check


def _check_count(inst: IdMap, _attr: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"IdMap.count must be an int, not {value!r}")
    if value <= 0:
        raise ConfigError(f"IdMap.count must be positive, not {value}")
    for side in ("inside", "outside"):
        start = getattr(inst, side)
        if start + value > _ID_LIMIT:
            raise ConfigError(f"IdMap {side} range {start}+{value} runs past id {_ID_LIMIT - 1}")


@_record.record
class IdMap:
    """One line of a uid_map or gid_map: ids ``inside .. inside+count-1`` of the user namespace
    are ids ``outside .. outside+count-1`` of its parent."""

    inside: int = _record.field(validator=_check_id("inside"))
    outside: int = _record.field(validator=_check_id("outside"))
    count: int = _record.field(default=1, validator=_check_count)

    @classmethod
    def parse(cls, text: str) -> IdMap:
        """``"0:1000:1"`` or ``"0 1000 1"`` (the /proc file's format); count defaults to 1.

        Raises ConfigError.
        """
        parts = text.replace(":", " ").split()
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise ConfigError(f"an id map line is 'inside:outside[:count]', not {text!r}")
        return cls(*(int(p) for p in parts))

    @classmethod
    def self_map(cls, which: Literal["uid", "gid"] = "uid", inside: int = 0) -> IdMap:
        """Map our own effective uid (or gid) to ``inside`` (root by default).

        This is the one map an ordinary user may write without help from newuidmap.
        """
        own = os.geteuid() if which == "uid" else os.getegid()
        return cls(inside, own, 1)

    @classmethod
    def subordinate_map(cls, which: Literal["uid", "gid"] = "uid",
                        user: str | int | None = None, *,
                        path: str | os.PathLike[str] | None = None) -> tuple[IdMap, ...]:
        """Root inside is our own id; ids 1.. inside are the ranges /etc/subuid (or /etc/subgid)
        grants the user, in file order. Writing it needs newuidmap/newgidmap (package
        ``uidmap``) unless we are root.

        Raises UnsupportedError when the user has no subordinate ids.
        """
        ranges = subordinate_ranges(which, user, path=path)
        file = os.fspath(path) if path is not None else f"/etc/sub{which}"
        if not ranges:
            raise UnsupportedError(
                f"no subordinate {which}s for user {_user_name(user)} in {file}; ask the "
                f"administrator for a range (usermod --add-sub{which}s)",
                missing=f"{file} entry")
        own = (os.geteuid() if which == "uid" else os.getegid()) if user is None else \
            _user_id(user, which)
        lines = [cls(0, own, 1)]
        inside = 1
        for r in ranges:
            count = min(len(r), _ID_LIMIT - inside)
            if count <= 0:
                break
            lines.append(cls(inside, r.start, count))
            inside += count
        return check_id_map(lines, f"sub{which} map")

    def line(self) -> str:
        """The line for /proc/PID/uid_map or gid_map: ``"INSIDE OUTSIDE COUNT"``."""
        return f"{self.inside} {self.outside} {self.count}"


def check_id_map(lines: Iterable[IdMap], what: str = "id map") -> tuple[IdMap, ...]:
    """Validate a whole map: at most 340 lines, no overlap inside nor outside.

    Raises ConfigError naming the overlapping lines.
    """
    result = tuple(lines)
    if len(result) > MAX_MAP_LINES:
        raise ConfigError(f"{what} has {len(result)} lines; the kernel takes at most "
                          f"{MAX_MAP_LINES}")
    for side in ("inside", "outside"):
        spans = sorted(result, key=lambda m: getattr(m, side))
        for a, b in itertools.pairwise(spans):
            if getattr(a, side) + a.count > getattr(b, side):
                raise ConfigError(f"{what}: {side} ranges of '{a.line()}' and '{b.line()}' "
                                  "overlap")
    return result


MapLike = IdMap | str | Iterable[IdMap | str]


def parse_id_map(value: MapLike, what: str = "id map") -> tuple[IdMap, ...]:
    """An IdMap, a string (lines separated by commas or newlines), or an iterable of either.

    Raises ConfigError.
    """
    if isinstance(value, IdMap):
        return (value,)
    if isinstance(value, str):
        items: list[IdMap | str] = [s for s in value.replace(",", "\n").splitlines()
                                    if s.strip()]
    else:
        items = list(value)
    lines = []
    for item in items:
        if isinstance(item, IdMap):
            lines.append(item)
        elif isinstance(item, str):
            lines.append(IdMap.parse(item))
        else:
            raise ConfigError(f"{what} lines must be IdMap or 'inside:outside:count', "
                              f"not {item!r}")
    return check_id_map(lines, what)


def _user_name(user: str | int | None) -> str:
    uid = os.geteuid() if user is None else user
    if isinstance(uid, str):
        return uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _user_id(user: str | int, which: str) -> int:
    if isinstance(user, int):
        if which == "uid":
            return user
        try:
            return pwd.getpwuid(user).pw_gid
        except KeyError:
            return user
    try:
        entry = pwd.getpwnam(user)
    except KeyError as exc:
        raise ConfigError(f"unknown user {user!r}") from exc
    return entry.pw_uid if which == "uid" else entry.pw_gid


def subordinate_ranges(which: Literal["uid", "gid"] = "uid", user: str | int | None = None,
                       *, path: str | os.PathLike[str] | None = None) -> list[range]:
    """The ranges of subordinate ids /etc/subuid (or /etc/subgid) grants a user.

    ``user`` is a name or uid (default: our effective uid); lines match by name or by uid, as
    newuidmap matches them. A missing file means no ranges. Malformed lines are skipped, as
    the shadow tools skip them. Raises ConfigError for a bad ``which``.
    """
    if which not in ("uid", "gid"):
        raise ConfigError(f"which must be 'uid' or 'gid', not {which!r}")
    file = os.fspath(path) if path is not None else f"/etc/sub{which}"
    uid = os.geteuid() if user is None else user
    keys = {str(uid)}
    if isinstance(uid, int):
        try:
            keys.add(pwd.getpwuid(uid).pw_name)
        except KeyError:
            pass
    else:
        try:
            keys.add(str(pwd.getpwnam(uid).pw_uid))
        except KeyError:
            pass
    try:
        with open(file, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    ranges = []
    for raw in text.splitlines():
        parts = raw.strip().split(":")
        if len(parts) != 3 or parts[0] not in keys:
            continue
        if not (parts[1].isdigit() and parts[2].isdigit()) or int(parts[2]) == 0:
            continue
        ranges.append(range(int(parts[1]), int(parts[1]) + int(parts[2])))
    return ranges


def _is_self_map(lines: Sequence[IdMap], own: int) -> bool:
    return len(lines) == 1 and lines[0].outside == own and lines[0].count == 1


def _spans(lines: Sequence[IdMap]) -> str:
    """The ids inside a map covers, adjacent lines joined: ``"0-65536"``."""
    return id_spans((m.inside, m.count) for m in lines)


def _map_lines(value: MapLike, what: str) -> tuple[IdMap, ...]:
    lines = parse_id_map(value, what)
    if not lines:
        raise ConfigError(f"IdMaps.{what.replace(' ', '_')} must have at least one line")
    return lines


def _uid_map(value: MapLike) -> tuple[IdMap, ...]:
    return _map_lines(value, "uid map")


def _gid_map(value: MapLike) -> tuple[IdMap, ...]:
    return _map_lines(value, "gid map")


@_record.record
class IdMaps:
    """The uid and the gid map of one user namespace (each a tuple of :class:`IdMap` lines,
    validated as :func:`parse_id_map` does), and -- when :func:`rootless_maps` could map
    only the caller's own ids -- why, and how to get a subordinate range (``fallback``).

    Equal maps give equal records (``fallback`` is left out) and the same :attr:`key`.
    """

    uid_map: tuple[IdMap, ...] = _record.field(converter=_uid_map)
    gid_map: tuple[IdMap, ...] = _record.field(converter=_gid_map)
    fallback: str | None = _record.field(default=None, eq=False)

    @property
    def subordinate(self) -> bool:
        """Whether more than one uid or gid is mapped (a range besides the caller's own id)."""
        return any(sum(m.count for m in lines) > 1 for lines in (self.uid_map, self.gid_map))

    @property
    def key(self) -> str:
        """16 hex digits naming these maps (the image store keeps layers extracted under
        different maps apart by it)."""
        text = "uid " + ",".join(m.line() for m in self.uid_map) + "\ngid " + ",".join(
            m.line() for m in self.gid_map)
        import hashlib  # here: the spawn path never needs it (OpenSSL's loading costs ~2 ms)

        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def maps(self, uid: int | None = None, gid: int | None = None) -> bool:
        """Whether ``uid`` and ``gid`` (ids inside; None: not asked) are both mapped."""
        return all(value is None or any(m.inside <= value < m.inside + m.count for m in lines)
                   for value, lines in ((uid, self.uid_map), (gid, self.gid_map)))

    def check(self, uid: int | None, gid: int | None, who: str = "the process") -> None:
        """Refuse ids (inside) these maps do not map, saying what they map and how to get
        more.

        Raises:
            UnsupportedError: ``uid`` or ``gid`` is not mapped.
        """
        for which, value, lines in (("uid", uid, self.uid_map), ("gid", gid, self.gid_map)):
            if value is None or self.maps(**{which: value}):
                continue
            message = (f"{who} runs as {which} {value}, which this rootless user namespace "
                       f"does not map (it maps {which}s {_spans(lines)})")
            if self.fallback is not None:
                message += f": {self.fallback}"
            else:
                message += (f"; ask the administrator for a larger range in /etc/sub{which} "
                            "for your user")
            raise UnsupportedError(message + f"; or run as {which} 0 (--user 0 on the command "
                                   "line, uid=0 from Python), which is you",
                                   missing=f"{which} {value} in the user namespace")


def rootless_maps() -> IdMaps:
    """The maps of a user namespace the caller makes for itself, as rootless podman makes
    them: 0 inside is the caller's own uid (gid), and 1.. inside are the subordinate ranges
    ``/etc/subuid`` (``/etc/subgid``) grants the caller's user, in file order (written with
    newuidmap/newgidmap unless the caller is root). Without both ranges, or without
    newuidmap/newgidmap, only the caller's own ids are mapped (to 0), and ``fallback`` says
    why and how to get a range.

    Every rootless sandbox and container takes its maps from here, and so does the image store
    when it extracts layers for them, so owners in an image mean the same in both.
    """
    own = (IdMap.self_map("uid"),), (IdMap.self_map("gid"),)
    name = _user_name(None)
    usermod = (f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {name}")
    try:
        uids, gids = IdMap.subordinate_map("uid"), IdMap.subordinate_map("gid")
    except UnsupportedError as exc:
        file = "/etc/subuid" if "subordinate uids" in str(exc) else "/etc/subgid"
        return IdMaps(*own, fallback=(
            f"only your own ids are mapped (to 0), since {file} grants user {name} no "
            f"subordinate ids; ask the administrator for a range ({usermod}), as rootless "
            "podman needs one too"))
    if os.geteuid() != 0:
        import shutil

        missing = [t for t in ("newuidmap", "newgidmap") if shutil.which(t) is None]
        if missing:
            return IdMaps(*own, fallback=(
                f"only your own ids are mapped (to 0), since {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not installed, which must write "
                "the subordinate ranges of /etc/subuid and /etc/subgid (Debian and Ubuntu "
                "package uidmap, Fedora shadow-utils)"))
    return IdMaps(uids, gids)


def write_id_maps(pid: int, uid_map: MapLike | None = None, gid_map: MapLike | None = None,
                  *, deny_setgroups: bool | None = None) -> None:
    """Write the uid and gid maps of the user namespace process ``pid`` is in.

    As root, or for a map of only our own id, the /proc files are written directly (an ordinary
    user's gid map needs ``setgroups`` denied first; ``deny_setgroups=None`` does that only when
    needed). Any other map goes through newuidmap/newgidmap, which check /etc/subuid and
    /etc/subgid.

    Raises ConfigError for a bad map, NamespaceError when the kernel or newuidmap refuses, and
    UnsupportedError when newuidmap/newgidmap is not installed.
    """
    uids = parse_id_map(uid_map, "uid map") if uid_map is not None else None
    gids = parse_id_map(gid_map, "gid map") if gid_map is not None else None
    root = os.geteuid() == 0
    gid_direct = gids is not None and (root or _is_self_map(gids, os.getegid()))
    if deny_setgroups is None:
        deny_setgroups = gid_direct and not root
    if deny_setgroups:
        _write_proc(pid, "setgroups", "deny\n")
    if uids is not None:
        if root or _is_self_map(uids, os.geteuid()):
            _write_proc(pid, "uid_map", "".join(m.line() + "\n" for m in uids))
        else:
            _run_idmap_tool("newuidmap", pid, uids)
    if gids is not None:
        if gid_direct:
            _write_proc(pid, "gid_map", "".join(m.line() + "\n" for m in gids))
        else:
            _run_idmap_tool("newgidmap", pid, gids)


def _write_proc(pid: int, name: str, content: str) -> None:
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, content.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EPERM and name.endswith("_map"):
            hint = (" (an ordinary user may map only its own id; other ids need "
                    "newuidmap/newgidmap and /etc/subuid ranges)")
        raise NamespaceError(exc.errno or errno.EIO,
                             f"write {name} {content.strip()!r} of pid {pid}{hint}", path,
                             step=name, pid=pid) from exc


def _run_idmap_tool(tool: str, pid: int, lines: Sequence[IdMap]) -> None:
    args = [tool, str(pid)]
    for m in lines:
        args += [str(m.inside), str(m.outside), str(m.count)]
    import subprocess  # here: most processes never need a helper program

    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise UnsupportedError(
            f"{tool} is needed to map ids other than your own into a user namespace; install "
            "the 'uidmap' package", missing=tool) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip() or f"exit status {proc.returncode}"
        raise NamespaceError(errno.EPERM, f"{tool} {' '.join(args[1:])} failed: {detail}",
                             step=tool, pid=pid)


# -- handles ------------------------------------------------------------------------------------

def _os_error(exc: OSError, message: str, path: str | None = None,
              pid: int | None = None, step: str = "open") -> NamespaceError:
    return NamespaceError(exc.errno or errno.EIO, message, path, step=step, pid=pid)


_CAP_SYS_ADMIN = 21


def _has_cap_sys_admin() -> bool:
    """Whether CAP_SYS_ADMIN is in this process's effective set (what mounting needs)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        pass
    return True  # unknown: let the kernel say


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


class Namespace:
    """A handle on one namespace: an O_CLOEXEC file descriptor of its nsfs file.

    While the handle is open the namespace lives, even when no process is in it. Two handles
    are equal when they name the same namespace (same device and inode, as ``/proc/PID/ns``
    links show ``net:[INODE]``). Get one from :meth:`of_pid`, :meth:`current`,
    :meth:`from_path` or :meth:`create`; close it (or use ``with``); a handle collected while
    open warns with ResourceWarning.
    """

    def __init__(self, fd: int, kind: NamespaceKind) -> None:
        """Adopt ``fd`` (an open nsfs file of ``kind``). Use the classmethods instead."""
        self._fd = fd
        self.kind = kind
        self._keeper: _Keeper | None = None
        st = os.fstat(fd)
        self.device: int = st.st_dev
        self.inode: int = st.st_ino

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def of_pid(cls, pid: int | str, kind: KindLike, *, for_children: bool = False
               ) -> Namespace:
        """The namespace of ``kind`` process ``pid`` is in (``"self"`` works too).

        ``for_children=True`` opens the namespace its future children get (pid and time
        only: ``/proc/PID/ns/pid_for_children``). Raises NamespaceError (no such process,
        not allowed), UnsupportedError (kind missing from this kernel), ConfigError.
        """
        k = NamespaceKind.parse(kind)
        name = k.value
        if for_children:
            if k.for_children is None:
                raise ConfigError(f"only pid and time namespaces have a *_for_children "
                                  f"file, not {k.value}")
            name = k.for_children
        path = f"/proc/{pid}/ns/{name}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENOENT and not k.available():
                raise UnsupportedError(f"this kernel has no {k.value} namespaces",
                                       missing=f"{k.value} namespaces") from exc
            raise _os_error(exc, f"open {name} namespace of pid {pid}", path,
                            pid if isinstance(pid, int) else None) from exc
        return cls._adopt(fd, k, path)

    @classmethod
    def current(cls, kind: KindLike) -> Namespace:
        """The calling *thread's* namespace of ``kind`` (``/proc/thread-self/ns``)."""
        return cls.of_pid("thread-self", kind)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], kind: KindLike | None = None
                  ) -> Namespace:
        """Open a namespace file: a ``/proc/PID/ns/*`` link or a persisted bind mount.

        The kind is asked from the kernel (NS_GET_NSTYPE); if ``kind`` is given it must match.
        Raises NamespaceError (missing, not a namespace file, wrong kind), ConfigError.
        """
        want = NamespaceKind.parse(kind) if kind is not None else None
        p = os.fspath(path)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _os_error(exc, f"open namespace file {p}", p) from exc
        handle = cls._adopt(fd, None, p)
        if want is not None and handle.kind is not want:
            got = handle.kind.value
            handle.close()
            raise NamespaceError(errno.EINVAL, f"{p} is a {got} namespace, not {want.value}",
                                 p, step="open")
        return handle

    @classmethod
    def _adopt(cls, fd: int, kind: NamespaceKind | None, path: str) -> Namespace:
        """Wrap fd, asking the kernel for its kind; closes fd on failure."""
        try:
            nstype = _ioctl(fd, NS_GET_NSTYPE)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                raise NamespaceError(errno.EINVAL, f"{path} is not a namespace file", path,
                                     step="open") from exc
            raise _os_error(exc, f"ask the type of namespace {path}", path) from exc
        try:
            real = NamespaceKind.from_flag(nstype)
        except ConfigError as exc:
            os.close(fd)
            raise NamespaceError(errno.EINVAL, f"{path} is a namespace of unknown type "
                                 f"{nstype:#x}", path, step="open") from exc
        if kind is not None and real is not kind:  # pragma: no cover - the kernel's word
            os.close(fd)
            raise NamespaceError(errno.EINVAL, f"{path} is a {real.value} namespace, not "
                                 f"{kind.value}", path, step="open")
        return cls(fd, real)

    # -- identity and relations -------------------------------------------------------------
    @property
    def identity(self) -> tuple[int, int]:
        """``(device, inode)``: what makes two handles the same namespace."""
        return (self.device, self.inode)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Namespace):
            return NotImplemented
        return self.identity == other.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def __repr__(self) -> str:
        state = " closed" if self._fd < 0 else ""
        return f"<Namespace {self.kind.value}:[{self.inode}]{state}>"

    def owner(self) -> Namespace:
        """The user namespace that owns this one (NS_GET_USERNS).

        Raises NamespaceError (EPERM when the owner is outside our view).
        """
        return self._related(NS_GET_USERNS, "owner user namespace")

    def parent(self) -> Namespace:
        """The parent of a pid or user namespace (NS_GET_PARENT).

        Raises ConfigError for other kinds, NamespaceError (EPERM at the top of our view).
        """
        if self.kind not in (NamespaceKind.PID, NamespaceKind.USER):
            raise ConfigError(f"only pid and user namespaces have a parent, not {self.kind.value}")
        return self._related(NS_GET_PARENT, "parent namespace")

    def owner_uid(self) -> int:
        """The uid (in our user namespace) that created this user namespace."""
        if self.kind is not NamespaceKind.USER:
            raise ConfigError(f"only user namespaces have an owner uid, not {self.kind.value}")
        buf = bytearray(4)
        try:
            _ioctl(self.fileno(), NS_GET_OWNER_UID, buf)
        except OSError as exc:
            raise _os_error(exc, f"ask the owner uid of {self!r}", step="ioctl") from exc
        return int.from_bytes(buf, "little")

    def _related(self, request: int, what: str) -> Namespace:
        try:
            fd = _ioctl(self.fileno(), request)
        except OSError as exc:
            hint = " (it is outside this process's view)" if exc.errno == errno.EPERM else ""
            raise _os_error(exc, f"open the {what} of {self!r}{hint}", step="ioctl") from exc
        return Namespace._adopt(fd, None, f"{what} of {self!r}")

    # -- fd lifetime ------------------------------------------------------------------------
    def fileno(self) -> int:
        """The handle's fd (``/proc/PID/ns/KIND``, O_CLOEXEC), for setns and select-style
        APIs; it stays owned by the handle. Raises ValueError once the handle is closed."""
        if self._fd < 0:
            raise ValueError(f"the {self.kind.value} namespace handle is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the fd is released)."""
        return self._fd < 0

    def close(self) -> None:
        """Release the namespace. A pid namespace made by :meth:`create` ends here (its init
        exits) unless it was persisted."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.close()

    def __enter__(self) -> Namespace:
        """Return the handle itself; leaving the ``with`` block closes it."""
        return self

    def __exit__(self, *exc: object) -> None:
        """:meth:`close` the handle; exceptions from the block propagate."""
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            try:
                import warnings  # (here: a program that closes its handles never loads it)

                warnings.warn(f"{self!r} was not closed", ResourceWarning, stacklevel=2,
                              source=self)
            finally:
                self.close()

    # -- creating ---------------------------------------------------------------------------
    if TYPE_CHECKING:  # (typing, for overload, is not loaded at run time)
        @overload
        @classmethod
        def create(cls, kinds: KindLike, *, persist: str | os.PathLike[str] | None = None,
                   uid_map: MapLike | None = None, gid_map: MapLike | None = None,
                   offsets: Mapping[str, float] | None = None,
                   propagation: Literal["private", "slave", "unchanged"] = "private",
                   ) -> Namespace: ...

        @overload
        @classmethod
        def create(cls, kinds: list[KindLike] | tuple[KindLike, ...] | set[KindLike]
                   | frozenset[KindLike], *, persist: str | os.PathLike[str] | None = None,
                   uid_map: MapLike | None = None, gid_map: MapLike | None = None,
                   offsets: Mapping[str, float] | None = None,
                   propagation: Literal["private", "slave", "unchanged"] = "private",
                   ) -> NamespaceSet: ...

    @classmethod
    def create(cls, kinds: KindLike | list[KindLike] | tuple[KindLike, ...] | set[KindLike]
               | frozenset[KindLike], *, persist: str | os.PathLike[str] | None = None,
               uid_map: MapLike | None = None, gid_map: MapLike | None = None,
               offsets: Mapping[str, float] | None = None,
               propagation: Literal["private", "slave", "unchanged"] = "private",
               ) -> Namespace | NamespaceSet:
        """Make new namespaces and return handles: one kind gives a :class:`Namespace`, a
        list/tuple/set of kinds a :class:`NamespaceSet` (made together, so with ``"user"``
        in the set the others belong to the new user namespace -- the rootless way).

        A short-lived child makes them and exits; the handles keep them alive. A pid namespace
        is the exception: the kernel takes new processes only while its pid 1 lives, so the
        child stays as that pid 1 (a tiny keeper that reaps orphans) until the handle is
        closed (or, when persisted, removed) -- processes that join are pid 2 and up, and
        closing the handle ends them too. A time namespace is made with unshare, so no
        process is in it yet and it takes its ``offsets`` (``{"monotonic": secs,
        "boottime": secs}``) before anyone enters. A new mount namespace has its mounts made
        ``propagation`` (default private, like unshare(1)) so nothing mounted in it reaches
        the host.

        ``uid_map``/``gid_map`` (user only) default to mapping our own ids to root; as root
        any map works, otherwise other ids need newuidmap/newgidmap with /etc/subuid ranges
        (see :meth:`IdMap.subordinate_map`).

        ``persist``: for one kind, a file to bind-mount the namespace on (like
        ``ip netns add``: ``/run/netns/NAME``); for several, an existing directory that gets
        one file per kind. See :meth:`persist`.

        Raises ConfigError (bad input, before any system call), UnsupportedError (kind not in
        this kernel, user namespaces forbidden by the host, newuidmap missing),
        NamespaceError (the kernel refused; the message says which step).
        """
        single = isinstance(kinds, (str, NamespaceKind))
        items: list[KindLike] = [kinds] if isinstance(kinds, (str, NamespaceKind)) \
            else list(kinds)
        if not single and not isinstance(kinds, (list, tuple, set, frozenset)):
            raise ConfigError(f"kinds must be a kind or a list/tuple/set of kinds, not {kinds!r}")
        wanted: list[NamespaceKind] = []
        for item in items:
            k = NamespaceKind.parse(item)
            if k in wanted:
                raise ConfigError(f"namespace kind {k.value} given twice")
            wanted.append(k)
        if not wanted:
            raise ConfigError("no namespace kind given")
        has = set(wanted)
        uids = gids = None
        if NamespaceKind.USER in has:
            uids = parse_id_map(uid_map, "uid_map") if uid_map is not None \
                else (IdMap.self_map("uid"),)
            gids = parse_id_map(gid_map, "gid_map") if gid_map is not None \
                else (IdMap.self_map("gid"),)
        elif uid_map is not None or gid_map is not None:
            raise ConfigError("uid_map/gid_map need a new user namespace (kind 'user')")
        offset_text = _offsets_text(offsets) if offsets is not None else None
        if offset_text is not None and NamespaceKind.TIME not in has:
            raise ConfigError("offsets need a new time namespace (kind 'time')")
        if propagation not in ("private", "slave", "unchanged"):
            raise ConfigError(f"propagation must be 'private', 'slave' or 'unchanged', "
                              f"not {propagation!r}")
        target = os.path.abspath(os.fspath(persist)) if persist is not None else None
        for k in wanted:
            if not k.available():
                raise UnsupportedError(f"this kernel has no {k.value} namespaces",
                                       missing=f"{k.value} namespaces")

        handles = _create(wanted, uids, gids, offset_text, propagation)
        if target is not None and NamespaceKind.MNT in has \
                and not _mnt_ns_newer_than_ours(handles[NamespaceKind.MNT]):
            handles = _recreate_newer_mnt_ns(handles, wanted, uids, gids, offset_text,
                                             propagation)
        result = NamespaceSet(handles)
        try:
            if target is not None:
                if single:
                    handles[wanted[0]].persist(target)
                else:
                    result.persist(target)
        except BaseException:
            result.close()
            raise
        return handles[wanted[0]] if single else result

    # -- persisting -------------------------------------------------------------------------
    def persist(self, path: str | os.PathLike[str]) -> None:
        """Bind-mount this namespace onto ``path`` (created, must not exist) so it outlives
        every process and handle, like ``ip netns add`` does on ``/run/netns/NAME``; undo with
        :meth:`remove`. Join it later with :meth:`from_path`, ``nsenter --net=PATH`` or
        ``ip netns exec`` (for a net namespace under /run/netns).

        A mount namespace can only be bound on a mount that does not propagate (the kernel
        refuses, since the copy could reach the namespace itself). When the directory's mount
        is shared, the directory is made a private bind mount of itself first, as ``ip netns``
        does with /run/netns; that mount stays (``umount DIR`` removes it).

        Raises NamespaceError (EEXIST: path exists; EPERM: not root in this mount namespace;
        EINVAL for a mount namespace that is not newer than ours).
        """
        p = os.path.abspath(os.fspath(path))
        fd = self.fileno()
        try:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EACCES) and not _has_cap_sys_admin():
                # The bind mount would be refused anyway: say so, not just the missing path.
                raise NamespaceError(
                    errno.EPERM, f"persist {self!r} on {p}: needs CAP_SYS_ADMIN over the "
                    f"current mount namespace, which this process lacks (as an ordinary "
                    f"user, persist from inside a user and mount namespace of your own); "
                    f"besides, {os.path.dirname(p)}: {os.strerror(exc.errno)}", p,
                    step="persist") from exc
            raise _os_error(exc, f"create {p} to persist {self!r} on", p,
                            step="persist") from exc
        try:
            try:
                _sys.mount(f"/proc/self/fd/{fd}", p, None, MS_BIND)
            except MountError as exc:
                if not (self.kind is NamespaceKind.MNT and exc.errno == errno.EINVAL
                        and _mount_of(os.path.dirname(p)).shared):
                    raise
                _make_private_dir(os.path.dirname(p))
                _sys.mount(f"/proc/self/fd/{fd}", p, None, MS_BIND)
        except MountError as exc:
            try:
                os.unlink(p)
            except OSError:
                pass
            hint = ""
            if exc.errno == errno.EPERM:
                hint = " (needs CAP_SYS_ADMIN over the current mount namespace)"
            elif exc.errno == errno.EINVAL and self.kind is NamespaceKind.MNT:
                hint = (" (a mount namespace can be persisted only from one the kernel "
                        "numbers below it, and only on a non-shared mount)")
            raise NamespaceError(exc.errno or errno.EIO, f"persist {self!r} on {p}{hint}", p,
                                 step="persist") from exc
        except BaseException:
            try:
                os.unlink(p)
            except OSError:
                pass
            raise
        if self._keeper is not None:
            self._keeper.detach()  # the pid namespace must outlive this handle now

    @staticmethod
    def remove(path: str | os.PathLike[str]) -> None:
        """Undo :meth:`persist`: unmount the namespace file and delete it. The namespace
        itself lives on while processes or handles still hold it -- except a pid namespace
        made by :meth:`create`: its init (the keeper) is stopped, and with it every process
        still in that namespace, as when a container's init exits.

        An empty regular file there (left by a crash between create and mount) is deleted too.
        Raises NamespaceError (ENOENT: no such file; EINVAL: not a persisted namespace, nothing
        touched; EPERM: not allowed to unmount).
        """
        p = os.path.abspath(os.fspath(path))
        pid_inodes: list[int] = []
        for _ in range(64):  # a file bound more than once is unmounted layer by layer
            try:
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as exc:
                raise _os_error(exc, f"open persisted namespace {p}", p,
                                step="remove") from exc
            try:
                nstype = 0
                try:
                    nstype = _ioctl(fd, NS_GET_NSTYPE)
                except OSError:
                    pass
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if not nstype:
                break
            if nstype == _plan.CLONE_NEWPID:
                pid_inodes.append(st.st_ino)
            try:
                _sys.umount2(p, MNT_DETACH)
            except MountError as exc:
                raise NamespaceError(exc.errno or errno.EIO, f"unmount persisted namespace {p}",
                                     p, step="remove") from exc
        else:  # pragma: no cover - would need 64 stacked binds
            raise NamespaceError(errno.EBUSY, f"{p} is still a namespace after 64 unmounts", p,
                                 step="remove")
        if not (stat.S_ISREG(st.st_mode) and st.st_size == 0):
            raise NamespaceError(errno.EINVAL, f"{p} is not a persisted namespace", p,
                                 step="remove")
        try:
            os.unlink(p)
        except OSError as exc:
            raise _os_error(exc, f"delete {p}", p, step="remove") from exc
        for inode in pid_inodes:
            _stop_keeper(inode)

    # -- entering ---------------------------------------------------------------------------
    def enter(self) -> AbstractContextManager[Namespace]:
        """Move the calling thread into this namespace for the ``with`` block, then back.

        net, uts, ipc and cgroup namespaces belong to one OS thread: only the calling thread
        moves, other threads (and Python code they run) stay where they are. mnt and time
        namespaces belong to the whole process, so the kernel allows them only in a
        single-threaded process (a mount namespace also resets the root and cwd; the cwd is
        restored on exit). A user namespace cannot be entered by a multi-threaded process nor
        left again, and a pid namespace only applies to children: both raise UnsupportedError
        -- use :func:`spawn_in`.

        Raises UnsupportedError (see above), NamespaceError (the kernel refused: EPERM without
        CAP_SYS_ADMIN over both namespaces; or returning failed).
        """
        import contextlib  # (here: a run's start loads no contextlib)

        return contextlib.contextmanager(self._entered)()

    def _entered(self) -> Iterator[Namespace]:
        kind = self.kind
        if kind is NamespaceKind.USER:
            raise UnsupportedError(
                "a process cannot enter a user namespace and come back (the kernel refuses "
                "setns into a user namespace in a multi-threaded process, and leaving it "
                "needs capabilities in the old one); use spawn_in()",
                missing="setns(CLONE_NEWUSER) for the caller")
        if kind is NamespaceKind.PID:
            raise UnsupportedError(
                "setns into a pid namespace moves only the children made afterwards, never "
                "the caller; use spawn_in()", missing="setns(CLONE_NEWPID) for the caller")
        if kind in (NamespaceKind.MNT, NamespaceKind.TIME) and _thread_count() > 1:
            raise UnsupportedError(
                f"the kernel allows entering a {kind.value} namespace only in a "
                f"single-threaded process, and this one has {_thread_count()} threads; use "
                "spawn_in()", missing=f"setns(CLONE_NEW{kind.name}) in a threaded process")
        fd = self.fileno()
        original = Namespace.current(kind)
        cwd = -1
        try:
            if kind is NamespaceKind.MNT:
                cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            _sys.setns(fd, kind.flag)
        except BaseException as exc:
            original.close()
            if cwd >= 0:
                os.close(cwd)
            if isinstance(exc, IsolateOSError) and exc.errno == errno.EPERM:
                raise NamespaceError(errno.EPERM, f"enter {self!r}: needs CAP_SYS_ADMIN over "
                                     "its owner user namespace and over ours",
                                     step="setns") from exc
            raise
        try:
            yield self
        finally:
            try:
                _sys.setns(original.fileno(), kind.flag)
                if cwd >= 0:
                    os.fchdir(cwd)
            except (IsolateOSError, OSError) as exc:
                raise NamespaceError(exc.errno or errno.EIO,
                                     f"return to {original!r} after {self!r}: this thread is "
                                     "still in the entered namespace", step="setns") from exc
            finally:
                original.close()
                if cwd >= 0:
                    os.close(cwd)


@_record.record
class _MountEntry:
    mount_point: str
    shared: bool


def _mount_of(path: str) -> _MountEntry:
    """The mount that holds ``path`` (the last, i.e. topmost, with the longest mount point)."""
    real = os.path.realpath(path)
    best = _MountEntry("/", False)
    for entry in _mountinfo():
        mp = entry.mount_point
        if (real == mp or real.startswith(mp.rstrip("/") + "/")) and \
                len(mp) >= len(best.mount_point):
            best = entry
    return best


def _mountinfo() -> list[_MountEntry]:
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            optional = fields[6:sep]
            mp = fields[4].encode("utf-8", "surrogateescape").decode("unicode_escape")
            entries.append(_MountEntry(mp, any(o.startswith("shared:") for o in optional)))
    return entries


def _make_private_dir(directory: str) -> None:
    """Make ``directory`` a private bind mount of itself (what ``ip netns`` does to /run/netns)
    so a mount namespace can be bound below it."""
    real = os.path.realpath(directory)
    for entry in _mountinfo():
        if entry.mount_point == real:
            raise NamespaceError(
                errno.EINVAL, f"{real} is a shared mount; a mount namespace can be persisted "
                "only on a private one (mount --make-private it, or use another directory)",
                real, step="persist")
        if entry.mount_point.startswith(real.rstrip("/") + "/"):
            raise NamespaceError(
                errno.EBUSY, f"{real} has mounts below it ({entry.mount_point}); cannot make it "
                "a private bind mount of itself to persist a mount namespace", real,
                step="persist")
    _sys.mount(real, real, None, MS_BIND)
    try:
        _sys.mount(None, real, None, MS_PRIVATE)
    except BaseException:
        _sys.umount2(real, MNT_DETACH)
        raise


def _offsets_text(offsets: Mapping[str, float]) -> bytes:
    import math  # (here: a library of its own, which only a time namespace needs)

    if not isinstance(offsets, Mapping):
        raise ConfigError(f"offsets must be a mapping like {{'monotonic': 3600}}, not "
                          f"{offsets!r}")
    lines = []
    for clock, value in offsets.items():
        if clock not in ("monotonic", "boottime"):
            raise ConfigError(f"time namespace offsets exist for 'monotonic' and 'boottime', "
                              f"not {clock!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise ConfigError(f"offset of {clock} must be a number of seconds, not {value!r}")
        secs = math.floor(value)
        nsecs = round((value - secs) * 1_000_000_000)
        if nsecs >= 1_000_000_000:
            secs, nsecs = secs + 1, 0
        lines.append(f"{clock} {secs} {nsecs}\n")
    return "".join(lines).encode()


# pid 1 of a pid namespace made by create(): the namespace accepts new processes only while
# its init lives. It reaps orphans, exits on EOF of stdin (its handle closed) unless it was told
# "D" (detach: persisted), and on SIGTERM (remove()). Python, because it is always there; a C
# init op in the native core would be cheaper.
KEEPER_MARK = "isolate-pidns-keeper"
_KEEPER_CODE = """\
import os, signal
def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
signal.signal(signal.SIGCHLD, reap)
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
detached = False
while True:
    data = os.read(0, 512)
    if not data:
        break
    detached = detached or b"D" in data
while detached:
    signal.pause()
"""


class _Keeper:
    """The init process holding a created pid namespace open, and the pipe that keeps it."""

    def __init__(self, child: lowlevel.Child, pipe_w: int) -> None:
        self.child = child
        self.pipe_w = pipe_w
        self.detached = False

    def detach(self) -> None:
        if not self.detached and self.pipe_w >= 0:
            os.write(self.pipe_w, b"D")
            self.detached = True

    def close(self) -> None:
        if self.pipe_w >= 0:
            os.close(self.pipe_w)
            self.pipe_w = -1
        if not self.detached:
            self.child.wait()  # it exits at EOF
        self.child.close()


def _stop_keeper(inode: int) -> None:
    """SIGTERM the keeper that is pid 1 of the pid namespace ``inode``, and reap it if it is
    our child (a keeper whose creator exited belongs to init, which reaps it)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}/ns/pid").st_ino != inode:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if KEEPER_MARK.encode() not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/status", encoding="utf-8") as f:
                nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")]
            if not nspid or nspid[0][-1] != "1":
                continue
            pidfd = _sys.pidfd_open(int(name))
        except (OSError, IsolateOSError):
            continue  # gone, or not ours to look at
        try:
            _sys.pidfd_send_signal(pidfd, signal.SIGTERM)
        except IsolateOSError as exc:
            if exc.errno != errno.ESRCH:
                raise
        finally:
            os.close(pidfd)
        try:
            os.waitpid(int(name), 0)
        except ChildProcessError:
            pass


def _mnt_ns_id(fd: int) -> int | None:
    """The kernel's 64-bit id of a mount namespace, or None before Linux 6.10."""
    try:
        return int.from_bytes(_ioctl(fd, NS_GET_MNTNS_ID, bytes(8)), sys.byteorder)
    except OSError:
        return None


def _mnt_ns_newer_than_ours(ns: Namespace) -> bool:
    """Whether the kernel lets us bind ``ns`` on a file of our mount namespace.

    It refuses one whose id is not above ours (a loop guard). Since Linux 6.18 namespace ids
    come from per-CPU batches, so a namespace made just now on another CPU can number below
    ours. Where the ids cannot be read, they are a global sequence and a new one is newer.
    """
    theirs = _mnt_ns_id(ns.fileno())
    if theirs is None:
        return True
    fd = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ours = _mnt_ns_id(fd)
    finally:
        os.close(fd)
    return ours is None or theirs > ours


def _recreate_newer_mnt_ns(
    handles: dict[NamespaceKind, Namespace], kinds: list[NamespaceKind],
    uids: tuple[IdMap, ...] | None, gids: tuple[IdMap, ...] | None, offsets: bytes | None,
    propagation: str,
) -> dict[NamespaceKind, Namespace]:
    """Make the namespaces again, the creator pinned to one CPU after another, until the
    mount namespace numbers above ours; the last try is returned as it is (persist then
    fails with a hint). The calling thread's CPU affinity is restored."""
    saved = os.sched_getaffinity(0)
    # The caller's own CPUs first, then the others (its affinity may be narrower than ours to
    # use for a moment); a CPU outside our cpuset is refused with EINVAL and skipped.
    cpus = sorted(saved) + sorted(set(range(os.cpu_count() or 1)) - saved)
    try:
        for cpu in cpus:
            try:
                os.sched_setaffinity(0, {cpu})
            except OSError:
                continue
            for handle in handles.values():
                handle.close()
            handles = _create(kinds, uids, gids, offsets, propagation)
            if _mnt_ns_newer_than_ours(handles[NamespaceKind.MNT]):
                break
    except BaseException:
        for handle in handles.values():
            handle.close()
        raise
    finally:
        os.sched_setaffinity(0, saved)
    return handles


def _create(kinds: list[NamespaceKind], uids: tuple[IdMap, ...] | None,
            gids: tuple[IdMap, ...] | None, offsets: bytes | None,
            propagation: str) -> dict[NamespaceKind, Namespace]:
    """Run the creator child and open its namespaces from the parent.

    Every kind but time comes from the clone flags. A time namespace is made by unshare, so the
    creator is not in it and its offsets can still be written. With a pid namespace the creator
    is its pid 1 and stays, as the keeper; otherwise it exits once we hold the namespaces.
    """
    clone_flags = 0
    for k in kinds:
        if k is not NamespaceKind.TIME:
            clone_flags |= k.flag
    keep = NamespaceKind.PID in kinds
    p = Plan(clone_flags, Mode.FORK)
    if NamespaceKind.TIME in kinds:
        p.add(_plan.unshare(_plan.CLONE_NEWTIME, note="unshare a new time namespace"))
    if offsets:
        p.add(_plan.write_file("/proc/self/timens_offsets", offsets))
    if NamespaceKind.MNT in kinds and propagation != "unchanged":
        flag = MS_PRIVATE if propagation == "private" else MS_SLAVE
        p.add(_plan.mount(None, "/", None, MS_REC | flag,
                          note=f"make the new mount namespace {propagation}"))
    # The parent step starts right after clone, not when the child reaches WAIT_PARENT; a
    # namespace made by unshare exists only once the child got that far, so the child says so
    # on a pipe first. EOF instead means it died: its error report follows on the status pipe.
    fds: list[int] = []
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    fds += [ready_r, ready_w]
    p.add(_plan.write_file(f"/proc/self/fd/{ready_w}", b"R"))
    p.add(_plan.wait_parent(note="wait for the parent to open the namespaces"))
    keeper_w = -1
    if keep:
        keeper_r, keeper_w = os.pipe2(os.O_CLOEXEC)
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        fds += [keeper_r, null]
        p.add(_plan.fds([(keeper_r, 0, False), (null, 1, False), (null, 2, False)]))
        # /proc/self/exe: the interpreter may sit in a directory the new user namespace's
        # root cannot search (pyenv under /root); the magic link needs no path walk.
        p.add(_plan.exec_("/proc/self/exe", [sys.executable, "-I", "-S", "-c", _KEEPER_CODE,
                                             KEEPER_MARK], {}, search_path=False))
    handles: dict[NamespaceKind, Namespace] = {}

    def grab(pid: int) -> None:
        os.close(ready_w)
        fds.remove(ready_w)
        if not os.read(ready_r, 1):
            return
        for k in kinds:
            handles[k] = Namespace.of_pid(pid, k, for_children=k is NamespaceKind.TIME)
        if uids is not None or gids is not None:
            write_id_maps(pid, uids, gids)

    try:
        try:
            child = lowlevel.spawn(p, parent_step=grab)
        finally:
            for fd in fds:
                os.close(fd)
        if keep:
            handles[NamespaceKind.PID]._keeper = _Keeper(child, keeper_w)
            keeper_w = -1
        else:
            with child:
                child.wait()
    except IsolateOSError as exc:
        for h in handles.values():
            h.close()
        if keeper_w >= 0:
            os.close(keeper_w)
        # A time namespace is made by unshare after the clone: its refusal is the same one.
        if exc.step == "clone" or (exc.step == "unshare" and NamespaceKind.TIME in kinds):
            raise _clone_error(exc, kinds) from exc
        raise
    except BaseException:
        for h in handles.values():
            h.close()
        if keeper_w >= 0:
            os.close(keeper_w)
        raise
    return handles


def _clone_error(exc: IsolateOSError, kinds: list[NamespaceKind]) -> IsolateOSError | \
        UnsupportedError:
    names = ", ".join(k.value for k in kinds)
    code = exc.errno or errno.EIO
    if NamespaceKind.USER in kinds and code in (errno.EPERM, errno.ENOSPC, errno.EUSERS,
                                                errno.EACCES):
        return UnsupportedError(
            f"this host does not allow creating a user namespace ({errno_name(code)}: "
            f"{os.strerror(code)}); check the sysctls user.max_user_namespaces, "
            "kernel.unprivileged_userns_clone and kernel.apparmor_restrict_unprivileged_userns",
            missing="user namespaces")
    hint = ""
    if code == errno.EPERM and os.geteuid() != 0:
        hint = "; as an ordinary user, create them together with a new user namespace ('user')"
    return NamespaceError(code, f"create {names} namespace(s){hint}", step=exc.step)


class NamespaceSet(Mapping[NamespaceKind, Namespace]):
    """Several namespace handles by kind, closed together (``with`` closes them all).

    Indexing takes a kind or its name: ``nss["net"]``.
    """

    def __init__(self, handles: Mapping[NamespaceKind, Namespace]) -> None:
        self._handles = dict(handles)

    def __getitem__(self, key: KindLike) -> Namespace:
        return self._handles[NamespaceKind.parse(key)]

    def __iter__(self) -> Iterator[NamespaceKind]:
        """The kinds in the set, in the order they were given."""
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    def __repr__(self) -> str:
        return f"<NamespaceSet {list(self._handles.values())!r}>"

    def persist(self, directory: str | os.PathLike[str]) -> dict[NamespaceKind, str]:
        """Persist each namespace on ``directory/KIND``; all or none. Returns the paths.

        Raises NamespaceError (see :meth:`Namespace.persist`).
        """
        d = os.path.abspath(os.fspath(directory))
        done: dict[NamespaceKind, str] = {}
        try:
            for kind, handle in self._handles.items():
                path = os.path.join(d, kind.value)
                handle.persist(path)
                done[kind] = path
        except BaseException:
            for path in done.values():
                try:
                    Namespace.remove(path)
                except IsolateOSError:
                    pass
            raise
        return done

    def close(self) -> None:
        """Close every handle of the set (see :meth:`Namespace.close`)."""
        for handle in self._handles.values():
            handle.close()

    def __enter__(self) -> NamespaceSet:
        """Return the set itself; leaving the ``with`` block closes every handle."""
        return self

    def __exit__(self, *exc: object) -> None:
        """:meth:`close` the set; exceptions from the block propagate."""
        self.close()


# -- joining from a child -----------------------------------------------------------------------

#: Namespaces to join: handles, or a mapping by kind such as a :class:`NamespaceSet`.
#: (Mapping is invariant in its key type, hence one member per kind of key.)
Namespaces = (Iterable[Namespace] | Mapping[NamespaceKind, Namespace] | Mapping[str, Namespace]
              | Mapping[KindLike, Namespace])


def join_ops(namespaces: Namespaces) -> tuple[list[Op], Mode]:
    """The plan operations that make a child join ``namespaces``, and the clone mode it needs.

    In the kernel's order: user first (joining it grants the capabilities for the rest; our
    own user namespace is skipped, since the kernel refuses re-entering it), then cgroup, ipc,
    uts, net, mnt, time, and pid last -- by forking (FORK_INTO_PIDNS): setns on a pid namespace
    only moves children, so the rest of the plan runs in a grandchild born there. A time
    namespace needs :attr:`Mode.FORK` (the kernel refuses it while memory is shared).

    The operations refer to the handles' fds: keep the handles open until the spawn returns.
    Raises ConfigError (two of one kind, a closed handle).
    """
    handles = list(namespaces.values()) if isinstance(namespaces, Mapping) else list(namespaces)
    by_kind: dict[NamespaceKind, Namespace] = {}
    for h in handles:
        if not isinstance(h, Namespace):
            raise ConfigError(f"join_ops takes Namespace handles, not {h!r}")
        if h.closed:
            raise ConfigError(f"cannot join {h!r}: the handle is closed")
        if h.kind in by_kind and by_kind[h.kind] != h:
            raise ConfigError(f"two different {h.kind.value} namespaces to join: "
                              f"{by_kind[h.kind]!r} and {h!r}")
        by_kind[h.kind] = h
    ops: list[Op] = []
    mode = Mode.VFORK
    for kind in _JOIN_ORDER:
        h = by_kind.get(kind)
        if h is None:
            continue
        if kind is NamespaceKind.USER:
            with Namespace.current(kind) as ours:
                if ours == h:
                    continue
        if kind is NamespaceKind.PID:
            ops.append(_plan.fork_into_pidns(h, note=f"fork into pid namespace {h.inode}"))
            continue
        if kind is NamespaceKind.TIME:
            mode = Mode.FORK
        ops.append(_plan.setns(h, kind.flag, note=f"join {kind.value} namespace {h.inode}"))
    return ops, mode


def spawn_in(namespaces: Namespaces,
             argv: Sequence[str], env: Mapping[str, str] | None = None, *,
             cwd: str | None = None, uid: int | None = None, gid: int | None = None,
             stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
             ) -> lowlevel.Child:
    """Run ``argv`` in a child that first joins ``namespaces`` (like ``nsenter``).

    ``env`` defaults to ours; ``argv[0]`` is looked up in its PATH. ``uid``/``gid`` switch the
    credentials after joining (e.g. ``uid=0, gid=0`` to be root in a joined user namespace
    whose map does not contain our own id); by default they are kept. ``stdin``/``stdout``/
    ``stderr`` are fds to give the child (default: ours); every other fd is closed in it.
    The child is the caller's to wait for and close (it is a context manager).

    Raises ConfigError, NamespaceError (a join refused, with the step and errno), SpawnError.
    """
    if isinstance(argv, str) or not argv:
        raise ConfigError(f"argv must be a non-empty list of strings, not {argv!r}")
    ops, mode = join_ops(namespaces)
    p = Plan(0, mode)
    p.extend(ops)
    if gid is not None:
        p.add(_plan.setresgid(gid))
    if uid is not None:
        p.add(_plan.setresuid(uid))
    if cwd is not None:
        p.add(_plan.chdir(cwd))
    if stdin is not None or stdout is not None or stderr is not None:
        std = [0 if stdin is None else stdin, 1 if stdout is None else stdout,
               2 if stderr is None else stderr]
        p.add(_plan.fds([(src, dst, False) for dst, src in enumerate(std)]))
    p.add(_plan.exec_(argv[0], argv, env))
    return lowlevel.spawn(p)
