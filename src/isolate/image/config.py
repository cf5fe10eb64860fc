"""The typed image records: :class:`ImageConfig` (how to run it) and :class:`Image`.

Owns the mapping between the OCI image config JSON and frozen records. No I/O: the store
reads the bytes and builds these; an Image never touches the disk by itself.
"""

from __future__ import annotations

from _collections_abc import Mapping

from isolate import _record
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError, ImageError
from isolate.image.oci import Descriptor, canonical_json, load_json
from isolate.image.reference import Platform, is_digest

if TYPE_CHECKING:
    from typing import Any

    import attrs

__all__ = ["Image", "ImageConfig"]


def _as_tuple(value: Any) -> Any:
    """Lists become tuples; anything else is left for the validator to reject by name."""
    return tuple(value) if isinstance(value, list | tuple) else value


def _check_strs(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name in ("entrypoint", "cmd"):
        return
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"ImageConfig.{attribute.name}: {value!r} must be a list of strings")


def _check_env(_inst: object, attribute: attrs.Attribute[tuple[str, ...]],
               value: tuple[str, ...]) -> None:
    for item in value:
        if "=" not in item or item.startswith("=") or "\0" in item:
            raise ConfigError(f"ImageConfig.{attribute.name}: {item!r} is not NAME=value")


def _check_ports(_inst: object, attribute: attrs.Attribute[tuple[str, ...]],
                 value: tuple[str, ...]) -> None:
    for item in value:
        port, _, proto = item.partition("/")
        if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("", "tcp", "udp",
                                                                           "sctp"):
            raise ConfigError(f"ImageConfig.{attribute.name}: {item!r} is not PORT[/tcp|udp]")


def _labels(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ConfigError(f"ImageConfig.labels: {value!r} must map strings to strings")
    return dict(value)


@_record.record
class ImageConfig:
    """The run-time part of an OCI image config (``config`` in the JSON).

    ``entrypoint``/``cmd`` are ``None`` when the image does not set them (which differs from
    an empty list when a container overrides one of them).
    """

    env: tuple[str, ...] = _record.field(default=(), converter=_as_tuple,
                                       validator=[_check_strs, _check_env])
    entrypoint: tuple[str, ...] | None = _record.field(default=None,
                                                     converter=_as_tuple,
                                                     validator=_check_strs)
    cmd: tuple[str, ...] | None = _record.field(default=None, converter=_as_tuple,
                                                validator=_check_strs)
    working_dir: str = _record.field(default="", validator=_record.instance_of(str))
    user: str = _record.field(default="", validator=_record.instance_of(str))
    exposed_ports: tuple[str, ...] = _record.field(default=(),
                                                 converter=_as_tuple,
                                                 validator=[_check_strs, _check_ports])
    volumes: tuple[str, ...] = _record.field(default=(), converter=_as_tuple,
                                          validator=_check_strs)
    labels: Mapping[str, str] = _record.field(factory=dict, converter=_labels, hash=False)
    stop_signal: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.working_dir and not self.working_dir.startswith("/"):
            raise ConfigError(f"ImageConfig.working_dir: {self.working_dir!r} is not absolute")
        for v in self.volumes:
            if not v.startswith("/"):
                raise ConfigError(f"ImageConfig.volumes: {v!r} is not an absolute path")

    @property
    def env_dict(self) -> dict[str, str]:
        """``env`` as a mapping (a later duplicate wins, as in Docker)."""
        return dict(item.split("=", 1) for item in self.env)  # type: ignore[misc]

    @classmethod
    def from_oci(cls, data: Mapping[str, Any] | None) -> ImageConfig:
        """Build from the ``config`` object of an OCI/Docker image config (may be null).

        Raises:
            ImageError: a field has the wrong type.
        """
        data = data or {}
        try:
            return cls(
                env=data.get("Env") or (),
                entrypoint=data.get("Entrypoint"),
                cmd=data.get("Cmd"),
                working_dir=data.get("WorkingDir") or "",
                user=data.get("User") or "",
                exposed_ports=tuple(data.get("ExposedPorts") or ()),
                volumes=tuple(data.get("Volumes") or ()),
                labels=data.get("Labels") or {},
                stop_signal=data.get("StopSignal") or None,
            )
        except (ConfigError, TypeError) as exc:
            raise ImageError(f"image config: {exc}") from None

    def to_oci(self) -> dict[str, Any]:
        """Encode as the ``config`` object of an OCI image config (unset fields left out)."""
        out: dict[str, Any] = {}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {p if "/" in p else f"{p}/tcp": {} for p in self.exposed_ports}
        if self.volumes:
            out["Volumes"] = {v: {} for v in self.volumes}
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@_record.record
class Image:
    """An image in a store: its id (the config digest), manifest, config and layer chain.

    ``layers`` are the manifest's layer descriptors and ``diff_ids`` the digests of the same
    layers uncompressed, both lowest first. Get one from :meth:`isolate.image.Store.get`.
    """

    id: str
    manifest_digest: str
    manifest_media_type: str
    config: ImageConfig
    platform: Platform
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    created: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Sum of the (compressed) layer sizes, as a registry would count them."""
        return sum(d.size for d in self.layers)

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the id, as Docker shows it."""
        return self.id.removeprefix("sha256:")[:12]


def parse_config_blob(data: bytes) -> tuple[ImageConfig, Platform, tuple[str, ...], str | None]:
    """Decode an image config blob into (run config, platform, diff ids, created).

    Raises:
        ImageError: malformed.
    """
    doc = load_json(data, "image config")
    rootfs = doc.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and is_digest(d)
                                                 for d in diff_ids):
        raise ImageError("image config: rootfs.diff_ids is missing or not a list of digests")
    try:
        platform = Platform.from_oci({"os": doc.get("os") or "linux",
                                      "architecture": doc.get("architecture") or "amd64",
                                      "variant": doc.get("variant")})
    except ConfigError as exc:
        raise ImageError(f"image config: {exc}") from None
    created = doc.get("created")
    return (ImageConfig.from_oci(doc.get("config")), platform, tuple(diff_ids),
            created if isinstance(created, str) else None)


def build_config_blob(config: ImageConfig, platform: Platform, diff_ids: list[str],
                      created: str, history: list[dict[str, Any]] | None = None, *,
                      author: str | None = None) -> bytes:
    """Encode a new OCI image config blob (``history`` defaults to an entry per layer)."""
    doc: dict[str, Any] = {
        "created": created,
        "architecture": platform.architecture,
        "os": platform.os,
        "config": config.to_oci(),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history or [{"created": created, "created_by": "isolate"}
                               for _ in diff_ids],
    }
    if platform.variant:
        doc["variant"] = platform.variant
    if author:
        doc["author"] = author
    return canonical_json(doc)
