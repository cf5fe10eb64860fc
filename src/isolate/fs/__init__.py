"""Filesystem building blocks: image layers (tar <-> directory, whiteouts, diff) and mounts.

Re-exports the public names of the submodules :mod:`isolate.fs.layers` (layer tars: safe
extraction, whiteouts, packing, diffs) and :mod:`isolate.fs.mounts` (``Bind`` and ``Tmpfs``
mount records, as plan operations); holds no logic of its own. Names load on first use: a
sandbox that only mounts never pays for the tar machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from isolate.fs import layers, mounts
    from isolate.fs.layers import (
        MEDIA_TYPE_TAR,
        MEDIA_TYPE_TAR_GZIP,
        MEDIA_TYPE_TAR_ZSTD,
        CorruptLayer,
        Layer,
        LayerStats,
        UnsafeArchive,
        check,
        diff,
        diff_layer,
        extract,
        pack,
        write_tar,
    )
    from isolate.fs.mounts import Bind, Mount, Tmpfs, check_container_path

_FROM = {
    **dict.fromkeys(["MEDIA_TYPE_TAR", "MEDIA_TYPE_TAR_GZIP", "MEDIA_TYPE_TAR_ZSTD",
                     "CorruptLayer", "Layer", "LayerStats", "UnsafeArchive", "check", "diff",
                     "diff_layer", "extract", "pack", "write_tar"], "isolate.fs.layers"),
    **dict.fromkeys(["Bind", "Mount", "Tmpfs", "check_container_path"], "isolate.fs.mounts"),
}
_SUBMODULES = frozenset({"layers", "mounts"})

__all__ = [
    "MEDIA_TYPE_TAR",
    "MEDIA_TYPE_TAR_GZIP",
    "MEDIA_TYPE_TAR_ZSTD",
    "Bind",
    "CorruptLayer",
    "Layer",
    "LayerStats",
    "Mount",
    "Tmpfs",
    "UnsafeArchive",
    "check",
    "check_container_path",
    "diff",
    "diff_layer",
    "extract",
    "layers",
    "mounts",
    "pack",
    "write_tar",
]


def __getattr__(name: str) -> Any:
    """Load a re-exported name (or the submodule ``layers``/``mounts``) on first use.

    Raises AttributeError for a name the package does not have.
    """
    if name in _SUBMODULES:
        return importlib.import_module(f"isolate.fs.{name}")
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate.fs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (what ``help(isolate.fs)`` lists, loading them)."""
    return sorted(__all__)
