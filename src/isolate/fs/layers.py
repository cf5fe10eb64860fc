"""Image layers: tar streams <-> directory trees, OCI <-> overlayfs whiteouts, and diff.

Owns safe extraction (no write ever lands outside the destination), deterministic tar output and
the commit step (an overlay upper dir -> a layer). Must not mount anything, know about image
stores or registries (``isolate.image`` builds on this), or import ``isolate._native`` (its C
fast path for extraction is reached through ``isolate._sys``).
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import re
import stat
import struct
import tarfile
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Literal, Union

import attrs

from isolate import _sys
from isolate.errors import ConfigError, ImageError, IsolateOSError, UnsupportedError

__all__ = [
    "MEDIA_TYPE_TAR",
    "MEDIA_TYPE_TAR_GZIP",
    "MEDIA_TYPE_TAR_ZSTD",
    "CorruptLayer",
    "Layer",
    "LayerStats",
    "UnsafeArchive",
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
# Extended headers (pax records, GNU long names) are read into memory whole; a real one is a
# few hundred bytes, so a larger one is an attempt to exhaust memory.
_MAX_EXTENDED_HEADER = 1 << 20
_CHUNK = 1 << 20
# Directory fds kept open while extracting; past this the cache is emptied (fd limits are low
# for some callers, and layers with more directories than this are rare).
_MAX_CACHED_DIRS = 512
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
_SKIPPED_XATTRS = ("security.selinux",)


class UnsafeArchive(ImageError):
    """A layer entry would write outside the destination, or is otherwise hostile.

    ``entry`` is the name of the offending tar member as it appears in the archive, ``reason``
    says what is wrong with it (``"absolute name"``, ``"'..' component"``, ``"parent is a
    symlink"``, ``"hardlink target outside the root"``, ``"header too large"``...).
    """

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"unsafe layer entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


class CorruptLayer(ImageError):
    """A layer is not a readable tar stream (bad header, truncated, unknown compression)."""


@attrs.frozen
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


@attrs.frozen
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
    """What tarfile reads from: the (decompressed) stream, hashed, in big chunks.

    Gives tarfile a file object with ``tell`` and forward-only ``seek`` so it can run in its
    plain read mode; its stream mode re-slices a small buffer on every read, which cost more
    than parsing. Every byte is hashed once, as it arrives: that is the diff id.
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

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            while self._fill():
                pass
            data = self._buf[self._at :]
            self._at = len(self._buf)
            return data
        while len(self._buf) - self._at < size and self._fill():
            pass
        data = self._buf[self._at : self._at + size]
        self._at += len(data)
        return data

    def tell(self) -> int:
        return self._base + self._at

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset < self.tell():
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
        zstd = _zstandard()
        return zstd.ZstdDecompressor().stream_reader(prefixed, read_across_frames=True)
    if head[:3] == b"BZh" or head == b"\xfd7zX":
        raise CorruptLayer("layer is bzip2/xz compressed; only plain, gzip and zstd are supported")
    return prefixed


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        raise UnsupportedError(
            "zstd layers need the 'zstandard' package (pip install isolate-linux[zstd])",
            missing="zstandard",
        ) from None
    return zstandard


# Not in typeshed's tarfile stubs, but public names of the module since Python 3.2.
_InvalidHeaderError: type[Exception] = tarfile.InvalidHeaderError  # type: ignore[attr-defined]
_TruncatedHeaderError: type[Exception] = tarfile.TruncatedHeaderError  # type: ignore[attr-defined]


class _GuardedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses memory bombs and does not read garbage as end-of-archive."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _GuardedTarInfo:
        try:
            fast = cls._frombuf_fast(buf, encoding, errors)
            if fast is not None:
                return fast
            return super().frombuf(buf, encoding, errors)  # type: ignore[return-value]
        except (_InvalidHeaderError, _TruncatedHeaderError) as e:
            # tarfile treats a bad header after the first one as the end of the archive,
            # which would silently drop the rest of a corrupt layer.
            raise CorruptLayer(f"bad tar header: {e}") from None

    @classmethod
    def _frombuf_fast(
        cls, buf: bytes | bytearray, encoding: str, errors: str
    ) -> _GuardedTarInfo | None:
        """Parse a common header (octal numbers, unsigned checksum, not sparse) in one go.

        Header parsing is most of tarfile's per-member cost; this gives the same result as
        ``TarInfo.frombuf`` for those headers and None for anything else (base-256 numbers,
        signed checksums, old GNU sparse, end-of-archive and short blocks), which then takes
        tarfile's own path.
        """
        if len(buf) != tarfile.BLOCKSIZE or buf[156:157] == tarfile.GNUTYPE_SPARSE:
            return None
        name, type_, linkname, uname, gname, prefix = _USTAR_STRINGS.unpack(buf)
        common = _COMMON_NUMBERS.fullmatch(buf, 100, 156)
        if common is not None and buf[329:345] == _NO_DEVICE:
            # What ustar writers put there: digits and a NUL, read as tarfile's nti() would.
            mode, uid, gid, size, mtime, checksum = (int(n, 8) for n in common.groups())
            devmajor = devminor = 0
        else:
            try:
                # tarfile's nti(): up to the first NUL, stripped, octal. Base-256 numbers
                # raise ValueError here and take tarfile's own path.
                mode, uid, gid, size, mtime, checksum, devmajor, devminor = [
                    int(field.split(b"\0", 1)[0].strip() or b"0", 8)
                    for field in _USTAR_NUMBERS.unpack(buf)
                ]
            except ValueError:
                return None
        if checksum != 256 + _byte_sum(buf) - _byte_sum(buf[148:156]):
            return None
        obj = cls()
        obj.mode, obj.uid, obj.gid, obj.size, obj.mtime = mode, uid, gid, size, mtime
        obj.devmajor, obj.devminor = devmajor, devminor
        obj.chksum = checksum
        obj.type = type_
        obj.name = _nts(name, encoding, errors)
        obj.linkname = _nts(linkname, encoding, errors)
        obj.uname = _nts(uname, encoding, errors) if uname[0] else ""
        obj.gname = _nts(gname, encoding, errors) if gname[0] else ""
        if obj.type == tarfile.AREGTYPE and obj.name.endswith("/"):
            obj.type = tarfile.DIRTYPE  # old V7 tars mark directories with a slash only
        if obj.type == tarfile.DIRTYPE:
            obj.name = obj.name.rstrip("/")
        if prefix[0] and obj.type not in tarfile.GNU_TYPES:
            obj.name = _nts(prefix, encoding, errors) + "/" + obj.name
        return obj

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_TYPES and self.size > _MAX_EXTENDED_HEADER:
            raise UnsafeArchive(
                self.name, f"extended header of {self.size} bytes (limit {_MAX_EXTENDED_HEADER})"
            )
        result: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]
        return result


