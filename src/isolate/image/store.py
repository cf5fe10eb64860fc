"""The image store: content-addressed blobs, extracted layers, image records and tags on disk.

Owns everything under the store root (``blobs/``, ``partial/``, ``layers/``, ``images/``,
``holds/``, ``tags.json``, ``locks/``, ``tmp/``) and the locking that makes it safe for
several processes at once. Must not mount anything (the overlay stacking is the container's);
the wire protocols live in :mod:`isolate.image.registry` and :mod:`isolate.image.archive`.

Locking: every operation that adds or reads blobs holds ``locks/gc`` shared; :meth:`Store.gc`
holds it exclusive, so it never deletes what a running pull has fetched but not yet recorded.
One blob or layer is produced under its own exclusive lock, so two pulls of one image share
the work: the second waits and then finds the blob there.
"""

from __future__ import annotations

import fcntl
import os
import time
from _collections_abc import Callable, Iterable, Iterator, Mapping

from isolate import _ctx as contextlib
from isolate import _json as json
from isolate import _lazy, _match, _record
from isolate._mapped import pack_layer, unpack_layer
from isolate._typing import TYPE_CHECKING
from isolate.errors import (
    ConfigError,
    DigestMismatch,
    ImageError,
    ImageInUseError,
    IsolateError,
)
from isolate.fs import _tree
from isolate.image._disk import FileLock, TempSpace, fsync_dir, remove_tree
from isolate.image._storage import HashingReader
from isolate.image.config import Image, ImageConfig, build_config_blob, parse_config_blob
from isolate.image.oci import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    canonical_json,
    load_json,
    parse_manifest,
    sha256_digest,
)
from isolate.image.reference import Platform, Reference, host_platform, is_digest, name_to_give

if TYPE_CHECKING:
    from typing import IO, Any, BinaryIO

    from isolate._mapped import MappedWorker
    from isolate.fs.layers import Layer
    from isolate.image._reports import DiskUsage, GcReport, Removed
    from isolate.namespaces import IdMaps

__all__ = ["DiskUsage", "GcReport", "Removed", "Store", "default_root"]

# What gc, remove and df report: classes of their own module, which running an image never
# loads (each record class costs a little to build at import).
__getattr__, __dir__ = _lazy.exports(globals(), {
    "isolate.image._reports": ("DiskUsage", "GcReport", "Removed")})

_CHUNK = 1 << 20


def default_root() -> str:
    """``/var/lib/isolate`` for root, ``$XDG_DATA_HOME/isolate`` (``~/.local/share``) otherwise."""
    if os.geteuid() == 0:
        return "/var/lib/isolate"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return os.path.join(base, "isolate")


def _hex(digest: str) -> str:
    if not is_digest(digest):
        raise ConfigError(f"digest {digest!r} is not 'sha256:' and 64 lowercase hex digits")
    return digest[len("sha256:"):]


