"""Image archives: OCI image layout (directory or tar) and docker-archive (``docker save``).

Owns reading those formats into a :class:`~isolate.image.store.Store` and writing store images
out in them, so skopeo, umoci and Docker can read what we write and we can read theirs. Talks
to no registry and extracts no layer (the store does that on demand).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import secrets
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any, Literal

from isolate import _json as json
from isolate import _record
from isolate.errors import ConfigError, DigestMismatch, ImageError, IsolateError
from isolate.fs import layers as fslayers
from isolate.fs._compress import zstd_reader
from isolate.fs.layers import CorruptLayer
from isolate.image._disk import fsync_dir, remove_tree
from isolate.image.config import Image
from isolate.image.oci import (
    DOCKER_MANIFEST,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    canonical_json,
    load_json,
    parse_index,
    parse_manifest,
    require_layer_support,
    select_platform,
    sha256_digest,
)
from isolate.image.reference import Platform, Reference, host_platform

if TYPE_CHECKING:
    from isolate.image._storage import BlobStore

__all__ = ["add_layer_file", "load", "save"]

REF_NAME = "org.opencontainers.image.ref.name"
# containerd and nerdctl record the full name here; we write and read it for round trips.
FULL_NAME = "io.containerd.image.name"
_OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def sniff_compression(head: bytes) -> str | None:
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``None`` (plain) from a file's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return None


def decompressed(f: IO[bytes], compression: str | None) -> IO[bytes]:
    """A reader of ``f``'s uncompressed bytes.

    Raises:
        UnsupportedError: zstd without the ``zstandard`` package.
    """
    if compression is None:
        return f
    if compression == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if compression == "bzip2":
        return bz2.BZ2File(f)
    if compression == "xz":
        return lzma.LZMAFile(f)
    return zstd_reader(f)  # type: ignore[no-any-return]


def add_layer_file(store: BlobStore, path: str) -> tuple[str, str, int, str]:
    """Store a layer tarball (plain, gzip, zstd; bzip2/xz are stored decompressed), checked
    to be a layer :func:`isolate.fs.layers.extract` would unpack.

    Returns (diff_id, digest, size, media_type).

    Raises:
        ImageError: missing file, not a regular file, or unreadable data.
        CorruptLayer, UnsafeArchive: not a tar, or one that extraction would refuse.
        UnsupportedError: zstd data and no zstd support.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImageError(f"cannot read layer tarball {path}: {exc.strerror}") from exc
    with f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ImageError(f"cannot import {path}: not a regular file")
        return add_layer_stream(store, f, path)


def add_layer_stream(store: BlobStore, f: IO[bytes], what: str = "layer"
                     ) -> tuple[str, str, int, str]:
    """As :func:`add_layer_file` for an open stream (read once from its current position);
    ``what`` names it in errors."""
    head = f.read(6)
    compression = sniff_compression(head)
    source: IO[bytes] = _Prefixed(head, f)  # type: ignore[assignment]
    sniffed = compression
    if compression in ("bzip2", "xz"):
        # OCI has no media type for these: store the tar uncompressed.
        source, compression = decompressed(source, compression), None
    try:
        digest, size = store.put_stream(source)
    except (EOFError, lzma.LZMAError, OSError) as exc:  # damaged bzip2/xz data
        if isinstance(exc, IsolateError) or sniffed not in ("bzip2", "xz"):
            raise
        raise CorruptLayer(f"{what}: not readable {sniffed} data: {exc}") from exc
    try:
        diff_id = fslayers.check(store.blob_path(digest)).diff_id
    except CorruptLayer as exc:
        # The blob stays unreferenced (another image may share it); gc removes it.
        raise CorruptLayer(f"{what}: {exc}") from exc
    media_type = {None: OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]
    return diff_id, digest, size, media_type


