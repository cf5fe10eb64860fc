"""The image a build has made so far: layers, run config, history, as plain values.

Owns turning a build state into the OCI config blob and manifest (canonical JSON, so the same
state always has the same image id), recording it in the store, and reading a stored image
back as a state with every config field kept (``Healthcheck``, ``Shell``, ``OnBuild``... that
:class:`isolate.image.ImageConfig` does not model).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from isolate import _json as json
from isolate import _record
from isolate.errors import ImageError
from isolate.image.config import Image, parse_config_blob
from isolate.image.oci import OCI_CONFIG, OCI_MANIFEST, Descriptor, canonical_json, load_json
from isolate.image.reference import Platform, Reference
from isolate.image.store import Store

__all__ = ["EPOCH", "ImageState", "LayerRef"]

EPOCH = "1970-01-01T00:00:00Z"


@_record.record
class LayerRef:
    """A stored layer blob: its diff id (uncompressed digest), blob digest, size, media type."""

    diff_id: str
    digest: str
    size: int
    media_type: str

    def to_json(self) -> list[Any]:
        """As a JSON list (for the build cache)."""
        return [self.diff_id, self.digest, self.size, self.media_type]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> LayerRef:
        """From :meth:`to_json`'s list.

        Raises:
            ImageError: malformed.
        """
        try:
            diff_id, digest, size, media_type = data
            return cls(str(diff_id), str(digest), int(size), str(media_type))
        except (TypeError, ValueError):
            raise ImageError(f"malformed layer record {data!r}") from None


@_record.record(eq=False)
class ImageState:
    """An image under construction. ``config`` is the OCI ``config`` object (Env, Cmd,
    Healthcheck...), ``history`` the history entries, ``created`` the time of the newest one.
    Values are never changed in place: each step makes a new state."""

    platform: Platform
    layers: tuple[LayerRef, ...] = ()
    config: Mapping[str, Any] = _record.field(factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    author: str | None = None
    created: str | None = None

    def then(self, *, config: Mapping[str, Any], history: Mapping[str, Any] | None,
             layer: LayerRef | None = None, created: str | None = None,
             author: str | None = None) -> ImageState:
        """The state after one more step: its config, history entry and layer (if any)."""
        entry = dict(history) if history is not None else None
        when = created or self.created
        if entry is not None:
            if when:
                entry["created"] = when
            if layer is None:
                entry["empty_layer"] = True
            else:
                entry.pop("empty_layer", None)
        return ImageState(
            self.platform,
            self.layers + ((layer,) if layer is not None else ()),
            copy.deepcopy(dict(config)),
            self.history + ((entry,) if entry is not None else ()),
            author if author is not None else self.author,
            when,
        )

    def config_blob(self) -> bytes:
        """The OCI image config JSON (canonical: same state, same bytes, same id)."""
        doc: dict[str, Any] = {
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "created": self.created or EPOCH,
            "config": dict(self.config),
            "rootfs": {"type": "layers", "diff_ids": [la.diff_id for la in self.layers]},
            "history": [dict(h) for h in self.history],
        }
        if self.platform.variant:
            doc["variant"] = self.platform.variant
        if self.author:
            doc["author"] = self.author
        return canonical_json(doc)

    def manifest(self, config_blob: bytes, config_digest: str) -> bytes:
        """The OCI manifest naming ``config_blob`` and the layers."""
        return canonical_json({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                       "size": len(config_blob)},
            "layers": [{"mediaType": la.media_type, "digest": la.digest, "size": la.size}
                       for la in self.layers],
        })

    def commit(self, store: Store, tags: Iterable[Reference] = ()) -> Image:
        """Record this state as an image in ``store`` (its layer blobs must be there) and
        give it ``tags``. Callers hold :meth:`Store.using`.

        Raises:
            ImageError: a layer blob is missing.
        """
        blob = self.config_blob()
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        manifest = self.manifest(blob, digest)
        tags = list(tags)
        same = _recorded(store, digest, manifest, tags)
        if same is not None:
            return same  # a rebuild the cache answered: nothing to write
        store.put_bytes(blob)
        return store.commit_image(manifest, OCI_MANIFEST, tags=tags)

    def as_image(self) -> Image:
        """This state as an :class:`~isolate.image.Image` value that no store records: what
        a build step runs and reads (``Store.layer_dirs`` takes it, its layer blobs must be
        stored), without leaving an untagged image behind for each step as a record would."""
        blob = self.config_blob()
        config, platform, diff_ids, created = parse_config_blob(blob)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        manifest = self.manifest(blob, digest)
        return Image(id=digest, manifest_digest="sha256:" + hashlib.sha256(manifest).hexdigest(),
                     manifest_media_type=OCI_MANIFEST, config=config, platform=platform,
                     layers=tuple(Descriptor(la.media_type, la.digest, la.size)
                                  for la in self.layers),
                     diff_ids=diff_ids, created=created)

    def has_blobs(self, store: Store) -> bool:
        """Whether every layer blob is (still) in ``store``."""
        return all(store.has_blob(la.digest) for la in self.layers)

    def to_json(self) -> dict[str, Any]:
        """As a JSON object (for the build cache)."""
        return {"platform": str(self.platform), "layers": [la.to_json() for la in self.layers],
                "config": dict(self.config), "history": [dict(h) for h in self.history],
                "author": self.author, "created": self.created}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageState:
        """From :meth:`to_json`'s object.

        Raises:
            ImageError: malformed.
        """
        try:
            config = data.get("config") or {}
            history = data.get("history") or []
            if not isinstance(config, dict) or not isinstance(history, list):
                raise TypeError("config or history")
            return cls(Platform.parse(str(data["platform"])),
                       tuple(LayerRef.from_json(la) for la in data["layers"]),
                       config, tuple(dict(h) for h in history),
                       data.get("author"), data.get("created"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ImageError(f"malformed build state: {exc}") from None

    @classmethod
    def from_image(cls, store: Store, image: Image) -> ImageState:
        """A stored image as a state, with its config blob's ``config``, ``history`` and
        ``author`` kept as they are.

        Raises:
            ImageError: its config blob is missing or malformed.
        """
        doc = load_json(store.read_blob(image.id), f"image config {image.id}")
        config = doc.get("config") or {}
        history = doc.get("history") or []
        if not isinstance(config, dict) or not isinstance(history, list):
            raise ImageError(f"image config {image.id}: config or history malformed")
        layers = tuple(LayerRef(diff_id, d.digest, d.size, d.media_type)
                       for diff_id, d in zip(image.diff_ids, image.layers, strict=True))
        author = doc.get("author")
        return cls(image.platform, layers, json.loads(json.dumps(config)),
                   tuple(dict(h) for h in history if isinstance(h, dict)),
                   author if isinstance(author, str) else None, image.created)


def _recorded(store: Store, image_id: str, manifest: bytes, tags: Sequence[Reference]
              ) -> Image | None:
    """The image ``image_id`` when the store already records it with ``manifest`` and every
    one of ``tags`` names it (so committing it again would change nothing), else None."""
    if not store.has_blob(image_id):
        return None
    try:
        image = store.get(image_id)
    except ImageError:
        return None
    if image.manifest_digest != "sha256:" + hashlib.sha256(manifest).hexdigest():
        return None
    names = set(image.tags)
    return image if all(str(ref) in names for ref in tags) else None
