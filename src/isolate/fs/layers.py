"""Image layers: tar streams <-> directory trees, OCI <-> overlayfs whiteouts, and diff.

Owns safe extraction (no write ever lands outside the destination), deterministic tar output and
the commit step (an overlay upper dir -> a layer). Must not mount anything, know about image
stores or registries (``isolate.image`` builds on this), or import ``isolate._native`` (its C
fast path for extraction is reached through ``isolate._sys``).
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import stat
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Literal, Union

from isolate import _record, _sys
from isolate._units import id_spans
from isolate.errors import ConfigError, IsolateOSError, UnsupportedError
from isolate.fs import _compress, _tree
from isolate.fs._tar import CorruptLayer, Entry, TarStream, UnsafeArchive

__all__ = [
    "MEDIA_TYPE_TAR",
    "MEDIA_TYPE_TAR_GZIP",
    "MEDIA_TYPE_TAR_ZSTD",
    "CorruptLayer",
    "Layer",
    "LayerStats",
    "UnsafeArchive",
    "check",
    "diff",
    "diff_layer",
    "extract",
    "pack",
    "write_tar",
]

MEDIA_TYPE_TAR = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

Whiteouts = Literal["overlay", "keep", "apply"]
Compression = Literal["gzip", "zstd"]
XattrNamespace = Literal["trusted", "user"]
Source = Union[str, "os.PathLike[str]", BinaryIO]

_WH_PREFIX = ".wh."
_WH_OPAQUE = ".wh..wh..opq"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
# Directory fds kept open while extracting; past this the least recently used is closed (fd
# limits are low for some callers).
_MAX_CACHED_DIRS = 512
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_SKIPPED_XATTRS = ("security.selinux",)


@_record.record
class LayerStats:
    """What one :func:`extract` did.

    ``files`` counts the entries materialised (all types, whiteouts included), ``bytes`` the
    regular-file data written, ``diff_id`` is ``sha256:<hex>`` of the uncompressed tar stream,
    ``skipped`` the device nodes left out because the caller was not privileged.
    """

    files: int
    bytes: int
    diff_id: str
    skipped: int = 0


@_record.record
class Layer:
    """A packed layer blob as an image manifest describes it.

    ``diff_id`` hashes the uncompressed tar, ``digest`` and ``size`` the bytes written (the
    compressed blob), ``media_type`` is one of the ``MEDIA_TYPE_*`` constants.
    """

    diff_id: str
    digest: str
    size: int
    media_type: str


# --------------------------------------------------------------------------------------------
# Argument checks and privilege detection


def _check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {choices!r}, not {value!r}")


def _in_initial_user_namespace() -> bool:
    # The initial namespace maps every id onto itself; any other map is a child namespace.
    try:
        with open("/proc/self/uid_map", encoding="ascii") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return False


def _default_privileged() -> bool:
    return os.geteuid() == 0 and _in_initial_user_namespace()


def _os_error(exc: OSError, message: str, filename: str | None = None) -> IsolateOSError:
    return IsolateOSError(exc.errno or errno.EIO, message, filename, step="extract")


def _unmapped(uid: int, gid: int) -> str | None:
    """When our user namespace does not map ``uid`` or ``gid``: what it maps, said for a
    message (None: both are mapped, or the maps cannot be read)."""
    missing = False
    spans = []
    for which, value in (("uid", uid), ("gid", gid)):
        try:
            with open(f"/proc/self/{which}_map", encoding="ascii") as f:
                lines = sorted(tuple(int(x) for x in line.split()) for line in f if line.strip())
        except (OSError, ValueError):
            return None
        missing = missing or not any(inside <= value < inside + count
                                     for inside, _, count in lines)
        spans.append(f"{which}s " + id_spans((inside, count) for inside, _, count in lines))
    return " and ".join(spans) if missing else None


def _owner_error(exc: OSError, entry: str, uid: int, gid: int) -> IsolateOSError:
    """A failed chown of ``entry``: for an owner the user namespace does not map (EINVAL),
    say which and what would map it."""
    maps = _unmapped(uid, gid) if exc.errno == errno.EINVAL else None
    if maps is None:
        return _os_error(exc, f"cannot extract layer entry {entry!r}", entry)
    return IsolateOSError(
        errno.EINVAL, f"cannot give layer entry {entry!r} its owner {uid}:{gid}, which this "
        f"user namespace does not map (it maps {maps}); a rootless store needs subordinate "
        "ids (/etc/subuid, /etc/subgid) for every owner in the image", entry, step="extract")


# --------------------------------------------------------------------------------------------
# Reading: decompression, hashing, hardened tar headers


class _StreamHash:
    """sha256 of a stream's chunks, in order; from the second chunk on, on a worker thread.

    Hashing was a quarter of an extraction's time on tmpfs once the entries were unpacked in
    C. hashlib drops the GIL for big updates and the C path runs without it, so the two
    overlap on another core. At most a few chunks wait for the worker (bounded memory).
    """

    _MAX_QUEUED = 4

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self._queued: deque[Future[None]] = deque()
        self._chunks = 0

    def update(self, chunk: bytes) -> None:
        self._chunks += 1
        if self._chunks == 1:
            self._hash.update(chunk)  # a small layer is one chunk: no thread for it
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix="isolate-layer-hash")
        if len(self._queued) >= self._MAX_QUEUED:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(self._hash.update, chunk))

    def close(self) -> None:
        """Wait for the queued chunks and end the worker; also after a failure."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        while self._queued:
            self._queued.popleft().result()

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()