class _Prefixed:
    """A stream that first returns ``head`` (already read for sniffing), then ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.rest.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.rest.read(n)


# -- reading -------------------------------------------------------------------------------

class _Source:
    """Files of an archive by relative name: a directory or a tar file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.tar: tarfile.TarFile | None = None
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ImageError(f"cannot load images from {path}: {exc.strerror}") from exc
        if stat.S_ISDIR(st.st_mode):
            return
        if not stat.S_ISREG(st.st_mode):
            # A device or pipe has no end to probe for (/dev/zero would be read forever).
            raise ImageError(f"cannot load images from {path}: not a regular file or a "
                             "directory (save the archive to a file first)")
        # The compression from the magic bytes, then one reader for it: probing every
        # decompressor in turn (tarfile's "r:*") reads a file of zeros to its end as xz.
        with open(path, "rb") as f:
            compression = sniff_compression(f.read(6))
        modes: dict[str | None, Literal["r:", "r:gz", "r:bz2", "r:xz"]] = {
            None: "r:", "gzip": "r:gz", "bzip2": "r:bz2", "xz": "r:xz"}
        mode = modes.get(compression)
        if mode is None:
            raise ImageError(f"cannot load images from {path}: a {compression} compressed "
                             "archive; decompress it first")
        try:
            self.tar = tarfile.open(path, mode)  # noqa: SIM115 - closed by close()
            self.members = {os.path.normpath(m.name): m for m in self.tar.getmembers()}
        except (OSError, EOFError, lzma.LZMAError, zlib.error, tarfile.TarError) as exc:
            if self.tar is not None:
                self.tar.close()
            what = f"{compression} compressed tar" if compression else "tar"
            raise ImageError(f"cannot load images from {path}: neither an OCI layout "
                             f"directory nor a readable {what} archive ({exc})") from None

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        if self.tar is None:
            return os.path.isfile(os.path.join(self.path, name))
        return os.path.normpath(name) in self.members

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        norm = os.path.normpath(name)
        if norm.startswith("..") or os.path.isabs(norm):
            raise ImageError(f"{self.path}: archive names a file outside itself: {name!r}")
        if self.tar is None:
            try:
                f = open(os.path.join(self.path, norm), "rb")  # noqa: SIM115
            except OSError as exc:
                raise ImageError(f"{self.path}: cannot read {name}: {exc.strerror}") from exc
        else:
            member = self.members.get(norm)
            # A symlinked member (docker save links identical layers) resolves inside the tar.
            while member is not None and member.issym():
                target = os.path.normpath(os.path.join(os.path.dirname(norm), member.linkname))
                norm, member = target, self.members.get(target)
            ex = self.tar.extractfile(member) if member is not None else None
            if ex is None:
                raise ImageError(f"{self.path}: archive has no file {name!r}")
            f = ex  # type: ignore[assignment]
        with f:
            yield f

    def read(self, name: str) -> bytes:
        with self.open(name) as f:
            return f.read()


def load(store: BlobStore, path: str, ref: Reference | None, *, ref_has_tag: bool = True,
         platform: Platform | None = None) -> list[Image]:
    """Import every image in an OCI layout (dir or tar) or docker-archive at ``path``.

    Images are named as the archive names them; with ``ref``, a one-image archive's image is
    named ``ref``, and the images of a larger one get ``ref``'s repository with their own
    tags (then ``ref`` must not carry a tag of its own: ``ref_has_tag`` says it does). Where
    one image comes for several platforms (a nested image index, or index entries sharing a
    name), the manifest for ``platform`` (default: the host's) is loaded. Returns the images,
    each with the names this load gave it as its ``tags``.

    Raises:
        ConfigError: ``ref`` has a tag and the archive holds several images.
        ImageError: unknown format or a broken archive, or no manifest for ``platform``;
            DigestMismatch for a bad blob.
    """
    src = _Source(path)
    names = _Names(ref, ref_has_tag)
    try:
        if src.exists("oci-layout") and src.exists("index.json"):
            images = _load_oci(store, src, names, platform or host_platform())
        elif src.exists("manifest.json"):
            images = _load_docker(store, src, names)
        else:
            raise ImageError(f"{path}: not an OCI image layout (no oci-layout/index.json) and "
                             "not a docker-archive (no manifest.json)")
    finally:
        src.close()
    if not images:
        raise ImageError(f"{path}: the archive holds no image")
    return images


