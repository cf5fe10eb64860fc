"""OCI images: references, configs, a content-addressed store, registries and archives.

Building blocks for runtimes: :class:`Store` holds images and extracts their layers on demand
(:meth:`Store.layer_dirs` gives the directories an overlay mount stacks). Nothing here mounts,
spawns or touches namespaces.
"""

from __future__ import annotations

from isolate.errors import DigestMismatch, ImageError
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
from isolate.image.store import DiskUsage, GcReport, Store

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
    "Store",
    "Unauthorized",
    "login",
    "logout",
]
