"""Image layers: tar streams <-> directory trees, OCI <-> overlayfs whiteouts, and diff.

Owns safe extraction (no write ever lands outside the destination), deterministic tar output and
the commit step (an overlay upper dir -> a layer). Must not mount anything, know about image
stores or registries (``isolate.image`` builds on this), or import ``isolate._native``.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Literal, Union

import attrs

from isolate.errors import ImageError

__all__ = [
    "MEDIA_TYPE_TAR",
    "MEDIA_TYPE_TAR_GZIP",
    "MEDIA_TYPE_TAR_ZSTD",
    "CorruptLayer",
    "Layer",
    "LayerStats",
    "UnsafeArchive",
    "diff",
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

    ``whiteouts``:
      * ``"overlay"`` (default): ``.wh.NAME`` becomes a 0/0 character device ``NAME`` and
        ``.wh..wh..opq`` an ``<ns>.overlay.opaque="y"`` xattr on its directory, so ``dest``
        can be an overlayfs lower layer;
      * ``"keep"``: whiteout entries are written as the empty files they are in the tar;
      * ``"apply"``: whiteouts delete what earlier layers put in ``dest`` (flattening layers
        into one tree); what this same archive creates is never deleted by them.

    ``privileged`` (default: effective uid 0 in the initial user namespace) allows device nodes
    and ``trusted.*`` xattrs; unprivileged, device nodes are skipped (counted in
    ``LayerStats.skipped``). Owners are kept whenever the effective uid is 0 (also root of a
    user namespace). ``xattr_namespace`` picks ``trusted`` or ``user`` overlay xattrs (default:
    ``trusted`` when privileged, else ``user``, as overlayfs mounted with ``userxattr`` wants).
    Overlay xattrs carried in the archive itself are dropped (they could redirect lookups).

    On error, ``dest`` is left as far as extraction got: callers extract into a temporary
    directory and rename it into place on success (the image store does).

    Raises:
        UnsafeArchive: a hostile entry (see above) or an oversized header.
        CorruptLayer: the stream is not a tar (or not one we can decompress).
        ConfigError: a bad argument (unknown ``whiteouts``/``xattr_namespace``, ``dest`` not a
            directory).
        IsolateOSError: a filesystem call failed (errno and file kept, ``step="extract"``).
        UnsupportedError: ``zstd`` data but the ``zstandard`` package is not installed.
    """
    raise NotImplementedError


def write_tar(
    src_dir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    whiteouts: Literal["overlay", "keep"] = "overlay",
    compression: Compression | None = None,
) -> str:
    """Write the tree under ``src_dir`` to ``out`` as a layer tar; return its diff id.

    Output is deterministic: entries sorted by path (a directory before its contents), PAX
    format, integer mtimes, no atime/ctime, empty user/group names, gzip without a timestamp.
    Hardlinked files become one file entry and link entries to it. Extended attributes are kept
    as ``SCHILY.xattr.*`` records except overlayfs' own (``*.overlay.*``) and
    ``security.selinux``.

    With ``whiteouts="overlay"`` a 0/0 character device ``NAME`` is written as ``.wh.NAME`` and
    a directory with an ``overlay.opaque="y"`` xattr (``trusted.`` or ``user.``) gets a
    ``.wh..wh..opq`` entry; with ``"keep"`` both are written as they are.

    Returns ``sha256:<hex>`` of the uncompressed tar (the OCI diff id).

    Raises:
        ConfigError: bad ``whiteouts``/``compression`` or ``src_dir`` not a directory.
        IsolateOSError: reading the tree failed.
        UnsupportedError: ``compression="zstd"`` without the ``zstandard`` package.
    """
    raise NotImplementedError


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
    raise NotImplementedError


def diff(
    upperdir: str | os.PathLike[str],
    out: BinaryIO,
    *,
    compression: Compression | None = None,
) -> str:
    """Turn what a container changed into a layer: the commit step.

    For an overlayfs upper dir the upper dir *is* the change set: new and modified files are
    there in full, deletions are 0/0 character devices, and a directory that replaced a lower
    one carries ``overlay.opaque``. So this writes the upper dir as a layer with those
    translated to OCI whiteouts (as :func:`write_tar` with ``whiteouts="overlay"``). Returns the
    diff id.

    Raises:
        UnsupportedError: the upper dir uses ``overlay.redirect`` or ``overlay.metacopy``
            (mounted with ``redirect_dir=on`` or ``metacopy=on``); their meaning depends on the
            lower layers, so the upper dir alone is not the change set.
        plus what :func:`write_tar` raises.
    """
    raise NotImplementedError
