"""``COPY`` and ``ADD``: the entries of their layer, written straight into a blob.

Owns Docker's copy rules: a directory source copies its contents, a file goes into a
destination that ends with ``/`` or is a directory, missing parent directories are made
(``0755``, owned by ``--chown``'s user), existing ones keep the image's metadata;
``--chown`` names are looked up in the image's own passwd and group files (as ``USER``'s, by
:mod:`isolate.image.users`); ``--chmod`` applies to every copied file and directory; modes
and times of sources are kept. ``ADD``
also unpacks local tar archives (gzip, bzip2, xz, zstd) and downloads URLs (``--checksum``
verified). Destination paths follow the image's symlinks inside the image (``/bin/x`` on a
merged-/usr image lands in ``/usr/bin/x``). No container runs and nothing is mounted.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import io
import os
import posixpath
import stat
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO, Any

from isolate import _record
from isolate.errors import ConfigError, UnsupportedError
from isolate.image.build.context import BuildContext, ContextEntry
from isolate.image.build.errors import BuildError, SourceLocation
from isolate.image.build.layer import LayerWriter
from isolate.image.build.tree import ImageTree, TreeEntry

__all__ = ["LayerFiles", "SourceItem", "fetch_url", "is_archive", "resolve_chown"]

_SKIP_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")
_GZIP, _BZIP2, _XZ, _ZSTD = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"


def resolve_chown(spec: str | None, tree: ImageTree, location: SourceLocation | None,
                  what: str = "COPY --chown") -> tuple[int, int] | None:
    """``user[:group]`` as numbers, names resolved as ``USER``'s are
    (:func:`isolate.image.users.resolve_user`: in the image of ``tree`` only). A user
    without a group gets its primary group, and a numeric uid alone the same number as gid,
    as BuildKit does.

    Raises:
        BuildError: a name the image's passwd or group file does not have.
    """
    if not spec:
        return None
    user, _, group = spec.partition(":")
    if user.isdigit() and not group:
        return int(user), int(user)
    from isolate.image.users import resolve_user

    try:
        who = resolve_user(spec, (), tree.lowers)
    except ConfigError as exc:
        raise BuildError(f"{what}={spec}: {exc}", location) from None
    return who.uid, who.gid


@_record.record
class SourceItem:
    """One entry to copy, wherever it comes from: ``kind`` (``file``, ``dir``, ``symlink``,
    ``fifo``, ``chr``, ``blk``), full ``mode``, owner, integer ``mtime``, ``size``, symlink
    target, device number, extended attributes and a way to open a file's data."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int = 0
    link: str | None = None
    rdev: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    opener: Callable[[], IO[bytes]] | None = _record.field(default=None, eq=False)

    @classmethod
    def from_context(cls, ctx: BuildContext, entry: ContextEntry) -> SourceItem:
        """A context entry (owned 0:0, as COPY makes context files)."""
        kind = {"file": "file", "dir": "dir", "symlink": "symlink"}.get(entry.kind, "other")
        opener = None
        if kind == "file":
            path = entry.path

            def opener() -> IO[bytes]:
                return os.fdopen(ctx.open_file(path), "rb")
        return cls(kind, entry.mode, 0, 0, entry.mtime_ns // 1_000_000_000, entry.size,
                   entry.link, opener=opener)

    @classmethod
    def from_tree(cls, entry: TreeEntry) -> SourceItem:
        """An image entry, with its owner and extended attributes."""
        st = entry.st
        mode = st.st_mode
        if stat.S_ISREG(mode):
            kind = "file"
        elif stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_ISLNK(mode):
            kind = "symlink"
        elif stat.S_ISFIFO(mode):
            kind = "fifo"
        elif stat.S_ISCHR(mode):
            kind = "chr"
        elif stat.S_ISBLK(mode):
            kind = "blk"
        else:
            kind = "other"
        host = entry.host
        opener = None
        if kind == "file":
            def opener() -> IO[bytes]:
                return os.fdopen(os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC),
                                 "rb")
        xattrs: list[tuple[str, bytes]] = []
        if kind in ("file", "dir"):
            with contextlib.suppress(OSError):
                for name in sorted(os.listxattr(host, follow_symlinks=False)):
                    if not name.startswith(_SKIP_XATTRS):
                        xattrs.append((name, os.getxattr(host, name, follow_symlinks=False)))
        return cls(kind, mode, st.st_uid, st.st_gid, int(st.st_mtime), st.st_size,
                   os.readlink(host) if kind == "symlink" else None, st.st_rdev,
                   tuple(xattrs), opener)


