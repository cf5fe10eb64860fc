"""Crash-safe disk primitives for the image store: file locks, temp + fsync + rename.

Owns the naming of temp entries (``<pid>-<pidns>.<token>.<what>`` under ``tmp/``) so that a
later open can tell a dead writer's leftovers from a live writer's work. Knows nothing of
images or blobs.
"""

from __future__ import annotations

import fcntl
import os
import time
from _collections_abc import Iterator

from isolate import _ctx as contextlib
from isolate._procs import pid_alive
from isolate._typing import TYPE_CHECKING
from isolate.errors import ImageError
from isolate.fs import _tree

if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = ["FileLock", "TempSpace", "fsync_dir", "fsync_tree", "remove_tree"]


def fsync_dir(path: str) -> None:
    """fsync a directory so a rename or unlink inside it survives a crash."""
    _tree.fsync_dir(path)


def fsync_tree(path: str) -> None:
    """fsync every regular file and directory below ``path`` (before it is renamed visible),
    at any depth (see :mod:`isolate.fs._tree`)."""
    _tree.fsync_tree(path)


def remove_tree(path: str) -> None:
    """Remove a file or tree, also when extracted modes made directories unwritable, and at
    any depth (a layer may nest directories deeper than Python's recursion limit).

    Raises:
        ImageError: something in the tree could not be removed (errno kept as the cause).
    """
    try:
        _tree.remove_tree(path)
    except OSError as exc:
        raise ImageError(f"cannot remove {path}: {exc.strerror or exc}") from exc


class FileLock:
    """An ``flock`` on a file under the store's ``locks/``; shared or exclusive, blocking.

    flock belongs to the open file description, so two threads of one process that each open
    the lock exclude each other like two processes do, and a killed holder releases it.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def hold(self, *, shared: bool = False) -> Iterator[None]:
        """Hold the lock for the ``with`` body.

        Raises:
            ImageError: the lock file cannot be opened.
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ImageError(f"cannot open store lock {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock


# A temp entry of a writer in another pid namespace (a store shared with a container) cannot be
# judged by its pid here; it is removed only once it is this old (seconds).
FOREIGN_TEMP_AGE = 7 * 24 * 3600

_pid_ns_cache: tuple[int, int] = (-1, 0)


def _pid_ns() -> int:
    """The inode of this process's pid namespace (what its pids mean)."""
    global _pid_ns_cache
    if _pid_ns_cache[0] != os.getpid():
        _pid_ns_cache = (os.getpid(), os.stat("/proc/self/ns/pid").st_ino)
    return _pid_ns_cache[1]


class TempSpace:
    """The store's ``tmp/`` directory: names temp entries and cleans dead writers' ones.

    An entry is named after its writer's pid and pid namespace. One of this namespace whose
    pid is gone is a leftover (a reused pid keeps it: never removed while possibly live). One
    of another namespace, whose pids we cannot check, goes only after FOREIGN_TEMP_AGE.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def name(self, what: str) -> str:
        """A fresh path in tmp/ that records this process as its owner."""
        # (os.urandom: secrets.token_hex's bytes, without the hmac and OpenSSL hashlib that
        # secrets loads)
        return os.path.join(self.path,
                            f"{os.getpid()}-{_pid_ns()}.{os.urandom(8).hex()}.{what}")

    def leftovers(self) -> list[str]:
        """The paths of entries whose writing process is gone."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        ours = _pid_ns()
        now = time.time()
        out = []
        for name in names:
            path = os.path.join(self.path, name)
            pid_text, _, ns_text = name.split(".", 1)[0].partition("-")
            if ns_text.isdigit() and int(ns_text) != ours:
                try:
                    if now - os.lstat(path).st_mtime < FOREIGN_TEMP_AGE:
                        continue
                except FileNotFoundError:
                    continue
            elif pid_text.isdigit() and pid_alive(int(pid_text)):
                continue
            out.append(path)
        return out

    def clean(self) -> int:
        """Remove entries whose writing process is gone; return how many were removed."""
        removed = 0
        for path in self.leftovers():
            try:
                remove_tree(path)
            except ImageError:
                continue  # not ours to remove after all (another user's): left for its owner
            removed += 1
        return removed

    @contextlib.contextmanager
    def writer(self, final: str, *, durable: bool = True) -> Iterator[BinaryIO]:
        """Write a file that appears at ``final`` only complete: temp, fsync, rename, fsync
        of its directory (``durable=False``: no fsync; a reader sees it whole or not at
        all, and only a crash of the machine may leave it empty or not there).

        On an exception the temp file is removed and ``final`` is untouched.
        """
        tmp = self.name(os.path.basename(final))
        f = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
        try:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
            f.close()
            os.rename(tmp, final)
            if durable:
                fsync_dir(os.path.dirname(final))
        except BaseException:
            f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def write_bytes(self, final: str, data: bytes, *, durable: bool = True) -> None:
        """Atomically replace ``final`` with ``data`` (``durable``: as :meth:`writer`)."""
        with self.writer(final, durable=durable) as f:
            f.write(data)
