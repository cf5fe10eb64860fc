"""Whole directory trees at any depth: walk, remove and fsync them by fd, without recursion.

Owns going through a tree that a layer made, which may be deeper than Python's recursion
limit (``os.walk`` and ``shutil.rmtree`` recurse on Python 3.11) and than PATH_MAX: every call
is relative to a directory fd, at most two of which are open at a time. Must not follow a
symlink, nor leave the tree: going back up opens ``..`` and checks it is the very directory
(device and inode) that was come down from.
"""

from __future__ import annotations

import errno
import os
import stat
from _collections_abc import Callable, Iterator

from isolate import _ctx as contextlib

__all__ = ["fsync_tree", "remove_tree", "remove_tree_at", "tree_bytes", "walk_at"]

_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_OPEN = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# per_entry(dir_fd, name, entry): called for each non-directory in the directory dir_fd.
# entry is None where a directory was replaced by something else while walking.
PerEntry = Callable[[int, str, "os.DirEntry[str] | None"], None]


def _ident(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _make_searchable(parent_fd: int, name: str) -> None:
    """chmod 0700 a directory we own but may not enter (a layer's 0500 or 0000 one)."""
    try:
        fd = os.open(name, _PATH_OPEN, dir_fd=parent_fd)
    except PermissionError:
        os.fchmod(parent_fd, 0o700)  # the parent itself may not be searched (0400)
        fd = os.open(name, _PATH_OPEN, dir_fd=parent_fd)
    try:
        # An O_PATH fd names the directory itself: a symlink put in its place is not followed.
        os.chmod(f"/proc/self/fd/{fd}", 0o700)
    except FileNotFoundError:  # no /proc: by name, which the O_PATH open found a directory
        os.chmod(name, 0o700, dir_fd=parent_fd)
    finally:
        os.close(fd)


def _open_dir(parent_fd: int, name: str, force: bool) -> int:
    try:
        return os.open(name, _DIR_OPEN, dir_fd=parent_fd)
    except PermissionError:
        if not force:
            raise
    _make_searchable(parent_fd, name)
    return os.open(name, _DIR_OPEN, dir_fd=parent_fd)


def _scan(fd: int, per_entry: PerEntry) -> list[str]:
    """Call per_entry for the non-directories of ``fd``; return its subdirectories."""
    subdirs = []
    with os.scandir(fd) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            subdirs.append(entry.name)
        else:
            per_entry(fd, entry.name, entry)
    return subdirs


def walk_at(parent_fd: int, name: str, per_entry: PerEntry, *,
            force: bool = False) -> Iterator[tuple[int, int, str]]:
    """Go depth first through the directory ``name`` in ``parent_fd``.

    ``per_entry`` is called for every non-directory; once a directory's whole content is
    done, ``(dir_fd, its_parent_fd, its_name)`` is yielded (deepest first, ``name`` itself
    last), both fds open until the generator resumes. ``force`` makes directories the caller
    owns but may not enter searchable first.

    Raises:
        OSError: a call failed; ESTALE if a directory was moved out from under the walk.
    """
    fd = _open_dir(parent_fd, name, force)
    up = -1
    try:
        stack = [(name, _ident(fd), _scan(fd, per_entry))]
        while stack:
            here, _ident_here, pending = stack[-1]
            if pending:
                child = pending.pop()
                try:
                    down = _open_dir(fd, child, force)
                except FileNotFoundError:
                    continue
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    per_entry(fd, child, None)  # no longer a directory
                    continue
                os.close(fd)
                fd = down
                stack.append((child, _ident(fd), _scan(fd, per_entry)))
                continue
            stack.pop()
            if stack:
                up = os.open("..", _DIR_OPEN, dir_fd=fd)
                if _ident(up) != stack[-1][1]:
                    raise OSError(errno.ESTALE, "directory moved while its tree was walked",
                                  here)
                yield fd, up, here
                os.close(fd)
                fd, up = up, -1
            else:
                yield fd, parent_fd, here
    finally:
        for f in (fd, up):
            if f >= 0:
                os.close(f)


def _unlink(dir_fd: int, name: str, _entry: os.DirEntry[str] | None) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except PermissionError:
        os.fchmod(dir_fd, 0o700)  # a directory of ours without write permission
        os.unlink(name, dir_fd=dir_fd)


def remove_tree_at(parent_fd: int, name: str) -> None:
    """Remove ``name`` in ``parent_fd`` (a file, or a directory and all below it); absent is
    fine. Directories the caller owns but may not write or enter are made so first.

    Raises:
        OSError: a removal failed.
    """
    try:
        os.unlink(name, dir_fd=parent_fd)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass
    except PermissionError:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.fchmod(parent_fd, 0o700)
            os.unlink(name, dir_fd=parent_fd)
            return
    for _fd, up, here in walk_at(parent_fd, name, _unlink, force=True):
        try:
            os.rmdir(here, dir_fd=up)
        except PermissionError:
            os.fchmod(up, 0o700)
            os.rmdir(here, dir_fd=up)


def remove_tree(path: str) -> None:
    """Remove the file or tree at ``path`` (as :func:`remove_tree_at`); absent is fine.

    Raises:
        OSError: a removal failed.
    """
    head, tail = os.path.split(os.path.normpath(path))
    try:
        parent = os.open(head or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remove_tree_at(parent, tail)
    finally:
        os.close(parent)


def _fsync_file(dir_fd: int, name: str, entry: os.DirEntry[str] | None) -> None:
    if entry is None or not entry.is_file(follow_symlinks=False):
        return
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """fsync the directory ``path``, so a rename or unlink in it survives a crash.

    Raises:
        OSError: the open or fsync failed.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: str) -> None:
    """fsync every regular file and directory below ``path`` and ``path`` itself (before a
    tree is renamed into sight).

    Raises:
        OSError: an open or fsync failed.
    """
    head, tail = os.path.split(os.path.normpath(path))
    parent = os.open(head or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for fd, _up, _name in walk_at(parent, tail, _fsync_file):
            os.fsync(fd)
    finally:
        os.close(parent)


def tree_bytes(path: str, seen: set[tuple[int, int]]) -> int:
    """Bytes used below ``path`` (blocks, else sizes); an inode counts once across every call
    given the same ``seen``. Entries removed meanwhile are skipped.

    Raises:
        OSError: ``path`` cannot be opened.
    """
    total = 0

    def count(st: os.stat_result) -> None:
        nonlocal total
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512 if st.st_blocks else st.st_size

    def per_entry(dir_fd: int, name: str, _entry: os.DirEntry[str] | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            count(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))

    head, tail = os.path.split(os.path.normpath(path))
    parent = os.open(head or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for fd, up, _name in walk_at(parent, tail, per_entry):
            if up != parent:  # the directories below path, not path itself
                count(os.fstat(fd))
    finally:
        os.close(parent)
    return total
