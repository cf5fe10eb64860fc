"""Image references (``registry/repo:tag@sha256:...``) and platforms (``linux/arm64/v8``).

Owns parsing and normalising names by the Docker reference grammar, with Docker's defaults
(``docker.io``, ``library/``, ``latest``), and naming the host's platform. Pure values: no I/O
beyond ``uname``, no network, no store access.
"""

from __future__ import annotations

import os

from isolate import _match, _record
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError

if TYPE_CHECKING:
    from typing import Any

    import attrs

__all__ = ["DEFAULT_REGISTRY", "Platform", "Reference", "host_platform", "is_digest",
           "is_registry_host", "name_to_give"]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# Docker Hub's API host; "docker.io" is only the name users see.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_MAX_NAME = 255

def is_digest(value: str) -> bool:
    """True if ``value`` is a well-formed ``sha256:<64 hex>`` digest (the only one we accept)."""
    return _match.sha256(value)


def is_registry_host(value: str) -> bool:
    """True if ``value`` is a ``host[:port]`` a registry can have (a port from 1 to 65535)."""
    matched, port = _match.registry_host(value)
    return matched and (port is None or 0 < int(port) < 65536)


def _check_registry(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not is_registry_host(value):
        raise ConfigError(f"{attribute.name}: {value!r} is not a registry host[:port] "
                          "(a port is 1 to 65535)")


def _check_repository(_inst: object, attribute: attrs.Attribute[str], value: str) -> None:
    parts = value.split("/")
    if not value or not all(_match.path_component(p) for p in parts):
        raise ConfigError(
            f"{attribute.name}: {value!r} is not a repository path (lowercase letters, digits, "
            "separators '.', '_', '__', '-', components joined by '/')"
        )


def _check_tag(_inst: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not _match.tag(value):
        raise ConfigError(f"{attribute.name}: {value!r} is not a tag (word characters, '.', '-', "
                          "at most 128, not starting with '.' or '-')")


def _check_digest(_inst: object, attribute: attrs.Attribute[str | None],
                  value: str | None) -> None:
    if value is not None and not _match.sha256(value):
        raise ConfigError(f"{attribute.name}: {value!r} is not a sha256 digest "
                          "('sha256:' and 64 lowercase hex digits)")


@_record.record
class Reference:
    """A normalised image reference: ``registry/repository[:tag][@digest]``.

    Build one with :meth:`parse`; the fields are already normalised (``docker.io``,
    ``library/``). ``tag`` is ``None`` only when a digest pins the image.
    """

    registry: str = _record.field(validator=_check_registry)
    repository: str = _record.field(validator=_check_repository)
    tag: str | None = _record.field(default=None, validator=_check_tag)
    digest: str | None = _record.field(default=None, validator=_check_digest)

    def __attrs_post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise ConfigError(f"reference {self.name!r}: needs a tag or a digest")
        if len(self.name) > _MAX_NAME:
            raise ConfigError(f"reference {self.name[:40]!r}...: name longer than {_MAX_NAME}")

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text`` by the Docker grammar and apply Docker's defaults.

        ``busybox`` becomes ``docker.io/library/busybox:latest``; ``localhost:5000/a/b@sha256:..``
        keeps its registry and has no tag.

        Raises:
            ConfigError: ``text`` is not a valid reference.
        """
        if not isinstance(text, str) or not text:
            raise ConfigError(f"image reference: {text!r} is empty or not a string")
        if text != text.strip():
            raise ConfigError(f"image reference {text!r}: surrounding whitespace")
        rest, digest = text, None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if not _match.digest(digest):
                raise ConfigError(f"image reference {text!r}: {digest!r} is not a digest")
            if not _match.sha256(digest):
                raise ConfigError(f"image reference {text!r}: only sha256 digests are supported")
        tag = None
        # A ':' after the last '/' is a tag; one before it belongs to a registry port.
        slash = rest.rfind("/")
        colon = rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1:]
            if not _match.tag(tag):
                raise ConfigError(f"image reference {text!r}: {tag!r} is not a valid tag")
        if not rest:
            raise ConfigError(f"image reference {text!r}: no repository name")
        registry, _, path = rest.partition("/")
        # Docker's rule: the first component is a registry only if it looks like a host.
        if not path or not ("." in registry or ":" in registry or registry == "localhost"
                            or registry.startswith("[")):
            registry, path = DEFAULT_REGISTRY, rest
        if registry == "index.docker.io":
            registry = DEFAULT_REGISTRY
        if registry == DEFAULT_REGISTRY and "/" not in path:
            path = f"library/{path}"
        if not is_registry_host(registry):
            raise ConfigError(f"image reference {text!r}: {registry!r} is not a registry host "
                              "(a port is 1 to 65535)")
        if not all(_match.path_component(p) for p in path.split("/")):
            raise ConfigError(
                f"image reference {text!r}: repository {path!r} must be lowercase letters and "
                "digits joined by '.', '_', '__', '-' and '/'"
            )
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(registry=registry, repository=path, tag=tag, digest=digest)

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Host[:port] to talk the distribution API to (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def familiar(self) -> str:
        """The short form Docker shows (``busybox:latest``, ``localhost:5000/x:1``)."""
        name = self.name
        if self.registry == DEFAULT_REGISTRY:
            name = self.repository.removeprefix("library/")
        return name + self._suffix()

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` and no digest."""
        return Reference(self.registry, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (no tag)."""
        return Reference(self.registry, self.repository, None, digest)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag is not None else ""
        return out + (f"@{self.digest}" if self.digest is not None else "")

    def __str__(self) -> str:
        return self.name + self._suffix()


def name_to_give(ref: str | Reference, what: str) -> Reference:
    """Parse ``ref`` as a name to give an image, refusing one that carries a digest.

    A digest is a content address, the sha256 of the manifest it names: it is computed from
    the content and checked against it, never given to content. So ``tag``, ``import`` and
    ``load`` take names with a tag only; a reference with a digest resolves to the manifest
    that hashes to it, or to nothing. ``what`` names the argument in the error.

    Raises:
        ConfigError: ``ref`` is malformed or carries a digest.
    """
    r = ref if isinstance(ref, Reference) else Reference.parse(ref)
    if r.digest is not None:
        raise ConfigError(
            f"{what}: {r} carries a digest; a digest is the address of the content it names "
            "(the sha256 of its manifest), checked when the image is looked up or pulled, "
            "never given to an image: use a tag")
    return r


# uname -m -> (OCI architecture, variant), as Docker and containerd name them.
_MACHINES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None), "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv8l": ("arm", "v7"), "armv6l": ("arm", "v6"),
    "i386": ("386", None), "i486": ("386", None), "i586": ("386", None), "i686": ("386", None),
    "ppc64le": ("ppc64le", None), "s390x": ("s390x", None), "riscv64": ("riscv64", None),
    "mips64": ("mips64", None), "loongarch64": ("loong64", None),
}


def host_platform() -> Platform:
    """The platform this machine runs natively: ``linux/amd64`` on x86-64, ``linux/arm64/v8``
    on aarch64... (another machine name is used as the architecture as it is)."""
    machine = os.uname().machine
    arch, variant = _MACHINES.get(machine, (machine.lower(), None))
    return Platform("linux", arch, variant)


def _check_platform_part(_inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "variant":
        return
    if not isinstance(value, str) or not _match.os_arch(value):
        raise ConfigError(f"platform {attribute.name}: {value!r} is not a name like 'linux', "
                          "'amd64' or 'v8'")


@_record.record
class Platform:
    """An OCI platform: ``os``, ``architecture`` and an optional ``variant``."""

    os: str = _record.field(default="linux", validator=_check_platform_part)
    architecture: str = _record.field(default="amd64", validator=_check_platform_part)
    variant: str | None = _record.field(default=None, validator=_check_platform_part)

    @classmethod
    def parse(cls, text: str | Platform) -> Platform:
        """Parse ``os/arch[/variant]`` (``linux/arm64/v8``). A Platform is returned unchanged.

        Raises:
            ConfigError: not two or three non-empty parts.
        """
        if isinstance(text, Platform):
            return text
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) not in (2, 3):
            raise ConfigError(f"platform {text!r}: expected 'os/architecture[/variant]'")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def from_oci(cls, data: dict[str, object]) -> Platform:
        """Build from an OCI ``platform`` object or image config (keys os/architecture/variant).

        Raises:
            ConfigError: missing or malformed fields.
        """
        variant = data.get("variant")
        return cls(str(data.get("os", "")), str(data.get("architecture", "")),
                   str(variant) if variant else None)

    def matches(self, other: Platform) -> bool:
        """True if ``other`` can serve a request for ``self``.

        A request without variant accepts any variant; ``arm64`` treats a missing variant as v8.
        """
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None:
            return True
        theirs = other.variant
        if theirs is None and self.architecture == "arm64":
            theirs = "v8"
        return self.variant == theirs

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base
