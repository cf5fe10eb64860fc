"""The exception hierarchy of isolate.

Owns every exception type the library raises. Imports nothing from isolate, so any layer may
raise these. Errors that come from the kernel keep their errno and subclass ``OSError``; errors
about bad input subclass ``ValueError`` so callers can catch what they already know.
"""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "AmbiguousError",
    "CallError",
    "CgroupError",
    "ConfigError",
    "ConflictError",
    "DigestMismatch",
    "ImageError",
    "ImageInUseError",
    "IsolateError",
    "IsolateOSError",
    "MountError",
    "NamespaceError",
    "NetworkError",
    "NotFoundError",
    "SpawnError",
    "StateError",
    "UnsupportedError",
    "errno_name",
]


def errno_name(code: int | None) -> str:
    """Return the symbolic name of an errno value (``ENOENT``), or ``"errno N"`` if unknown."""
    if code is None:
        return "unknown error"
    return _errno.errorcode.get(code, f"errno {code}")


class IsolateError(Exception):
    """Base of every isolate exception; never raised itself."""


class IsolateOSError(IsolateError, OSError):
    """A system call failed. Keeps ``errno``, ``strerror`` and ``filename`` like :class:`OSError`.

    ``step`` names what isolate was doing (``"mount"``, ``"setns"``, ``"exec"``...), ``pid`` the
    process it concerned, when known; ``op_index`` is the index of the failing set-up operation
    when the failure happened in a child between clone and exec. ``errno`` is None where no
    system call failed (a helper program such as fuse-overlayfs exited): the message then
    says what happened, with no errno made up for it.
    """

    def __init__(
        self,
        errno: int | None,
        message: str,
        filename: str | os.PathLike[str] | None = None,
        *,
        step: str | None = None,
        pid: int | None = None,
        op_index: int | None = None,
    ) -> None:
        OSError.__init__(self, errno, message)
        if filename is not None:
            self.filename = os.fspath(filename)
        self.step = step
        self.pid = pid
        self.op_index = op_index
        self.message = message

    def __str__(self) -> str:
        if self.errno is None:
            return self.message
        return f"{self.message}: {errno_name(self.errno)} ({os.strerror(self.errno)})"

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (
            _rebuild_os_error,
            (type(self), self.errno, self.message, self.filename, self.step, self.pid,
             self.op_index),
        )


def _rebuild_os_error(cls, errno, message, filename, step, pid, op_index):  # type: ignore[no-untyped-def]
    return cls(errno, message, filename, step=step, pid=pid, op_index=op_index)


class NamespaceError(IsolateOSError):
    """Creating, opening, joining or persisting a namespace failed."""


class MountError(IsolateOSError):
    """A mount, unmount, pivot_root or remount failed."""


class CgroupError(IsolateOSError):
    """Reading or writing a cgroup file, or creating/removing a cgroup, failed."""


class NetworkError(IsolateOSError):
    """A network device, address, route or firewall operation failed."""


class SpawnError(IsolateOSError):
    """A step of a child's set-up between clone and exec failed, or the exec itself.

    ``op_index`` is the index of the failing set-up operation in the plan (``None`` for a step
    outside the operation list, such as clone itself). Failures of mount or namespace steps
    raise :class:`MountError` / :class:`NamespaceError`, which carry ``op_index`` too.
    """


class CallError(IsolateError, RuntimeError):
    """A sandboxed Python call could not be made or died without returning a result."""


class ConfigError(IsolateError, ValueError):
    """A configuration was rejected before any system call was made."""


class StateError(IsolateError):
    """An illegal lifecycle move, e.g. starting a container that is already running."""

    def __init__(self, message: str, *, current: str | None = None,
                 requested: str | None = None) -> None:
        super().__init__(message)
        self.current = current
        self.requested = requested


class UnsupportedError(IsolateError):
    """The kernel or host lacks what was asked for; the message says what is missing."""

    def __init__(self, message: str, *, missing: str | None = None) -> None:
        super().__init__(message)
        self.missing = missing


class ImageError(IsolateError):
    """An image reference is bad, an image or blob is missing, or access was refused."""


class DigestMismatch(ImageError):
    """Content did not hash to the digest that named it."""

    def __init__(self, message: str, *, expected: str | None = None,
                 actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class NotFoundError(IsolateError, LookupError):
    """No container, volume (or other named thing) answers to a name or id (``kind``,
    ``ref``): Docker's "No such container"."""

    def __init__(self, message: str, *, kind: str | None = None,
                 ref: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.ref = ref


class AmbiguousError(IsolateError, LookupError):
    """An id prefix matches more than one container (or volume): give more of it."""


class ConflictError(IsolateError):
    """The request collides with what exists: a name in use, a volume in use by a
    container (Docker's 409 Conflict)."""


class ImageInUseError(ImageError, ConflictError):
    """An image a container (or sandbox) uses cannot lose its last name or be removed
    without force (Docker's "conflict: unable to remove ...")."""