def _changed(config: ImageConfig, changes: Mapping[str, Any]) -> ImageConfig:
    """``config`` with the fields named in ``changes`` replaced (validated as a new one)."""
    fields = {f.name for f in _record.fields(ImageConfig)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ConfigError(f"commit changes: ImageConfig has no field {', '.join(unknown)} "
                          f"(it has {', '.join(sorted(fields))})")
    try:
        return _record.evolve(config, **changes)
    except TypeError as exc:
        raise ConfigError(f"commit changes: {exc}") from None


def _now() -> str:
    import datetime  # here: only writers stamp times

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _file_key(path: str) -> tuple[int, int, int] | None:
    """What tells a file's content changed for the Store's caches (inode, size, mtime; the
    store replaces files by rename), or None when it cannot be stat'ed."""
    try:
        return _stat_key(os.stat(path))
    except OSError:
        return None


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _caller_maps(maps: IdMaps | None) -> IdMaps | None:
    """``maps``, or by default the caller's own: an ordinary user's rootless maps (layers
    are for its user namespaces), none for root."""
    if maps is not None or os.geteuid() == 0:
        return maps
    from isolate.namespaces import rootless_maps

    return rootless_maps()


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _tree_bytes(path: str, seen: set[tuple[int, int]]) -> int:
    """Bytes used below ``path``; a hardlinked inode counts once across all calls with ``seen``."""
    try:
        return _tree.tree_bytes(path, seen)
    except FileNotFoundError:  # removed by a concurrent gc
        return 0
    except PermissionError:  # a layer of an id-mapped cache: a mapped owner's closed dir
        return 0


class Store:
    """An image store rooted at ``root`` (default: :func:`default_root`).

    Opening creates the directory layout if needed and removes leftovers of writers that died
    (temp files of processes that no longer exist). No method leaves a half-written blob,
    layer or record visible, also when the process is killed.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        """Open (creating if needed) the store at ``root``.

        Raises:
            ConfigError: ``root`` is not an absolute path or exists as a non-directory.
            ImageError: the layout cannot be created (permissions, read-only fs).
        """
        path = os.fspath(root) if root is not None else default_root()
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ConfigError(f"Store.root: {path!r} is not an absolute path")
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"Store.root: {path!r} exists and is not a directory")
        self.root = path
        try:
            for sub in ("blobs/sha256", "partial", "layers", "images", "holds", "locks", "tmp"):
                os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ImageError(f"cannot create image store at {path}: {exc.strerror}") from exc
        self.tmp = TempSpace(os.path.join(path, "tmp"))
        self.tmp.clean()
        # holder -> fd holding a shared flock on its hold file (holds for this process only)
        self._process_holds: dict[str, int] = {}
        # image id -> (its blob file's identity, its verified config bytes)
        self._configs: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        # image id -> (its record's and config's stat keys, the Image's fields but its tags).
        self._parsed: dict[str, tuple[tuple[tuple[int, int, int] | None, ...],
                                      dict[str, Any]]] = {}
        # tags.json as last read: (its stat key, the names).
        self._tags_read: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # -- paths and locks -------------------------------------------------------------------

    def _p(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def blob_path(self, digest: str) -> str:
        """Where the blob ``digest`` lives (whether or not it is there)."""
        return self._p("blobs", "sha256", _hex(digest))

    def partial_path(self, digest: str) -> str:
        """Where an interrupted download of ``digest`` is kept for resuming."""
        return self._p("partial", _hex(digest))

    def _lock(self, name: str) -> FileLock:
        return FileLock(self._p("locks", name))

    def blob_lock(self, digest: str) -> FileLock:
        """The lock held while ``digest`` is being fetched or written."""
        return self._lock(f"blob-{_hex(digest)}")

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Keep :meth:`gc` out while the body adds blobs that nothing references yet."""
        with self._lock("gc").hold(shared=True):
            yield

    def _meta(self) -> contextlib.AbstractContextManager[None]:
        return self._lock("meta").hold()

    # -- blobs -----------------------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        """True if the blob ``digest`` is stored (complete: partial blobs are elsewhere)."""
        return os.path.exists(self.blob_path(digest))

    def read_blob(self, digest: str) -> bytes:
        """Read a (small) blob and check its digest.

        Raises:
            ImageError: not in the store.
            DigestMismatch: the stored bytes do not hash to ``digest``.
        """
        try:
            with open(self.blob_path(digest), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store {self.root}") from None
        actual = sha256_digest(data)
        if actual != digest:
            raise DigestMismatch(f"stored blob {digest} is corrupt (hashes to {actual})",
                                 expected=digest, actual=actual)
        return data

    def _config_blob(self, image_id: str) -> bytes:
        """The config blob of an image (its id is the config's digest), read and checked
        once per Store while its file stays the same (inode, size, mtime): listing,
        parents() and gc each read every config.

        Raises:
            ImageError, DigestMismatch: as :meth:`read_blob`.
        """
        key = _file_key(self.blob_path(image_id))
        if key is None:
            return self.read_blob(image_id)  # says what is missing
        cached = self._configs.get(image_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        data = self.read_blob(image_id)
        if len(self._configs) >= 4096:  # a bound for long-lived processes
            self._configs.clear()
        self._configs[image_id] = (key, data)
        return data

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading (not verified; see :meth:`verify`).

        Raises:
            ImageError: not in the store.
        """
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the store {self.root}") from None

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data`` as a blob; return its digest.

        Raises:
            DigestMismatch: ``expected`` is given and ``data`` hashes to something else.
        """
        digest = sha256_digest(data)
        if expected is not None and digest != expected:
            raise DigestMismatch(f"blob should be {expected} but hashes to {digest}",
                                 expected=expected, actual=digest)
        if not self.has_blob(digest):
            self.tmp.write_bytes(self.blob_path(digest), data)
        return digest

    def put_stream(self, stream: IO[bytes], expected: str | None = None) -> tuple[str, int]:
        """Copy ``stream`` into a blob (temp, hash, fsync, rename); return (digest, size).

        Raises:
            DigestMismatch: ``expected`` is given and the stream hashes to something else.
        """
        import hashlib  # here: reading records (ps, images) needs no hashing

        tmp = self.tmp.name("blob")
        h, size = hashlib.sha256(), 0
        try:
            with open(tmp, "xb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = "sha256:" + h.hexdigest()
            if expected is not None and digest != expected:
                raise DigestMismatch(f"blob should be {expected} but hashes to {digest}",
                                     expected=expected, actual=digest)
            self.commit_file(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return digest, size

    def commit_file(self, path: str, digest: str) -> None:
        """Rename a complete, fsynced, verified file into place as blob ``digest``."""
        final = self.blob_path(digest)
        os.rename(path, final)
        fsync_dir(os.path.dirname(final))

    # -- image records and tags ------------------------------------------------------------

    def _tags(self) -> dict[str, str]:
        """The names (a copy the caller may change), read again only once ``tags.json`` is
        another file (every write renames a new one into place) or changed. A file written
        in the last 100 ms is read each time: a new one can reuse the inode number of the
        one it replaced, and timestamps are coarse (a few ms)."""
        path = self._p("tags.json")
        key = _file_key(path)
        read = self._tags_read
        if key is not None and read is not None and read[0] == key:
            return dict(read[1])
        try:
            with open(path, "rb") as f:
                key = _stat_key(os.fstat(f.fileno()))  # (the very file read)
                data = load_json(f.read(), f"{self.root}/tags.json")
        except FileNotFoundError:
            return {}
        tags = {str(k): str(v) for k, v in data.items()}
        if time.time_ns() - key[2] > 100_000_000:
            self._tags_read = (key, tags)
        return dict(tags)

    def _write_tags(self, tags: dict[str, str]) -> None:
        self.tmp.write_bytes(self._p("tags.json"), json.dumps(tags, indent=1,
                                                               sort_keys=True).encode())

    def _record_path(self, image_id: str) -> str:
        return self._p("images", _hex(image_id) + ".json")

    def _read_record(self, image_id: str) -> dict[str, Any]:
        try:
            with open(self._record_path(image_id), "rb") as f:
                return load_json(f.read(), f"image record {image_id}")
        except FileNotFoundError:
            raise ImageError(f"image {image_id} is not in the store {self.root}") from None

    def _record_ids(self) -> list[str]:
        return ["sha256:" + n[:-5] for n in os.listdir(self._p("images"))
                if n.endswith(".json") and len(n) == 69]

    def commit_image(self, manifest: bytes, media_type: str | None = None, *,
                     tags: Iterable[Reference] = (), index: bytes | None = None,
                     parent: str | None = None) -> Image:
        """Record an image whose manifest, config and layer blobs are stored; tag it.

        The manifest (and the index it came from, if any) are stored as blobs too. Callers
        hold :meth:`using` across fetching the blobs and this call. ``parent``: the id of
        the image this one was made from (a commit's base, a build step's input), which
        :meth:`parents` reports.

        Raises:
            ConfigError: a name in ``tags`` carries a digest that is neither the manifest's
                nor the index's.
            ImageError: the manifest is malformed or a blob it names is missing.
        """
        man = parse_manifest(manifest, media_type)
        for d in (man.config, *man.layers):
            if not self.has_blob(d.digest):
                raise ImageError(f"cannot record image: blob {d.digest} is missing")
        parse_config_blob(self.read_blob(man.config.digest))
        # A name with a digest is kept only where the digest is this content's own address.
        own = {sha256_digest(manifest)} | ({sha256_digest(index)} if index is not None else set())
        tags = list(tags)
        for ref in tags:
            if ref.digest is not None and ref.digest not in own:
                raise ConfigError(f"cannot name image {man.config.digest} {ref}: its manifest "
                                  f"is {sha256_digest(manifest)}, and a digest is never given, "
                                  "only checked")
        manifest_digest = self.put_bytes(manifest)
        record: dict[str, Any] = {"manifest": manifest_digest, "media_type": man.media_type}
        if index is not None:
            record["index"] = self.put_bytes(index)
        if parent is not None and parent != man.config.digest:
            record["parent"] = parent
        image_id = man.config.digest
        with self._meta():
            self.tmp.write_bytes(self._record_path(image_id), canonical_json(record))
            if tags:
                all_tags = self._tags()
                for ref in tags:
                    all_tags[str(ref)] = image_id
                self._write_tags(all_tags)
        return self._image(image_id)

    def _image(self, image_id: str, tags: dict[str, str] | None = None) -> Image:
        tags = self._tags() if tags is None else tags
        # Parsed once per Store while its record and config files stay the same (inode,
        # size, mtime; the manifest is a blob named by its digest): a container's create
        # and start each looked the image up more than once.
        keys = (_file_key(self._record_path(image_id)), _file_key(self.blob_path(image_id)))
        key = () if None in keys else keys
        cached = self._parsed.get(image_id)
        if key and cached is not None and cached[0] == key:
            fields = cached[1]
        else:
            record = self._read_record(image_id)
            manifest_digest = str(record["manifest"])
            man = parse_manifest(self.read_blob(manifest_digest),
                                 str(record.get("media_type")))
            config, platform, diff_ids, created = parse_config_blob(
                self._config_blob(image_id))
            if len(diff_ids) != len(man.layers):
                raise ImageError(f"image {image_id}: manifest lists {len(man.layers)} layers "
                                 f"but the config {len(diff_ids)} diff ids")
            fields = {"manifest_digest": manifest_digest,
                      "manifest_media_type": man.media_type, "config": config,
                      "platform": platform, "layers": man.layers, "diff_ids": diff_ids,
                      "created": created}
            if key:
                if len(self._parsed) >= 4096:  # a bound for long-lived processes
                    self._parsed.clear()
                self._parsed[image_id] = (key, fields)
        return Image(id=image_id, tags=tuple(sorted(t for t, i in tags.items() if i == image_id)),
                     **fields)

    def _resolve_id(self, ref: str | Reference | Image, tags: dict[str, str]) -> str:
        if isinstance(ref, Image):
            return ref.id
        if isinstance(ref, str):
            text = ref.removeprefix("sha256:")
            if len(text) == 64 and is_digest("sha256:" + text) and os.path.exists(
                    self._record_path("sha256:" + text)):
                return "sha256:" + text  # a whole id: its record says, no listing needed
            if _match.hex_string(text, 4, 64) and (ref.startswith("sha256:")
                                                          or len(text) >= 12):
                matches = [i for i in self._record_ids() if i[7:].startswith(text)]
                if len(matches) == 1:
                    return matches[0]
                if len(matches) > 1:
                    raise ImageError(f"image id prefix {ref!r} is ambiguous")
                if ref.startswith("sha256:"):
                    raise ImageError(f"no image with id {ref} in the store")
            ref = Reference.parse(ref)
        if ref.digest is not None:
            return self._by_digest(ref, tags)
        image_id = tags.get(str(ref))
        if image_id is None:
            raise ImageError(f"no image {ref} in the store {self.root}")
        return image_id

    def _by_digest(self, ref: Reference, tags: dict[str, str]) -> str:
        """The image whose manifest, or the index it was chosen from, is ``ref.digest``.

        A digest is a content address, so it is matched against content (the stored blob,
        whose hash is checked here), never looked up as a name: a name that claims a digest
        cannot point anywhere else.
        """
        digest = ref.digest
        assert digest is not None
        exact: list[str] = []
        via_index: list[str] = []
        for image_id in self._record_ids():
            with contextlib.suppress(ImageError):
                record = self._read_record(image_id)
                if record.get("manifest") == digest:
                    exact.append(image_id)
                elif record.get("index") == digest:
                    via_index.append(image_id)
        found = exact or via_index
        if not found:
            raise ImageError(f"no image {ref} in the store {self.root}")
        self.read_blob(digest)  # DigestMismatch unless the stored bytes hash to it
        if len(found) == 1:
            return found[0]
        # One index, several platforms pulled from it: the one pulled under this very name.
        named = tags.get(str(ref))
        if named in found:
            return named
        raise ImageError(f"{ref} is an index of which the store holds {len(found)} platforms: "
                         "give the image id")

    def get(self, ref: str | Reference | Image) -> Image:
        """Look up an image by reference (``busybox``), id (``sha256:...``) or id prefix.

        A reference with a digest (``busybox@sha256:...``) finds only the image whose stored
        manifest (or the index it was chosen from) hashes to that digest, whatever names
        the store holds.

        Raises:
            ConfigError: ``ref`` is not a valid reference.
            ImageError: no such image in the store.
            DigestMismatch: the stored manifest of a digest reference is corrupt.
        """
        tags = self._tags()
        return self._image(self._resolve_id(ref, tags), tags)

    def images(self) -> list[Image]:
        """Every image recorded in the store (tagged or held), oldest first."""
        tags = self._tags()
        out = []
        for image_id in self._record_ids():
            with contextlib.suppress(ImageError):  # removed by a concurrent rmi
                out.append(self._image(image_id, tags))
        return sorted(out, key=lambda i: (i.created or "", i.id))

    def tag(self, image: str | Reference | Image, ref: str | Reference) -> Image:
        """Give ``image`` the (additional) name ``ref``; an existing ``ref`` moves.

        Raises:
            ConfigError: ``ref`` is not a valid reference, or carries a digest (a digest is
                the content's own address: never given, only checked).
            ImageError: ``image`` is not in the store.
        """
        new = name_to_give(ref, "tag")
        with self._meta():
            tags = self._tags()
            image_id = self._resolve_id(image, tags)
            tags[str(new)] = image_id
            self._write_tags(tags)
        return self.get(image_id)

    def rmi(self, ref: str | Reference | Image, *, force: bool = False) -> list[str]:
        """Remove a name, and the image record once no name and no holder is left.

        :meth:`remove` without pruning parents; returns the names removed.

        Raises:
            ImageError: as :meth:`remove`.
        """
        return list(self._remove(ref, force=force, prune=False, keep_last_name=False).untagged)

    def remove(self, ref: str | Reference | Image, *, force: bool = False,
               prune: bool = True) -> Removed:
        """Remove a name, and the image record once no name and no holder is left, as
        ``docker rmi`` does.

        ``ref`` as a name removes that name only; as an id (or an Image) every name of the
        image. With ``prune`` (Docker's default; ``--no-prune`` turns it off) a deleted image's
        untagged parents that no other image, name or holder keeps are deleted too (the step
        images of a build). Blobs and layers are freed by :meth:`gc`.

        Raises:
            ImageError: no such image.
            ImageInUseError: the image is held (by a container or a sandbox) and ``force`` is
                false, while an id or the image's last name was given. With ``force`` the
                names go and the image stays while it is held.
        """
        return self._remove(ref, force=force, prune=prune, keep_last_name=True)

    def _remove(self, ref: str | Reference | Image, *, force: bool, prune: bool,
                keep_last_name: bool) -> Removed:
        by_id = isinstance(ref, Image) or (isinstance(ref, str) and (
            ref.startswith("sha256:") or _match.hex_string(ref, 12, 64)))
        with self._meta():
            tags = self._tags()
            image_id = self._resolve_id(ref, tags)
            holds = self._all_holds()
            holders = sorted(h for h, i in holds.items() if i == image_id)
            if by_id and holders and not force:
                raise ImageInUseError(f"image {image_id} is in use by {', '.join(holders)}")
            if by_id:
                removed = [t for t, i in tags.items() if i == image_id]
            else:
                key = str(ref if isinstance(ref, Reference) else Reference.parse(str(ref)))
                if key not in tags:  # a digest found by content, not under this name
                    raise ImageError(f"no image name {key} in the store {self.root}")
                removed = [key]
                last = not any(i == image_id for t, i in tags.items() if t != key)
                if keep_last_name and last and holders and not force:
                    raise ImageInUseError(
                        f"unable to remove the name {key} (must force): {holders[0]} uses "
                        f"its image {image_id[7:19]}")
            for t in removed:
                del tags[t]
            self._write_tags(tags)
            deleted: list[str] = []
            if image_id not in tags.values() and not holders:
                parent = self._read_record(image_id).get("parent")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._record_path(image_id))
                deleted.append(image_id)
                if prune:
                    deleted += self._prune_parents(
                        image_id, parent if isinstance(parent, str) else None,
                        set(tags.values()) | set(holds.values()))
        from isolate.image._reports import Removed

        return Removed(tuple(removed), tuple(deleted))

    def _prune_parents(self, image_id: str, recorded: str | None, kept: set[str]) -> list[str]:
        """Delete the chain of parents of ``image_id`` (just removed; ``recorded``: the parent
        its record named) while each is kept by nothing (``kept``: the ids that names and
        holds keep) and is the parent of no image left; the meta lock is held. Returns the
        ids deleted."""
        parents = self.parents(extra={image_id: recorded})
        children: dict[str, int] = {}
        for child, of in parents.items():
            if child != image_id:
                children[of] = children.get(of, 0) + 1
        deleted = []
        parent = parents.get(image_id)
        while parent is not None and parent not in kept and not children.get(parent):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._record_path(parent))
            deleted.append(parent)
            up = parents.get(parent)
            if up is not None:
                children[up] -= 1
            parent = up
        return deleted

    def parents(self, *, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """Each recorded image's parent: image id -> the id of the image it was made from.

        The parent :meth:`commit` (or ``commit_image(parent=)``) recorded, where it is still
        in the store; else (pulled and imported images carry none, as BuildKit's) the
        recorded image whose history and layers are the longest proper beginning of its own,
        as the step images of a build are of its result. ``extra``: ids whose records were
        just removed (but whose blobs are still here), with their recorded parents, included
        as children.
        """
        records = set(self._record_ids())
        recorded: dict[str, str] = {}
        entries: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        extra = extra or {}
        for image_id in [*records, *extra]:
            parent: object = extra.get(image_id)
            if image_id in records:
                with contextlib.suppress(ImageError):
                    parent = self._read_record(image_id).get("parent")
            if isinstance(parent, str) and parent in records:
                recorded[image_id] = parent
                continue
            try:
                config = load_json(self._config_blob(image_id), f"image config {image_id}")
            except ImageError:
                continue
            raw = config.get("history")
            rootfs = config.get("rootfs")
            diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
            if not isinstance(raw, list) or not raw or not isinstance(diff_ids, list):
                continue
            entries[image_id] = (tuple(json.dumps(h, sort_keys=True) for h in raw),
                                 tuple(str(d) for d in diff_ids))
        by_history: dict[tuple[str, ...], list[str]] = {}
        for image_id, (history, _) in entries.items():
            if image_id in records:
                by_history.setdefault(history, []).append(image_id)
        out: dict[str, str] = dict(recorded)
        for image_id, (history, diff_ids) in entries.items():
            for n in range(len(history) - 1, 0, -1):
                found = [p for p in by_history.get(history[:n], ())
                         if p != image_id and diff_ids[:len(entries[p][1])] == entries[p][1]]
                if found:
                    out[image_id] = min(found)
                    break
        return out

    def intermediates(self) -> set[str]:
        """The ids of untagged images that are the parent of another image (a build's step
        images): ``docker images`` leaves them out unless ``-a``."""
        tagged = set(self._tags().values())
        return {p for p in self.parents().values() if p not in tagged}

    # -- holds (containers keep their image) -----------------------------------------------

    def hold(self, image: str | Reference | Image, holder: str, *,
             for_process: bool = False, durable: bool = True) -> None:
        """Record that ``holder`` (e.g. a container id) uses ``image``: gc and rmi keep it.

        A hold lasts until :meth:`release`. With ``for_process=True`` it also ends when this
        process does (a sandbox's hold): the hold file is kept under a lock that dies with the
        process, so the hold of a SIGKILLed process is dropped by the next :meth:`gc` or
        :meth:`rmi`, in any pid namespace that shares the store. ``durable=False`` writes
        it without an fsync, for a holder that a crash of the machine ends anyway: a crash
        may then leave the hold, empty or whole, without its holder, and the holder's layer
        releases it (see :meth:`holders`).

        Raises:
            ConfigError: ``holder`` is not a plain name.
            ImageError: no such image.
        """
        if not isinstance(holder, str) or not _match.holder_name(holder):
            raise ConfigError(f"Store.hold holder: {holder!r} is not a plain name")
        image_id = self.get(image).id
        with self._meta():
            if not for_process:
                self.tmp.write_bytes(self._p("holds", holder), image_id.encode(),
                                     durable=durable)
                return
            with self.tmp.writer(self._p("holds", holder)) as f:
                f.write(f"{image_id} process\n".encode())
                # Locked before it is renamed into place: never seen unlocked while we live.
                lock_fd = os.dup(f.fileno())
                try:
                    fcntl.flock(lock_fd, fcntl.LOCK_SH)
                except BaseException:
                    os.close(lock_fd)
                    raise
            old = self._process_holds.pop(holder, None)
            self._process_holds[holder] = lock_fd
            if old is not None:
                os.close(old)

    def release(self, holder: str) -> None:
        """Forget ``holder``'s hold (no error if it had none)."""
        if not isinstance(holder, str) or not _match.holder_name(holder):
            raise ConfigError(f"Store.release holder: {holder!r} is not a plain name")
        with self._meta():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._p("holds", holder))
            lock_fd = self._process_holds.pop(holder, None)
            if lock_fd is not None:
                os.close(lock_fd)

    def holders(self, prefix: str = "") -> list[str]:
        """The holders (see :meth:`hold`) whose names start with ``prefix``, as their hold
        files name them (one whose file a crash left empty among them)."""
        return sorted(name for name in os.listdir(self._p("holds")) if name.startswith(prefix))

    def _all_holds(self) -> dict[str, str]:
        """holder -> image id, leaving out (and removing) holds of processes that died."""
        out = {}
        for name in os.listdir(self._p("holds")):
            path = self._p("holds", name)
            with contextlib.suppress(FileNotFoundError), open(path, "rb") as f:
                words = f.read().decode("ascii", "replace").split()
                if not words:
                    continue
                if words[1:] == ["process"] and name not in self._process_holds:
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        pass  # its process (or a fork of it) lives
                    else:
                        os.unlink(path)  # its process is gone: no one can release it now
                        continue
                out[name] = words[0]
        return out

    def _holders(self, image_id: str) -> list[str]:
        return sorted(h for h, i in self._all_holds().items() if i == image_id)

    # -- creating images locally -----------------------------------------------------------

    def _new_image(self, layers: list[tuple[str, str, int, str]], ref: str | Reference | None,
                   config: ImageConfig | None, platform: Platform | str | None,
                   created_by: str, *, history: list[dict[str, Any]] | None = None,
                   author: str | None = None, comment: str | None = None,
                   parent: str | None = None) -> Image:
        """Write config + OCI manifest for stored layer blobs (diff_id, digest, size, type).

        The config's history is ``history`` (the base's, for a commit) plus one entry for the
        last layer, made by ``created_by``.
        """
        plat = host_platform() if platform is None else Platform.parse(platform)
        tags = [name_to_give(ref, "image name")] if ref else []
        created = _now()
        entry: dict[str, Any] = {"created": created, "created_by": created_by}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        config_blob = build_config_blob(config or ImageConfig(), plat,
                                        [layer[0] for layer in layers], created,
                                        [*(history or []), entry], author=author)
        config_digest = self.put_bytes(config_blob)
        manifest = canonical_json({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                       "size": len(config_blob)},
            "layers": [{"mediaType": mt, "digest": dg, "size": sz}
                       for _diff, dg, sz, mt in layers],
        })
        return self.commit_image(manifest, OCI_MANIFEST, tags=tags, parent=parent)

    def from_directory(self, directory: str | os.PathLike[str], ref: str | Reference | None,
                       *, config: ImageConfig | None = None,
                       platform: Platform | str | None = None,
                       maps: IdMaps | None = None) -> Image:
        """Make a one-layer image of the tree at ``directory`` (gzip layer); tag it ``ref``.
        ``platform`` is what the image is recorded for (default: the host's). Owners are
        recorded as the user namespace of ``maps`` sees them (as :meth:`commit` does).

        Raises:
            ConfigError: ``directory`` is not a directory, or ``ref`` is malformed or carries
                a digest.
            IsolateOSError: reading the tree failed.
            NamespaceError, UnsupportedError: as for :meth:`layer_dirs`.
        """
        path = os.fspath(directory)
        if not os.path.isdir(path):
            raise ConfigError(f"from_directory: {path!r} is not a directory")
        if ref is not None:
            ref = name_to_give(ref, "from_directory")
        with self.using():
            layer = self._pack(path, diff=False, compression="gzip", maps=maps)
            return self._new_image([(layer.diff_id, layer.digest, layer.size,
                                     layer.media_type)], ref, config, platform,
                                   f"isolate from_directory {os.path.basename(path)}")

    def import_tarball(self, path: str | os.PathLike[str], ref: str | Reference | None, *,
                       config: ImageConfig | None = None,
                       platform: Platform | str | None = None) -> Image:
        """Make a one-layer image from a root filesystem tarball (plain, gzip or zstd; bzip2
        and xz are stored decompressed) for ``platform`` (default: the host's).

        The tarball becomes the layer blob as it is, once read through with
        :func:`isolate.fs.layers.check` (which also gives its diff id): what extraction would
        refuse is refused here, and no image is made.

        Raises:
            ConfigError: ``ref`` or ``platform`` is malformed, or ``ref`` carries a digest.
            ImageError: the file is missing or not a regular file.
            CorruptLayer, UnsafeArchive: not a tar, or one extraction would refuse.
            UnsupportedError: zstd data and no zstd support.
        """
        from isolate.image.archive import add_layer_file

        if ref is not None:
            ref = name_to_give(ref, "import")
        with self.using():
            layer = add_layer_file(self, os.fspath(path))
            return self._new_image([layer], ref, config, platform,
                                   f"isolate import {os.path.basename(os.fspath(path))}")

    def commit(self, base: str | Reference | Image | None, upperdir: str | os.PathLike[str],
               ref: str | Reference | None, *, config: ImageConfig | None = None,
               compression: str | None = "gzip", author: str | None = None,
               message: str | None = None, created_by: str | None = None,
               changes: Mapping[str, Any] | None = None,
               maps: IdMaps | None = None) -> Image:
        """Make an image of ``base``'s layers plus one layer holding the changes in
        ``upperdir`` (an overlay upper dir, as a container left it): ``docker commit``.

        Owners are recorded as the user namespace of ``maps`` sees them (default: the
        caller's, as for :meth:`layer_dirs`): for subordinate maps a helper in such a
        namespace writes the layer, so what uid 1000 wrote in a rootless sandbox is uid
        1000's in the image, what its root wrote root's, and files only their owner may read
        are read too.

        Deletions (0/0 character devices) and replaced directories (``overlay.opaque``)
        become OCI whiteouts (see :func:`isolate.fs.layers.diff`). ``config`` defaults to
        the base image's; ``changes`` then overrides fields of it by name, as
        ``attrs.evolve`` would (``{"cmd": ["sh"], "env": [...]}``; ``docker commit
        --change`` in Python terms). ``base=None`` makes a one-layer image.

        The new image's history is the base's whole history (empty-layer entries included,
        so ``podman history`` and ``umoci stat`` still line up with the layers) plus one entry
        for the new layer: ``created_by`` (default ``"isolate commit"``), ``author`` and
        ``message`` (its ``comment``). ``author`` is also the config's ``author``. A base
        whose history lists fewer layers than it has gets entries for the missing ones first.

        Raises:
            ConfigError: ``upperdir`` is not a directory, ``ref`` is malformed or carries
                a digest, or ``changes`` names a field ImageConfig does not have or gives it
                a bad value.
            ImageError: ``base`` is not in the store.
            UnsupportedError: the upper dir uses redirect_dir/metacopy; or, with subordinate
                maps, newuidmap is missing.
            IsolateOSError: reading the tree failed.
            NamespaceError: with subordinate maps, newuidmap refused them.
        """
        path = os.fspath(upperdir)
        if not os.path.isdir(path):
            raise ConfigError(f"commit: {path!r} is not a directory")
        if ref is not None:
            ref = name_to_give(ref, "commit")
        if compression not in (None, "gzip", "zstd"):
            raise ConfigError(f"commit compression: {compression!r} is not None, 'gzip' or "
                              "'zstd'")
        with self.using():
            img = None if base is None else (base if isinstance(base, Image) else self.get(base))
            layers = [] if img is None else [
                (diff_id, d.digest, d.size, d.media_type)
                for diff_id, d in zip(img.diff_ids, img.layers, strict=True)]
            layer = self._pack(path, diff=True, compression=compression, maps=maps)
            layers.append((layer.diff_id, layer.digest, layer.size, layer.media_type))
            if config is None and img is not None:
                config = img.config
            if changes:
                config = _changed(config or ImageConfig(), changes)
            platform: Platform | str = img.platform if img is not None else host_platform()
            history = self._history(img) if img is not None else []
            return self._new_image(layers, ref, config, platform,
                                   created_by or "isolate commit", history=history,
                                   author=author, comment=message,
                                   parent=img.id if img is not None else None)

    def put_layer(self, path: str | os.PathLike[str], *, changes: bool = True,
                  compression: str | None = "gzip", maps: IdMaps | None = None) -> Layer:
        """Store the layer blob of the tree at ``path`` and return it (the blob is kept by
        :meth:`gc` only once an image references it: hold :meth:`using` until then).

        ``changes``: ``path`` is an overlay upper dir and the layer holds its changes, as
        :meth:`commit` records them (deletions as whiteouts); else the whole tree, as
        :meth:`from_directory` packs it. Owners are recorded as the user namespace of ``maps``
        sees them (default: the caller's; see :meth:`commit`).

        Raises:
            ConfigError: ``path`` is not a directory, or a bad ``compression``.
            UnsupportedError: the upper dir uses redirect_dir/metacopy; newuidmap is missing.
            IsolateOSError: reading the tree failed.
            NamespaceError: newuidmap refused the maps.
        """
        tree = os.fspath(path)
        if not os.path.isdir(tree):
            raise ConfigError(f"put_layer: {tree!r} is not a directory")
        if compression not in (None, "gzip", "zstd"):
            raise ConfigError(f"layer compression: {compression!r} is not None, 'gzip' or "
                              "'zstd'")
        return self._pack(tree, diff=changes, compression=compression, maps=maps)

    def _pack(self, path: str, *, diff: bool, compression: str | None,
              maps: IdMaps | None) -> Layer:
        """Write the layer of the tree ``path`` (its changes, with ``diff``) as a blob: by a
        helper in the user namespace of ``maps`` (a rootless caller's, even when they map its
        own ids only: its files are then root's, as that namespace sees them), else as the
        caller."""
        maps = _caller_maps(maps)
        tmp = self.tmp.name("layer")
        try:
            if maps is not None:
                from isolate._mapped import MappedWorker

                with MappedWorker(maps) as worker:
                    layer = worker.pack(path, tmp, diff=diff, compression=compression)
            else:
                layer = pack_layer(path, tmp, diff=diff, compression=compression)
            if not self.has_blob(layer.digest):
                self.commit_file(tmp, layer.digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return layer

    def _history(self, img: Image) -> list[dict[str, Any]]:
        """``img``'s config history, with entries added for layers it does not account for."""
        raw = load_json(self._config_blob(img.id), f"image config {img.id}").get("history")
        history = [dict(h) for h in raw if isinstance(h, dict)] if isinstance(raw, list) else []
        missing = len(img.layers) - sum(1 for h in history if not h.get("empty_layer"))
        filler = {"created": img.created} if img.created else {}
        return [*(dict(filler) for _ in range(max(0, missing))), *history]

    # -- extracted layers ------------------------------------------------------------------

    def layer_dirs(self, image: str | Reference | Image, *,
                   maps: IdMaps | None = None) -> list[str]:
        """The extracted layer directories of ``image``, lowest first, extracting on demand.

        Each is a complete tree with whiteouts as overlayfs expects them, ready to be stacked
        as overlay lower dirs. Extraction goes to a temp dir and is renamed into place only
        when complete and its diff id verified.

        ``maps``: the maps of the user namespace the layers are for (a rootless sandbox's or
        container's; default: the caller's own, :func:`isolate.namespaces.rootless_maps` for
        an ordinary user, none for root). When they map more than one id each layer is
        extracted by a helper that is root of a user namespace with those maps, so every
        owner in the image is kept as that namespace sees it (1000:1000 in the image is
        1000:1000 inside), into a cache of those maps alone: layers extracted under one
        mapping are never handed out for another. Otherwise layers are extracted as the
        caller (as an ordinary user with a map of one id, every owner becomes the caller).

        Raises:
            ImageError: the image or a layer blob is missing; the helper died.
            DigestMismatch: a layer does not unpack to its diff id.
            UnsafeArchive, CorruptLayer: a hostile or broken layer (from :mod:`isolate.fs`).
            IsolateOSError: extracting failed, such as (EINVAL) an owner ``maps`` does not
                map; the message names it.
            NamespaceError, UnsupportedError: with ``maps``, the helper's user namespace
                could not be made (newuidmap refused the maps, or is missing).
        """
        img = image if isinstance(image, Image) else self.get(image)
        out = []
        maps = _caller_maps(maps)
        mapped = maps is not None and maps.subordinate
        if not mapped:
            with self.using():
                return [self._extract(desc, diff_id)
                        for desc, diff_id in zip(img.layers, img.diff_ids, strict=True)]
        with self.using(), contextlib.ExitStack() as stack:
            worker: list[MappedWorker] = []

            def helper() -> MappedWorker:
                from isolate._mapped import MappedWorker

                if not worker:
                    assert maps is not None
                    worker.append(stack.enter_context(MappedWorker(maps)))
                return worker[0]

            assert maps is not None
            for desc, diff_id in zip(img.layers, img.diff_ids, strict=True):
                out.append(self._extract_mapped(desc, diff_id, maps, helper))
        return out

    def layer_path(self, diff_id: str, *, maps: IdMaps | None = None) -> str:
        """Where the layer with ``diff_id`` is (or would be) extracted (for ``maps``, as
        :meth:`layer_dirs` takes them)."""
        maps = _caller_maps(maps)
        if maps is not None and maps.subordinate:
            return self._p("idmapped", maps.key, "layers", _hex(diff_id))
        return self._p("layers", _hex(diff_id))

    def _extract(self, desc: Descriptor, diff_id: str) -> str:
        final = self._p("layers", _hex(diff_id))
        if os.path.isdir(final):
            return final
        with self._lock(f"layer-{_hex(diff_id)}").hold():
            if os.path.isdir(final):  # another process extracted it while we waited
                return final
            if not self.has_blob(desc.digest):
                raise ImageError(f"layer blob {desc.digest} is not in the store")
            unpack_layer(self.blob_path(desc.digest), self.tmp.name("layer"), final, diff_id,
                         desc.digest)
        return final

    def _mapped_root(self, maps: IdMaps) -> str:
        """``idmapped/<key>/`` for ``maps``, made (with its ``maps.json``) when missing."""
        base = self._p("idmapped", maps.key)
        if not os.path.isfile(os.path.join(base, "maps.json")):
            for sub in ("layers", "tmp"):
                os.makedirs(os.path.join(base, sub), mode=0o700, exist_ok=True)
            record = {"uid_map": [m.line() for m in maps.uid_map],
                      "gid_map": [m.line() for m in maps.gid_map]}
            self.tmp.write_bytes(os.path.join(base, "maps.json"), canonical_json(record))
        return base

    def _extract_mapped(self, desc: Descriptor, diff_id: str, maps: IdMaps,
                        helper: Callable[[], MappedWorker]) -> str:
        final = self.layer_path(diff_id, maps=maps)
        if os.path.isdir(final):
            return final
        base = self._mapped_root(maps)
        with self._lock(f"layer-{maps.key}-{_hex(diff_id)}").hold():
            if os.path.isdir(final):
                return final
            if not self.has_blob(desc.digest):
                raise ImageError(f"layer blob {desc.digest} is not in the store")
            # Temp dirs of a helper that died hold files of the mapped owners: only a helper
            # removes them, so each extraction takes the leftovers along.
            space = TempSpace(os.path.join(base, "tmp"))
            helper().unpack(self.blob_path(desc.digest), space.name("layer"), final, diff_id,
                            desc.digest, stale=space.leftovers())
        return final

    # -- checking, gc, usage ---------------------------------------------------------------

    def verify(self, image: str | Reference | Image) -> None:
        """Re-hash every blob of ``image``.

        Raises:
            DigestMismatch: a stored blob is corrupt (the message names it).
            ImageError: a blob is missing.
        """
        img = image if isinstance(image, Image) else self.get(image)
        for desc in (*img.layers,):
            with self.open_blob(desc.digest) as f:
                reader = HashingReader(f)
                reader.drain()
            if reader.digest != desc.digest:
                raise DigestMismatch(f"stored layer blob {desc.digest} is corrupt (hashes to "
                                     f"{reader.digest})", expected=desc.digest,
                                     actual=reader.digest)

    def _live(self, keep: Iterable[str] = ()) -> tuple[set[str], set[str], set[str]]:
        """(image ids, blob hexes, layer hexes) that tags, holds or ``keep`` keep alive, with
        the parents of those images (as ``docker image prune`` keeps a build's step images)."""
        roots = set(self._tags().values()) | set(self._all_holds().values()) | set(keep)
        parents = self.parents()
        for image_id in list(roots):
            parent = parents.get(image_id)
            while parent is not None and parent not in roots:
                roots.add(parent)
                parent = parents.get(parent)
        blobs: set[str] = set()
        layers: set[str] = set()
        for image_id in roots:
            try:
                record = self._read_record(image_id)
                img = self._image(image_id, {})
            except ImageError:
                continue
            blobs.update(_hex(d) for d in (image_id, img.manifest_digest,
                                           *(x.digest for x in img.layers)))
            if record.get("index"):
                blobs.add(_hex(str(record["index"])))
            layers.update(_hex(d) for d in img.diff_ids)
        return roots, blobs, layers

    def _dead(self, keep: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
        """(kind, path) of everything gc would remove."""
        roots, blobs, layers = self._live(keep)
        for image_id in self._record_ids():
            if image_id not in roots:
                yield "image", self._record_path(image_id)
        for name in os.listdir(self._p("blobs", "sha256")):
            if name not in blobs:
                yield "blob", self._p("blobs", "sha256", name)
        for name in os.listdir(self._p("partial")):
            yield "partial", self._p("partial", name)
        for name in os.listdir(self._p("layers")):
            if name not in layers:
                yield "layer", self._p("layers", name)
        for base in self._mapped_roots():
            for name in _listdir(os.path.join(base, "layers")):
                if name not in layers:
                    yield "mapped layer", os.path.join(base, "layers", name)

    def _mapped_roots(self) -> list[str]:
        """The ``idmapped/<key>/`` caches (of layers extracted for an id map)."""
        return [self._p("idmapped", key) for key in _listdir(self._p("idmapped"))]

    def _remove_mapped(self, base: str, paths: list[str]) -> None:
        """Remove ``paths`` of the id-mapped cache ``base`` (and its dead helpers' temp
        dirs) in a user namespace with its maps: only there may the caller remove what the
        mapped owners own."""
        from isolate._mapped import MappedWorker
        from isolate.namespaces import IdMaps

        paths = paths + TempSpace(os.path.join(base, "tmp")).leftovers()
        if not paths:
            return
        try:
            with open(os.path.join(base, "maps.json"), "rb") as f:
                record = load_json(f.read(), f"{base}/maps.json")
            maps = IdMaps(record["uid_map"], record["gid_map"])
        except (OSError, KeyError, TypeError, IsolateError) as exc:
            raise ImageError(f"cannot tell the id maps of {base} ({exc}); remove it as "
                             "root") from exc
        try:
            with MappedWorker(maps) as worker:
                worker.remove(paths)
        except IsolateError as exc:
            raise ImageError(
                f"cannot remove {len(paths)} layer(s) extracted for the id maps of {base} "
                f"(uids {', '.join(record['uid_map'])}): {exc}; if your subordinate ids "
                "changed since, remove them as root") from exc

    def gc(self, *, keep: Iterable[str] = ()) -> GcReport:
        """Remove image records, blobs, layers and partial downloads nothing references.

        An image is referenced by a tag or a :meth:`hold`; the image ids in ``keep`` are kept
        too (``image prune --filter`` keeps the dangling images its filter leaves out). Waits
        for running pulls, imports and extractions to finish (they hold the gc lock shared).

        Layers extracted for an id map (:meth:`layer_dirs` with ``maps``) are removed by a
        helper in a user namespace with those maps.

        Raises:
            ImageError: the store's lock cannot be taken; layers extracted for an id map
                could not be removed (the rest is removed first; the message says which).
        """
        counts = {"image": 0, "blob": 0, "layer": 0, "partial": 0}
        image_ids: list[str] = []
        freed = 0
        failures = []
        with self._lock("gc").hold(), self._meta():
            self.tmp.clean()
            mapped: dict[str, list[str]] = {base: [] for base in self._mapped_roots()}
            for kind, path in list(self._dead(keep)):
                freed += _tree_bytes(path, set()) if os.path.isdir(path) else os.lstat(
                    path).st_size
                if kind == "mapped layer":
                    mapped[os.path.dirname(os.path.dirname(path))].append(path)
                    kind = "layer"
                else:
                    remove_tree(path)
                counts[kind] += 1
                if kind == "image":
                    image_ids.append("sha256:" + os.path.basename(path).removesuffix(".json"))
            for base, paths in mapped.items():
                try:
                    self._remove_mapped(base, paths)
                except ImageError as exc:
                    failures.append(str(exc))
                    counts["layer"] -= len(paths)
            # No one holds a blob/layer lock while we hold gc exclusively: unlink them safely.
            for name in os.listdir(self._p("locks")):
                if name.startswith(("blob-", "layer-")):
                    os.unlink(self._p("locks", name))
        if failures:
            raise ImageError("gc removed what it could, but: " + "; ".join(failures))
        from isolate.image._reports import GcReport

        return GcReport(counts["image"], counts["blob"], counts["layer"], freed,
                        tuple(image_ids))

    def df(self) -> DiskUsage:
        """Count images, blobs and layers and the bytes they use."""
        seen: set[tuple[int, int]] = set()
        blob_dir, layer_dir = self._p("blobs", "sha256"), self._p("layers")
        blob_names, layer_names = os.listdir(blob_dir), os.listdir(layer_dir)
        blob_bytes = sum(os.lstat(os.path.join(blob_dir, n)).st_size for n in blob_names)
        layer_bytes = _tree_bytes(layer_dir, seen)
        mapped = [os.path.join(base, "layers", name) for base in self._mapped_roots()
                  for name in _listdir(os.path.join(base, "layers"))]
        layer_bytes += sum(_tree_bytes(path, seen) for path in mapped)
        other = sum(_tree_bytes(self._p(d), seen) for d in ("partial", "tmp", "images"))
        reclaim = 0
        for kind, path in self._dead():
            if kind in ("blob", "partial"):
                reclaim += os.lstat(path).st_size
            elif kind in ("layer", "mapped layer"):
                reclaim += _tree_bytes(path, set())
        from isolate.image._reports import DiskUsage

        return DiskUsage(images=len(self._record_ids()), blobs=len(blob_names),
                         blob_bytes=blob_bytes, layers=len(layer_names) + len(mapped),
                         layer_bytes=layer_bytes, other_bytes=other, reclaimable=reclaim)

    # -- registry and archives -------------------------------------------------------------

    def pull(self, ref: str | Reference, *, platform: Platform | str | None = None,
             insecure: Iterable[str] = (), progress: Callable[[Any], None] | None = None,
             auth_file: str | None = None, max_workers: int = 4) -> Image:
        """Pull ``ref`` from its registry into the store and tag it; return the Image.

        From a multi-platform index the manifest for ``platform`` is taken (default: the
        host's, :func:`isolate.image.reference.host_platform`).

        Blobs already stored are not fetched again; a download a killed process left behind
        in ``partial/`` is resumed (HTTP Range) and the whole blob verified. ``progress`` is
        called (from worker threads) with :class:`isolate.image.registry.Progress` events.
        Plain HTTP is used only for loopback registries and hosts named in ``insecure``.
        Credentials come from ``auth_file`` or the Docker config (``$DOCKER_CONFIG`` or
        ``~/.docker/config.json``) as the Docker CLI finds them: ``credHelpers``, else
        ``credsStore``, else ``auths`` (see :mod:`isolate.image.credentials`); they are looked
        up only if the registry asks for them.

        Raises:
            ConfigError: bad reference or platform.
            ImageNotFound: the registry does not know the image or tag.
            Unauthorized: the registry refused our credentials (or asked for some we lack).
            RegistryUnreachable: the registry could not be reached.
            CredentialHelperError: the configured credential helper is missing, failed or
                hung.
            DigestMismatch: a manifest or blob did not hash to its digest.
            ImageError: no manifest for ``platform``, or another registry error.
        """
        from isolate.image.registry import pull_image

        r = ref if isinstance(ref, Reference) else Reference.parse(ref)
        plat = host_platform() if platform is None else Platform.parse(platform)
        return pull_image(self, r, platform=plat, insecure=tuple(insecure), progress=progress,
                          auth_file=auth_file, max_workers=max_workers)

    def push(self, image: str | Reference | Image, ref: str | Reference | None = None, *,
             insecure: Iterable[str] = (), progress: Callable[[Any], None] | None = None,
             auth_file: str | None = None) -> str:
        """Push ``image`` to ``ref`` (default: the image reference itself); return the
        manifest digest the registry stored.

        Raises:
            ConfigError: bad reference.
            ImageError: no such local image, or the registry refused.
            Unauthorized, RegistryUnreachable, CredentialHelperError: as for :meth:`pull`.
        """
        from isolate.image.registry import push_image

        img = image if isinstance(image, Image) else self.get(image)
        if ref is None:
            if isinstance(image, Image) or (isinstance(image, str) and image.startswith(
                    "sha256:")):
                raise ConfigError("Store.push: give a target reference to push an image id")
            ref = image if isinstance(image, Reference) else Reference.parse(str(image))
        r = ref if isinstance(ref, Reference) else Reference.parse(ref)
        return push_image(self, img, r, insecure=tuple(insecure), progress=progress,
                          auth_file=auth_file)

    def load(self, path: str | os.PathLike[str], ref: str | Reference | None = None, *,
             platform: Platform | str | None = None) -> list[Image]:
        """Import an OCI layout directory, an oci-archive or a docker-archive (auto-detected).

        Images are tagged with the names the archive carries. ``ref`` names the image of an
        archive holding one; for an archive of several it is a repository (``x/y``, no tag),
        under which each image keeps its own tag. An image that comes for several platforms
        (a nested multi-platform index, as ``skopeo copy --all`` and ``docker buildx`` write
        it) is loaded for ``platform`` only (default: the host's), as :meth:`pull` does.

        Returns the images loaded, each with the names *this load* gave it as its ``tags``
        (names it already had in the store are not listed; :meth:`get` has them all).

        Raises:
            ConfigError: a bad ``ref`` or ``platform``; ``ref`` carries a digest, or has a
                tag and the archive holds several images; or a name the archive carries claims
                a digest that is not its image's.
            ImageError: not a regular file or directory, not a recognised format, a broken
                archive, or no manifest for ``platform``.
            DigestMismatch: a blob does not hash to its digest.
            CorruptLayer, UnsafeArchive: a docker-archive layer extraction would refuse.
        """
        from isolate.image.archive import load

        has_tag = True
        if isinstance(ref, str):
            # Only a tag the caller wrote counts: "x/y" parses to x/y:latest.
            has_tag = ":" in ref.rsplit("/", 1)[-1].split("@", 1)[0]
        r = None if ref is None else name_to_give(ref, "load")
        plat = None if platform is None else Platform.parse(platform)
        with self.using():
            return load(self, os.fspath(path), r, ref_has_tag=has_tag, platform=plat)

    def save(self, ref: str | Reference | Image | list[str | Reference | Image],
             path: str | os.PathLike[str], format: str = "docker-archive") -> None:
        """Export images as ``docker-archive`` (a tar, as ``docker save`` writes), ``oci``
        (an OCI image layout directory) or ``oci-archive`` (that layout as a tar).

        An archive is written beside ``path`` and renamed over it when complete (or written
        straight into a device or pipe there, such as ``/dev/stdout``); a layout is made
        beside ``path`` and renamed to it. In OCI layouts each image's
        ``org.opencontainers.image.ref.name`` is its full reference
        (``docker.io/library/busybox:1``), so two images with one tag stay two names.

        Raises:
            ConfigError: unknown format, or an empty ``path``.
            ImageError: no such image; ``path`` is a directory (for an archive), a file or a
                non-empty directory (for ``oci``), in a directory that does not exist, or
                cannot be written (the errno's text in the message).
        """
        from isolate.image.archive import save

        refs = ref if isinstance(ref, list) else [ref]
        if format not in ("docker-archive", "oci", "oci-archive"):
            raise ConfigError(f"Store.save format: {format!r} is not 'docker-archive', 'oci' "
                              "or 'oci-archive'")
        save(self, refs, os.fspath(path), format)
