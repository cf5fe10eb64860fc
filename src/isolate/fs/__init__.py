"""Filesystem building blocks: image layers (tar <-> directory, whiteouts, diff) and mounts.

Re-exports the public names of the submodules :mod:`isolate.fs.layers` (layer tars: safe
extraction, whiteouts, packing, diffs) and :mod:`isolate.fs.mounts` (``Bind`` and ``Tmpfs``
mount records, as plan operations); holds no logic of its own. Names load on first use: a
sandbox that only mounts never pays for the tar machinery.
"""

from __future__ import annotations

from isolate import _lazy
from isolate._typing import TYPE_CHECKING

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


__getattr__, __dir__ = _lazy.exports(globals(), {
    "isolate.fs.layers": ("MEDIA_TYPE_TAR", "MEDIA_TYPE_TAR_GZIP", "MEDIA_TYPE_TAR_ZSTD",
                          "CorruptLayer", "Layer", "LayerStats", "UnsafeArchive", "check",
                          "diff", "diff_layer", "extract", "pack", "write_tar"),
    "isolate.fs.mounts": ("Bind", "Mount", "Tmpfs", "check_container_path"),
}, submodules=("layers", "mounts"))
