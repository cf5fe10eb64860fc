"""Find out how cgroups are laid out on this host: v2 (unified), v1, or hybrid.

Owns parsing of mountinfo and /proc/PID/cgroup into a :class:`Layout`. Reads only the files it
is given, so tests point it at fixture trees; it never creates or writes a cgroup.
"""

from __future__ import annotations

import errno
import os
from _collections_abc import Callable

from isolate import _record
from isolate._enum import Enum
from isolate.errors import CgroupError, UnsupportedError

__all__ = ["BackendKind", "Hierarchy", "Layout", "detect", "parse_mountinfo", "parse_proc_cgroup"]

#: The key of the unified (v2) hierarchy in :attr:`Layout.hierarchies` and in /proc/PID/cgroup.
V2_KEY = "unified"


class BackendKind(Enum):
    """How the host mounts cgroups; callers of :class:`~isolate.cgroups.CGroup` need not care."""

    V2 = "v2"  #: one unified hierarchy holds every controller
    V1 = "v1"  #: one hierarchy per controller (or per co-mounted group)
    HYBRID = "hybrid"  #: v1 controllers beside a v2 mount used for core features only


@_record.record
class Hierarchy:
    """One mounted cgroup hierarchy.

    ``mount`` is where it is mounted (below ``sysroot``); ``root`` is the cgroup path the mount
    shows at its top (``/`` unless a sub-tree was mounted); ``self_path`` is the cgroup of the
    process that was inspected. ``controllers`` is empty for v2 (see
    :attr:`Layout.v2_controllers`).
    """

    key: str
    version: int
    mount: str
    root: str
    controllers: frozenset[str]
    self_path: str

    def dir_of(self, cgroup_path: str) -> str:
        """The directory of an absolute cgroup path (``/a/b``) in this hierarchy.

        Raises :class:`UnsupportedError` when the path lies outside the mounted sub-tree.
        """
        path = "/" + cgroup_path.strip("/")
        root = "/" + self.root.strip("/")
        if root != "/":
            if path != root and not path.startswith(root + "/"):
                raise UnsupportedError(
                    f"cgroup {path} lies outside the part of the {self.key} hierarchy "
                    f"mounted at {self.mount} (which shows {root})",
                    missing=f"a mount of {path}",
                )
            path = path[len(root):] or "/"
        return os.path.join(self.mount, path.lstrip("/")).rstrip("/") or "/"


@_record.record
class Layout:
    """The cgroup mounts of a host and the inspected process's place in them."""

    kind: BackendKind
    v2: Hierarchy | None
    v1: tuple[Hierarchy, ...]
    #: Controllers the v2 root offers (its ``cgroup.controllers``); empty when there is no v2.
    v2_controllers: frozenset[str]

    @property
    def hierarchies(self) -> tuple[Hierarchy, ...]:
        """Every hierarchy a cgroup made by isolate spans: v2 first (if used), then v1."""
        return ((self.v2,) if self.v2 is not None else ()) + self.v1

    def v1_for(self, controller: str) -> Hierarchy | None:
        """The v1 hierarchy that carries ``controller``, if any."""
        for h in self.v1:
            if controller in h.controllers:
                return h
        return None

    def only(self, keep: Callable[[Hierarchy], bool]) -> Layout:
        """This layout with only the v1 hierarchies ``keep`` accepts (the v2 one stays): a
        group made with it exists in those alone, as one whose processes join no others
        (see :meth:`CGroup.join_files`) needs."""
        v1 = tuple(h for h in self.v1 if keep(h))
        return self if v1 == self.v1 else _record.evolve(self, v1=v1)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """Return ``(fstype, mount_point, root, super_options)`` for each cgroup/cgroup2 mount.

    Raises :class:`CgroupError` (EINVAL) on a line that is not mountinfo.
    """
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            fstype, super_opts = fields[sep + 1], fields[sep + 3]
        except (ValueError, IndexError):
            raise CgroupError(
                errno.EINVAL, f"malformed mountinfo line {line!r}", step="detect"
            ) from None
        if fstype in ("cgroup", "cgroup2"):
            out.append(
                (fstype, _unescape(fields[4]), _unescape(fields[3]),
                 frozenset(super_opts.split(",")))
            )
    return out


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Map each hierarchy of a /proc/PID/cgroup file to the process's cgroup path in it.

    Keys are the controller list as written (``"cpu,cpuacct"``, ``"name=systemd"``), or
    ``"unified"`` for the v2 line ``0::/path``.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            out[V2_KEY] = path
        else:
            out[",".join(sorted(controllers.split(",")))] = path
    return out


def _read(path: str, step: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CgroupError(e.errno or errno.EIO, f"cannot read {path}", path, step=step) from e


# Options of a v1 cgroup mount that are not controller names.
_V1_NON_CONTROLLER_OPTS = frozenset(
    {"rw", "ro", "noprefix", "xattr", "cpuset_v2_mode", "clone_children", "favordynmods"}
)


def detect(
    *,
    mountinfo: str = "/proc/self/mountinfo",
    proc_cgroup: str = "/proc/self/cgroup",
    sysroot: str = "/",
) -> Layout:
    """Inspect the host's cgroup mounts and the process's cgroups; return a :class:`Layout`.

    ``mountinfo`` and ``proc_cgroup`` are files to read (``/proc/PID/...`` for another
    process); mount points found there are looked up below ``sysroot`` so that a fixture tree in
    a temporary directory can stand for ``/``. Named v1 hierarchies (``name=systemd``) are
    ignored: they carry no controller and belong to their manager.

    Raises :class:`UnsupportedError` when no cgroup file system is mounted, and
    :class:`CgroupError` when the files cannot be read or parsed.
    """
    mounts = parse_mountinfo(_read(mountinfo, "detect"))
    self_paths = parse_proc_cgroup(_read(proc_cgroup, "detect"))

    def under_root(path: str) -> str:
        return os.path.join(sysroot, path.lstrip("/")) if sysroot != "/" else path

    v2: Hierarchy | None = None
    v1: dict[str, Hierarchy] = {}
    for fstype, mount_point, root, opts in mounts:
        if fstype == "cgroup2":
            if v2 is None:
                v2 = Hierarchy(V2_KEY, 2, under_root(mount_point), root, frozenset(),
                               self_paths.get(V2_KEY, "/"))
            continue
        controllers = frozenset(o for o in opts if o not in _V1_NON_CONTROLLER_OPTS
                                and not o.startswith(("name=", "release_agent=")))
        if not controllers:
            continue
        key = ",".join(sorted(controllers))
        if key not in v1:  # the first mount of a hierarchy wins; later ones are bind mounts
            v1[key] = Hierarchy(key, 1, under_root(mount_point), root, controllers,
                                self_paths.get(key, "/"))

    v2_controllers: frozenset[str] = frozenset()
    if v2 is not None:
        v2_controllers = frozenset(
            _read(os.path.join(v2.mount, "cgroup.controllers"), "detect").split()
        )
    hierarchies = tuple(sorted(v1.values(), key=lambda h: h.key))
    if v2 is not None and hierarchies:
        kind = BackendKind.HYBRID
    elif v2 is not None:
        kind = BackendKind.V2
    elif hierarchies:
        kind = BackendKind.V1
    else:
        raise UnsupportedError(
            f"no cgroup or cgroup2 file system is mounted (read {mountinfo})",
            missing="a cgroup mount",
        )
    return Layout(kind, v2, hierarchies, v2_controllers)
