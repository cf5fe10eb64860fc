"""The networks directory: one lock, atomic JSON files, and what a crash left in between.

Owns the on-disk form of networks, endpoints and address leases under the directory the caller
gives (the container layer passes its store's ``networks/``). Every change happens under one
``flock`` on ``DIR/.lock`` -- across threads (each takes its own open file) and processes.
Every file is written to a temp name and renamed, so a reader sees the old or the new content,
never half; temp files a crash left are invisible (their names start with a dot) and removed by
recovery.

Two kinds of files, and what a crash can do to each:

- **Durable** files (a network's definition, the host's sysctls before isolate) are fsync'ed
  before the rename: they must survive a power loss.
- **Volatile** files describe only what dies with the kernel -- an endpoint's veth, rules and
  helper processes, a resolver's pid. They are renamed into place without fsync: a process
  crash cannot tear them (the page cache outlives the process, and rename is atomic), and the
  only thing that can -- a power loss or kernel crash -- also takes every device, rule and
  process they describe. So each carries the boot it was written in (:func:`boot_id`): one of
  another boot describes nothing that exists and is dropped without touching the kernel, and
  an unreadable one (empty or cut short: only a machine crash makes those) is :class:`Torn`
  and dropped the same way.

The lock file also holds a little state of its own (:class:`LockState`), rewritten in place
under the lock and never fsync'ed: the endpoints being made right now (so the next holder rolls
back what a crashed one left) and each network's round-robin address hint. Garbled or another
boot's, it is ignored: the hint is rebuilt from the records, and an endpoint whose record exists
is torn down from it later (its owner gone, or prune).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterator
from typing import Any

from isolate.errors import NetworkError
from isolate.net._helpers import boot_id

__all__ = ["Directory", "LockState", "Torn"]

_TMP = ".tmp-"


class Torn(NetworkError):
    """A volatile file that cannot be parsed (empty or cut short by a machine crash)."""


class LockState:
    """What the lock file holds: endpoints being made (``pending``: ``[network id, endpoint
    id]`` pairs) and round-robin hints (``hints[network id]["4"|"6"]``: the last address
    given). Changed only under the lock; :meth:`save` writes it back in place."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.pending: list[list[str]] = []
        self.hints: dict[str, dict[str, str | None]] = {}
        self._size = 0
        try:
            raw = os.pread(fd, 65536, 0)
        except OSError:
            raw = b""
        self._size = len(raw)
        try:
            data = json.loads(raw.split(b"\n", 1)[0] or b"{}")
        except ValueError:
            data = {}  # garbled: nothing to trust in it
        if isinstance(data, dict) and data.get("boot") == boot_id():
            pending = data.get("pending")
            hints = data.get("hints")
            if isinstance(pending, list):
                self.pending = [list(map(str, p)) for p in pending
                                if isinstance(p, list) and len(p) == 2]
            if isinstance(hints, dict):
                self.hints = {str(k): dict(v) for k, v in hints.items() if isinstance(v, dict)}

    def save(self) -> None:
        """Write the state back (one ``pwrite``; what follows the first newline is ignored,
        so a shorter content needs no truncation to be read right)."""
        data = json.dumps({"boot": boot_id(), "pending": self.pending, "hints": self.hints},
                          separators=(",", ":"), sort_keys=True).encode() + b"\n"
        try:
            os.pwrite(self._fd, data, 0)
            if len(data) < self._size:
                os.ftruncate(self._fd, len(data))
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, "write the networks lock file",
                               step="store") from exc
        self._size = len(data)


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
        self._local = threading.local()

    def _mkdir(self, path: str) -> None:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"create {path}", path,
                               step="store") from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[LockState]:
        """Hold the directory's lock (exclusive) for the block; yields the lock file's state
        (save it after changing it)."""
        self._mkdir(self.path)
        lock = os.path.join(self.path, ".lock")
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"open {lock}", lock,
                               step="lock") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._local.state = state = LockState(fd)
            yield state
        finally:
            self._local.state = None
            os.close(fd)  # releases the lock

    @property
    def state(self) -> LockState:
        """The lock file's state of the block holding the lock (in this thread)."""
        state: LockState | None = getattr(self._local, "state", None)
        if state is None:
            raise RuntimeError("the networks directory is not locked by this thread")
        return state

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

    def write(self, data: object, *parts: str, durable: bool = True) -> None:
        """Write ``data`` as JSON to ``DIR/parts...``: temp file, fsync (``durable``), rename.
        A reader sees the old or the new content. ``durable=False`` skips the fsync, for the
        volatile files of the module docs (the caller adds the boot). The directory itself is
        not fsync'ed: after a power loss an older version of a durable file may come back,
        which the records tolerate like a crash."""
        path = self.file(*parts)
        parent = os.path.dirname(path)
        tmp = os.path.join(parent, f"{_TMP}{os.getpid()}-{secrets.token_hex(4)}")
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
