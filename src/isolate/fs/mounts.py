"""Mount records: what a sandbox or container mounts, as small validated values.

Owns validation of mount requests (absolute targets, no ``..``, no NUL bytes) and their
translation to set-up operations for the C child. It makes no system calls: the child mounts.
"""

from __future__ import annotations

import os
import posixpath
from typing import Any

import attrs

from isolate import _plan
from isolate._plan import Op
from isolate._units import parse_size
from isolate.errors import ConfigError

__all__ = ["Bind", "Device", "Mount", "Tmpfs", "check_container_path", "parse_size"]

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000
MS_PRIVATE = 0x40000
MS_STRICTATIME = 0x1000000

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8

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


@attrs.frozen
class Bind:
    """Bind ``source`` (a host path) to ``target`` inside; read-only unless ``readonly=False``.

    The whole subtree is bound (like ``--rbind``); the target is created when missing (in a
    writable root) and resolved inside the new root, so a symlink there cannot redirect it.
    Device nodes in it cannot be opened (``nodev``; a read-only mount does not stop writes to
    a device) unless ``dev=True``; a sandbox with a device cgroup still allows only its list.
    """

    source: str = attrs.field(converter=_host_path)
    target: str = attrs.field(converter=_target)
    readonly: bool = True
    dev: bool = False

    @classmethod
    def parse(cls, spec: str) -> Bind:
        """``SRC:DST[:OPTIONS]`` as in ``docker run -v``; OPTIONS is a comma-separated list
        of ``ro`` (the default), ``rw``, ``dev`` (device nodes usable) and ``nodev``."""
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


def _device_target(value: Any) -> str:
    target = check_container_path(value, "device target")
    if not target.startswith("/dev/"):
        raise ConfigError(f"device target must be below /dev, not {target!r}")
    return target


def _access(value: Any) -> str:
    if (not isinstance(value, str) or not value or len(set(value)) != len(value)
            or set(value) - set("rwm")):
        raise ConfigError(f"device access must be made of 'r', 'w' and 'm', not {value!r}")
    return value


@attrs.frozen
class Device:
    """Give the sandbox the host's device node ``source`` at ``target`` below ``/dev``
    (default: the same path), like ``docker run --device``.

    ``access`` (``r`` read, ``w`` write, ``m`` mknod) is what the sandbox's device cgroup
    allows for it; a sandbox without a cgroup binds the node and cannot narrow the access
    (``isolate.Sandbox`` makes a cgroup whenever a device asks for less than ``rwm``).
    """

    source: str = attrs.field(converter=_host_path)
    target: str = attrs.field(default=attrs.Factory(lambda self: self.source, takes_self=True),
                              converter=_device_target)
    access: str = attrs.field(default="rwm", converter=_access)

    @classmethod
    def parse(cls, spec: str) -> Device:
        """``HOST[:CONTAINER][:ACCESS]`` as in ``docker run --device`` (``/dev/fuse``,
        ``/dev/sdb:/dev/xvdb:r``, ``/dev/kvm:rw``)."""
        parts = spec.split(":")
        if len(parts) == 2 and parts[1] and not parts[1].startswith("/"):
            parts = [parts[0], parts[0], parts[1]]
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ConfigError(f"device must look like HOST[:CONTAINER][:rwm], not {spec!r}")
        return cls(*parts)

    def ops(self, slot: int) -> tuple[list[Op], list[Op]]:
        """Operations before the staging mount (open the node) and once ``/dev`` is there."""
        return ([_plan.open_tree(self.source, slot, recursive=False)],
                [_plan.move_mount(slot, self.target, is_file=True, source=self.source)])


@attrs.frozen
class Tmpfs:
    """A fresh tmpfs at ``target`` (nosuid, nodev), at most ``size`` bytes (None: the kernel's
    default, half of RAM)."""

    target: str = attrs.field(converter=_target)
    size: int | None = attrs.field(default=None, converter=_tmpfs_size)
    mode: int = 0o1777

    def ops(self) -> list[Op]:
        data = f"mode={self.mode:o}"
        if self.size is not None:
            data += f",size={self.size}"
        return [_plan.mount("tmpfs", self.target, "tmpfs", MS_NOSUID | MS_NODEV, data,
                            in_root=True, mkdir=True)]


Mount = Bind | Tmpfs
