"""zstd for layers: the standard library's ``compression.zstd`` (Python 3.14+) or ``zstandard``.

Owns the choice between the two and their stream objects, so that layers, archives and pulls
ask one place whether zstd layers can be read. The install depends on ``zstandard`` where the
standard library has no zstd (pyproject.toml), so both missing means a broken install.
"""

from __future__ import annotations

from isolate._lazy import import_module
from isolate._typing import TYPE_CHECKING
from isolate.errors import UnsupportedError

if TYPE_CHECKING:
    from typing import Any

__all__ = ["zstd_available", "zstd_reader", "zstd_writer"]

_LEVEL = 3


def _module() -> tuple[str, Any] | None:
    for name in ("compression.zstd", "zstandard"):
        try:
            return name, import_module(name)
        except ImportError:
            continue
    return None


def zstd_available() -> bool:
    """True if zstd streams can be read and written here."""
    return _module() is not None


def _require() -> tuple[str, Any]:
    found = _module()
    if found is None:
        raise UnsupportedError(
            "zstd layers need Python 3.14's compression.zstd or the 'zstandard' package, "
            "which isolate-linux depends on: reinstall it (pip install isolate-linux)",
            missing="zstandard")
    return found


def zstd_reader(raw: Any) -> Any:
    """A reader of the decompressed bytes of the zstd stream ``raw`` (all its frames).

    Raises:
        UnsupportedError: neither ``compression.zstd`` nor ``zstandard`` is importable.
    """
    name, module = _require()
    if name == "compression.zstd":
        return module.ZstdFile(raw, mode="rb")
    return module.ZstdDecompressor().stream_reader(raw, read_across_frames=True)


class _ZstandardWriter:
    """zstandard's stream writer, ending its frame on close and leaving ``out`` open."""

    def __init__(self, module: Any, out: Any) -> None:
        self._module = module
        self._writer = module.ZstdCompressor(level=_LEVEL).stream_writer(out, closefd=False)

    def write(self, data: bytes) -> int:
        return int(self._writer.write(data))

    def close(self) -> None:
        self._writer.flush(self._module.FLUSH_FRAME)
        self._writer.close()


def zstd_writer(out: Any) -> Any:
    """A writer compressing into ``out`` (level 3); ``close()`` ends the frame, not ``out``.

    Raises:
        UnsupportedError: neither ``compression.zstd`` nor ``zstandard`` is importable.
    """
    name, module = _require()
    if name == "compression.zstd":
        return module.ZstdFile(out, mode="wb", level=_LEVEL)
    return _ZstandardWriter(module, out)