# The string fields of a ustar header: name, type, linkname, uname, gname, prefix.
_USTAR_STRINGS = struct.Struct("100s56xc100s8x32s32s16x155s12x")
# Its numbers: mode, uid, gid, size, mtime, chksum, devmajor, devminor.
_USTAR_NUMBERS = struct.Struct("100x8s8s8s12s12s8s173x8s8s167x")
# mode uid gid size mtime chksum as most writers format them.
_COMMON_NUMBERS = re.compile(rb"([0-7]{7})\0([0-7]{7})\0([0-7]{7})\0([0-7]{11})\0([0-7]{11})\0"
                             rb"([0-7]{6})\0 ")
_NO_DEVICE = b"\0" * 16


def _byte_sum(data: bytes | bytearray) -> int:
    """sum(data) for up to 512 bytes, in C: adler32's low half is 1 + the byte sum modulo
    65521, exact for 256 bytes (at most 65280)."""
    total = 0
    for i in range(0, len(data), 256):
        total += (zlib.adler32(data[i : i + 256]) & 0xFFFF) - 1
    return total


def _nts(field: bytes, encoding: str, errors: str) -> str:
    return field.split(b"\0", 1)[0].decode(encoding, errors)


_EXTENDED_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


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


def _mtime_ns(member: tarfile.TarInfo) -> int:
    mtime = member.mtime
    if isinstance(mtime, int):
        return mtime * 1_000_000_000
    return round(mtime * 1e9)


def _member_xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    result = []
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        name = key[len("SCHILY.xattr.") :]
        # Overlay xattrs in an archive could redirect lookups into other layers; only the
        # whiteout translation below may set them.
        if name.startswith(_OVERLAY_XATTR_PREFIXES) or name in _SKIPPED_XATTRS:
            continue
        result.append((name, value.encode("utf-8", "surrogateescape")))
    return result


