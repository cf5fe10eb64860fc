"""What :class:`isolate.image.Store`'s gc, remove and df report (re-exported by
:mod:`isolate.image` and :mod:`isolate.image.store`): a module of their own, so that running
an image builds none of these classes."""

from __future__ import annotations

from isolate import _record

__all__ = ["DiskUsage", "GcReport", "Removed"]


@_record.record
class GcReport:
    """What :meth:`Store.gc` removed."""

    images: int
    blobs: int
    layers: int
    bytes_freed: int
    #: The ids of the image records removed.
    image_ids: tuple[str, ...] = ()


@_record.record
class Removed:
    """What :meth:`Store.remove` did: the names it removed and the image records it deleted
    (the image itself, then the untagged parents nothing else kept)."""

    untagged: tuple[str, ...]
    deleted: tuple[str, ...]


@_record.record
class DiskUsage:
    """What :meth:`Store.df` found. ``reclaimable`` is what :meth:`Store.gc` would free."""

    images: int
    blobs: int
    blob_bytes: int
    layers: int
    layer_bytes: int
    other_bytes: int
    reclaimable: int

    @property
    def total(self) -> int:
        """All bytes the store uses."""
        return self.blob_bytes + self.layer_bytes + self.other_bytes
