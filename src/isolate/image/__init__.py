"""OCI images: references, configs, a content-addressed store, registries and archives.

Building blocks for runtimes: :class:`Store` holds images and extracts their layers on demand
(:meth:`Store.layer_dirs` gives the directories an overlay mount stacks). Nothing here mounts,
spawns or touches namespaces.
"""

from __future__ import annotations

from isolate import _lazy
from isolate._typing import TYPE_CHECKING
from isolate.errors import DigestMismatch, ImageError

if TYPE_CHECKING:
    from isolate.image._reports import DiskUsage, GcReport, Removed
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
    from isolate.image.store import Store

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
# credential helpers only for a pull, push or login; the store, configs and references (their
# records, hashlib, json) only when asked for, so that a module of this package that needs
# none of them (``_disk``'s locks, which containers use) costs only itself.
__getattr__, __dir__ = _lazy.exports(globals(), {
    "isolate.image.oci": ("Descriptor",),
    "isolate.image.store": ("Store",),
    "isolate.image._reports": ("DiskUsage", "GcReport", "Removed"),
    "isolate.image.config": ("Image", "ImageConfig"),
    "isolate.image.reference": ("Platform", "Reference"),
    "isolate.image.credentials": ("CredentialHelperError", "Credentials"),
    "isolate.image.registry": ("ImageNotFound", "Progress", "RegistryUnreachable",
                               "Unauthorized", "login", "logout"),
})
