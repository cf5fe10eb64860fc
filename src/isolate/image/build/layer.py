"""Writing a layer blob entry by entry: what ``COPY`` and ``ADD`` produce without a container.

Owns the stream from tar entries to a stored gzip blob: the tar (PAX, empty user and group
names, integer times) is hashed for the diff id as it is written, the compressed bytes for the
blob digest, and the blob is renamed into the store only when complete. Knows nothing of
Dockerfiles: :mod:`isolate.image.build.copy` decides which entries to write.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import tarfile
from typing import IO, Any

from isolate.image.build.state import LayerRef
from isolate.image.oci import OCI_LAYER_GZIP
from isolate.image.store import Store

__all__ = ["LayerWriter"]


class _Sink:
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


class LayerWriter:
    """A layer being written to ``store``: add entries, then :meth:`finish` (or, on any
    error, :meth:`abort`, which leaves nothing behind). Use it as a context manager.

    Callers hold :meth:`Store.using` so that gc keeps the new blob until an image or a cache
    entry refers to it.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.tmp.name("layer.tar.gz")
        self._file: IO[bytes] = open(self.path, "xb")  # noqa: SIM115 - closed by finish/abort
        self._blob = _Sink(self._file)
        self._gzip = gzip.GzipFile(filename="", mode="wb", compresslevel=6,
                                   fileobj=self._blob, mtime=0)  # type: ignore[arg-type]
        self._tar_sink = _Sink(self._gzip)
        self._tar = tarfile.open(  # noqa: SIM115 - closed by finish
            fileobj=self._tar_sink, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
        self.entries = 0
        self._done = False

    def __enter__(self) -> LayerWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.abort()

    def add(self, info: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
        """Append one entry; ``data`` supplies ``info.size`` bytes for a regular file."""
        info.uname = info.gname = ""
        info.mtime = int(info.mtime)
        self._tar.addfile(info, data)
        self.entries += 1

    def finish(self) -> LayerRef:
        """Close the tar and the gzip stream, store the blob; return what a manifest lists.

        Raises:
            OSError: writing or renaming failed (the temp file is removed).
        """
        try:
            self._tar.close()
            self._gzip.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            diff_id = "sha256:" + self._tar_sink.hash.hexdigest()
            digest = "sha256:" + self._blob.hash.hexdigest()
            if self.store.has_blob(digest):
                os.unlink(self.path)
            else:
                self.store.commit_file(self.path, digest)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return LayerRef(diff_id, digest, self._blob.size, OCI_LAYER_GZIP)

    def abort(self) -> None:
        """Throw the partial blob away."""
        self._done = True
        # Close the tar and gzip streams first, while their file is open: left to the
        # garbage collector they would write into a closed file.
        for closing in (self._tar, self._gzip, self._file):
            with contextlib.suppress(Exception):
                closing.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