class _Names:
    """The names a load gives: the archive's, or the one the caller chose."""

    def __init__(self, ref: Reference | None, ref_has_tag: bool) -> None:
        self.ref, self.ref_has_tag = ref, ref_has_tag

    def check_count(self, path: str, count: int) -> None:
        if self.ref is not None and self.ref_has_tag and count > 1:
            raise ConfigError(f"{path} holds {count} images, which cannot all be named "
                              f"{self.ref}: give a repository without a tag, and each image "
                              "keeps its own tag under it")

    def given(self, archive_names: list[str], count: int) -> list[Reference]:
        """The names for one image that the archive calls ``archive_names``."""
        if self.ref is not None and count == 1:
            return [self.ref]
        out = []
        for name in archive_names:
            parsed: Reference | None = None
            # A bare tag ("latest", what skopeo and umoci write) names no repository.
            if "/" in name or ":" in name:
                with contextlib.suppress(ConfigError):
                    parsed = Reference.parse(name)
            if self.ref is not None:
                tag = parsed.tag if parsed is not None else name
                if tag is not None:
                    with contextlib.suppress(ConfigError):
                        out.append(self.ref.with_tag(tag))
            elif parsed is not None:
                out.append(parsed)
        return list(dict.fromkeys(out))


def _loaded(image: Image, names: list[Reference]) -> Image:
    """``image`` as a load reports it: its tags are the names this load gave it."""
    return _record.evolve(image, tags=tuple(sorted(str(n) for n in names)))


def _copy_blob(store: BlobStore, src: _Source, digest: str, name: str | None = None) -> None:
    if store.has_blob(digest):
        return
    with store.blob_lock(digest).hold(), src.open(name or _blob_name(digest)) as f:
        if not store.has_blob(digest):
            store.put_stream(f, expected=digest)


def _blob_name(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"blobs/{algo}/{hexpart}"


def _oci_names(annotations: Any) -> list[str]:
    ann = annotations if isinstance(annotations, dict) else {}
    for key in (FULL_NAME, REF_NAME):
        if isinstance(ann.get(key), str):
            return [ann[key]]
    return []


def _load_oci(store: BlobStore, src: _Source, names: _Names, platform: Platform
              ) -> list[Image]:
    entries: list[tuple[bytes, str, dict[str, Any]]] = []  # (manifest, media type, annotations)

    def read(d: Descriptor) -> bytes:
        blob = src.read(_blob_name(d.digest))
        if sha256_digest(blob) != d.digest:
            raise DigestMismatch(f"{src.path}: {d.digest} does not match its content",
                                 expected=d.digest, actual=sha256_digest(blob))
        return blob

    def one_image(choices: list[Descriptor], annotations: dict[str, Any], depth: int) -> None:
        """Load the one image ``choices`` are platform variants of (or is, if one)."""
        d = choices[0] if len(choices) == 1 else select_platform(tuple(choices), platform)
        ann = dict(annotations) | dict(d.annotations)
        if d.media_type in MANIFEST_TYPES:
            entries.append((read(d), d.media_type, ann))
        elif d.media_type in INDEX_TYPES:
            if depth > 4:
                raise ImageError(f"{src.path}: image indexes nested too deep")
            children = [c for c in parse_index(read(d))
                        if c.media_type in MANIFEST_TYPES + INDEX_TYPES]
            if children and all(c.platform is None for c in children):
                for c in children:  # not platform variants: images of their own
                    one_image([c], ann, depth + 1)
            elif children:
                one_image(children, ann, depth + 1)

    # Index entries naming one image for several platforms are variants of it; every other
    # entry is an image of its own.
    groups: dict[object, list[Descriptor]] = {}
    for i, d in enumerate(parse_index(src.read("index.json"))):
        label = _oci_names(d.annotations)
        variant = d.media_type in MANIFEST_TYPES and d.platform is not None and label
        groups.setdefault(("name", label[0]) if variant else ("entry", i), []).append(d)
    for group in groups.values():
        one_image(group, {}, 0)
    names.check_count(src.path, len(entries))
    images = []
    for blob, media_type, ann in entries:
        man = parse_manifest(blob, media_type)
        require_layer_support(man.layers, src.path)
        for d in (man.config, *man.layers):
            _copy_blob(store, src, d.digest)
        tags = names.given(_oci_names(ann), len(entries))
        images.append(_loaded(store.commit_image(blob, media_type, tags=tags), tags))
    return images


def _load_docker(store: BlobStore, src: _Source, names: _Names) -> list[Image]:
    try:
        doc = json.loads(src.read("manifest.json"))
    except (ValueError, RecursionError) as exc:
        raise ImageError(f"{src.path}: manifest.json is not valid JSON ({exc})") from None
    if not isinstance(doc, list):
        raise ImageError(f"{src.path}: manifest.json is not a list")
    names.check_count(src.path, len(doc))
    images = []
    for entry in doc:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                or not isinstance(entry.get("Layers"), list):
            raise ImageError(f"{src.path}: manifest.json entry without Config and Layers")
        config = src.read(entry["Config"])
        config_digest = store.put_bytes(config)
        layers = []
        for name in entry["Layers"]:
            with src.open(str(name)) as f:
                diff_id, digest, size, mt = add_layer_stream(store, f, f"{src.path}: layer {name}")
            layers.append({"mediaType": mt, "digest": digest, "size": size, "diff": diff_id})
        diff_ids = load_json(config, "docker-archive config").get("rootfs", {}).get("diff_ids")
        if diff_ids != [x.pop("diff") for x in layers]:
            raise ImageError(f"{src.path}: layers of {entry['Config']} do not match the "
                             "diff_ids of its config")
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": layers,
        })
        repo_tags = entry.get("RepoTags")
        tags = names.given([str(t) for t in repo_tags] if isinstance(repo_tags, list) else [],
                           len(doc))
        images.append(_loaded(store.commit_image(manifest, OCI_MANIFEST, tags=tags), tags))
    return images


