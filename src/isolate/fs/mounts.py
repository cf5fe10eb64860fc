"""Mount records: what a sandbox or container mounts, as small validated values.

Owns validation of mount requests (absolute targets, no ``..``, no NUL bytes) and their
translation to set-up operations for the C child. It makes no system calls: the child mounts.
"""

from __future__ import annotations

import os
import posixpath

from isolate import _plan, _record
from isolate._plan import (
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    MS_STRICTATIME,
    Op,
)
from isolate._typing import TYPE_CHECKING
from isolate._units import parse_size
from isolate.errors import ConfigError

if TYPE_CHECKING:
    from typing import Any

# The kernel's MS_*/MOUNT_ATTR_* constants are defined once, in the plan module (public as
# isolate.lowlevel.plan); the ones mount records use are re-exported here.
__all__ = [
    "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NOEXEC",
    "MOUNT_ATTR_NOSUID",
    "MOUNT_ATTR_RDONLY",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_SLAVE",
    "MS_STRICTATIME",
    "Bind",
    "Mount",
    "Tmpfs",
    "check_container_path",
    "parse_size",
]


def check_container_path(path: str | os.PathLike[str], what: str) -> str:
    """Validate a path inside a sandbox: absolute, no ``..``, no NUL; returns it normalised."""
    raw = os.fspath(path)
    if not isinstance(raw, str):
        raise ConfigError(f"{what} must be a str path, not {raw!r}")
    if "\0" in raw:
        raise ConfigError(f"{what} contains a NUL byte: {raw!r}")
    if not raw.startswith("/"):
        raise ConfigError(f"{what} must be an absolute path, not {raw!r}")
    if ".." in raw.split("/"):
        raise ConfigError(f"{what} must not contain '..': {raw!r}")
    norm = posixpath.normpath(raw)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def _host_path(value: Any) -> str:
    raw = os.fspath(value)
    if not isinstance(raw, str):
        raise ConfigError(f"bind source must be a str path, not {raw!r}")
    if "\0" in raw:
        raise ConfigError(f"bind source contains a NUL byte: {raw!r}")
    if not raw:
        raise ConfigError("bind source must not be empty")
    return os.path.abspath(raw)


def _tmpfs_size(value: int | str | None) -> int | None:
    return None if value is None else parse_size(value, name="tmpfs size")


def _target(value: Any) -> str:
    return check_container_path(value, "mount target")


_BIND_OPTIONS = ("ro", "rw", "dev", "nodev")


@_record.record
class Bind:
    """Bind ``source`` (a host path) to ``target`` inside; read-only unless ``readonly=False``.

    The whole subtree is bound (like ``--rbind``); the target is created when missing (in a
    writable root) and resolved inside the new root, so a symlink there cannot redirect it.
    Device nodes in it cannot be opened (``nodev``; a read-only mount does not stop writes to
    a device) unless ``dev=True``; a sandbox with a device cgroup still allows only its list.
    """

    source: str = _record.field(converter=_host_path)
    target: str = _record.field(converter=_target)
    readonly: bool = True
    dev: bool = False

    @classmethod
    def parse(cls, spec: str) -> Bind:
        """``SRC:DST[:OPTIONS]``, the syntax of ``docker run -v``; OPTIONS is a comma-separated
        list of ``ro``, ``rw``, ``dev`` (device nodes usable) and ``nodev``. Read-only unless
        ``rw`` is given: a sandbox's own default (Docker's ``-v`` is read-write unless ``ro``,
        and so are containers' volumes).

        Raises:
            ConfigError: not that syntax, an unknown or repeated option, or both of ``ro`` and
                ``rw`` (``dev`` and ``nodev``).
        """
        parts = spec.split(":")
        options = parts[2].split(",") if len(parts) == 3 else []
        if (len(parts) not in (2, 3) or not parts[0] or not parts[1]
                or any(o not in _BIND_OPTIONS for o in options)
                or len(set(options)) != len(options)
                or {"ro", "rw"} <= set(options) or {"dev", "nodev"} <= set(options)):
            raise ConfigError(f"bind must look like SRC:DST[:ro|rw][,dev], not {spec!r}")
        return cls(parts[0], parts[1], readonly="rw" not in options, dev="dev" in options)

    def ops(self, slot: int) -> tuple[list[Op], list[Op]]:
        """Operations before the staging mount (open the source) and inside the new root."""
        is_file = not os.path.isdir(self.source)
        before = [_plan.open_tree(self.source, slot)]
        inside = [_plan.move_mount(slot, self.target, is_file=is_file, source=self.source)]
        attr = (MOUNT_ATTR_RDONLY if self.readonly else 0) | (0 if self.dev else
                                                               MOUNT_ATTR_NODEV)
        if attr:
            what = ", ".join(w for w, on in (("read-only", self.readonly),
                                             ("nodev", not self.dev)) if on)
            inside.append(_plan.setattr_(self.target, attr, in_root=True, recursive=True,
                                         what=f"make {self.target} {what}"))
        return before, inside


@_record.record
class Tmpfs:
    """A fresh tmpfs at ``target`` (nosuid, nodev), at most ``size`` bytes (None: the kernel's
    default, half of RAM)."""

    target: str = _record.field(converter=_target)
    size: int | None = _record.field(default=None, converter=_tmpfs_size)
    mode: int = 0o1777

    def ops(self) -> list[Op]:
        """The operation that mounts it, inside the new root (target created)."""
        data = f"mode={self.mode:o}"
        if self.size is not None:
            data += f",size={self.size}"
        return [_plan.mount("tmpfs", self.target, "tmpfs", MS_NOSUID | MS_NODEV, data,
                            in_root=True, mkdir=True)]


Mount = Bind | Tmpfs
