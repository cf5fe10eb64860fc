"""Files of a container's image, read without leaving it, and its users.

Owns opening a path of a root with that root as ``/`` (openat2 ``RESOLVE_IN_ROOT``) and what a
path is in an image's merged layers. Users and groups (``--user`` names turned into numbers,
runc's rules) are :mod:`isolate.image.users`' -- the build resolves ``USER`` and ``--chown``
there too -- and are re-exported here: :class:`ImageUser`, :func:`resolve_user`,
:func:`read_image_file`.
"""

from __future__ import annotations

import errno
import os
from _collections_abc import Sequence

from isolate import lowlevel
from isolate.errors import IsolateOSError
from isolate.fs import inroot
from isolate.image.users import ImageUser, read_image_file, resolve_user

__all__ = ["ImageUser", "find", "image_path_exists", "open_in_root", "read_image_file",
           "resolve_user"]

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


def open_in_root(root_fd: int, path: str, flags: int) -> int:
    """Open ``path`` with ``root_fd`` as its root: symlinks (and ``..``) resolved as in a
    chroot there, never above it, no magic links (openat2 ``RESOLVE_IN_ROOT``). The kernel
    refuses with EAGAIN when a rename or a mount anywhere raced with a ``..`` of the lookup;
    that is retried.

    Raises:
        IsolateOSError: the open failed (ENOENT, ENOTDIR...).
    """
    rel = path.lstrip("/") or "."
    for _ in range(1000):
        try:
            return lowlevel.openat2(root_fd, rel, flags | os.O_CLOEXEC, 0,
                                    _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        except IsolateOSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
    return lowlevel.openat2(root_fd, rel, flags | os.O_CLOEXEC, 0,
                            _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)


def find(layers: Sequence[str], path: str, *, follow: bool = True) -> inroot.Found | None:
    """What ``path`` is in the image of ``layers`` (lowest first), as the merged overlay shows
    it (:func:`isolate.fs.inroot.lookup`: resolved inside the image only), or None."""
    return inroot.lookup(list(layers), path, follow=follow)


def image_path_exists(layers: Sequence[str], path: str) -> bool:
    """Whether ``path`` exists in the image made of ``layers`` (lowest first)."""
    return find(layers, path) is not None