# -- writing -------------------------------------------------------------------------------

class _Sink:
    """Where an export goes: files in a directory, or members of a tar file."""

    def __init__(self, tar: tarfile.TarFile | None, root: str | None) -> None:
        self.tar, self.root = tar, root
        self.written: set[str] = set()

    def put(self, name: str, f: IO[bytes], size: int) -> None:
        if name in self.written:
            return
        self.written.add(name)
        if self.tar is not None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, 0
            self.tar.addfile(info, f)
            return
        assert self.root is not None
        dest = os.path.join(self.root, name)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as out:
            while chunk := f.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())

    def put_bytes(self, name: str, data: bytes) -> None:
        import io
        self.put(name, io.BytesIO(data), len(data))


def _resolve(store: BlobStore, refs: list[Any]) -> list[tuple[Image, list[Reference]]]:
    out = []
    for r in refs:
        img = store.get(r)
        if isinstance(r, Reference) or (isinstance(r, str) and not r.startswith("sha256:")
                                        and len(r) < 64):
            names = [r if isinstance(r, Reference) else Reference.parse(r)]
        else:
            names = [Reference.parse(t) for t in img.tags]
        out.append((img, names))
    return out


def save(store: BlobStore, refs: list[Any], path: str, fmt: str) -> None:
    """Write images to ``path`` as ``docker-archive``, ``oci`` or ``oci-archive``.

    An archive is written to a temp file beside ``path`` and renamed over it when complete (so
    it may be on another filesystem than the store); into a device or pipe that exists at
    ``path`` (``/dev/stdout``) it is written directly. An ``oci`` layout is made beside
    ``path`` and renamed to it.

    Raises:
        ConfigError: ``path`` is empty.
        ImageError: an image is missing; ``path`` is a directory (for an archive) or a
            non-empty one or a file (for ``oci``); its directory does not exist; or writing
            failed (the errno's text in the message, the OSError as the cause).
    """
    images = _resolve(store, refs)
    if not path:
        raise ConfigError("save: the output path is empty")
    final = os.path.abspath(path)
    parent = os.path.dirname(final)
    try:
        st: os.stat_result | None = os.stat(final)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ImageError(f"cannot save to {path}: {exc.strerror}") from exc
    if fmt == "oci":
        if st is not None and (not stat.S_ISDIR(st.st_mode) or os.listdir(final)):
            raise ImageError(f"cannot save to {path}: exists and is not an empty directory")
    elif st is not None and stat.S_ISDIR(st.st_mode):
        raise ImageError(f"cannot save to {path}: it is a directory")
    if not os.path.isdir(parent):
        raise ImageError(f"cannot save to {path}: directory {parent} does not exist")
    with store.using():
        try:
            if fmt == "oci":
                _save_layout(store, images, final)
                return
            writer: Callable[[BlobStore, list[tuple[Image, list[Reference]]], _Sink], None] = (
                _write_oci if fmt == "oci-archive" else _write_docker)
            direct = st is not None and not stat.S_ISREG(st.st_mode)
            # Into a pipe as a stream ("w|"): tarfile's "w" would ask it for its position.
            with _output(final, direct=direct) as f, \
                    tarfile.open(fileobj=f, mode="w|" if direct else "w",
                                 format=tarfile.PAX_FORMAT) as tar:
                writer(store, images, _Sink(tar, None))
        except OSError as exc:
            raise ImageError(f"cannot save to {path}: {exc.strerror or exc}") from exc