@attrs.define
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
        self.cache: dict[tuple[str, ...], int] = {}
        # Paths this archive created: whiteouts only hide or delete what earlier layers made.
        self.created: set[tuple[str, ...]] = set()
        self.track_created = whiteouts != "keep"
        self.files = 0
        self.bytes = 0
        self.skipped = 0
        # The C fast path, when used: it unpacks the plain entries and hands the rest to add().
        self.native: _sys.LayerUnpacker | None = None

    def close(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()
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
        fd = self.cache.get(parts)
        if fd is not None:
            return fd
        parent = self.dir_fd(parts[:-1], entry, create=create)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_OPEN, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise CorruptLayer(
                    f"layer entry {entry!r}: directory {'/'.join(parts)!r} does not exist"
                ) from None
            os.mkdir(name, 0o755, dir_fd=parent)
            if self.track_created:
                self.created.add(parts)
            fd = os.open(name, _DIR_OPEN, dir_fd=parent)
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
                fd = os.open(name, _DIR_OPEN, dir_fd=parent)
                self.cache[parts] = fd
                return fd
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise UnsafeArchive(entry, f"parent {'/'.join(parts)!r} is {kind}") from None
        self.cache[parts] = fd
        return fd

    def trim_cache(self) -> None:
        # Only between entries: within one, callers hold fds from the cache (a hardlink holds
        # two), and closing one could let its number be reused for something else.
        if len(self.cache) >= _MAX_CACHED_DIRS:
            self.close()

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
            os.close(self.cache.pop(key))
        _remove_tree(pfd, name)

    # ---- entries

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.trim_cache()
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
        self, tf: tarfile.TarFile, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo
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
            self._meta_fd(fd, m, _member_xattrs(m) if m.pax_headers else [])
        finally:
            os.close(fd)

    def _copy_data(self, tf: tarfile.TarFile, m: tarfile.TarInfo, fd: int) -> None:
        if m.issparse():
            src: Any = tf.extractfile(m)
        else:
            # The reader is at the member's data; reading it straight from there skips the
            # per-member file object tarfile would build.
            src = tf.fileobj
        remaining = m.size
        while remaining:
            chunk = src.read(min(remaining, _CHUNK))
            if not chunk:
                raise CorruptLayer(f"layer entry {m.name!r}: data truncated")
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        self.bytes += m.size

    def _hardlink(self, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
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

    def _mkdir(self, pfd: int, parts: tuple[str, ...], m: tarfile.TarInfo) -> None:
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

    def _whiteout(self, m: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
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

    def _dir_meta(self, m: tarfile.TarInfo) -> _DirMeta:
        return _DirMeta(m.name, m.mode & 0o7777, m.uid, m.gid, _mtime_ns(m), _member_xattrs(m))

    def _meta_fd(self, fd: int, m: tarfile.TarInfo, xattrs: list[tuple[str, bytes]]) -> None:
        # Order matters: chown clears set-id bits and file capabilities, so it goes first.
        if self.chown:
            os.fchown(fd, m.uid, m.gid)
        os.fchmod(fd, m.mode & 0o7777)
        for name, value in xattrs:
            self._xattr(fd, name, value, m.name)
        mtime = _mtime_ns(m)
        os.utime(fd, ns=(mtime, mtime))

    def _meta_at(self, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        # Symlinks, devices and fifos cannot be opened for writing metadata safely; use the
        # *at calls without following links. (xattrs on these are not restored.)
        if self.chown:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)
        if not m.issym():
            os.chmod(name, m.mode & 0o7777, dir_fd=pfd)
        mtime = _mtime_ns(m)
        os.utime(name, ns=(mtime, mtime), dir_fd=pfd, follow_symlinks=False)

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
            self.trim_cache()
            try:
                fd = self.dir_fd(parts, meta.entry, create=False) if parts else self.root_fd
            except (UnsafeArchive, CorruptLayer):
                continue  # a later entry replaced this directory
            if self.chown:
                os.fchown(fd, meta.uid, meta.gid)
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
    # As tarfile decodes member names, so paths from C and from tarfile compare equal.
    return name.decode(tarfile.ENCODING, "surrogateescape")


def _remove_tree(pfd: int, name: str) -> None:
    fd = os.open(name, _DIR_OPEN, dir_fd=pfd)
    try:
        with os.scandir(fd) as it:
            entries = list(it)
        for child in entries:
            if child.is_dir(follow_symlinks=False):
                _remove_tree(fd, child.name)
            else:
                os.unlink(child.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)


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
    kept whenever the effective uid is 0 (also root of a user namespace). ``xattr_namespace``
    picks ``trusted`` or ``user`` overlay xattrs (default: ``trusted`` when privileged, else
    ``user``, as overlayfs mounted with ``userxattr`` wants). Overlay xattrs carried in the
    archive itself are dropped (they could redirect lookups); so is ``security.selinux``.
    xattrs on symlinks, devices and fifos are not restored.

    On error, ``dest`` is left as far as extraction got: callers extract into a temporary
    directory and rename it into place on success (the image store does).

    Raises:
        UnsafeArchive: a hostile entry (see above) or an oversized extended header.
        CorruptLayer: the stream is not a tar (or not one we can decompress), or is truncated.
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

    if isinstance(source, (str, os.PathLike)):
        try:
            raw: Any = open(source, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError as e:
            raise _os_error(e, "cannot open layer", os.fspath(source)) from e
        owns_raw = True
    else:
        raw, owns_raw = source, False
    try:
        # dest itself is the caller's choice and may be reached through a symlink.
        root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        if owns_raw:
            raw.close()
        raise _os_error(e, "cannot open extraction root", dest) from e
    ex = _Extractor(root_fd, whiteouts=whiteouts, privileged=privileged, xattr_ns=xattr_ns)
    reader: _TarReader | None = None
    try:
        reader = _TarReader(_decompressed(raw))
        _extract_members(reader, ex, native=native)
        reader.drain()
        ex.finish_dirs()
    except _CORRUPT_STREAM as e:
        raise CorruptLayer(f"layer is not a readable tar stream: {e}") from e
    except Exception as e:
        if type(e).__name__ == "ZstdError":
            raise CorruptLayer(f"layer is not a readable zstd stream: {e}") from e
        raise
    finally:
        if reader is not None:
            reader.hash.close()
        ex.close()
        os.close(root_fd)
        if owns_raw:
            raw.close()
    return LayerStats(
        files=ex.files,
        bytes=ex.bytes,
        diff_id="sha256:" + reader.hash.hexdigest(),
        skipped=ex.skipped,
    )


# What decompressors and tarfile raise for a damaged stream (BadGzipFile is an OSError).
_CORRUPT_STREAM = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


def _extract_members(reader: _TarReader, ex: _Extractor, *, native: bool) -> None:
    if native:
        ex.native = _sys.LayerUnpacker(ex.root_fd, chown=ex.chown,
                                       track_created=ex.track_created)
    tf: Any = None  # a TarFile, typed loosely: its reading state is used as CPython has it
    try:
        while True:
            if ex.native is not None:
                _unpack_native(reader, ex.native)
                ex.native.forget_dirs()  # Python may replace directories from here on
                ex.take_native_dirs()
            if tf is None:
                # Opened where the first header Python handles starts; it reads that member
                # (None: the archive ended there).
                tf = tarfile.TarFile(fileobj=reader, mode="r",  # type: ignore[arg-type]
                                     tarinfo=_GuardedTarInfo)
                member, tf.firstmember = tf.firstmember, None
            else:
                if ex.native is not None:
                    tf.offset = reader.tell()
                member = tf.next()
            if member is None:
                break
            # TarFile keeps every member; an extraction only needs the current one.
            tf.members.clear()
            try:
                ex.add(tf, member)
            except OSError as e:
                if isinstance(e, (IsolateOSError, *_CORRUPT_STREAM)):
                    raise
                raise _os_error(e, f"cannot extract layer entry {member.name!r}",
                                member.name) from e
            if ex.native is not None:
                if tf.pax_headers:
                    # A global pax header changes every later member: tarfile's job alone.
                    ex.stop_native()
                elif reader.seek(tf.offset) != tf.offset:
                    raise CorruptLayer("layer is not a readable tar stream: "
                                       "unexpected end of data")
    finally:
        if tf is not None:
            tf.close()
        ex.stop_native()


def _unpack_native(reader: _TarReader, native: _sys.LayerUnpacker) -> None:
    """Let C unpack from the reader's position up to the first header it leaves to Python."""
    while True:
        handoff, used = native.feed(reader._buf, reader._at)
        reader._at += used
        if handoff:
            return
        if reader._fill():
            continue
        # End of the stream: inside an entry it is truncated; at a header, tarfile decides.
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


def _walk_sorted(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield (archive name, path, lstat) under ``root``: sorted, each directory followed by
    its whole subtree (recursion depth is the tree's depth, which is small)."""
    with os.scandir(root) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        st = child.stat(follow_symlinks=False)
        yield child.name, child.path, st
        if stat.S_ISDIR(st.st_mode):
            for name, path, sub in _walk_sorted(child.path):
                yield child.name + "/" + name, path, sub


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
        compressor = _zstandard().ZstdCompressor(level=3).stream_writer(out, closefd=False)
    writer = _TarWriter(compressor if compressor is not None else out)
    try:
        _write_tree(src, writer, whiteouts=whiteouts, for_diff=for_diff)
        writer.close()
        if compressor is not None:
            if compression == "zstd":
                compressor.flush(_zstandard().FLUSH_FRAME)
            compressor.close()
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