def is_archive(head: bytes) -> bool:
    """Whether ``head`` (the first 512+ bytes of a file) starts a tar archive that ADD
    unpacks: compressed with gzip, bzip2, xz or zstd, or a plain ustar/GNU tar."""
    if head.startswith((_GZIP, _BZIP2, _XZ, _ZSTD)):
        return True
    return len(head) >= 262 and head[257:262] == b"ustar"


class LayerFiles:
    """The entries of one COPY/ADD layer on top of the image ``tree``.

    ``new_owner`` owns the parent directories the copy has to make; ``now`` is their time.
    Every path is an image path; entries are written to ``writer`` in the order added, each
    directory at most once.
    """

    def __init__(self, writer: LayerWriter, tree: ImageTree, *,
                 new_owner: tuple[int, int] = (0, 0), now: int | None = None,
                 location: SourceLocation | None = None, what: str = "COPY") -> None:
        self.writer = writer
        self.tree = tree
        self.new_owner = new_owner
        self.now = int(time.time()) if now is None else now
        self.location = location
        self.what = what
        self._dirs: set[str] = set()
        self._links: set[str] = set()

    # -- paths ----------------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """``path`` with the image's symlinks followed (inside the image).

        Raises:
            BuildError: a non-directory is in the way.
        """
        real = self.tree.resolve(path)
        if real is None:
            raise BuildError(f"{self.what}: cannot copy to {path}: a path component is not a "
                             "directory (or a symlink loop)", self.location)
        return real

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` (resolved) is a directory in the image or in this layer."""
        if path in self._dirs:
            return True
        entry = self.tree.lookup(path)
        return entry is not None and entry.is_dir

    def place(self, parent: str, name: str, *, is_dir: bool) -> str:
        """The image path of ``name`` inside the directory ``parent`` (resolved). A
        directory lands where an existing symlink to a directory points."""
        path = posixpath.join(parent, name)
        if is_dir and path not in self._dirs:
            entry = self.tree.lookup(path, follow=False)
            if entry is not None and stat.S_ISLNK(entry.st.st_mode):
                target = self.tree.resolve(path)
                if target is not None and self.is_dir(target):
                    return target
        return path

    def _check_under_link(self, path: str) -> None:
        parent = posixpath.dirname(path)
        while parent not in ("/", ""):
            if parent in self._links:
                raise BuildError(f"{self.what}: {path} would be written below the symlink "
                                 f"{parent} this layer makes", self.location)
            parent = posixpath.dirname(parent)

    # -- entries --------------------------------------------------------------------------

    def parents(self, path: str) -> None:
        """Write the directories above ``path``: those the image has with its metadata, the
        missing ones new (0755, ``new_owner``)."""
        parts = [p for p in path.split("/") if p][:-1]
        cur = "/"
        for part in parts:
            cur = posixpath.join(cur, part)
            self.ensure_dir(cur)

    def ensure_dir(self, path: str) -> None:
        """``path`` as a directory in the layer: the image's own metadata if it has one there,
        else a new 0755 directory owned by ``new_owner``."""
        if path in self._dirs or path == "/":
            return
        entry = self.tree.lookup(path, follow=False)
        if entry is not None and entry.is_dir:
            st = entry.st
            self._add(path, tarfile.DIRTYPE, st.st_mode, st.st_uid, st.st_gid, int(st.st_mtime))
        else:
            uid, gid = self.new_owner
            self._add(path, tarfile.DIRTYPE, 0o755, uid, gid, self.now)
        self._dirs.add(path)

    def _add(self, path: str, kind: bytes, mode: int, uid: int, gid: int, mtime: int, *,
             link: str = "", data: IO[bytes] | None = None, size: int = 0, rdev: int = 0,
             xattrs: tuple[tuple[str, bytes], ...] = ()) -> None:
        self._check_under_link(path)
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type = kind
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid = uid, gid
        info.mtime = mtime
        info.linkname = link
        info.size = size
        if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            info.devmajor, info.devminor = os.major(rdev), os.minor(rdev)
        if xattrs:
            info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                                for k, v in xattrs}
        self.writer.add(info, data)
        if kind == tarfile.SYMTYPE:
            self._links.add(path)
        else:
            self._links.discard(path)

    def item(self, path: str, item: SourceItem, *, owner: tuple[int, int] | None,
             chmod: int | None) -> None:
        """Write ``item`` at ``path`` (its parents must be written already), owned by
        ``owner`` (default: the item's own) with ``chmod`` for files and directories."""
        uid, gid = owner if owner is not None else (item.uid, item.gid)
        mode = item.mode if chmod is None or item.kind not in ("file", "dir") else (
            (item.mode & ~0o7777) | chmod)
        if item.kind == "dir":
            if path not in self._dirs:
                self._add(path, tarfile.DIRTYPE, mode, uid, gid, item.mtime,
                          xattrs=item.xattrs)
                self._dirs.add(path)
        elif item.kind == "file":
            assert item.opener is not None
            with item.opener() as f:
                self._add(path, tarfile.REGTYPE, mode, uid, gid, item.mtime, data=f,
                          size=item.size, xattrs=item.xattrs)
        elif item.kind == "symlink":
            self._add(path, tarfile.SYMTYPE, 0o777, uid, gid, item.mtime,
                      link=item.link or "")
        elif item.kind in ("fifo", "chr", "blk"):
            kind = {"fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE,
                    "blk": tarfile.BLKTYPE}[item.kind]
            self._add(path, kind, mode, uid, gid, item.mtime, rdev=item.rdev)
        # sockets and unknown types cannot be put in a layer: left out, as Docker does

    def data(self, path: str, data: bytes, *, mode: int, owner: tuple[int, int],
             mtime: int | None = None) -> None:
        """Write a regular file with ``data`` at ``path``."""
        self._add(path, tarfile.REGTYPE, mode, owner[0], owner[1],
                  self.now if mtime is None else mtime, data=io.BytesIO(data),
                  size=len(data))

    def tree_copy(self, dest: str, items: Iterator[tuple[str, SourceItem]], *,
                  owner: tuple[int, int] | None, chmod: int | None) -> None:
        """Write ``items`` ((path relative to the copied directory, item), parents before
        children) below the directory ``dest`` (resolved, written already)."""
        real: dict[str, str] = {"": dest}
        for rel, item in items:
            head, _, name = rel.rpartition("/")
            parent = real.get(head)
            if parent is None:
                continue  # below something that was not a directory
            path = self.place(parent, name, is_dir=item.kind == "dir")
            if item.kind == "dir":
                real[rel] = path
                if path in self._dirs:
                    continue
            self.item(path, item, owner=owner, chmod=chmod)

    def archive(self, dest: str, stream: IO[bytes], *, source: str) -> int:
        """Unpack the tar archive ``stream`` (any compression ADD knows) below the directory
        ``dest`` (resolved, written already); return how many entries were written. Names
        are made relative; one that climbs out of ``dest``, or lies below a symlink the
        archive made, is an error.

        Raises:
            BuildError: a hostile or broken archive.
            UnsupportedError: zstd without the ``zstandard`` package.
        """
        head = stream.read(4)
        raw: Any = io.BufferedReader(_Prefixed(head, stream))
        if head.startswith(_ZSTD):
            try:
                import zstandard
            except ImportError:
                raise UnsupportedError(f"ADD {source}: unpacking zstd needs the 'zstandard' "
                                       "package", missing="zstandard") from None
            raw = zstandard.ZstdDecompressor().stream_reader(raw)
        count = 0
        links: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=raw, mode="r|*") as tf:  # type: ignore[call-overload]
                for m in tf:
                    rel = posixpath.normpath("/" + m.name).lstrip("/")
                    if not rel or rel == ".":
                        continue
                    if ".." in m.name.split("/"):
                        raise BuildError(f"ADD {source}: archive entry {m.name!r} leads out of "
                                         "the destination", self.location)
                    parent = self.resolve(posixpath.join(dest, posixpath.dirname(rel)))
                    self._dirs_between(dest, parent)
                    path = self.place(parent, posixpath.basename(rel), is_dir=m.isdir())
                    owner = (m.uid, m.gid)
                    mtime = int(m.mtime)
                    if m.isdir():
                        if path not in self._dirs:
                            self._add(path, tarfile.DIRTYPE, m.mode, *owner, mtime)
                            self._dirs.add(path)
                    elif m.isreg():
                        f = tf.extractfile(m)
                        self._add(path, tarfile.REGTYPE, m.mode, *owner, mtime, data=f,
                                  size=m.size)
                        links[rel] = path
                    elif m.issym():
                        self._add(path, tarfile.SYMTYPE, 0o777, *owner, mtime,
                                  link=m.linkname)
                    elif m.islnk():
                        target = posixpath.normpath("/" + m.linkname).lstrip("/")
                        if target not in links:
                            raise BuildError(f"ADD {source}: hard link {m.name!r} to "
                                             f"{m.linkname!r}, which the archive has not "
                                             "written", self.location)
                        self._add(path, tarfile.LNKTYPE, m.mode, *owner, mtime,
                                  link=links[target].lstrip("/"))
                        links[rel] = links[target]
                    elif m.ischr() or m.isblk() or m.isfifo():
                        rdev = os.makedev(m.devmajor, m.devminor)
                        self._add(path, m.type, m.mode, *owner, mtime, rdev=rdev)
                    else:
                        continue
                    count += 1
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BuildError(f"ADD {source}: broken archive: {exc}", self.location) from None
        return count

    def _dirs_between(self, top: str, path: str) -> None:
        """Directories from ``top`` (exclusive) down to ``path`` (inclusive)."""
        if path == top or not path.startswith(top.rstrip("/") + "/"):
            if path != top:
                self.ensure_dir(path)
            return
        rest = path[len(top.rstrip("/")) + 1:]
        cur = top
        for part in rest.split("/"):
            cur = posixpath.join(cur, part)
            self.ensure_dir(cur)


class _Prefixed(io.RawIOBase):
    """``head`` followed by the rest of ``raw`` (after peeking at magic bytes)."""

    def __init__(self, head: bytes, raw: IO[bytes]) -> None:
        self.head = head
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.raw.read(len(b))
        b[:len(data)] = data
        return len(data)


def fetch_url(url: str, out: IO[bytes], *, checksum: str | None = None,
              location: SourceLocation | None = None, timeout: float = 60.0
              ) -> tuple[str, int, int | None]:
    """Download ``url`` into ``out``; return (sha256 digest, size, Last-Modified as a Unix
    time or None).

    Raises:
        BuildError: the download failed, or ``checksum`` does not match.
    """
    h = hashlib.sha256()
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            modified = resp.headers.get("Last-Modified")
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BuildError(f"ADD {url}: download failed: {exc}", location) from None
    digest = "sha256:" + h.hexdigest()
    if checksum is not None and digest != checksum:
        raise BuildError(f"ADD {url}: checksum mismatch: expected {checksum}, got {digest}",
                         location)
    when = None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            when = int(email.utils.parsedate_to_datetime(modified).timestamp())
    return digest, size, when
