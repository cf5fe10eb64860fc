"""OCI and Docker schema2 wire formats: media types, descriptors, manifests and indexes.

Owns decoding the JSON documents a registry or an archive hands us into typed records, and
encoding the ones we write. No I/O: callers fetch and store the bytes.
"""

from __future__ import annotations

from _collections_abc import Iterable, Mapping

from isolate import _json as json
from isolate import _record
from isolate._digest import sha256_hex
from isolate._typing import TYPE_CHECKING
from isolate.errors import ImageError, UnsupportedError
from isolate.fs._compress import zstd_available
from isolate.image.reference import Platform, is_digest

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CONFIG_TYPES",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "Descriptor",
    "Manifest",
    "canonical_json",
    "parse_index",
    "parse_manifest",
    "sha256_digest",
]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
ZSTD_LAYER_TYPES = (OCI_LAYER_ZSTD, DOCKER_LAYER_ZSTD)

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
# What a pull asks a registry for, best first.
ACCEPT = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

# Docker schema2 -> OCI, for exports that tools like umoci insist be pure OCI.
DOCKER_TO_OCI = {
    DOCKER_MANIFEST: OCI_MANIFEST,
    DOCKER_LIST: OCI_INDEX,
    DOCKER_CONFIG: OCI_CONFIG,
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER: OCI_LAYER,
}


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + sha256_hex(data)  # (small records: without loading OpenSSL)


def canonical_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys, so the same document always has the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def load_json(data: bytes, what: str) -> dict[str, Any]:
    """Decode a JSON object, or raise ImageError naming ``what`` it was meant to be."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ImageError(f"{what}: JSON nested too deep") from None
    if not isinstance(obj, dict):
        raise ImageError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj


@_record.record
class Descriptor:
    """What a manifest or index says about one blob: type, digest, size (and platform)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = _record.field(factory=dict, eq=False, hash=False)
    urls: tuple[str, ...] = ()

    @classmethod
    def from_oci(cls, data: Any, what: str) -> Descriptor:
        """Decode an OCI descriptor object.

        Raises:
            ImageError: a field is missing or malformed; ``what`` names the document.
        """
        if not isinstance(data, dict):
            raise ImageError(f"{what}: descriptor is not an object")
        digest, size, mt = data.get("digest"), data.get("size"), data.get("mediaType", "")
        if not isinstance(digest, str) or not is_digest(digest):
            raise ImageError(f"{what}: descriptor digest {digest!r} is not a sha256 digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ImageError(f"{what}: descriptor {digest} has bad size {size!r}")
        if not isinstance(mt, str):
            raise ImageError(f"{what}: descriptor {digest} has bad mediaType {mt!r}")
        plat = data.get("platform")
        platform = None
        if isinstance(plat, dict):
            try:
                platform = Platform.from_oci(plat)
            except ValueError as exc:
                raise ImageError(f"{what}: descriptor {digest}: {exc}") from None
        ann = data.get("annotations") or {}
        urls = data.get("urls") or ()
        return cls(mt, digest, size, platform,
                   {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {},
                   tuple(str(u) for u in urls) if isinstance(urls, list) else ())

    def to_oci(self, media_type: str | None = None) -> dict[str, Any]:
        """Encode as an OCI descriptor (optionally under another media type)."""
        out: dict[str, Any] = {"mediaType": media_type or self.media_type,
                               "digest": self.digest, "size": self.size}
        if self.platform is not None:
            p: dict[str, str] = {"architecture": self.platform.architecture,
                                 "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            out["platform"] = p
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.urls:
            out["urls"] = list(self.urls)
        return out


@_record.record
class Manifest:
    """An image manifest (OCI or Docker schema2): one config and the layers, lowest first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]

    def to_oci_bytes(self) -> bytes:
        """This manifest re-encoded as pure OCI (Docker media types mapped to OCI ones)."""
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.config.to_oci(DOCKER_TO_OCI.get(self.config.media_type, OCI_CONFIG)),
            "layers": [d.to_oci(DOCKER_TO_OCI.get(d.media_type, d.media_type))
                       for d in self.layers],
        }
        return canonical_json(doc)


def media_type_of(data: bytes, header_type: str | None = None) -> str:
    """The media type of a manifest or index: its own ``mediaType`` field, else the header's.

    OCI allows documents without ``mediaType``; then the shape decides (``manifests`` = index).
    """
    doc = load_json(data, "manifest")
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if header_type and header_type.split(";")[0].strip() in INDEX_TYPES + MANIFEST_TYPES:
        return header_type.split(";")[0].strip()
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    """Decode an image manifest.

    Raises:
        ImageError: not a schema2/OCI image manifest, or malformed.
    """
    doc = load_json(data, "manifest")
    mt = media_type_of(data, media_type)
    if mt not in MANIFEST_TYPES:
        raise ImageError(f"manifest: unsupported media type {mt!r} (schema1 and others are not "
                         "supported; expected OCI or Docker schema2)")
    if doc.get("schemaVersion") != 2:
        raise ImageError(f"manifest: schemaVersion {doc.get('schemaVersion')!r}, expected 2")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ImageError("manifest: 'layers' is missing or not a list")
    return Manifest(mt, Descriptor.from_oci(doc.get("config"), "manifest config"),
                    tuple(Descriptor.from_oci(d, "manifest layer") for d in layers))


def parse_index(data: bytes) -> tuple[Descriptor, ...]:
    """Decode an image index / manifest list into its manifest descriptors.

    Raises:
        ImageError: malformed.
    """
    doc = load_json(data, "image index")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError("image index: 'manifests' is missing or not a list")
    return tuple(Descriptor.from_oci(d, "image index") for d in manifests)


def select_platform(entries: tuple[Descriptor, ...], platform: Platform) -> Descriptor:
    """Pick the index entry for ``platform``.

    Raises:
        ImageError: no entry matches; the message lists what the index offers.
    """
    for d in entries:
        if d.media_type in INDEX_TYPES + MANIFEST_TYPES and d.platform is not None \
                and platform.matches(d.platform):
            return d
    offered = ", ".join(str(d.platform) for d in entries if d.platform is not None) or "none"
    raise ImageError(f"no manifest for platform {platform} in the image index "
                     f"(it offers: {offered})")


def layer_compression(media_type: str) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None`` (plain tar) for a layer media type.

    Raises:
        ImageError: not a layer type we can unpack.
    """
    if media_type in (OCI_LAYER_GZIP, DOCKER_LAYER_GZIP):
        return "gzip"
    if media_type in ZSTD_LAYER_TYPES:
        return "zstd"
    if media_type in (OCI_LAYER, DOCKER_LAYER):
        return None
    raise ImageError(f"layer media type {media_type!r} is not a tar layer we can unpack")


def require_layer_support(layers: Iterable[Descriptor], what: str) -> None:
    """Refuse, before anything is fetched, an image whose layers this install cannot unpack
    (zstd without zstd support), rather than failing at its first run.

    Raises:
        UnsupportedError: a zstd layer and neither compression.zstd nor zstandard.
    """
    if any(d.media_type in ZSTD_LAYER_TYPES for d in layers) and not zstd_available():
        raise UnsupportedError(f"{what} has zstd-compressed layers, and this Python has "
                               "neither compression.zstd nor the zstandard package "
                               "(reinstall isolate-linux, which depends on it)",
                               missing="zstandard")
