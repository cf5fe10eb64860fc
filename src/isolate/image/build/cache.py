"""The build cache: step results and ``RUN --mount=type=cache`` directories, on disk.

Owns ``<store>/build-cache/``: ``steps/<key>.json`` (the image state a step produced, written
atomically, so a killed build leaves complete entries or none) and ``mounts/<id>/`` (cache
mount directories kept between builds). An entry whose layer blobs the store's gc removed is
dropped when next read. Must not decide what a key is: :mod:`isolate.image.build.plan` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from typing import Any

from isolate import _json as json
from isolate import _record
from isolate.errors import ImageError
from isolate.image._disk import FileLock, remove_tree
from isolate.image._reports import GcReport
from isolate.image.build.state import ImageState
from isolate.image.store import Store

__all__ = ["BuildCache", "PruneReport"]

_KEY = re.compile(r"[0-9a-f]{64}\Z")


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


@_record.record
class PruneReport:
    """What :meth:`BuildCache.prune` removed: step entries, cache mounts, their bytes, and
    what the store's gc freed afterwards (None if it was not run)."""

    entries: int
    mounts: int
    bytes_freed: int
    gc: GcReport | None = None


class BuildCache:
    """The build cache of ``store`` (created on first use)."""

    def __init__(self, store: Store) -> None:
        """Open (creating if needed) ``<store>/build-cache``.

        Raises:
            ImageError: it cannot be created.
        """
        self.store = store
        self.root = os.path.join(store.root, "build-cache")
        self.steps = os.path.join(self.root, "steps")
        self.mounts = os.path.join(self.root, "mounts")
        try:
            os.makedirs(self.steps, mode=0o700, exist_ok=True)
            os.makedirs(self.mounts, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ImageError(f"cannot create the build cache at {self.root}: "
                             f"{exc.strerror}") from exc

    def _entry(self, key: str) -> str:
        if not _KEY.match(key):
            raise ValueError(f"bad cache key {key!r}")
        return os.path.join(self.steps, key + ".json")

    def get(self, key: str) -> ImageState | None:
        """The state a step with ``key`` produced before, or None. An entry that cannot be
        read, or whose layers are no longer stored, is removed and is a miss."""
        path = self._entry(key)
        try:
            with open(path, "rb") as f:
                state = ImageState.from_json(json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, ImageError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        if not state.has_blobs(self.store):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        return state

    def put(self, key: str, state: ImageState) -> None:
        """Remember that the step with ``key`` produced ``state`` (atomic replace)."""
        data = json.dumps(state.to_json(), sort_keys=True).encode()
        self.store.tmp.write_bytes(self._entry(key), data)

    def step_keys(self) -> list[str]:
        """The keys of every entry."""
        return [n[:-5] for n in os.listdir(self.steps) if n.endswith(".json")
                and _KEY.match(n[:-5])]

    # -- context file digests -----------------------------------------------------------------

    def _context_file(self, root: str) -> str:
        name = hashlib.sha256(os.fsencode(root)).hexdigest()
        return os.path.join(self.root, "context", name + ".json")

    def context_digests(self, root: str) -> dict[str, list[Any]]:
        """File digests a build of the context at ``root`` remembered (path -> fingerprint +
        digest); empty if none or unreadable."""
        try:
            with open(self._context_file(root), "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, list)}

    def save_context_digests(self, root: str, digests: dict[str, list[Any]]) -> None:
        """Remember ``digests`` for the next build of the context at ``root``."""
        path = self._context_file(root)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.store.tmp.write_bytes(path, json.dumps(digests, separators=(",", ":")).encode())

    # -- cache mounts -----------------------------------------------------------------------

    def mount_path(self, cache_id: str) -> str:
        """Where the cache mount ``cache_id`` lives (whether or not it exists yet)."""
        return os.path.join(self.mounts, hashlib.sha256(cache_id.encode()).hexdigest())

    def mount_dir(self, cache_id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o755
                  ) -> str:
        """The directory of cache mount ``cache_id``, made (owned ``uid:gid``, ``mode``) on
        first use and kept between builds.

        Raises:
            ImageError: it cannot be made.
        """
        final = self.mount_path(cache_id)
        if os.path.isdir(final):
            return final
        tmp = self.store.tmp.name("cache-mount")
        try:
            os.mkdir(tmp)
            if (uid, gid) != (os.geteuid(), os.getegid()):
                os.chown(tmp, uid, gid)
            os.chmod(tmp, mode)
            try:
                os.rename(tmp, final)
            except OSError:
                if not os.path.isdir(final):
                    raise
                os.rmdir(tmp)  # another build made it first
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.rmdir(tmp)
            raise ImageError(f"cannot make cache mount {cache_id!r}: {exc.strerror}") from exc
        return final

    def mount_lock(self, cache_id: str) -> FileLock:
        """The lock a ``sharing=locked`` (or ``private``) cache mount is used under."""
        name = "buildcache-" + hashlib.sha256(cache_id.encode()).hexdigest()
        return FileLock(os.path.join(self.store.root, "locks", name))

    # -- pruning ----------------------------------------------------------------------------

    def drop_dangling(self) -> int:
        """Remove entries whose layer blobs are gone (the store's gc freed them); return how
        many."""
        dropped = 0
        for key in self.step_keys():
            path = self._entry(key)
            if os.path.exists(path) and self.get(key) is None:
                dropped += 1
        return dropped

    def prune(self, *, mounts: bool = True, gc: bool = True) -> PruneReport:
        """Remove every step entry (and, with ``mounts``, every cache mount), then (with
        ``gc``) run the store's gc so that layers no image uses are freed.

        Raises:
            ImageError: the store's gc failed.
        """
        entries = removed_mounts = freed = 0
        with self.store.using():
            for key in self.step_keys():
                path = self._entry(key)
                with contextlib.suppress(FileNotFoundError):
                    freed += os.lstat(path).st_size
                    os.unlink(path)
                    entries += 1
            remove_tree(os.path.join(self.root, "context"))
            if mounts:
                for name in os.listdir(self.mounts):
                    path = os.path.join(self.mounts, name)
                    freed += _tree_size(path)
                    remove_tree(path)
                    removed_mounts += 1
        report = self.store.gc() if gc else None
        return PruneReport(entries, removed_mounts,
                           freed + (report.bytes_freed if report else 0), report)
