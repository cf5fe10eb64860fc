"""Reading inside a root: a file as a sandbox's root would show it, never one outside it.

Owns path resolution inside a root directory, or inside a stack of overlay lower dirs as the
merged overlay would show them (whiteouts, opaque directories), for what the runtime reads
from an image or root before anything runs in it: passwd and group for a User, the working
dir, later /etc/hosts and the like. Every symlink is resolved relative to the root and ``..``
stops at it, one component at a time below directory fds, so the kernel follows no symlink
itself; a read opens non-blocking, takes a regular file only, and is capped in size. It
makes no mounts and writes nothing.
"""

from __future__ import annotations

import errno
import os
import stat
from _collections_abc import Sequence

from isolate import _record
from isolate.errors import IsolateOSError

__all__ = ["MAX_FILE_SIZE", "Found", "lookup", "read_file"]

#: What :func:`read_file` reads at most by default: far more than any passwd or hosts file.
MAX_FILE_SIZE = 4 << 20
#: Symlinks followed in one resolution before ELOOP, as the kernel's limit.
MAX_LINKS = 40
_OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK

Root = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@_record.record
class Found:
    """What a path is inside a root: ``path`` with every symlink resolved (absolute, inside
    the root), the directory ``source`` (the root, or the lower dir) that holds it, and its
    ``mode`` (as :func:`os.lstat` gives it; a symlink only when not followed)."""

    path: str
    source: str
    mode: int


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


class _Walk:
    """One resolution: the open directory fds it made, closed by :meth:`close`."""

    def __init__(self, root: Root) -> None:
        self.overlay = not isinstance(root, (str, os.PathLike))
        if isinstance(root, (str, os.PathLike)):
            self.sources = [os.fspath(root)]
        else:
            self.sources = [os.fspath(d) for d in reversed(list(root))]  # topmost first
        self.fds: list[int] = []
        try:
            self.top = [(i, self._open(None, d)) for i, d in enumerate(self.sources)]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()

    def _open(self, dfd: int | None, name: str) -> int:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        self.fds.append(fd)
        return fd

    def _whiteout(self, st: os.stat_result) -> bool:
        return self.overlay and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0

    def _opaque(self, fd: int) -> bool:
        if not self.overlay:
            return False
        for name in _OPAQUE:
            try:
                if os.getxattr(fd, name) == b"y":
                    return True
            except OSError:
                continue
        return False

    def resolve(self, path: str, follow: bool) -> tuple[Found, int, str] | None:
        """(what ``path`` is, the dir fd holding it, its name there), or None if the root
        has no such path. The root itself comes back with the fd of its topmost dir and
        name ``"."``."""
        # the components still to walk, the next one last (a stack: no collections.deque)
        todo = [p for p in path.split("/") if p not in ("", ".")][::-1]
        stack: list[tuple[str, list[tuple[int, int]]]] = []  # each component's directory view
        view = self.top
        links = 0
        while todo:
            name = todo.pop()
            if name == "..":
                if stack:
                    stack.pop()
                view = stack[-1][1] if stack else self.top
                continue
            hit = None
            for i, dfd in view:
                try:
                    hit = (i, dfd, os.stat(name, dir_fd=dfd, follow_symlinks=False))
                    break
                except FileNotFoundError:
                    continue
            if hit is None or self._whiteout(hit[2]):
                return None
            i, dfd, st = hit
            last = not todo
            if stat.S_ISLNK(st.st_mode) and (follow or not last):
                links += 1
                if links > MAX_LINKS:
                    raise IsolateOSError(errno.ELOOP, f"resolving {path} inside the root: "
                                         "too many symlinks", path, step="resolve")
                target = os.readlink(name, dir_fd=dfd)
                if target.startswith("/"):
                    stack.clear()
                    view = self.top
                todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            inside = "/" + "/".join([*(n for n, _ in stack), name])
            if last:
                return Found(inside, self.sources[i], st.st_mode), dfd, name
            if not stat.S_ISDIR(st.st_mode):
                return None  # a file where a directory should be: there is no such path
            below: list[tuple[int, int]] = []
            for j, d in view[[k for k, _ in view].index(i):]:
                try:
                    sub = st if j == i else os.stat(name, dir_fd=d, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISDIR(sub.st_mode):
                    break  # a whiteout, file or symlink hides the lower layers' directory
                fd = self._open(d, name)
                below.append((j, fd))
                if self._opaque(fd):
                    break
            stack.append((name, below))
            view = below
        where = "/" + "/".join(n for n, _ in stack)
        return Found(where, self.sources[view[0][0]], stat.S_IFDIR), view[0][1], "."


def lookup(root: Root, path: str, *, follow: bool = True) -> Found | None:
    """What ``path`` is inside ``root``, or None when the root has no such path.

    ``root`` is one directory, or a sequence of overlay lower dirs, lowest first (as
    :class:`isolate.image.Store` extracts layers), resolved as the merged overlay shows
    them: the topmost entry wins, a whiteout (a 0/0 character device) hides what is below,
    an opaque directory hides the lower layers' directory. Symlinks are resolved relative to
    the root (an absolute target starts again at the root, ``..`` stops there); ``follow``
    says whether a symlink at the last component is followed too.

    Raises:
        IsolateOSError: ELOOP after :data:`MAX_LINKS` symlinks, or another error of the
            filesystem (EACCES ...), errno kept.
    """
    walk = _Walk(root)
    try:
        found = walk.resolve(path, follow)
        return None if found is None else found[0]
    except OSError as exc:
        if isinstance(exc, IsolateOSError):
            raise
        raise IsolateOSError(exc.errno or errno.EIO, f"resolving {path} inside the root",
                             path, step="resolve") from exc
    finally:
        walk.close()


def read_file(root: Root, path: str, *, limit: int = MAX_FILE_SIZE) -> bytes | None:
    """The contents of the regular file at ``path`` inside ``root`` (resolved as
    :func:`lookup` does), or None when the root has no such path.

    The file is opened non-blocking without following a symlink and must be a regular file
    (checked before and after opening), so a FIFO, a device or a socket planted there can
    neither hang nor touch anything; at most ``limit`` bytes are read.

    Raises:
        IsolateOSError: EISDIR or EINVAL when the path is a directory, FIFO, device or
            socket; EFBIG when the file is larger than ``limit``; ELOOP for a symlink loop;
            another filesystem error with its errno.
    """
    walk = _Walk(root)
    try:
        resolved = walk.resolve(path, True)
        if resolved is None:
            return None
        found, dfd, name = resolved
        if not stat.S_ISREG(found.mode):
            raise IsolateOSError(errno.EISDIR if stat.S_ISDIR(found.mode) else errno.EINVAL,
                                 f"{found.path} is {_kind(found.mode)}, not a regular file",
                                 path, step="read")
        fd = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # replaced between the look and the open
                raise IsolateOSError(errno.EINVAL, f"{found.path} is {_kind(st.st_mode)}, not "
                                     "a regular file", path, step="read")
            chunks = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(1 << 16, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise IsolateOSError(errno.EFBIG, f"{found.path} is larger than {limit} bytes",
                                     path, step="read")
            return b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as exc:
        if isinstance(exc, IsolateOSError):
            raise
        raise IsolateOSError(exc.errno or errno.EIO, f"reading {path} inside the root", path,
                             step="read") from exc
    finally:
        walk.close()
