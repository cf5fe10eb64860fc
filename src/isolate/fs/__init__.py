"""Filesystem building blocks: image layers (tar <-> directory, whiteouts, diff) and mount ops.

Re-exports the public names of the submodules; holds no logic of its own.
"""

from __future__ import annotations

from isolate.fs.layers import (
    MEDIA_TYPE_TAR,
    MEDIA_TYPE_TAR_GZIP,
    MEDIA_TYPE_TAR_ZSTD,
    CorruptLayer,
    Layer,
    LayerStats,
    UnsafeArchive,
    diff,
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
    "diff",
    "extract",
    "pack",
    "write_tar",
]
