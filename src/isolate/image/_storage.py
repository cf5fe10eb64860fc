"""What the wire formats need of an image store: the :class:`BlobStore` interface.

The store stores; the registry client and the archive formats build on it through this
interface, so that neither imports :mod:`isolate.image.store` and no import runs both ways
(``Store.pull``/``push``/``load``/``save`` are thin methods over them). Holds no state and
does no I/O of its own beyond :class:`HashingReader`.
"""

from __future__ import annotations

from _collections_abc import Iterable

from isolate import _ctx as contextlib
from isolate._typing import TYPE_CHECKING
from isolate.image._disk import FileLock, TempSpace
from isolate.image.config import Image
from isolate.image.reference import Reference

if TYPE_CHECKING:
    from typing import IO, BinaryIO

__all__ = ["HashingReader"]

_CHUNK = 1 << 20


# For the type checker only: typing (Protocol) is not loaded at run time.
if TYPE_CHECKING:
    from typing import Protocol

    class BlobStore(Protocol):
        """The part of :class:`isolate.image.Store` that pulls, pushes, loads and saves use."""

        root: str
        tmp: TempSpace

        def blob_path(self, digest: str) -> str: ...

        def partial_path(self, digest: str) -> str: ...

        def blob_lock(self, digest: str) -> FileLock: ...

        def using(self) -> contextlib.AbstractContextManager[None]: ...

        def has_blob(self, digest: str) -> bool: ...

        def read_blob(self, digest: str) -> bytes: ...

        def open_blob(self, digest: str) -> BinaryIO: ...

        def put_bytes(self, data: bytes, expected: str | None = None) -> str: ...

        def put_stream(self, stream: IO[bytes], expected: str | None = None) -> tuple[str, int]: ...

        def commit_file(self, path: str, digest: str) -> None: ...

        def commit_image(self, manifest: bytes, media_type: str | None = None, *,
                         tags: Iterable[Reference] = (), index: bytes | None = None) -> Image: ...

        def get(self, ref: str | Reference | Image) -> Image: ...


class HashingReader:
    """Wraps a binary stream and hashes (and counts) what is read through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        import hashlib  # here: reading records (ps, images) needs no hashing

        self.raw = raw
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