class _TarReader:
    """What the tar reader reads from: the (decompressed) stream, hashed, in big chunks.

    A forward-only stream with ``tell`` and ``seek`` over 1 MiB chunks, whose buffer the C
    fast path also unpacks from in place. Every byte is hashed once, as it arrives: that is
    the diff id.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._buf = b""
        self._at = 0  # position in _buf
        self._base = 0  # stream offset of _buf[0]
        self.hash = _StreamHash()

    def _fill(self) -> bool:
        chunk = bytes(self._raw.read(_CHUNK))
        if not chunk:
            return False
        self.hash.update(chunk)
        self._base += self._at  # the consumed bytes are dropped
        self._buf = self._buf[self._at :] + chunk
        self._at = 0
        return True

    def read(self, size: int) -> bytes:
        while len(self._buf) - self._at < size and self._fill():
            pass
        data = self._buf[self._at : self._at + size]
        self._at += len(data)
        return data

    def tell(self) -> int:
        return self._base + self._at

    def seek(self, offset: int) -> int:
        if offset < self.tell():
            raise CorruptLayer("layer stream would need to be read backwards")
        while offset > self._base + len(self._buf):
            self._at = len(self._buf)
            if not self._fill():
                break
        self._at = min(offset - self._base, len(self._buf))
        return self.tell()

    def drain(self) -> None:
        while self._fill():
            self._at = len(self._buf)


class _Prefixed:
    """A stream with bytes already read from its head put back in front."""

    def __init__(self, head: bytes, raw: Any) -> None:
        self._head = head
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                rest: bytes = self._raw.read()
                data, self._head = self._head + rest, b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        result: bytes = self._raw.read(size)
        return result


def _decompressed(raw: Any) -> Any:
    head = b""
    while len(head) < 4:  # pipes and sockets may return less than asked
        more = raw.read(4 - len(head))
        if not more:
            break
        head += more
    prefixed = _Prefixed(head, raw)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=prefixed, mode="rb")  # type: ignore[call-overload]
    if head == _ZSTD_MAGIC:
        return _compress.zstd_reader(prefixed)
    if head[:3] == b"BZh" or head == b"\xfd7zX":
        raise CorruptLayer("layer is bzip2/xz compressed; only plain, gzip and zstd are supported")
    return prefixed


def _split_name(entry: str, name: str, what: str = "name") -> tuple[str, ...]:
    """Split an archive path into components, refusing anything that could leave the root."""
    if "\x00" in name:
        raise UnsafeArchive(entry, f"NUL byte in {what}")
    if name.startswith("/"):
        raise UnsafeArchive(entry, f"absolute {what}")
    if "//" not in name and "/." not in name and name[:1] != "." and name[-1:] != "/":
        return tuple(name.split("/"))  # the common case: no empty, "." or ".." component
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchive(entry, f"'..' component in {what}")
    return parts


def _member_xattrs(member: Entry) -> list[tuple[str, bytes]]:
    result = []
    for key, value in member.pax.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr.") :]
        # Overlay xattrs in an archive could redirect lookups into other layers; only the
        # whiteout translation below may set them.
        if name.startswith(_OVERLAY_XATTR_PREFIXES) or name in _SKIPPED_XATTRS:
            continue
        result.append((name, value.encode("utf-8", "surrogateescape")))
    return result


@_record.mutable
class _DirMeta:
    entry: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    xattrs: list[tuple[str, bytes]]


class _Extractor:
    """State of one extraction: the root fd, a cache of directory fds, deferred dir metadata."""

    def __init__(
        self, root_fd: int, *, whiteouts: str, privileged: bool, xattr_ns: str
    ) -> None:
        self.root_fd = root_fd
        self.whiteouts = whiteouts
        self.privileged = privileged
        self.chown = os.geteuid() == 0
        self.opaque_xattr = f"{xattr_ns}.overlay.opaque"
        self.dirs: dict[tuple[str, ...], _DirMeta] = {}
        # Open directory fds by path, least recently used first; at most _MAX_CACHED_DIRS.
        self.cache: dict[tuple[str, ...], int] = {}
        self.held: set[int] = set()  # fds dir_fd handed out since the last entry_done()
        self.retired: list[int] = []  # of those, the ones evicted from the cache
        # Paths this archive created: whiteouts only hide or delete what earlier layers made.
        self.created: set[tuple[str, ...]] = set()
        self.track_created = whiteouts != "keep"
        self.files = 0
        self.bytes = 0
        self.skipped = 0
        # The C fast path, when used: it unpacks the plain entries and hands the rest to add().
        self.native: _sys.LayerUnpacker | None = None

    def close(self) -> None:
        self._close_cache()
        self.entry_done()
        if self.native is not None:
            self.native.close()

    # ---- what the C fast path did, taken over before Python acts on the tree

    def take_native_dirs(self) -> None:
        # In archive order and before Python's own entries, so a later entry's metadata for
        # the same directory still wins, as it does in Python alone.
        if self.native is None:
            return
        for path, entry, mode, uid, gid, mtime in self.native.take_dirs():
            parts = tuple(_decode(path).split("/"))
            self.dirs[parts] = _DirMeta(_decode(entry), mode, uid, gid, mtime * 1_000_000_000, [])

    def stop_native(self) -> None:
        """Take over what C did and end it: from here on every entry is Python's."""
        if self.native is None:
            return
        self.take_native_dirs()
        self.take_native_created()
        self.files += self.native.files
        self.bytes += self.native.written
        self.native.close()
        self.native = None

    def take_native_created(self) -> None:
        if self.native is not None:
            self.created.update(tuple(_decode(p).split("/")) for p in self.native.take_created())

    # ---- path resolution: one component at a time, never following a symlink

    def dir_fd(self, parts: tuple[str, ...], entry: str, *, create: bool = True) -> int:
        if not parts:
            return self.root_fd
        fd = self.cache.pop(parts, None)
        if fd is None:
            # Down from the deepest directory already open, one component at a time (a loop,
            # not recursion: a layer may nest directories deeper than the recursion limit).
            depth = len(parts) - 1
            while depth and parts[:depth] not in self.cache:
                depth -= 1
            fd = self.cache[parts[:depth]] if depth else self.root_fd
            while depth < len(parts) - 1:
                depth += 1
                fd = self._cache(parts[:depth], self._open_child(fd, parts[:depth], entry,
                                                                  create))
            fd = self._open_child(fd, parts, entry, create)
        self._cache(parts, fd)  # the most recently used, evicted last
        self.held.add(fd)
        return fd

    def _cache(self, parts: tuple[str, ...], fd: int) -> int:
        if len(self.cache) >= _MAX_CACHED_DIRS:
            self._retire(self.cache.pop(next(iter(self.cache))))  # the least recently used
        self.cache[parts] = fd
        return fd

    def _retire(self, fd: int) -> None:
        # An fd handed out for the current entry stays open until the entry is done: closing
        # it could let its number be reused for something else while a caller holds it.
        if fd in self.held:
            self.retired.append(fd)
        else:
            os.close(fd)

    def _open_child(self, parent: int, parts: tuple[str, ...], entry: str, create: bool) -> int:
        name = parts[-1]
        try:
            return os.open(name, _DIR_OPEN, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise CorruptLayer(
                    f"layer entry {entry!r}: directory {'/'.join(parts)!r} does not exist"
                ) from None
            os.mkdir(name, 0o755, dir_fd=parent)
            if self.track_created:
                self.created.add(parts)
            return os.open(name, _DIR_OPEN, dir_fd=parent)
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise _os_error(e, f"cannot open directory for {entry!r}", "/".join(parts)) from e
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if create and stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                # An implied directory where a whiteout was: replace it (opaque, in overlay
                # mode), as an explicit directory entry would.
                os.unlink(name, dir_fd=parent)
                os.mkdir(name, 0o755, dir_fd=parent)
                self._opaque_if_whiteout(parent, name, st, entry)
                return os.open(name, _DIR_OPEN, dir_fd=parent)
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise UnsafeArchive(entry, f"parent {'/'.join(parts)!r} is {kind}") from None

    def entry_done(self) -> None:
        """Between entries: fds handed out for the last one may be closed now."""
        for fd in self.retired:
            os.close(fd)
        self.retired.clear()
        self.held.clear()

    def _close_cache(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def remove(self, pfd: int, parts: tuple[str, ...]) -> None:
        """Remove whatever is at ``parts`` (a tree, if a directory); absent is fine."""
        name = parts[-1]
        try:
            os.unlink(name, dir_fd=pfd)
            return
        except FileNotFoundError:
            return
        except IsADirectoryError:
            pass
        n = len(parts)
        for key in [k for k in self.cache if k[:n] == parts]:
            self._retire(self.cache.pop(key))
        _tree.remove_tree_at(pfd, name)

    # ---- entries

    def add(self, tf: TarStream, m: Entry) -> None:
        self.entry_done()
        entry = m.name
        parts = _split_name(entry, entry)
        if not parts:
            if not m.isdir():
                raise UnsafeArchive(entry, "non-directory entry for the root")
            self.dirs[()] = self._dir_meta(m)
            return
        base = parts[-1]
        if base.startswith(_WH_PREFIX) and self.whiteouts != "keep":
            self._whiteout(m, parts)
            return
        pfd = self.dir_fd(parts[:-1], entry)
        if m.isdir():
            self._mkdir(pfd, parts, m)
        elif m.isreg():
            self._regular(tf, pfd, parts, m)
        elif m.issym():
            self._create(pfd, parts, lambda: os.symlink(m.linkname, base, dir_fd=pfd))
            self._meta_at(pfd, base, m)
        elif m.islnk():
            self._hardlink(pfd, parts, m)
        elif m.ischr() or m.isblk():
            if not self.privileged:
                self.skipped += 1
                return
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            dev = os.makedev(m.devmajor, m.devminor)
            self._create(pfd, parts, lambda: os.mknod(base, kind | 0o600, dev, dir_fd=pfd))
            self._meta_at(pfd, base, m)
        elif m.isfifo():
            self._create(pfd, parts, lambda: os.mkfifo(base, 0o600, dir_fd=pfd))
            self._meta_at(pfd, base, m)
        else:
            raise CorruptLayer(f"layer entry {entry!r}: unsupported tar type {m.type!r}")
        self.files += 1

    def _create(self, pfd: int, parts: tuple[str, ...], make: Any) -> None:
        # Create exclusively; whatever was there (a symlink, a hardlink to a file elsewhere in
        # the tree) is unlinked first, never written through.
        try:
            make()
        except FileExistsError:
            self.remove(pfd, parts)
            make()
        if self.track_created:
            self.created.add(parts)

    def _regular(
        self, tf: TarStream, pfd: int, parts: tuple[str, ...], m: Entry
    ) -> None:
        # As _create, written out: this is the hot path.
        try:
            fd = os.open(parts[-1], _FILE_CREATE, 0o600, dir_fd=pfd)
        except FileExistsError:
            self.remove(pfd, parts)
            fd = os.open(parts[-1], _FILE_CREATE, 0o600, dir_fd=pfd)
        if self.track_created:
            self.created.add(parts)
        try:
            if m.size:
                self._copy_data(tf, m, fd)
            self._meta_fd(fd, m, _member_xattrs(m) if m.pax else [])
        finally:
            os.close(fd)

    def _copy_data(self, tf: TarStream, m: Entry, fd: int) -> None:
        if m.sparse is None:
            _copy_region(tf, m, fd, None, m.size)
        else:
            # Only the data regions are written, each where it belongs: the holes between
            # them stay holes, as GNU tar leaves them (the file's size is set at the end).
            for offset, length in m.sparse:
                _copy_region(tf, m, fd, offset, length)
            os.ftruncate(fd, m.size)
        self.bytes += m.size

    def _hardlink(self, pfd: int, parts: tuple[str, ...], m: Entry) -> None:
        target = _split_name(m.name, m.linkname, "hardlink target")
        if not target:
            raise UnsafeArchive(m.name, "hardlink to the root")
        if target == parts:
            return
        if target[: len(parts)] == parts:
            # Replacing the directory would delete the target before linking to it.
            raise CorruptLayer(f"layer entry {m.name!r}: hardlink to {m.linkname!r} inside it")
        tpfd = self.dir_fd(target[:-1], m.name, create=False)
        try:
            st = os.stat(target[-1], dir_fd=tpfd, follow_symlinks=False)
        except FileNotFoundError:
            raise CorruptLayer(
                f"layer entry {m.name!r}: hardlink target {m.linkname!r} does not exist"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeArchive(m.name, "hardlink to a directory")
        self._create(pfd, parts, lambda: os.link(
            target[-1], parts[-1], src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False))

    def _mkdir(self, pfd: int, parts: tuple[str, ...], m: Entry) -> None:
        name = parts[-1]
        try:
            # Owner-only until the end: children are still to be written, also unprivileged.
            os.mkdir(name, 0o700, dir_fd=pfd)
            if self.track_created:
                self.created.add(parts)
        except FileExistsError:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self.remove(pfd, parts)
                os.mkdir(name, 0o700, dir_fd=pfd)
                if self.track_created:
                    self.created.add(parts)
                self._opaque_if_whiteout(pfd, name, st, m.name)
        self.dirs[parts] = self._dir_meta(m)

    def _opaque_if_whiteout(self, pfd: int, name: str, old: os.stat_result, entry: str) -> None:
        # A directory where this layer put a whiteout: in overlayfs terms a new directory
        # hiding the lower one, i.e. opaque (or the lower's content would show through).
        if self.whiteouts == "overlay" and stat.S_ISCHR(old.st_mode) and old.st_rdev == 0:
            fd = os.open(name, _DIR_OPEN, dir_fd=pfd)
            try:
                _set_xattr(os.setxattr, fd, self.opaque_xattr, b"y", entry)
            finally:
                os.close(fd)

    def _whiteout(self, m: Entry, parts: tuple[str, ...]) -> None:
        self.take_native_created()
        base = parts[-1]
        pfd = self.dir_fd(parts[:-1], m.name)
        self.files += 1
        if base == _WH_OPAQUE:
            if self.whiteouts == "overlay":
                _set_xattr(os.setxattr, pfd, self.opaque_xattr, b"y", m.name)
                return
            for name in os.listdir(pfd):
                child = (*parts[:-1], name)
                if child not in self.created:
                    self.remove(pfd, child)
            return
        name = base[len(_WH_PREFIX) :]
        if name in ("", ".", "..") or name.startswith(_WH_PREFIX):
            raise UnsafeArchive(m.name, "whiteout of an invalid name")
        target = (*parts[:-1], name)
        if target in self.created:
            return  # this layer's own entry already hides the lower one
        if self.whiteouts == "overlay":
            self._create(pfd, target, lambda: os.mknod(name, stat.S_IFCHR, 0, dir_fd=pfd))
            self.created.discard(target)  # a later entry of the same name replaces it
        else:
            self.remove(pfd, target)

    # ---- metadata

    def _dir_meta(self, m: Entry) -> _DirMeta:
        return _DirMeta(m.name, m.mode & 0o7777, m.uid, m.gid, m.mtime_ns, _member_xattrs(m))

    def _chown(self, entry: str, uid: int, gid: int, fd: int, name: str | None = None) -> None:
        """chown ``fd`` (or, with ``name``, the entry ``name`` in the directory ``fd``,
        without following a symlink)."""
        try:
            if name is None:
                os.fchown(fd, uid, gid)
            else:
                os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
        except OSError as e:
            raise _owner_error(e, entry, uid, gid) from e

    def _meta_fd(self, fd: int, m: Entry, xattrs: list[tuple[str, bytes]]) -> None:
        # Order matters: chown clears set-id bits and file capabilities, so it goes first.
        if self.chown:
            self._chown(m.name, m.uid, m.gid, fd)
        os.fchmod(fd, m.mode & 0o7777)
        for name, value in xattrs:
            self._xattr(fd, name, value, m.name)
        os.utime(fd, ns=(m.mtime_ns, m.mtime_ns))

    def _meta_at(self, pfd: int, name: str, m: Entry) -> None:
        # Symlinks, devices and fifos cannot be opened for writing metadata safely; use the
        # *at calls without following links. (xattrs on these are not restored.)
        if self.chown:
            self._chown(m.name, m.uid, m.gid, pfd, name)
        if not m.issym():
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
        os.utime(name, ns=(m.mtime_ns, m.mtime_ns), dir_fd=pfd, follow_symlinks=False)

    def _xattr(self, fd: int, name: str, value: bytes, entry: str) -> None:
        try:
            os.setxattr(fd, name, value)
        except OSError as e:
            tolerated = {errno.ENOTSUP, errno.EOPNOTSUPP}
            if not self.privileged:
                tolerated |= {errno.EPERM, errno.EACCES}
            if e.errno not in tolerated:
                raise _os_error(e, f"cannot set xattr {name!r} on {entry!r}", entry) from e

    def finish_dirs(self) -> None:
        # Deepest first, so a parent made unsearchable does not block its children.
        for parts in sorted(self.dirs, key=len, reverse=True):
            meta = self.dirs[parts]
            self.entry_done()
            try:
                fd = self.dir_fd(parts, meta.entry, create=False) if parts else self.root_fd
            except (UnsafeArchive, CorruptLayer):
                continue  # a later entry replaced this directory
            if self.chown:
                self._chown(meta.entry, meta.uid, meta.gid, fd)
            os.fchmod(fd, meta.mode)
            for name, value in meta.xattrs:
                self._xattr(fd, name, value, meta.entry)
            os.utime(fd, ns=(meta.mtime_ns, meta.mtime_ns))


def _set_xattr(setter: Any, fd: int, name: str, value: bytes, entry: str) -> None:
    try:
        setter(fd, name, value)
    except OSError as e:
        raise _os_error(e, f"cannot set {name!r} for whiteout {entry!r}", entry) from e


def _decode(name: bytes) -> str:
    # As the tar reader decodes member names, so paths from C and from Python compare equal.
    return name.decode("utf-8", "surrogateescape")


def extract(
    source: Source,
    dest: str | os.PathLike[str],
    *,
    whiteouts: Whiteouts = "overlay",
    privileged: bool | None = None,
    xattr_namespace: XattrNamespace | None = None,
) -> LayerStats:
    """Unpack a layer tar (plain, gzip or zstd, told apart by magic bytes) into ``dest``.

    ``source`` is a path or a readable binary stream; ``dest`` an existing directory. Every path
    is resolved below ``dest`` one component at a time without following any symlink, so an
    absolute name, a ``..`` component, a write through a symlink (also one planted by an earlier
    entry of the same archive) or a hardlink to something outside ``dest`` is rejected with
    :class:`UnsafeArchive` naming the entry. This is stricter than ``RESOLVE_IN_ROOT``: a parent
    component that is a symlink is refused, never followed, even if it points inside ``dest``.
    An existing file, symlink or hardlink at an entry's name is unlinked first, never written
    through.

    ``whiteouts``:
      * ``"overlay"`` (default): ``.wh.NAME`` becomes a 0/0 character device ``NAME`` and
        ``.wh..wh..opq`` an ``<ns>.overlay.opaque="y"`` xattr on its directory, so ``dest``
        can be an overlayfs lower layer;
      * ``"keep"``: whiteout entries are written as the empty files they are in the tar;
      * ``"apply"``: whiteouts delete what earlier layers put in ``dest`` (flattening layers
        into one tree).

    In both translating modes whiteouts concern lower layers only: what this same archive
    creates is never hidden or deleted by them, whatever the entry order.

    ``privileged`` (default: effective uid 0 in the initial user namespace) allows device nodes
    and makes failures to set ``trusted.*``/``security.*`` xattrs errors; unprivileged, device
    nodes are skipped (counted in ``LayerStats.skipped``) and such xattrs dropped. Owners are
    kept whenever the effective uid is 0 (also root of a user namespace, where an owner the
    namespace does not map is an ``IsolateOSError`` EINVAL naming the id). ``xattr_namespace``
    picks ``trusted`` or ``user`` overlay xattrs (default: ``trusted`` when privileged, else
    ``user``, as overlayfs mounted with ``userxattr`` wants). Overlay xattrs carried in the
    archive itself are dropped (they could redirect lookups); so is ``security.selinux``.
    xattrs on symlinks, devices and fifos are not restored. GNU sparse files are written
    sparse (the holes are not written).

    On error, ``dest`` is left as far as extraction got: callers extract into a temporary
    directory and rename it into place on success (the image store does).

    Raises:
        UnsafeArchive: a hostile entry (see above) or an oversized extended header.
        CorruptLayer: the stream is not a tar (or not one we can decompress), is truncated
            (also at a header, without the end-of-archive block), has a bad header or pax
            record after good ones, or holds an id, device number or time out of range
            (see :mod:`isolate.fs._tar`).
        ConfigError: a bad argument (unknown ``whiteouts``/``xattr_namespace``, ``dest`` not a
            directory).
        IsolateOSError: a filesystem call failed (errno and file kept, ``step="extract"``).
        UnsupportedError: ``zstd`` data but the ``zstandard`` package is not installed.
    """
    return _extract(source, dest, whiteouts=whiteouts, privileged=privileged,
                    xattr_namespace=xattr_namespace, native=True)


def _extract(
    source: Source,
    dest: str | os.PathLike[str],
    *,
    whiteouts: Whiteouts,
    privileged: bool | None,
    xattr_namespace: XattrNamespace | None,
    native: bool,
) -> LayerStats:
    """:func:`extract`; ``native=False`` keeps the C fast path out (every entry in Python),
    which must give the very same tree."""
    _check_choice("whiteouts", whiteouts, ("overlay", "keep", "apply"))
    _check_choice("xattr_namespace", xattr_namespace, ("trusted", "user", None))
    if privileged is not None and not isinstance(privileged, bool):
        raise ConfigError(f"privileged must be a bool or None, not {privileged!r}")
    dest = os.fspath(dest)
    if not os.path.isdir(dest):
        raise ConfigError(f"dest must be an existing directory, not {dest!r}")
    if privileged is None:
        privileged = _default_privileged()
    xattr_ns = xattr_namespace or ("trusted" if privileged else "user")

    try:
        # dest itself is the caller's choice and may be reached through a symlink.
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise _os_error(e, "cannot open extraction root", dest) from e
    ex = _Extractor(root_fd, whiteouts=whiteouts, privileged=privileged, xattr_ns=xattr_ns)
    try:
        with _layer_stream(source) as reader:
            _extract_members(reader, ex, native=native)
            reader.drain()
            ex.finish_dirs()
    finally:
        ex.close()
        os.close(root_fd)
    return LayerStats(
        files=ex.files,
        bytes=ex.bytes,
        diff_id="sha256:" + reader.hash.hexdigest(),
        skipped=ex.skipped,
    )


@contextlib.contextmanager
def _layer_stream(source: Source) -> Iterator[_TarReader]:
    """The decompressed, hashed stream of the layer at a path or in a stream; damage found
    by the decompressor, here or in the body, is CorruptLayer. A path is closed after."""
    if isinstance(source, (str, os.PathLike)):
        try:
            raw: Any = open(source, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError as e:
            raise _os_error(e, "cannot open layer", os.fspath(source)) from e
        owns_raw = True
    else:
        raw, owns_raw = source, False
    reader: _TarReader | None = None
    try:
        reader = _TarReader(_decompressed(raw))
        yield reader
    except _CORRUPT_STREAM as e:
        raise CorruptLayer(f"layer is not a readable tar stream: {e}") from e
    except Exception as e:
        if type(e).__name__ == "ZstdError":
            raise CorruptLayer(f"layer is not a readable zstd stream: {e}") from e
        raise
    finally:
        if reader is not None:
            reader.hash.close()
        if owns_raw:
            raw.close()


def check(source: Source) -> LayerStats:
    """Read a layer through without extracting it: is it one :func:`extract` would unpack?

    Every header is read and judged as :func:`extract` judges it (the stream's compression,
    its tar structure, names that would leave the root, hardlink targets, whiteout names, entry
    types); file data is skipped, not written. Returns what an extraction would count
    (``files``, ``bytes``) and the diff id. What only the filesystem can tell (a symlink in
    the way, a hardlink to a missing file) is left to :func:`extract`.

    Raises:
        CorruptLayer, UnsafeArchive: as :func:`extract`.
        IsolateOSError: ``source`` cannot be opened or read.
        UnsupportedError: zstd data and no zstd support.
    """
    files = data = 0
    with _layer_stream(source) as reader:
        members = TarStream(reader)
        while (m := members.next()) is not None:
            parts = _split_name(m.name, m.name)
            if not parts and not m.isdir():
                raise UnsafeArchive(m.name, "non-directory entry for the root")
            base = parts[-1] if parts else ""
            if base.startswith(_WH_PREFIX) and base != _WH_OPAQUE:
                name = base[len(_WH_PREFIX) :]
                if name in ("", ".", "..") or name.startswith(_WH_PREFIX):
                    raise UnsafeArchive(m.name, "whiteout of an invalid name")
            elif m.islnk():
                if not _split_name(m.name, m.linkname, "hardlink target"):
                    raise UnsafeArchive(m.name, "hardlink to the root")
            elif not (m.isdir() or m.isreg() or m.issym() or m.ischr() or m.isblk()
                      or m.isfifo()):
                raise CorruptLayer(f"layer entry {m.name!r}: unsupported tar type {m.type!r}")
            if m.isreg():
                data += m.size
            files += 1
        reader.drain()
    return LayerStats(files=files, bytes=data, diff_id="sha256:" + reader.hash.hexdigest())


# What decompressors raise for a damaged stream (BadGzipFile is an OSError).
_CORRUPT_STREAM = (EOFError, zlib.error, gzip.BadGzipFile)


def _extract_members(reader: _TarReader, ex: _Extractor, *, native: bool) -> None:
    if native:
        ex.native = _sys.LayerUnpacker(ex.root_fd, chown=ex.chown,
                                       track_created=ex.track_created)
    members = TarStream(reader)
    try:
        while True:
            if ex.native is not None:
                _unpack_native(reader, ex.native)
                ex.native.forget_dirs()  # Python may replace directories from here on
                ex.take_native_dirs()
                members.offset = reader.tell()  # C took everything up to here
            member = members.next()
            if member is None:
                break
            try:
                ex.add(members, member)
            except OSError as e:
                if isinstance(e, (IsolateOSError, *_CORRUPT_STREAM)):
                    raise
                raise _os_error(e, f"cannot extract layer entry {member.name!r}",
                                member.name) from e
            if ex.native is not None:
                if members.global_pax:
                    # A global pax header changes every later member: Python's job alone.
                    ex.stop_native()
                elif reader.seek(members.offset) != members.offset:
                    raise CorruptLayer("layer is not a readable tar stream: "
                                       "unexpected end of data")
    finally:
        ex.stop_native()


def _copy_region(tf: TarStream, m: Entry, fd: int, offset: int | None, length: int) -> None:
    """Copy ``length`` bytes of the entry's data to ``fd``: at its position, or at
    ``offset``."""
    remaining = length
    while remaining:
        chunk = tf.read(min(remaining, _CHUNK))
        if not chunk:
            raise CorruptLayer(f"layer entry {m.name!r}: data truncated")
        remaining -= len(chunk)
        view = memoryview(chunk)
        while view:
            if offset is None:
                view = view[os.write(fd, view) :]
            else:
                written = os.pwrite(fd, view, offset)
                offset += written
                view = view[written:]


def _unpack_native(reader: _TarReader, native: _sys.LayerUnpacker) -> None:
    """Let C unpack from the reader's position up to the first header it leaves to Python."""
    while True:
        try:
            handoff, used = native.feed(reader._buf, reader._at)
        except IsolateOSError as e:
            if e.errno == errno.EINVAL and _unmapped(*native.owner):
                raise _owner_error(e, native.entry, *native.owner) from e
            raise
        reader._at += used
        if handoff:
            return
        if reader._fill():
            continue
        # End of the stream: inside an entry it is truncated; at a header, Python decides.
        if native.data_pending:
            raise CorruptLayer(f"layer entry {native.entry!r}: data truncated")
        if native.padding_pending:
            raise CorruptLayer("layer is not a readable tar stream: unexpected end of data")
        return


# --------------------------------------------------------------------------------------------
# Writing: a deterministic tar of a tree


class _TarWriter:
    """Writes a tar: headers, file data, end-of-archive; hashes it (the diff id) as it goes.

    tarfile's own writer copies each TarInfo and builds a pax header dict even when none is
    needed, which made it most of the cost of a commit. Entries that fit a plain ustar header
    get one here, the same bytes tarfile would write; the rest go through ``TarInfo.tobuf``.
    """

    def __init__(self, target: Any) -> None:
        self._target = target
        self._buf = bytearray()
        self._pos = 0
        self.hash = hashlib.sha256()

    def _write(self, data: bytes) -> None:
        self._buf += data
        self._pos += len(data)
        if len(self._buf) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            self.hash.update(self._buf)
            self._target.write(bytes(self._buf))
            self._buf.clear()

    def addfile(self, ti: tarfile.TarInfo, fileobj: Any = None) -> None:
        header = _ustar_header(ti)
        if header is None:
            header = ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self._write(header)
        if fileobj is None or not ti.size:
            return
        remaining = ti.size
        while remaining:
            chunk = fileobj.read(min(remaining, _CHUNK))
            if not chunk:
                raise IsolateOSError(errno.EIO, f"{ti.name!r} shrank while being written",
                                     ti.name, step="write_tar")
            self._write(chunk)
            remaining -= len(chunk)
        self._write(bytes(-ti.size % tarfile.BLOCKSIZE))

    def close(self) -> None:
        # Two zero blocks end the archive; tar pads it to a whole record.
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        self._write(bytes(-self._pos % tarfile.RECORDSIZE))
        self.flush()


# A ustar header as tarfile writes it in PAX format: name mode uid gid size mtime chksum type
# linkname magic+version uname gname devmajor devminor prefix.
_USTAR_OUT = struct.Struct("100s8s8s8s12s12s8sc100s8s32s32s8s8s155s12x")
_MAX_8 = 8**7
_MAX_12 = 8**11


def _ustar_header(ti: tarfile.TarInfo) -> bytes | None:
    """The header block for ``ti`` if it needs no pax record, else None."""
    name = ti.name
    if ti.type == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    if (
        ti.pax_headers or ti.uname or ti.gname
        or len(name) > 100 or len(ti.linkname) > 100
        or not (name.isascii() and ti.linkname.isascii())
        or not isinstance(ti.mtime, int) or not 0 <= ti.mtime < _MAX_12
        or not (0 <= ti.uid < _MAX_8 and 0 <= ti.gid < _MAX_8 and 0 <= ti.size < _MAX_12)
    ):
        return None
    major = minor = b""  # only devices carry device numbers
    if ti.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        if not (0 <= ti.devmajor < _MAX_8 and 0 <= ti.devminor < _MAX_8):
            return None
        major, minor = b"%07o\0" % ti.devmajor, b"%07o\0" % ti.devminor
    header = _USTAR_OUT.pack(
        name.encode("ascii"), b"%07o\0" % (ti.mode & 0o7777), b"%07o\0" % ti.uid,
        b"%07o\0" % ti.gid, b"%011o\0" % ti.size, b"%011o\0" % ti.mtime, b" " * 8, ti.type,
        ti.linkname.encode("ascii"), tarfile.POSIX_MAGIC, b"", b"",
        major, minor, b"",
    )
    return header[:148] + b"%06o\0" % sum(header) + header[155:]


class _CountingWriter:
    """Hashes and counts the bytes of a blob as written (for :func:`pack`)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.size = 0
        self.hash = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _xattrs_of(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def _is_opaque(xattrs: dict[str, bytes]) -> bool:
    return any(xattrs.get(p + "opaque") == b"y" for p in _OVERLAY_XATTR_PREFIXES)


def _sorted_children(path: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return iter(sorted(it, key=lambda e: e.name))


def _walk_sorted(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield (archive name, path, lstat) under ``root``: sorted, each directory followed by
    its whole subtree. A loop over a stack, not recursion: trees may be deeper than Python's
    recursion limit."""
    stack = [("", _sorted_children(root))]
    while stack:
        prefix, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            continue
        st = child.stat(follow_symlinks=False)
        name = prefix + child.name
        yield name, child.path, st
        if stat.S_ISDIR(st.st_mode):
            stack.append((name + "/", _sorted_children(child.path)))


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = st.st_mode & 0o7777
    ti.uid = st.st_uid
    ti.gid = st.st_gid
    ti.mtime = st.st_mtime_ns // 1_000_000_000
    ti.uname = ti.gname = ""
    return ti


def _write_tree(src: str, tf: _TarWriter, *, whiteouts: str, for_diff: bool) -> None:
    translate = whiteouts == "overlay"
    links: dict[tuple[int, int], str] = {}
    for name, path, st in _walk_sorted(src):
        mode = st.st_mode
        xattrs = _xattrs_of(path)
        if for_diff:
            for key in xattrs:
                if key.endswith((".overlay.redirect", ".overlay.metacopy")):
                    raise UnsupportedError(
                        f"{path!r} has {key}: the upper dir of an overlay mounted with "
                        "redirect_dir or metacopy depends on its lower layers",
                        missing="plain overlay upper dir",
                    )
        ti = _tarinfo(name, st)
        kept = {
            k: v for k, v in xattrs.items()
            if not k.startswith(_OVERLAY_XATTR_PREFIXES) and k not in _SKIPPED_XATTRS
        }
        if kept:
            ti.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                for k, v in sorted(kept.items())
            }
        if translate and stat.S_ISCHR(mode) and st.st_rdev == 0:
            head, _, base = name.rpartition("/")
            wh = _tarinfo((head + "/" if head else "") + _WH_PREFIX + base, st)
            tf.addfile(wh)
            continue
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
            tf.addfile(ti)
            if translate and _is_opaque(xattrs):
                opq = _tarinfo(name + "/" + _WH_OPAQUE, st)
                opq.mode = 0o644
                tf.addfile(opq)
        elif stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in links:
                ti.type = tarfile.LNKTYPE
                ti.linkname = links[inode]
                tf.addfile(ti)
                continue
            if st.st_nlink > 1:
                links[inode] = name
            ti.size = st.st_size
            with open(path, "rb", buffering=0) as f:
                tf.addfile(ti, f)
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
            tf.addfile(ti)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor = os.major(st.st_rdev)
            ti.devminor = os.minor(st.st_rdev)
            tf.addfile(ti)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
            tf.addfile(ti)
        # Sockets cannot be represented in a tar; like other tools, leave them out.


def _write(
    src_dir: str | os.PathLike[str],
    out: Any,
    *,
    whiteouts: str,
    compression: str | None,
    for_diff: bool,
) -> str:
    _check_choice("whiteouts", whiteouts, ("overlay", "keep"))
    _check_choice("compression", compression, ("gzip", "zstd", None))
    src = os.fspath(src_dir)
    if not os.path.isdir(src):
        raise ConfigError(f"source must be an existing directory, not {src!r}")
    compressor: Any = None
    if compression == "gzip":
        # No file name and mtime 0 in the gzip header: the same tree gives the same blob.
        compressor = gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=out, mtime=0)
    elif compression == "zstd":
        compressor = _compress.zstd_writer(out)
    writer = _TarWriter(compressor if compressor is not None else out)
    try:
        _write_tree(src, writer, whiteouts=whiteouts, for_diff=for_diff)
        writer.close()
        if compressor is not None:
            compressor.close()  # ends the gzip member or zstd frame; out stays open
    except OSError as e:
        if isinstance(e, IsolateOSError):
            raise
        raise IsolateOSError(e.errno or errno.EIO, "cannot write layer from tree",
                             e.filename or src, step="write_tar") from e
    return "sha256:" + writer.hash.hexdigest()


def write_tar(
    src_dir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    whiteouts: Literal["overlay", "keep"] = "overlay",
    compression: Compression | None = None,
) -> str:
    """Write the tree under ``src_dir`` to ``out`` as a layer tar; return its diff id.

    Output is deterministic: entries sorted by path (a directory, then its whole subtree,
    then its next sibling), PAX format, integer mtimes, no atime/ctime, empty user/group names,
    gzip without a timestamp or file name. Hardlinked files become one file entry and link
    entries to it. Extended attributes are kept as ``SCHILY.xattr.*`` records except
    overlayfs' own (``*.overlay.*``) and ``security.selinux``.
    Sockets are left out. The root directory itself gets no entry.

    With ``whiteouts="overlay"`` a 0/0 character device ``NAME`` is written as ``.wh.NAME`` and
    a directory with an ``overlay.opaque="y"`` xattr (``trusted.`` or ``user.``) gets a
    ``.wh..wh..opq`` entry after it; with ``"keep"`` both are written as they are.

    Returns ``sha256:<hex>`` of the uncompressed tar (the OCI diff id). ``out`` is not closed.

    Raises:
        ConfigError: bad ``whiteouts``/``compression`` or ``src_dir`` not a directory.
        IsolateOSError: reading the tree or writing ``out`` failed (``step="write_tar"``).
        UnsupportedError: ``compression="zstd"`` without the ``zstandard`` package.
    """
    return _write(src_dir, out, whiteouts=whiteouts, compression=compression, for_diff=False)


def pack(
    src_dir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    whiteouts: Literal["overlay", "keep"] = "overlay",
    compression: Compression | None = "gzip",
) -> Layer:
    """Like :func:`write_tar`, but also hash and count the bytes written to ``out``.

    Returns a :class:`Layer` whose ``digest``/``size`` describe the blob as written (what a
    manifest lists) and ``media_type`` matches ``compression``. Raises as :func:`write_tar`.
    """
    return _pack(src_dir, out, whiteouts=whiteouts, compression=compression, for_diff=False)


def _pack(src_dir: str | os.PathLike[str], out: BinaryIO, *,
          whiteouts: Literal["overlay", "keep"], compression: Compression | None,
          for_diff: bool) -> Layer:
    counter = _CountingWriter(out)
    diff_id = _write(src_dir, counter, whiteouts=whiteouts, compression=compression,
                     for_diff=for_diff)
    media_type = {None: MEDIA_TYPE_TAR, "gzip": MEDIA_TYPE_TAR_GZIP,
                  "zstd": MEDIA_TYPE_TAR_ZSTD}[compression]
    return Layer(diff_id=diff_id, digest="sha256:" + counter.hash.hexdigest(),
                 size=counter.size, media_type=media_type)


def diff(
    upperdir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    compression: Compression | None = None,
) -> str:
    """Turn what a container changed into a layer: the commit step.

    For an overlayfs upper dir the upper dir *is* the change set: new and modified files are
    there in full, deletions are 0/0 character devices, and a directory that replaced a lower
    one carries ``overlay.opaque="y"``. So this writes the upper dir as a layer with those
    translated to OCI whiteouts (as :func:`write_tar` with ``whiteouts="overlay"``). Returns the
    diff id. Take it while the overlay is unmounted (or the container frozen), or the result is
    a mix of moments.

    Raises:
        UnsupportedError: the upper dir uses ``overlay.redirect`` or ``overlay.metacopy``
            (mounted with ``redirect_dir=on`` or ``metacopy=on``); their meaning depends on the
            lower layers, so the upper dir alone is not the change set.
        plus what :func:`write_tar` raises.
    """
    return _write(upperdir, out, whiteouts="overlay", compression=compression, for_diff=True)


def diff_layer(
    upperdir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    compression: Compression | None = "gzip",
) -> Layer:
    """:func:`diff`, also hashing and counting the blob as it is written (as :func:`pack`
    does), so a store can record it without reading it back. Raises as :func:`diff`."""
    return _pack(upperdir, out, whiteouts="overlay", compression=compression, for_diff=True)
