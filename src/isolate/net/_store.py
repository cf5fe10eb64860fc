"""The networks directory: one lock, atomic JSON files, and what a crash left in between.

Owns the on-disk form of networks, endpoints and address leases under the directory the caller
gives (the container layer passes its store's ``networks/``). Every change happens under one
``flock`` on ``DIR/.lock`` -- across threads (each takes its own open file) and processes; the
lock file holds nothing. Every file is written to a temp name, fsync'ed and renamed, so a
reader sees the old or the new content, never half, also after a power loss; temp files a crash
left are invisible (their names start with a dot) and removed by recovery.

Files that describe only what dies with the kernel -- an endpoint's veth, rules and helper
processes, a resolver's pid -- also carry the boot they were written in (:func:`boot_id`): one
of another boot describes nothing that exists and is dropped without touching the kernel, and
one that cannot be parsed is :class:`Torn` and dropped the same way (nothing isolate writes
makes one; a disk or a hand can).

The one thing not written so is a **hint** (:meth:`Directory.write_hint`): a symlink whose
target is the value, made under a temp name and renamed over the old one -- atomic, with no
content that could be torn, and not fsync'ed, because losing it costs nothing (the round-robin
address hint is rebuilt from the records).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from typing import Any

from isolate import _json as json
from isolate.errors import NetworkError

__all__ = ["Directory", "Torn"]

_TMP = ".tmp-"


class Torn(NetworkError):
    """A record that cannot be parsed (empty or cut short: a disk error, or a hand)."""


class _Cached:
    __slots__ = ("data", "stamp")

    def __init__(self, stamp: tuple[int, int, int, int], data: Any) -> None:
        self.stamp = stamp
        self.data = data


class Directory:
    """The networks directory (created if missing, mode 0700).

    Parsed files are cached, keyed by their inode, size and times: files are only ever
    replaced (rename) or removed, never changed in place, so an unchanged stamp is unchanged
    content, and an operation that touches one endpoint reads no other record again."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._cache: dict[str, _Cached] = {}
        self._cache_lock = threading.Lock()

    def _mkdir(self, path: str) -> None:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"create {path}", path,
                               step="store") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (exclusive) for the block."""
        self._mkdir(self.path)
        lock = os.path.join(self.path, ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"open {lock}", lock,
                               step="lock") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def remove_temps(self) -> None:
        """Remove the temp files crashed writers left (under the lock)."""
        for dirpath, _dirs, files in os.walk(self.path):
            for name in files:
                if name.startswith(_TMP):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, name))

    def file(self, *parts: str) -> str:
        """The path of ``DIR/parts...``."""
        return os.path.join(self.path, *parts)

    def read(self, *parts: str) -> Any:
        """The JSON in ``DIR/parts...``, or None when there is no such file.

        Raises Torn (empty or undecodable content), NetworkError (cannot read).
        """
        path = self.file(*parts)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            with self._cache_lock:
                self._cache.pop(path, None)
            return None
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"read {path}", path,
                               step="store") from exc
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._cache_lock:
            hit = self._cache.get(path)
        if hit is not None and hit.stamp == stamp:
            return hit.data
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"read {path}", path,
                               step="store") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise Torn(errno.EBADMSG, f"{path} is torn ({len(raw)} bytes: {exc})", path,
                       step="store") from None
        with self._cache_lock:
            self._cache[path] = _Cached(stamp, data)
        return data

    def write(self, data: object, *parts: str) -> None:
        """Write ``data`` as JSON to ``DIR/parts...``: temp file, fsync, rename. A reader sees
        the old or the new content. The directory itself is not fsync'ed: after a power loss
        an older version of a file may come back (or a new one be missing), which the records
        tolerate like a crash.

        Raises NetworkError (cannot write)."""
        path = self.file(*parts)
        parent = os.path.dirname(path)
        tmp = os.path.join(parent, f"{_TMP}{os.getpid()}-{os.urandom(4).hex()}")
        raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        for attempt in (0, 1):
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                break
            except FileNotFoundError:
                if attempt:
                    raise
                self._mkdir(parent)
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"write {path}", path,
                                   step="store") from exc
        try:
            try:
                os.write(fd, raw)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise NetworkError(exc.errno or errno.EIO, f"write {path}", path,
                               step="store") from exc

    def rename(self, old: tuple[str, ...], new: tuple[str, ...]) -> None:
        """Give a file written by :meth:`write` another name in the same directory (atomic).

        Raises NetworkError (no such file, or cannot rename)."""
        src, dst = self.file(*old), self.file(*new)
        try:
            os.rename(src, dst)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"rename {src} to {dst}", src,
                               step="store") from exc
        with self._cache_lock:
            hit = self._cache.pop(src, None)
            if hit is not None:
                self._cache[dst] = hit  # same inode, same content

    def write_hint(self, value: str, *parts: str) -> None:
        """Replace the hint ``DIR/parts...`` with ``value`` (a symlink to it, renamed into
        place: atomic, nothing to tear, not fsync'ed -- a hint lost is rebuilt).

        Raises NetworkError (cannot write)."""
        path = self.file(*parts)
        tmp = os.path.join(os.path.dirname(path), f"{_TMP}{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.symlink(value, tmp)
            try:
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"write {path}", path,
                               step="store") from exc

    def read_hint(self, *parts: str) -> str | None:
        """The hint's value, or None (none written, or not a hint)."""
        try:
            return os.readlink(self.file(*parts))
        except OSError:
            return None

    def remove(self, *parts: str) -> None:
        """Delete a file or a directory tree; missing is fine."""
        path = self.file(*parts)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                for dirpath, dirs, files in os.walk(path, topdown=False):
                    for name in files:
                        os.unlink(os.path.join(dirpath, name))
                    for name in dirs:
                        os.rmdir(os.path.join(dirpath, name))
                os.rmdir(path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"remove {path}", path,
                               step="store") from exc
        with self._cache_lock:
            for key in [k for k in self._cache if k == path or k.startswith(path + os.sep)]:
                del self._cache[key]

    def list(self, *parts: str) -> list[str]:
        """Names in ``DIR/parts...`` (no temp or hidden files), sorted; [] when missing."""
        try:
            names = os.listdir(self.file(*parts))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"list {self.file(*parts)}",
                               step="store") from exc
        return sorted(n for n in names if not n.startswith("."))
