"""Volumes: directories that outlive containers, under ``volumes/`` of the store.

Owns ``volumes/<name>/_data`` (what containers bind) and ``volumes/<name>/volume.json`` (when
it was made, its labels, whether it is anonymous), made atomically (built beside, renamed into
place); which containers use a volume (their ``config.json`` says); and seeding a new volume
with an image's content at the path it is mounted on, as Docker does. Every change is made
under ``volumes/.lock``, which container creation holds too, so a volume cannot be removed
between being chosen and being recorded as in use.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from isolate import _json as json
from isolate import _match, _record
from isolate.container.state import now, write_json
from isolate.errors import ConfigError, ConflictError, NotFoundError
from isolate.image import Store
from isolate.image._disk import FileLock, remove_tree

if TYPE_CHECKING:
    pass

__all__ = ["Volume", "VolumeStore"]


@_record.record
class Volume:
    """A volume: ``name``, its data dir ``mountpoint``, ``created_at``, ``labels`` and
    whether it is ``anonymous`` (made for one container, removed with it by
    ``remove(volumes=True)``).

    Get them with the class methods (``Volume.create``, ``Volume.get``, ``Volume.list``,
    ``Volume.prune``) or a :class:`VolumeStore`.
    """

    name: str
    mountpoint: str
    created_at: str
    labels: tuple[tuple[str, str], ...] = ()
    anonymous: bool = False
    _store: VolumeStore | None = _record.field(default=None, eq=False, repr=False)

    @property
    def driver(self) -> str:
        """Always ``"local"``: a directory in the store."""
        return "local"

    @classmethod
    def create(cls, name: str | None = None, *, labels: Mapping[str, str] | None = None,
               store: Store | None = None) -> Volume:
        """Create a volume (an existing one of that name is returned as it is, as Docker
        does); ``name=None`` makes an anonymous one with a random 64-hex name.

        Raises:
            ConfigError: a bad name.
        """
        return VolumeStore(store).create(name, labels=labels)

    @classmethod
    def get(cls, name: str, *, store: Store | None = None) -> Volume:
        """The volume ``name``.

        Raises:
            NotFoundError: no such volume.
        """
        return VolumeStore(store).get(name)

    @classmethod
    def list(cls, *, store: Store | None = None) -> builtins.list[Volume]:
        """Every volume, by name."""
        return VolumeStore(store).list()

    @classmethod
    def prune(cls, *, all: bool = False, store: Store | None = None) -> builtins.list[str]:
        """Remove unused volumes (anonymous ones only, unless ``all``); their names.

        Raises: nothing but what the file system raises."""
        return VolumeStore(store).prune(all=all)

    def remove(self, *, force: bool = False) -> None:
        """Remove this volume and its data.

        Raises:
            ConflictError: a container uses it (and not ``force``).
            NotFoundError: it is gone already.
        """
        (self._store or VolumeStore()).remove(self.name, force=force)

    def users(self) -> builtins.list[str]:
        """The ids of the containers whose config uses this volume."""
        return (self._store or VolumeStore()).users(self.name)

    def inspect(self) -> dict[str, Any]:
        """``docker volume inspect``'s object."""
        return {"CreatedAt": self.created_at, "Driver": "local",
                "Labels": dict(self.labels) or None, "Mountpoint": self.mountpoint,
                "Name": self.name, "Options": None, "Scope": "local",
                "Anonymous": self.anonymous}