def _beside(final: str, what: str) -> str:
    """A temp name in ``final``'s directory (hidden, naming this process)."""
    head, tail = os.path.split(final)
    return os.path.join(head, f".{tail}.{os.getpid()}.{secrets.token_hex(4)}.{what}")


@contextlib.contextmanager
def _output(final: str, *, direct: bool) -> Iterator[IO[bytes]]:
    """A file to write an archive to that appears at ``final`` only complete (temp, fsync,
    rename); with ``direct`` (a device or pipe) ``final`` itself."""
    if direct:
        with open(final, "wb") as f:
            yield f
        return
    tmp = _beside(final, "tmp")
    try:
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(final))


def _save_layout(store: BlobStore, images: list[tuple[Image, list[Reference]]],
                 final: str) -> None:
    tmp = _beside(final, "oci")
    os.mkdir(tmp, 0o755)
    try:
        _write_oci(store, images, _Sink(None, tmp))
        if os.path.isdir(final):
            os.rmdir(final)  # empty, checked above
        os.rename(tmp, final)
    except BaseException:
        remove_tree(tmp)
        raise
    fsync_dir(os.path.dirname(final))


def _put_blob(store: BlobStore, sink: _Sink, digest: str, name: str) -> None:
    with store.open_blob(digest) as f:
        sink.put(name, f, os.fstat(f.fileno()).st_size)


def _write_oci(store: BlobStore, images: list[tuple[Image, list[Reference]]], sink: _Sink) -> None:
    sink.put_bytes("oci-layout", _OCI_LAYOUT)
    manifests = []
    for img, names in images:
        for d in img.layers:
            _put_blob(store, sink, d.digest, _blob_name(d.digest))
        _put_blob(store, sink, img.id, _blob_name(img.id))
        data = store.read_blob(img.manifest_digest)
        if img.manifest_media_type == DOCKER_MANIFEST:
            # umoci accepts only OCI media types; the blobs are the same, only labels change.
            data = parse_manifest(data, DOCKER_MANIFEST).to_oci_bytes()
        digest = sha256_digest(data)
        sink.put_bytes(_blob_name(digest), data)
        desc: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(data),
                                "platform": {"os": img.platform.os,
                                             "architecture": img.platform.architecture}}
        if img.platform.variant:
            desc["platform"]["variant"] = img.platform.variant
        for name in names or [None]:  # type: ignore[list-item]
            entry = dict(desc)
            if name is not None:
                # The full reference, not the bare tag: two images tagged "1" in one layout
                # are then not ambiguous (umoci, skopeo's oci: take it as the image's name).
                entry["annotations"] = {REF_NAME: str(name), FULL_NAME: str(name)}
            manifests.append(entry)
    sink.put_bytes("index.json", canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                 "manifests": manifests}))


def _write_docker(store: BlobStore, images: list[tuple[Image, list[Reference]]],
                  sink: _Sink) -> None:
    entries = []
    for img, names in images:
        config_name = img.id.removeprefix("sha256:") + ".json"
        _put_blob(store, sink, img.id, config_name)
        layer_names = []
        for desc, diff_id in zip(img.layers, img.diff_ids, strict=True):
            name = diff_id.removeprefix("sha256:") + ".tar"
            layer_names.append(name)
            if name in sink.written:
                continue
            if desc.media_type in (OCI_LAYER, "application/vnd.docker.image.rootfs.diff.tar"):
                _put_blob(store, sink, desc.digest, name)
                continue
            # docker load and skopeo expect uncompressed layers, named by diff id.
            _put_decompressed(store, sink, desc.digest, name)
        entries.append({"Config": config_name,
                        "RepoTags": [n.familiar for n in names if n.tag is not None],
                        "Layers": layer_names})
    sink.put_bytes("manifest.json", json.dumps(entries).encode())


def _put_decompressed(store: BlobStore, sink: _Sink, digest: str, name: str) -> None:
    tmp = store.tmp.name("layer.tar")
    try:
        with store.open_blob(digest) as blob, open(tmp, "w+b") as out:
            compression = sniff_compression(blob.read(6))
            blob.seek(0)
            reader = decompressed(blob, compression)
            while chunk := reader.read(1 << 20):
                out.write(chunk)
            size = out.tell()
            out.seek(0)
            sink.put(name, out, size)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
