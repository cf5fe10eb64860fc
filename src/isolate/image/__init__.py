"""OCI images: references, configs, a content-addressed store, registries and archives.

Building blocks for runtimes: :class:`Store` holds images and extracts their layers on demand
(:meth:`Store.layer_dirs` gives the directories an overlay mount stacks). Nothing here mounts,
spawns or touches namespaces.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from isolate.errors import DigestMismatch, ImageError

if TYPE_CHECKING:
    from isolate.image.config import Image, ImageConfig
    from isolate.image.credentials import CredentialHelperError, Credentials
    from isolate.image.oci import Descriptor
    from isolate.image.reference import Platform, Reference
    from isolate.image.registry import (
        ImageNotFound,
        Progress,
        RegistryUnreachable,
        Unauthorized,
        login,
        logout,
    )
    from isolate.image.store import DiskUsage, GcReport, Removed, Store

__all__ = [
    "CredentialHelperError",
    "Credentials",
    "Descriptor",
    "DigestMismatch",
    "DiskUsage",
    "GcReport",
    "Image",
    "ImageConfig",
    "ImageError",
    "ImageNotFound",
    "Platform",
    "Progress",
    "Reference",
    "RegistryUnreachable",
    "Removed",
    "Store",
    "Unauthorized",
    "login",
    "logout",
]

# Every name loads when first used: the registry client (http.client, ssl, email) and the
# credential helpers only for a pull, push or login; the store, configs and references (attrs
# classes, hashlib, json) only when asked for, so that a module of this package that needs
# none of them (``_disk``'s locks, which containers use) costs only itself.
_LAZY = {
    "Descriptor": "isolate.image.oci",
    "DiskUsage": "isolate.image.store",
    "GcReport": "isolate.image.store",
    "Image": "isolate.image.config",
    "ImageConfig": "isolate.image.config",
    "Platform": "isolate.image.reference",
    "Reference": "isolate.image.reference",
    "Removed": "isolate.image.store",
    "Store": "isolate.image.store",
    "CredentialHelperError": "isolate.image.credentials",
    "Credentials": "isolate.image.credentials",
    "ImageNotFound": "isolate.image.registry",
    "Progress": "isolate.image.registry",
    "RegistryUnreachable": "isolate.image.registry",
    "Unauthorized": "isolate.image.registry",
    "login": "isolate.image.registry",
    "logout": "isolate.image.registry",
}


def __getattr__(name: str) -> Any:
    """Load a name of the package when it is first used.

    Raises AttributeError for a name the package does not have.
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate.image' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazy ones among them (what ``help(isolate.image)`` lists)."""
    return sorted({*globals(), *_LAZY})
