"""The networks directory: one lock, atomic JSON files, and what a crash left in between.

Owns the on-disk form of networks, endpoints and address leases under the directory the caller
gives (the container layer passes its store's ``networks/``). Every change happens under one
``flock`` on ``DIR/.lock`` -- across threads (each takes its own open file) and processes -- and
every file is written to a temp name, fsync'ed and renamed, so a reader sees the old or the new
content, never half. Temp files found under the lock are a crash's and are removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any

from isolate.errors import NetworkError

__all__ = ["Directory"]

_TMP = ".tmp-"


class Directory:
    """The networks directory (created if missing, mode 0700)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))

    def _mkdir(self, path: str) -> None:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"create {path}", path,
                               step="store") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (exclusive) for the block; clean crash leftovers first."""
        self._mkdir(self.path)
        lock = os.path.join(self.path, ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"open {lock}", lock,
                               step="lock") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._remove_temps(self.path)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _remove_temps(self, top: str) -> None:
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                if name.startswith(_TMP):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, name))

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def read(self, *parts: str) -> Any:
        """The JSON in ``DIR/parts...``, or None when there is no such file."""
        path = self.file(*parts)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NetworkError(getattr(exc, "errno", None) or errno.EIO,
                               f"read {path}: {exc}", path, step="store") from exc

    def write(self, data: object, *parts: str, durable: bool = True) -> None:
        """Write ``data`` as JSON to ``DIR/parts...``: temp file, fsync, rename (a reader sees
        the old or the new content; the directory is not fsync'ed: after a power loss an
        older version may come back, which the records tolerate like a crash). ``durable=False``
        skips the fsync, for files derived from others and rebuilt at every change."""
        path = self.file(*parts)
        parent = os.path.dirname(path)
        self._mkdir(parent)
        tmp = os.path.join(parent, f"{_TMP}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(data, indent=1, sort_keys=True).encode() + b"\n")
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise NetworkError(exc.errno or errno.EIO, f"write {path}", path,
                               step="store") from exc

    def remove(self, *parts: str) -> None:
        """Delete a file or an (emptied) directory tree; missing is fine."""
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

    def list(self, *parts: str) -> list[str]:
        """Names in ``DIR/parts...`` (no temp files), sorted; [] when missing."""
        try:
            names = os.listdir(self.file(*parts))
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith("."))