class VolumeStore:
    """The volumes of an image store (default: :class:`isolate.image.Store`'s default root)."""

    def __init__(self, store: Store | None = None) -> None:
        self.images = store if store is not None else Store()
        self.root = os.path.join(self.images.root, "volumes")
        self.containers_root = os.path.join(self.images.root, "containers")
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        self._lock_path = os.path.join(self.root, ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the volumes lock (exclusive) for the body."""
        with FileLock(self._lock_path).hold():
            yield

    def _load(self, name: str) -> Volume:
        base = os.path.join(self.root, name)
        try:
            with open(os.path.join(base, "volume.json"), "rb") as f:
                meta = json.loads(f.read())
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"get {name}: no such volume", kind="volume", ref=name) \
                from None
        except ValueError:
            meta = {}
        return Volume(name, os.path.join(base, "_data"), str(meta.get("created_at", "")),
                      tuple(tuple(kv) for kv in meta.get("labels", ())),  # type: ignore[misc]
                      bool(meta.get("anonymous", False)), self)

    def get(self, name: str) -> Volume:
        """Raises NotFoundError."""
        if not isinstance(name, str) or not _match.container_name(name):
            raise NotFoundError(f"get {name}: no such volume", kind="volume", ref=str(name))
        return self._load(name)

    def list(self) -> builtins.list[Volume]:
        """Every volume, by name."""
        out = []
        for name in sorted(os.listdir(self.root)):
            if name.startswith("."):
                continue
            with contextlib.suppress(NotFoundError):
                out.append(self._load(name))
        return out

    def create(self, name: str | None = None, *, labels: Mapping[str, str] | None = None,
               anonymous: bool = False) -> Volume:
        """Create (or return the existing) volume ``name``; ``None``: a new anonymous one.

        Raises:
            ConfigError: a bad name.
        """
        with self.locked():
            return self._create(name, labels or {}, anonymous or name is None)

    def _create(self, name: str | None, labels: Mapping[str, str],
                anonymous: bool) -> Volume:
        if name is None:  # (os.urandom: secrets' bytes, without the hashlib secrets loads)
            name = os.urandom(32).hex()
        elif not isinstance(name, str) or not _match.container_name(name):
            raise ConfigError(f'"{name}" includes invalid characters for a local volume name, '
                              'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed')
        final = os.path.join(self.root, name)
        if os.path.exists(os.path.join(final, "volume.json")):
            return self._load(name)
        tmp = os.path.join(self.root, f".tmp-{os.getpid()}-{os.urandom(6).hex()}")
        os.mkdir(tmp, 0o711)
        try:
            os.mkdir(os.path.join(tmp, "_data"), 0o755)
            write_json(os.path.join(tmp, "volume.json"), {
                "name": name, "created_at": now(), "anonymous": anonymous,
                "labels": sorted([k, v] for k, v in labels.items()), "driver": "local"})
            if os.path.isdir(final):
                remove_tree(final)  # a half-made one (no volume.json) of a crashed writer
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
        return self._load(name)

    def users(self, name: str) -> builtins.list[str]:
        """Ids of the containers that use ``name`` (their config lists it)."""
        out = []
        try:
            ids = os.listdir(self.containers_root)
        except FileNotFoundError:
            return []
        for cid in sorted(ids):
            if len(cid) != 64:
                continue
            try:
                with open(os.path.join(self.containers_root, cid, "config.json"), "rb") as f:
                    used = json.loads(f.read()).get("volumes", {})
            except (OSError, ValueError):
                continue
            if name in used.values():
                out.append(cid)
        return out

    def remove(self, name: str, *, force: bool = False) -> None:
        """Remove ``name`` and its data.

        Raises:
            NotFoundError: no such volume.
            ConflictError: containers use it and ``force`` is false (Docker's message).
        """
        with self.locked():
            self._remove(name, force)

    def _remove(self, name: str, force: bool) -> None:
        self.get(name)
        users = self.users(name)
        if users and not force:
            raise ConflictError(f"remove {name}: volume is in use - "
                                f"[{', '.join(users)}]")
        final = os.path.join(self.root, name)
        trash = os.path.join(self.root, f".trash-{os.getpid()}-{os.urandom(6).hex()}")
        os.rename(final, trash)
        remove_tree(trash)

    def remove_unused(self, names: Sequence[str]) -> builtins.list[str]:
        """Remove those of ``names`` no container uses any more (the anonymous volumes of a
        container removed with ``volumes=True``); the names removed."""
        removed: builtins.list[str] = []
        with self.locked():
            for name in names:
                try:
                    self._remove(name, force=False)
                except (NotFoundError, ConflictError):
                    continue
                removed.append(name)
        return removed

    def prune(self, *, all: bool = False) -> builtins.list[str]:
        """Remove every volume no container uses: anonymous ones only unless ``all`` (as
        ``docker volume prune`` since 23.0); returns the names removed. Also cleans what a
        crashed writer left (``.tmp-*``, ``.trash-*``)."""
        removed: builtins.list[str] = []
        with self.locked():
            self._clean_leftovers()
            for vol in self.list():
                if (vol.anonymous or all) and not self.users(vol.name):
                    self._remove(vol.name, force=False)
                    removed.append(vol.name)
        return removed

    def _clean_leftovers(self) -> None:
        from isolate._procs import pid_alive

        for name in os.listdir(self.root):
            if name.startswith((".tmp-", ".trash-")):
                pid = name.split("-")[1]
                if pid.isdigit() and pid_alive(int(pid)) and name.startswith(".tmp-"):
                    continue
                remove_tree(os.path.join(self.root, name))


def seed(view_fd: int, target: str, data_dir: str) -> bool:
    """Copy what the image (a mounted view, :func:`isolate.runtime.view_plan`) has at
    ``target`` into an empty volume ``data_dir``, owners, modes, times and xattrs kept, as
    Docker does for a new volume. Nothing when the image has no directory there. Returns
    whether anything was copied. The path is resolved inside the view (its symlinks stay in
    it); nothing under it is followed.

    Raises:
        IsolateOSError: reading or writing failed.
    """
    from isolate.container.users import open_in_root
    from isolate.errors import IsolateOSError
    from isolate.fs import layers

    if os.listdir(data_dir):
        return False
    try:
        src = open_in_root(view_fd, target, os.O_PATH | os.O_DIRECTORY)
    except IsolateOSError:
        return False
    try:
        if not os.listdir(f"/proc/self/fd/{src}"):
            return False
        r, w = os.pipe2(os.O_CLOEXEC)
        errors: list[BaseException] = []

        def write() -> None:
            try:
                with os.fdopen(w, "wb") as out:
                    layers.write_tar(f"/proc/self/fd/{src}", out, whiteouts="keep")
            except BaseException as exc:  # handed to the caller below
                errors.append(exc)

        writer = threading.Thread(target=write, name="isolate-volume-seed", daemon=True)
        writer.start()
        try:
            with os.fdopen(r, "rb") as inp:
                layers.extract(inp, data_dir, whiteouts="keep")
        finally:
            writer.join()
        if errors:
            raise errors[0]
        # The volume's root takes the mode and owner of the image's directory.
        st = os.stat(f"/proc/self/fd/{src}")
        os.chmod(data_dir, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(data_dir, st.st_uid, st.st_gid)
        return True
    finally:
        os.close(src)
