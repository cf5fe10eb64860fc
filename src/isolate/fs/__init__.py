"""Filesystem building blocks: image layers (tar <-> directory, whiteouts, diff) and mount ops.

Re-exports the public names of the submodules; holds no logic of its own. The layer code
loads on first use: a sandbox that only mounts never pays for the tar machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

__all__ = [
    "MEDIA_TYPE_TAR",
    "MEDIA_TYPE_TAR_GZIP",
    "MEDIA_TYPE_TAR_ZSTD",
    "CorruptLayer",
    "Layer",
    "LayerStats",
    "UnsafeArchive",
    "check",
    "diff",
    "diff_layer",
    "extract",
    "pack",
    "write_tar",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'isolate.fs' has no attribute {name!r}")
    value = getattr(importlib.import_module("isolate.fs.layers"), name)
    globals()[name] = value
    return value
