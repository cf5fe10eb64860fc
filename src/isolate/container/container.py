"""``isolate.Container``: containers that outlive the process that made them.

Owns a container's state dir (``containers/<id>/`` under the image store's root), the
containers' names (``containers/names/<name>``, reserved under ``containers/names.lock``), and
the lifecycle: every method takes the container's lock (``containers/<id>/lock``), *refreshes*
(observes the supervisor's files and the processes), checks the :class:`Status` guard, acts and
persists ``state.json`` (temp, fsync, rename), so two processes acting on one container never
lose an update. Nothing of a container is held in memory only: another process (or the CLI)
sees and manages what this one made. Readers clean what a crash left: a container whose
supervisor died is reported dead with the reason, and its cgroup is reclaimed; a half-made or
half-removed container is finished off.

It builds on the public lower layers: the preset (:mod:`isolate.container.preset`) makes the
runtime config, :mod:`isolate.runtime` the plan; the supervisor (``isolate-shim``, or the
in-process one where the shim is not built) runs it.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import os
import select
import stat
import sys
import time
from _collections_abc import Callable, Iterator, Mapping, Sequence

from isolate import _ctx as contextlib
from isolate import _json as json
from isolate import _match, _record
from isolate import _memo as functools
from isolate._procs import lock_held
from isolate._shim_files import read_json
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.container.config import BindMount, ContainerConfig, VolumeMount, parse_signal
from isolate.container.state import (
    State,
    Status,
    clean_temp_files,
    format_time,
    now,
    read_state,
    write_json,
    write_state,
)
from isolate.errors import (
    AmbiguousError,
    ConfigError,
    ConflictError,
    ImageError,
    IsolateError,
    IsolateOSError,
    NotFoundError,
    StateError,
    UnsupportedError,
)
from isolate.image import Image, ImageConfig, Store
from isolate.image._disk import FileLock, fsync_dir, remove_tree

if TYPE_CHECKING:
    from typing import IO, Any, BinaryIO

    from isolate import lowlevel
    from isolate.cgroups import CGroup
    from isolate.cgroups.detect import Layout
    from isolate.container import network as net
    from isolate.container.preset import Resolved
    from isolate.container.users import ImageUser
    from isolate.container.volumes import VolumeStore
    from isolate.namespaces import IdMap, NamespaceKind
    from isolate.runtime import RuntimeConfig

# What only creating, starting and exec need (the runtime, the compiler, the preset, the C
# core) is imported where it is used: listing and inspecting stay cheap to import.

__all__ = ["Container", "ContainerStore", "Exec", "ExitStatus"]

# How long a reader waits for the supervisor to record an exit it has seen happen.
_RECORD_WAIT = 10.0
#: The ``-c`` program of the supervisor's exit command (:mod:`._cleanup`): the caller's
#: ``sys.path`` comes after the three arguments (``-S`` skips ``site``: no ``.pth`` files at
#: start-up, and the shim's environment has only PATH).
_CLEANUP = ("import sys; sys.path[:0] = sys.argv[4:]; "
           "from isolate.container._cleanup import main; "
           "raise SystemExit(main(sys.argv[1:4]))")
#: ``wait``'s conditions, as the Engine API names them.
_WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
#: The file whose presence in a container's directory says its records are not synced
#: (an ``auto_remove`` container: see :func:`_durable`).
EPHEMERAL = "ephemeral"
#: The error of a container whose state record cannot be read.
_LOST = ("its state record (state.json) is empty or unreadable: a crash of the machine or a "
         "hand damaged it")


def _durable(record: Mapping[str, Any]) -> bool:
    """Whether a container's records are synced as they are written: all but an
    ``auto_remove`` one's. That one ends with its run, and so with a crash of the machine:
    its records are written whole or not at all, as every record, but never fsynced (ten
    syncs of a ``run --rm`` on disk), and the next reader disposes of what such a crash
    leaves (docs/containers.md, "On disk")."""
    return not record.get("config", {}).get("auto_remove")


def _root_options(record: Mapping[str, Any], work: str) -> tuple[str, ...]:
    """The overlay options of a container's root: ``userxattr`` for an ordinary user's, and
    ``volatile`` for an ``auto_remove`` one's, as podman mounts a ``--rm`` container's root:
    its upper dir ends with its run and so with a crash of the machine (as its records do,
    :func:`_durable`), and the overlay's unmount at the end of the run no longer syncs the
    store's whole filesystem while ``run --rm`` waits for it. ``work`` loses the mark of a
    last run's volatile mount first (no overlay uses it: the container is not running)."""
    options = ("userxattr",) if record.get("userxattr") else ()
    if _durable(record):
        return options
    from isolate import _sys

    volatile = _sys.overlay_volatile()
    if volatile:
        _sys.clear_volatile(work)
    return options + volatile


@_record.record
class _EndOfRun:
    """What the supervisor does when a run has ended for good: remove ``cgroups``, and run
    the exit command when ``command``."""

    cgroups: tuple[str, ...]
    command: bool


@_record.record
class ExitStatus:
    """How a container's last run ended: Docker's exit code (the code, or 128 + N for signal
    N), whether the OOM killer ended it, when, and the error (why it is dead, or why its
    start failed)."""

    exit_code: int
    oom_killed: bool = False
    finished_at: str = ""
    error: str = ""


def _cgroup_at(dirs: Mapping[str, str]) -> CGroup | None:
    """The cgroup whose directories (by hierarchy) are ``dirs``, or None when it is gone.
    (The directories are stored: another process may sit elsewhere in the v1 hierarchies.)"""
    from isolate.cgroups import CGroup
    from isolate.cgroups.cgroup import host_layout

    cg = CGroup(host_layout(), dirs)
    return cg if any(os.path.isdir(d) for d in dirs.values()) else None


_ADJECTIVES = ("brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid",
               "merry", "nifty", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen")
_NOUNS = ("bell", "cohen", "curie", "darwin", "euler", "gauss", "hopper", "kepler",
          "lovelace", "noether", "pascal", "ritchie", "shannon", "thompson", "turing", "wing")


def _random_name() -> str:
    # From os.urandom as SystemRandom draws, without loading random (about 1 ms of a start)
    # or secrets (hmac and OpenSSL's hashlib). 4 bytes per pick: the bias is below 1e-8.
    def pick(words: tuple[str, ...]) -> str:
        return words[int.from_bytes(os.urandom(4), "little") % len(words)]
    return f"{pick(_ADJECTIVES)}_{pick(_NOUNS)}"


class ContainerStore:
    """The containers of one image store (default: :class:`isolate.image.Store`'s default
    root: ``/var/lib/isolate`` as root, ``$XDG_DATA_HOME/isolate`` otherwise).

    Raises:
        ImageError: the store cannot be opened.
    """

    def __init__(self, store: Store | None = None, *, supervisor: str = "auto",
                 network_host: object = None) -> None:
        if supervisor not in ("auto", "shim", "inprocess"):
            raise ConfigError(f"supervisor must be 'auto', 'shim' or 'inprocess', not "
                              f"{supervisor!r}")
        #: Who supervises the containers this store starts: ``"shim"`` (isolate-shim, which
        #: outlives the caller), ``"inprocess"`` (a thread of this process; the containers
        #: die with it: for hosts without isolate-shim), or ``"auto"``: the shim when built.
        self.supervisor = supervisor
        #: The network namespace that plays the host for this store's bridge networks (a
        #: path, fd or :class:`isolate.net.NetNamespace`); None: ``$ISOLATE_NETWORK_NS``,
        #: else the caller's own. Every process acting on the store's networks must agree.
        self.network_host = network_host
        self.images = store if store is not None else Store()
        self.root = os.path.join(self.images.root, "containers")
        self.names = os.path.join(self.root, "names")
        os.makedirs(self.names, mode=0o711, exist_ok=True)
        # id -> (config, image config, resolved, runtime config) of containers this store
        # created, for their first start in this process (see _prepared_config).
        self._prepared: dict[str, tuple[Any, Any, Any, RuntimeConfig]] = {}

    @functools.cached_property
    def volumes(self) -> VolumeStore:
        """The store's volumes (made when first used: a container without volumes never
        needs them)."""
        from isolate.container.volumes import VolumeStore

        return VolumeStore(self.images)

    def __repr__(self) -> str:
        return f"ContainerStore({self.images.root!r})"

    def supervisor_for_start(self) -> str:
        """``"shim"`` or ``"inprocess"``: who supervises a container started now.

        Raises:
            UnsupportedError: ``supervisor="shim"`` was asked and isolate-shim is not built.
        """
        if self.supervisor == "inprocess":
            return "inprocess"
        from isolate import _shim

        try:
            _shim.binary()
        except UnsupportedError:
            if self.supervisor == "shim":
                raise
            return "inprocess"
        return "shim"

    def path(self, cid: str) -> str:
        """The state dir of container ``cid``."""
        return os.path.join(self.root, cid)

    def trash(self, cid: str) -> str:
        """Where container ``cid``'s state dir goes at the moment of its removal."""
        return os.path.join(self.root, f".removing-{cid}")

    # -- finding -------------------------------------------------------------------------------
    def ids(self) -> builtins.list[str]:
        """The ids of every container (made and not removed), oldest first is not promised."""
        out = []
        for name in os.listdir(self.root):
            if _match.hex_string(name, 64, 64) and os.path.exists(os.path.join(self.root, name,
                                                                  "config.json")):
                out.append(name)
        return sorted(out)

    def _name_owner(self, name: str) -> str | None:
        try:
            cid = os.readlink(os.path.join(self.names, name))
        except OSError:
            return None
        return cid if _match.hex_string(cid, 64, 64) and os.path.isdir(self.path(cid)) else None

    def resolve(self, ref: str) -> str:
        """The id of the container ``ref`` names: a full id, a name (``/name`` too), or a
        unique id prefix, tried in that order, as Docker does.

        Raises:
            NotFoundError: no such container ("No such container: REF").
            AmbiguousError: the prefix matches several.
        """
        if not isinstance(ref, str) or not ref:
            raise NotFoundError(f"No such container: {ref!r}", kind="container", ref=str(ref))
        if (_match.hex_string(ref, 64, 64)
                and os.path.exists(os.path.join(self.path(ref), "config.json"))):
            return ref
        name = ref.removeprefix("/")
        if "/" not in name and name not in (".", ".."):
            owner = self._name_owner(name)
            if owner is not None:
                return owner
        if _match.hex_string(ref):
            matches = [i for i in self.ids() if i.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousError(f"Multiple IDs found with provided prefix: {ref}")
        raise NotFoundError(f"No such container: {ref}", kind="container", ref=ref)

    def get(self, ref: str) -> Container:
        """The container ``ref`` names (see :meth:`resolve`).

        Raises:
            NotFoundError, AmbiguousError.
        """
        cid = self.resolve(ref)
        try:
            return Container._load(self, cid)
        except FileNotFoundError:
            raise NotFoundError(f"No such container: {ref}", kind="container", ref=ref) \
                from None
        except ValueError:
            raise NotFoundError(f"No such container: {ref} (its record, config.json, is empty "
                                "or unreadable)", kind="container", ref=ref) from None

    def list(self, *, all: bool = False) -> builtins.list[Container]:
        """The running containers (every container with ``all``), newest first, as ``docker
        ps`` lists them. Cleans leftovers of crashes on the way (half-removed containers;
        removed ``auto_remove`` containers that exited)."""
        return [c for c, _ in self._listed(all=all)]

    def _listed(self, *, all: bool) -> builtins.list[tuple[Container, State]]:
        self._clean_leftovers()
        out = []
        for cid in self.ids():
            try:
                c = Container._load(self, cid)
                st = c._settled_if_idle()
            except (FileNotFoundError, NotFoundError):
                continue  # removed meanwhile
            except ValueError:  # a record that cannot be read
                self._dispose_unsynced(cid)
                continue
            if st.status is Status.REMOVING and c._finish_crashed_removal():
                continue
            if c._record["config"].get("auto_remove") and st.status in (
                    Status.EXITED, Status.DEAD) and not c._awaited():
                with contextlib.suppress(IsolateError):
                    c._auto_remove()
                continue
            if all or st.status.running:
                out.append((c, st))
        out.sort(key=lambda item: item[0].created, reverse=True)
        return out

    def ps(self, *, all: bool = False, filters: Mapping[str, Sequence[str]] | None = None
           ) -> builtins.list[Any]:
        """``docker ps``: a :class:`isolate.container.PsRow` for each running container
        (each one with ``all``) that passes ``filters`` (see
        :func:`isolate.container.matches`), newest first; each container observed once.

        Raises:
            ValueError: an unknown filter.
        """
        from isolate.container.inspect import matches, ps_row

        rows = []
        for c, st in self._listed(all=all or bool(filters and "status" in filters)):
            if filters and not matches(c, filters, st):
                continue
            rows.append(ps_row(c, st))
        return rows

    def prune(self) -> builtins.list[str]:
        """Remove every container that is not running (``docker container prune``); their
        ids. Anonymous volumes stay (``volume prune`` removes them)."""
        removed = []
        for c in self.list(all=True):
            try:
                if not c.status.running:
                    c.remove()
                    removed.append(c.id)
            except (StateError, NotFoundError):
                continue  # started or removed meanwhile
        return removed

    def _dispose_unsynced(self, cid: str) -> None:
        """Dispose of container ``cid`` whose config.json cannot be read, if its records
        were never synced (:data:`EPHEMERAL`): what a crash of the machine left of an
        ``auto_remove`` container. Any other such container a hand damaged: left as it is
        (as Docker's daemon leaves a container it cannot load), its files its owner's."""
        path = self.path(cid)
        if not os.path.exists(os.path.join(path, EPHEMERAL)):
            return
        self._dispose_unlocked(path, self.trash(cid))

    def _dispose_unlocked(self, path: str, trash: str) -> None:
        """Move ``path`` to ``trash`` (if it is not there) and dispose of it, unless someone
        holds the lock on the directory itself (a live remover, another reader at it)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if path != trash:
                    os.rename(path, trash)
            except (BlockingIOError, FileNotFoundError):
                return
            self._dispose(trash)
        finally:
            os.close(fd)

    def _clean_leftovers(self) -> None:
        """Dispose of the trash dirs whose remover died (a live one holds its lock), and
        release the image holds of containers that are not there: what a crash of the
        machine can leave of an ``auto_remove`` container, whose hold is not synced (a
        container's hold is taken after its directory is in place, and released before its
        trash goes)."""
        # The holders first, then the directory, in one listing (not two lookups a holder):
        # a hold seen means its container's directory was in place when the listing ran.
        holders = self.images.holders("container-")
        names = set(os.listdir(self.root))
        for holder in holders:
            cid = holder.removeprefix("container-")
            if cid not in names and os.path.basename(self.trash(cid)) not in names:
                with contextlib.suppress(IsolateError, OSError):
                    self.images.release(holder)
        for name in names:
            if not name.startswith(".removing-"):
                continue
            # The remover holds a lock on the directory itself (its files go one by one).
            trash = os.path.join(self.root, name)
            self._dispose_unlocked(trash, trash)

    def _dispose(self, trash: str) -> None:
        """Finish a removal past its point of removal: the name, the image hold, the files
        (and a cgroup a crash left, from the state)."""
        record = read_json(os.path.join(trash, "config.json")) or {}
        cid = str(record.get("id") or os.path.basename(trash).removeprefix(".removing-"))
        st = read_state(os.path.join(trash, "state.json"))
        if st is not None and st.cgroup:
            cg = _cgroup_at(st.cgroup)
            if cg is not None:
                with contextlib.suppress(IsolateError):
                    cg.delete()
        with FileLock(os.path.join(self.root, "names.lock")).hold():
            if record.get("name"):
                self._unlink_name(str(record["name"]), cid)
            else:  # (a record a crash left empty: whichever names are its)
                for name in os.listdir(self.names):
                    self._unlink_name(name, cid)
        with contextlib.suppress(IsolateError):
            self.images.release(f"container-{cid}")
        if os.path.lexists(trash):
            # Rootless, what the container's users made in its upper dir belongs to the
            # subordinate ids: a helper with the container's maps removes that.
            from isolate._mapped import remove_tree as remove_mapped
            from isolate.namespaces import IdMap as _IdMap
            from isolate.namespaces import IdMaps

            maps = (IdMaps([_IdMap(*m) for m in record["uid_map"]],
                           [_IdMap(*m) for m in record["gid_map"]])
                    if record.get("uid_map") and record.get("gid_map") else None)
            remove_mapped(trash, maps)

    # -- creating ------------------------------------------------------------------------------
    def create(self, config: ContainerConfig, *, pull: bool = True) -> Container:
        """Create a container of ``config``: its root prepared (an empty upper dir over the
        image's layers), its volumes made and seeded, its name reserved, its state
        ``created``; nothing runs.

        Raises:
            ConfigError: a bad value (a user the image lacks, a missing bind source, a bad
                seccomp file), before anything is made.
            ConflictError: the name is in use (Docker's message).
            ImageError: the image is not in the store (and cannot be pulled).
            UnsupportedError: rootless, and the image's user cannot be mapped; or the image
                is for another OS or architecture this host cannot run.
        """
        if not isinstance(config, ContainerConfig):
            raise ConfigError(f"create takes a ContainerConfig, not {config!r}")
        images = self.images
        try:
            img = images.get(config.image)
        except ImageError:
            if not pull or config.image.startswith("sha256:"):
                raise
            img = images.pull(config.image)
        from isolate.image._binfmt import check_runnable

        check_runnable(img.platform)  # an image of another architecture fails here, saying so
        for m in config.mounts:
            if isinstance(m, BindMount) and not os.path.exists(m.source):
                if not m.create:
                    raise ConfigError(f"invalid mount config for type \"bind\": bind source "
                                      f"path does not exist: {m.source}")
                os.makedirs(m.source, 0o755, exist_ok=True)  # as -v does
        _check_devices(config)
        seccomp_json = None
        if config.seccomp not in ("default", "unconfined"):
            try:
                with open(config.seccomp, encoding="utf-8") as f:
                    seccomp_json = f.read()
            except OSError as exc:
                raise ConfigError(f"opening seccomp profile ({config.seccomp}) failed: "
                                  f"{exc.strerror}") from None
        cid = os.urandom(32).hex()  # secrets.token_hex's bytes, without the hashlib it loads
        build = images.tmp.name(f"container-{cid[:12]}")
        made_volumes: list[str] = []
        # The shared gc lock keeps a gc out from looking up the image to holding it.
        with images.using():
            try:
                lowers = images.layer_dirs(img)
                record, prepared = self._prepare(config, img, cid, build, lowers,
                                                 seccomp_json)
                # (The volumes lock only when volumes are made: they are what it guards.)
                with self.volumes.locked() if _wants_volumes(config, img) else \
                        contextlib.nullcontext():
                    record["volumes"], made_volumes = self._volumes(
                        config, img, record, lowers, os.path.join(build, "mountpoints"))
                    write_json(os.path.join(build, "config.json"), record, sync_dir=False,
                               durable=_durable(record))
                    self._publish(cid, build, record, config.name is not None)
            except BaseException as exc:
                remove_tree(build)
                if made_volumes:
                    try:
                        self.volumes.remove_unused(made_volumes)
                    except (IsolateError, OSError) as cleanup:
                        from isolate.cgroups.cgroup import add_note

                        add_note(exc, f"while removing the volumes made for it: {cleanup}")
                raise
            # A crash before this line leaves a container without a hold: starting it
            # takes the hold again (see Container._hold).
            images.hold(img, f"container-{cid}", durable=_durable(record))
        if len(self._prepared) >= 16:  # a bound: created here, started elsewhere or never
            self._prepared.pop(next(iter(self._prepared)))
        self._prepared[cid] = prepared
        return Container._load(self, cid)

    def _prepared_config(self, cid: str, config: ContainerConfig, image: ImageConfig,
                         resolved: Resolved) -> RuntimeConfig | None:
        """The runtime config create built for ``cid``, once, if it was built from what its
        start has now (equal config, image config and resolved facts: no volume, network
        or user namespace that only the start knows; never for a privileged one, whose
        devices are the host's as they are now); else None."""
        kept = self._prepared.pop(cid, None)
        if kept is None or config.privileged:
            return None
        was_config, was_image, was_resolved, rc = kept
        if was_config == config and was_image == image and was_resolved == resolved:
            return rc
        return None

    def _prepare(self, config: ContainerConfig, img: Image, cid: str, build: str,
                 lowers: Sequence[str], seccomp_json: str | None
                 ) -> tuple[dict[str, Any], tuple[Any, Any, Any, RuntimeConfig]]:
        """Fill the build dir (upper/work, the mount-point layer, hostname and hosts) and
        return the record for config.json, and what the runtime config was built from (for
        :meth:`_prepared_config`)."""
        from isolate.container.preset import command_for, runtime_config
        from isolate.container.users import resolve_user

        command = command_for(config, img.config)
        spec = config.user if config.user is not None else img.config.user
        user = resolve_user(spec, config.group_add, lowers)
        uid_map, gid_map = _rootless_maps(user, img)
        # The host's name as gethostname() reads it (uname), without loading socket.
        hostname = config.hostname or (os.uname().nodename if config.network == "host"
                                       else cid[:12])
        os.mkdir(build, 0o711)
        for sub in ("upper", "work", "mountpoints"):
            os.mkdir(os.path.join(build, sub), 0o755 if sub != "work" else 0o700)
        name = config.name or _random_name()
        record: dict[str, Any] = {
            "id": cid, "created": now(), "name": name, "image": img.id,
            "image_ref": config.image, "config": config.to_json(),
            "command": list(command), "user": _record.asdict(user), "hostname": hostname,
            "uid_map": [[m.inside, m.outside, m.count] for m in uid_map],
            "gid_map": [[m.inside, m.outside, m.count] for m in gid_map],
            "userxattr": os.geteuid() != 0, "seccomp_json": seccomp_json,
            "stop_signal": _stop_signal(config, img.config),
            "stop_timeout": config.stop_timeout if config.stop_timeout is not None else 10,
        }
        # Validate the whole runtime config now (a bad combination fails create, not start),
        # and make the mount points the image lacks, so that a read-only root needs no writes.
        # (With the state dir's final path: only the bind sources of /etc's files come from
        # it, and what the runtime config and the mount points take from them is the same.)
        resolved = _resolved(record, self.path(cid), {m.target: "/" for m in config.mounts
                                                      if isinstance(m, VolumeMount)}, None)
        rc = runtime_config(config, img.config, resolved)
        _make_mountpoints(os.path.join(build, "mountpoints"), lowers, rc, config)
        return record, (config, img.config, resolved, rc)

    def _volumes(self, config: ContainerConfig, img: Image, record: Mapping[str, Any],
                 lowers: Sequence[str], mountpoint_layer: str
                 ) -> tuple[dict[str, str], builtins.list[str]]:
        """Under the volumes lock: make the named volumes that do not exist yet and one
        anonymous volume for each ``-v /path`` and each image Volume no mount covers; seed the
        empty new ones from the image. Returns (target -> volume name, names made)."""
        targets = {m.target for m in config.mounts}
        wanted: list[VolumeMount] = [m for m in config.mounts if isinstance(m, VolumeMount)]
        for path in img.config.volumes:
            norm = os.path.normpath(path)
            if norm not in targets:
                wanted.append(VolumeMount(None, norm))
        out: dict[str, str] = {}
        made: list[str] = []
        seeds: list[tuple[str, str]] = []
        if not wanted:
            return out, made
        from isolate.container.volumes import seed

        for m in wanted:
            existed = m.name is not None and self._volume_exists(m.name)
            vol = self.volumes._create(m.name, {}, m.name is None)
            if not existed:
                made.append(vol.name)
            out[m.target] = vol.name
            if not m.nocopy and not os.listdir(vol.mountpoint):
                seeds.append((m.target, vol.mountpoint))
        if seeds:
            # The mount-point layer is a second lower dir, which overlayfs needs for a
            # one-layer image without an upper dir.
            with open_image_view([*lowers, mountpoint_layer],
                                 userxattr=bool(record["userxattr"])) as view:
                for target, data in seeds:
                    seed(view, target, data)
        return out, made

    def _volume_exists(self, name: str) -> bool:
        try:
            self.volumes.get(name)
        except NotFoundError:
            return False
        return True

    def _publish(self, cid: str, build: str, record: dict[str, Any], explicit: bool) -> None:
        """Reserve the name and move the built dir into place, at once (under the names
        lock), so that no name ever points at a container that does not exist."""
        name = str(record["name"])
        durable = _durable(record)
        if not durable:
            # What tells the next reader after a crash of the machine that the container's
            # records were never synced, so that a config.json the crash left empty is its
            # to dispose of (its name, like the directory's, is metadata: the crash keeps it
            # with the directory or loses both).
            os.close(os.open(os.path.join(build, EPHEMERAL), os.O_WRONLY | os.O_CREAT
                             | os.O_EXCL | os.O_CLOEXEC, 0o644))
        with FileLock(os.path.join(self.root, "names.lock")).hold():
            owner = self._name_owner(name)
            while owner is not None and not explicit:
                name = f"{_random_name()}_{os.urandom(2).hex()}"
                owner = self._name_owner(name)
            if owner is not None:
                raise ConflictError(f'Conflict. The container name "/{name}" is already in '
                                    f'use by container "{owner}". You have to remove (or '
                                    "rename) that container to be able to reuse that name.")
            if name != record["name"]:
                record["name"] = name
                write_json(os.path.join(build, "config.json"), record, sync_dir=False,
                           durable=durable)
            write_state(os.path.join(build, "state.json"), State(), sync_dir=False,
                        durable=durable)
            if durable:
                fsync_dir(build)
            self._write_name(name, cid, durable=durable)
            try:
                os.rename(build, self.path(cid))
            except BaseException:
                self._unlink_name(name, cid)
                raise
            if durable:
                fsync_dir(self.root)

    def _write_name(self, name: str, cid: str, *, durable: bool = True) -> None:
        """``names/NAME``: a symlink whose text is the id (made at once, or not at all),
        replacing a stale one (a name whose container is gone). Under the names lock."""
        path = os.path.join(self.names, name)
        try:
            os.symlink(cid, path)
        except FileExistsError:
            os.unlink(path)  # stale: _name_owner found no container behind it
            os.symlink(cid, path)
        if durable:
            fsync_dir(self.names)

    def _unlink_name(self, name: str, cid: str) -> None:
        """Drop ``names/NAME`` if it still names ``cid``. Under the names lock."""
        path = os.path.join(self.names, name)
        try:
            if os.readlink(path) == cid:
                os.unlink(path)
        except (FileNotFoundError, OSError):
            pass


def _stop_signal(config: ContainerConfig, image: ImageConfig) -> int:
    if config.stop_signal is not None:
        return config.stop_signal
    if image.stop_signal:
        try:
            return parse_signal(image.stop_signal)
        except ConfigError:
            pass
    return int(signal.SIGTERM)


def _rootless_maps(user: ImageUser, img: Image) -> tuple[tuple[IdMap, ...], tuple[IdMap, ...]]:
    """The id maps of a rootless container's user namespace, as a rootless sandbox's:
    :func:`isolate.namespaces.rootless_maps` (the user's subordinate ranges through newuidmap
    where /etc/subuid and /etc/subgid grant some, else just our own ids as root). As root:
    none (no user namespace).

    Raises:
        UnsupportedError: the container's user is not mapped (a single-id map has only root);
            the message says how to get a range.
    """
    if os.geteuid() == 0:
        return (), ()
    from isolate.namespaces import rootless_maps

    maps = rootless_maps()
    maps.check(user.uid, user.gid, f"image {img.short_id}'s user in this rootless container")
    return maps.uid_map, maps.gid_map


def _make_mountpoints(top: str, lowers: Sequence[str], rc: RuntimeConfig,
                      config: ContainerConfig) -> None:
    """Make, in the mount-point layer ``top``, each mount point (and the working dir) the
    image lacks, so that a read-only root needs no writes. Only what is missing is made: an
    existing directory on the way is copied with the image's mode and owner (the topmost
    layer decides what the merged one shows), and a path through something that is not a
    directory in the image (a symlink) is left to the start, which makes it in the root."""
    from isolate._image_root import _make_mountpoint
    from isolate.container.users import find
    from isolate.runtime import mountpoints

    targets = {m.target for m in config.mounts}
    wanted = [(p, f) for p, f in mountpoints(rc) if p != "/tmp" or "/tmp" in targets]
    if rc.process.cwd != "/":
        wanted.append((rc.process.cwd, False))
    # What the image lacks is looked up once per process for each set of layers and points:
    # extracted layers never change (a layer dir is its verified diff id's content).
    key = (tuple(lowers), tuple(wanted))
    missing_points = _MISSING_POINTS.get(key)
    if missing_points is None:
        missing_points = tuple((path, is_file) for path, is_file in wanted
                               if _lacks(lowers, path, find))
        if len(_MISSING_POINTS) >= 32:
            _MISSING_POINTS.clear()
        _MISSING_POINTS[key] = missing_points
    for path, is_file in missing_points:
        # Parents the image has get its metadata (the layer above decides what shows).
        _make_mountpoint(top, path, is_file, lowers)


#: (layer dirs, wanted mount points) -> the points the image lacks (_make_mountpoints).
_MISSING_POINTS: dict[tuple[tuple[str, ...], tuple[tuple[str, bool], ...]],
                      tuple[tuple[str, bool], ...]] = {}


def _lacks(lowers: Sequence[str], path: str, find: Callable[..., Any]) -> bool:
    """Whether the image of ``lowers`` lacks ``path`` (or a directory on the way to it); a
    path through something that is not a directory there (a file, a symlink) is not made."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts)):
        found = find(lowers, "/" + "/".join(parts[:i + 1]), follow=False)
        if found is None:
            return True
        if not stat.S_ISDIR(found.mode):
            return False  # a file there already, or a symlink on the way
    return False


def _resolved(record: Mapping[str, Any], state_dir: str, volume_dirs: Mapping[str, str],
              network: Any, user_namespace: Any = None) -> Resolved:
    from isolate.container.preset import Resolved
    from isolate.container.users import ImageUser
    from isolate.namespaces import IdMap

    user = ImageUser(**{**record["user"],
                        "additional_gids": tuple(record["user"]["additional_gids"])})
    etc = {"/etc/hostname": os.path.join(state_dir, "hostname"),
           "/etc/hosts": os.path.join(state_dir, "hosts"),
           "/etc/resolv.conf": os.path.join(state_dir, "resolv.conf")}
    return Resolved(
        command=tuple(record["command"]), user=user, hostname=record["hostname"],
        etc_files=etc, volume_dirs=volume_dirs, network=network,
        uid_map=tuple(IdMap(*m) for m in record.get("uid_map") or ()),
        gid_map=tuple(IdMap(*m) for m in record.get("gid_map") or ()),
        seccomp_json=record.get("seccomp_json"), user_namespace=user_namespace)


@contextlib.contextmanager
def open_image_view(lowers: Sequence[str], *, userxattr: bool,
                    upper: tuple[str, str] | None = None, writable: bool = False
                    ) -> Iterator[int]:
    """An fd of the merged tree of ``lowers`` (and ``upper``); see
    :func:`isolate.container.files.open_view`."""
    from isolate.container.files import open_view

    with open_view(lowers, upper, userxattr=userxattr, writable=writable) as fd:
        yield fd


class Exec:
    """A process started in a running container by :meth:`Container.exec`: its ``pid``
    (in the caller's pid namespace) and, once it ended, ``returncode`` (Docker's exit code:
    128 + N for signal N). Use it as a context manager, or call :meth:`wait`."""

    def __init__(self, child: lowlevel.Child, pty: int = -1) -> None:
        self._child = child
        self.pid = child.pid
        self.returncode: int | None = None
        #: With ``tty=True``: the master of the process's pseudo-terminal (a pty of the
        #: container's own devpts), ours to read, write, resize and close; else -1.
        self.pty = pty

    def fileno(self) -> int:
        """A pidfd of the process: readable once it has ended (for event loops)."""
        return self._child.fileno()

    def poll(self) -> int | None:
        """Its exit code if it has ended, else None."""
        if self.returncode is None:
            code = self._child.poll()
            if code is not None:
                self.returncode = code if code >= 0 else 128 - code
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process; its exit code.

        Raises:
            TimeoutError: it still runs after ``timeout`` seconds.
        """
        if timeout is not None and self.returncode is None:
            poller = select.poll()
            poller.register(self._child.fileno(), select.POLLIN)
            if not poller.poll(timeout * 1000):
                raise TimeoutError(f"exec process {self.pid} still runs after {timeout} s")
        code = self._child.wait()
        self.returncode = code if code >= 0 else 128 - code
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (through the pidfd: never a recycled pid)."""
        self._child.send_signal(sig)

    def resize(self, rows: int, cols: int) -> None:
        """Set the size of the process's terminal (with ``tty=True``).

        Raises:
            StateError: it has no terminal.
        """
        import fcntl as _fcntl
        import struct
        import termios

        if self.pty < 0:
            raise StateError("this exec process has no terminal", current="no tty",
                             requested="resize")
        _fcntl.ioctl(self.pty, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def close(self) -> None:
        """Release the pidfd (and the terminal's master)."""
        self._child.close()
        if self.pty >= 0:
            os.close(self.pty)
            self.pty = -1

    def __enter__(self) -> Exec:
        """The handle itself; leaving the block kills a process still running and waits."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill the process if it still runs, wait for it, release the pidfd."""
        if self.returncode is None and self._child.poll() is None:
            self.kill()
            self.wait()
        self.close()


class Container:
    """A container in a store: its id, name, config, and the lifecycle verbs.

    Get one with :meth:`create`, :meth:`get` or :meth:`list` (the constructor is not
    public). The handle holds nothing but the id: every property is read from disk, every
    verb takes the container's lock, so handles in several processes agree.
    """

    def __init__(self, store: ContainerStore, cid: str, record: dict[str, Any]) -> None:
        self.store = store
        self.id = cid
        self.dir = store.path(cid)
        self._record = record
        self._config: ContainerConfig | None = None

    @classmethod
    def _load(cls, store: ContainerStore, cid: str) -> Container:
        """Raises: FileNotFoundError (removed), ValueError (a record that is not JSON)."""
        with open(os.path.join(store.path(cid), "config.json"), "rb") as f:
            record = json.loads(f.read())
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise ValueError(f"container {cid[:12]}: config.json holds no container record")
        return cls(store, cid, record)

    # -- the friendly constructors ---------------------------------------------------------------
    @classmethod
    def create(cls, image: str | Image | ContainerConfig, command: Sequence[str] | None = None,
               *, store: Store | None = None, **options: Any) -> Container:
        """Create a container (``docker create``): of a :class:`ContainerConfig`, or of
        ``image`` with ``command`` and the config's fields as keyword options.

        Raises:
            ConfigError, ConflictError, ImageError, UnsupportedError: see
                :meth:`ContainerStore.create`.
        """
        if isinstance(image, ContainerConfig):
            if command is not None or options:
                raise ConfigError("pass a ContainerConfig or an image with options, not both")
            config = image
        else:
            config = ContainerConfig(image, command, **options)
        return ContainerStore(store).create(config)

    @classmethod
    def run(cls, image: str | Image | ContainerConfig, command: Sequence[str] | None = None,
            *, store: Store | None = None, **options: Any) -> Container:
        """Create and start a container (``docker run -d``); returns it running.

        Raises:
            what :meth:`create` and :meth:`start` raise (a container whose start failed is
            removed again when it was made with ``auto_remove``).
        """
        c = cls.create(image, command, store=store, **options)
        try:
            c.start()
        except BaseException:
            if c.config.auto_remove:
                with contextlib.suppress(IsolateError, OSError):
                    c.remove(force=True)
            raise
        return c

    @classmethod
    def get(cls, ref: str, *, store: Store | None = None) -> Container:
        """The container named by id, name or unique id prefix.

        Raises:
            NotFoundError, AmbiguousError.
        """
        return ContainerStore(store).get(ref)

    @classmethod
    def list(cls, *, all: bool = False, store: Store | None = None) -> builtins.list[Container]:
        """Running containers (every one with ``all``), newest first."""
        return ContainerStore(store).list(all=all)

    # -- what it is ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        """``<Container SHORT_ID 'name'>``."""
        return f"<Container {self.short_id} {self.name!r}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Container) and other.id == self.id and \
            other.store.root == self.store.root

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def short_id(self) -> str:
        """The first 12 hex digits of the id, as ``docker ps`` shows it."""
        return self.id[:12]

    @property
    def name(self) -> str:
        """The name (without Docker's leading ``/``), as it is now on disk."""
        record = read_json(os.path.join(self.dir, "config.json"))
        if record is not None:
            self._record = record
        return str(self._record["name"])

    @property
    def config(self) -> ContainerConfig:
        """The :class:`ContainerConfig` it was created with."""
        if self._config is None:
            self._config = ContainerConfig.from_json(self._record["config"])
        return self._config

    @property
    def image_id(self) -> str:
        """The id (``sha256:...``) of the image it was made of."""
        return str(self._record["image"])

    @property
    def image(self) -> Image:
        """The image it was made of.

        Raises:
            ImageError: the image is no longer in the store."""
        return self.store.images.get(self.image_id)

    @property
    def created(self) -> str:
        """When it was created (RFC 3339, nanoseconds)."""
        return str(self._record["created"])

    @property
    def command(self) -> tuple[str, ...]:
        """The command its first process runs (Entrypoint + Cmd as resolved at create)."""
        return tuple(self._record["command"])

    @property
    def hostname(self) -> str:
        """Its hostname (by default its short id)."""
        return str(self._record["hostname"])

    @property
    def volumes(self) -> dict[str, str]:
        """Mount target -> volume name, for every volume it uses."""
        return dict(self._record.get("volumes") or {})

    @property
    def log_path(self) -> str:
        """Its json-file log (rotated files get ``.1``, ``.2`` ...)."""
        return os.path.join(self.dir, "container.log")

    @property
    def upper_dir(self) -> str:
        """The overlay upper dir: everything the container changed in its image."""
        return os.path.join(self.dir, "upper")

    # -- observing -------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The state as it is now (observed, not only as last recorded).

        Raises:
            NotFoundError: the container was removed."""
        return self._observe(self._recorded())

    def _recorded(self) -> State:
        """The state as last recorded. A record that cannot be read while the container is
        there (every write renames a whole one into place: only a crash of the machine
        leaves an unsynced one empty, or a hand damages it) is a dead container's, saying
        so, which ``rm`` removes (and a lister, for an ``auto_remove`` one).

        Raises:
            NotFoundError: the container was removed."""
        st = read_state(os.path.join(self.dir, "state.json"))
        if st is not None:
            return st
        if not os.path.isfile(os.path.join(self.dir, "config.json")):
            raise NotFoundError(f"No such container: {self.id}", kind="container", ref=self.id)
        return State(Status.DEAD, error=_LOST)

    @property
    def status(self) -> Status:
        """The status as it is now.

        Raises:
            NotFoundError: the container was removed."""
        return self.state.status

    def _supervisor_alive(self) -> bool:
        """Whether a supervisor holds ``shim.lock`` (a lock cannot outlive its holder, a pid
        can be reused)."""
        return lock_held(os.path.join(self.dir, "shim.lock"))

    def _observe(self, st: State) -> State:
        """``st`` brought up to date with the supervisor's files: a run that ended is
        exited (restarting, if the supervisor will start it again); a run whose supervisor
        died without recording its end is dead."""
        if not st.status.running:
            return st
        alive = self._supervisor_alive()
        start = read_json(os.path.join(self.dir, "start.json"))
        exit_ = read_json(os.path.join(self.dir, "exit.json"))
        pid = int(start["pid"]) if start and start.get("pid") else st.pid
        restarts = int(start.get("restart_count", st.restart_count)) if start else \
            st.restart_count
        started = str(start.get("started_at", st.started_at)) if start else st.started_at
        if exit_ is not None and int(exit_.get("pid", -1)) == pid:
            code = int(exit_.get("exit_code", 0))
            error = exit_.get("error")
            ended = _record.evolve(
                st, exit_code=code, oom_killed=bool(exit_.get("oom_killed")),
                finished_at=str(exit_.get("finished_at", "")), pid=pid,
                restart_count=int(exit_.get("restart_count", restarts)), started_at=started,
                error=f"restart failed: {os.strerror(int(error.get('errno', 0)))}" if error
                else st.error)
            if exit_.get("restarting") and alive:
                return _record.evolve(ended, status=Status.RESTARTING)
            return _record.evolve(ended, status=Status.EXITED)
        if alive:
            status = st.status if st.status is not Status.RESTARTING else Status.RUNNING
            return _record.evolve(st, status=status, pid=pid, restart_count=restarts,
                                started_at=started)
        return _record.evolve(st, status=Status.DEAD, exit_code=-1, finished_at=now(),
                            error=f"the container's supervisor ({st.supervisor} pid "
                                  f"{st.supervisor_pid}) died without recording its end")

    def _settled_if_idle(self) -> State:
        """The state as it is now; a run that ended since it was recorded is settled (its
        cgroup reclaimed, its end persisted) when no one holds the lock, so that listing
        cleans up after containers that ended on their own, as Docker's daemon would.

        Raises:
            NotFoundError: the container was removed."""
        recorded = self._recorded()
        st = self._observe(recorded)
        if st.status.running or not recorded.status.running:
            return st
        try:
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except (FileNotFoundError, NotADirectoryError):
            return st
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return st  # someone is acting on it; they settle it
        else:
            try:
                again = self._recorded()
            except NotFoundError:
                return st
            return self._settle(again)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[State]:
        """Hold the container's lock for the body, which gets the refreshed state (settled:
        persisted, and a finished run's cgroup reclaimed).

        Raises:
            NotFoundError: the container was removed (before or while we waited)."""
        try:
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"No such container: {self.id}", kind="container",
                                ref=self.id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            st = self._recorded()
            clean_temp_files(self.dir)
            yield self._settle(st)
        finally:
            os.close(fd)

    def _settle(self, recorded: State) -> State:
        """Under the lock: persist what observing found, and release what an ended run held
        (its cgroup, its network)."""
        st = self._observe(recorded)
        if not st.status.running and (st.cgroup is not None or os.path.exists(
                os.path.join(self.dir, "network.json"))):
            if st.supervisor == "shim":
                from isolate import _shim

                # Its shim removes the cgroup as it goes: let it finish first.
                _shim.wait_exit(self.dir, _RECORD_WAIT)
            self._release_run(st)
            st = _record.evolve(st, cgroup=None)
        if st != recorded:
            # The file is synced before its rename (but an auto_remove container's: see
            # _durable), the directory not: a crash of the machine keeps the old state or
            # the new, each one a reader handles (a run's end recorded or not: after a
            # reboot no run is left either way).
            self._write(st, sync_dir=False)
        return st

    def _release_run(self, st: State, error: BaseException | None = None) -> None:
        """Kill what is left of a run and remove its cgroup and network (idempotent)."""
        if st.cgroup:
            cg = _cgroup_at(st.cgroup)
            if cg is not None:
                try:
                    cg.delete()
                except IsolateError as exc:
                    if error is None:
                        raise
                    from isolate.cgroups.cgroup import add_note

                    add_note(error, f"while removing the container's cgroup: {exc}")
        facts = self._read_network_facts()
        if facts is not None:
            try:
                self._network_driver().release(self._network_request(), facts)
            except (IsolateError, OSError) as exc:
                if error is None:
                    raise
                from isolate.cgroups.cgroup import add_note

                add_note(error, f"while releasing the container's network: {exc}")
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, "network.json"))

    def _write(self, st: State, *, sync_dir: bool = True) -> None:
        write_state(os.path.join(self.dir, "state.json"), st, sync_dir=sync_dir,
                    durable=_durable(self._record))

    def reload(self) -> Container:
        """Re-read the record (after a rename in another process)."""
        record = read_json(os.path.join(self.dir, "config.json"))
        if record is None:
            raise NotFoundError(f"No such container: {self.id}", kind="container", ref=self.id)
        self._record = record
        self._config = None
        return self

    # -- starting ----------------------------------------------------------------------------------
    def start(self, *, rows: int = 0, cols: int = 0) -> None:
        """Start the container's first process under its supervisor; a ``tty`` container's
        terminal is ``rows`` x ``cols`` from its start (0: as the kernel makes it), as
        Docker's console size.

        Raises:
            ConfigError: a terminal size outside 0..65535.
            StateError: it is running (or dead, or being removed).
            NotFoundError: it was removed.
            SpawnError, MountError, CgroupError...: the start failed; the error is also kept
                in the state (``State.error``) and nothing of the run is left behind.
            UnsupportedError: limits were asked for where cgroups are not delegated.
        """
        if not all(isinstance(n, int) and 0 <= n <= 0xFFFF for n in (rows, cols)):
            raise ConfigError(f"a terminal size is 0..65535 rows and columns, not "
                              f"{rows!r}x{cols!r}")
        with self._locked() as st:
            st.status.check("start", self.id)
            self._start_locked(st, (rows, cols))

    def _network_request(self) -> net.NetworkRequest:
        from isolate.container import network as net
        from isolate.namespaces import IdMap

        def lookup(ref: str) -> int:
            other = self.store.get(ref)
            ost = other.state
            if ost.status is not Status.RUNNING:
                raise StateError(f"cannot join the network of container {ref}: it is "
                                 f"{ost.status.value}", current=ost.status.value,
                                 requested="start")
            return ost.pid
        return net.NetworkRequest(
            self.id, self.name, self.hostname, self.config.network, self.dir, lookup,
            config=self.config, store_root=self.store.images.root,
            host=self.store.network_host,
            uid_map=tuple(IdMap(*m) for m in self._record.get("uid_map") or ()),
            gid_map=tuple(IdMap(*m) for m in self._record.get("gid_map") or ()))

    def _network_driver(self) -> net.NetworkDriver:
        from isolate.container import netdriver  # noqa: F401  (registers isolate.net's modes)
        from isolate.container import network as net

        return net.driver_for(self.config.network)

    def _read_network_facts(self) -> Mapping[str, object] | None:
        return read_json(os.path.join(self.dir, "network.json"))

    def _make_cgroup(self) -> CGroup | None:
        """The run's cgroup, in the v1 hierarchies its processes join alone (cpuset only for
        a cpuset limit, devices unless privileged: :func:`_joined_controllers`): a group
        in the others would be made and removed for nothing at every run."""
        from isolate.cgroups import CGroup

        cfg = self.config
        limits = cfg.limits
        try:
            return CGroup.create(self.id, limits=limits, layout=_layout_joining(
                frozenset(_joined_controllers(cfg, devices=not cfg.privileged))))
        except UnsupportedError as exc:
            if limits is not None:
                raise UnsupportedError(
                    f"cannot limit this container's resources: {exc} (rootless containers "
                    "get limits only where a cgroup is delegated to the user, e.g. by "
                    "systemd's Delegate=yes)", missing=exc.missing) from exc
            if os.geteuid() == 0:
                raise
            return None  # rootless without delegation: no cgroup, no limits (inspect says)

    def _start_locked(self, st: State, size: tuple[int, int] = (0, 0)) -> None:
        from isolate import _plan
        from isolate.container.preset import runtime_config

        record, cfg = self._record, self.config
        if st.supervisor == "shim":
            from isolate import _shim

            # The last run's shim may still be finishing (its cgroup goes, then its lock):
            # the new run's cgroup and shim must not meet it.
            _shim.wait_exit(self.dir, _RECORD_WAIT)
        supervisor = self.store.supervisor_for_start()
        if supervisor == "inprocess":
            missing = [what for what, asked in (
                ("a restart policy", cfg.restart.enabled), ("a tty", cfg.tty),
                ("an open stdin", cfg.open_stdin)) if asked]
            if missing:
                raise UnsupportedError(
                    f"container {self.short_id} asks for {' and '.join(missing)}, which need "
                    "the supervisor isolate-shim; this store supervises containers in-process",
                    missing="isolate-shim")
        images = self.store.images
        img = images.get(self.image_id)
        lowers = [*images.layer_dirs(img), os.path.join(self.dir, "mountpoints")]
        cgroup: CGroup | None = None
        fds: list[int] = []  # ours to close once the first process runs
        request = _record.evolve(self._network_request(),
                               exposed_ports=tuple(dict.fromkeys(
                                   (*img.config.exposed_ports, *self.config.expose))))
        driver = self._network_driver()
        try:
            cgroup = self._make_cgroup()
            devices = (cgroup is not None and not cfg.privileged
                       and _device_policy(cgroup, cfg))
            self._hold(img)
            setup = driver.prepare(request)
            fds.extend(setup.fds)
            if setup.facts:
                write_json(os.path.join(self.dir, "network.json"), dict(setup.facts),
                           durable=_durable(self._record))
            self._write_etc(setup)
            volume_dirs = {t: self.store.volumes.get(n).mountpoint
                           for t, n in self.volumes.items()}
            resolved = _resolved(record, self.dir, volume_dirs, setup.namespace,
                                 setup.user_namespace)
            rc = self.store._prepared_config(self.id, cfg, img.config, resolved) \
                or runtime_config(cfg, img.config, resolved)
            rc = _with_spare_netns(rc, cfg, fds)
            work = os.path.join(self.dir, "work")
            root = _plan.overlay(lowers, upper=self.upper_dir, work=work, slot=0,
                                 options=_root_options(record, work),
                                 note=f"mount the root of container {self.short_id}")
            cgroup_fds: list[int] = []
            cgroup_dir_fd = -1
            if cgroup is not None:
                from isolate import _sys

                into = _sys.vfork_into_cgroup_works()
                for path in cgroup.join_files(_joined_controllers(cfg, devices)):
                    if into and os.path.basename(path) == "cgroup.procs":
                        # Born in the v2 group (CLONE_INTO_CGROUP): no cgroup.procs write,
                        # whose kernel lock waits for an RCU grace period after a quiet time.
                        cgroup_dir_fd = os.open(os.path.dirname(path),
                                                os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                        fds.append(cgroup_dir_fd)
                        continue
                    cgroup_fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
                    fds.append(cgroup_fds[-1])
            oom_dir = None
            hold: list[int] = []
            if cgroup is not None:
                oom_dir = cgroup.dirs.get("memory") or cgroup.dirs.get("unified")
                # The group is named by our id: whoever holds it (we, since its create) keeps
                # it from the orphan sweep. The supervisor holds it from here on, for its
                # whole life; with it gone (and the store too), the sweep takes the group.
                hold = cgroup.hold_fds()
            started_ns = time.time_ns()
            if supervisor == "shim":
                ends = _EndOfRun(tuple(sorted(set(cgroup.dirs.values()))) if cgroup else (),
                                 cfg.auto_remove or bool(setup.facts))
                pid, sup_pid = self._start_shim(rc, root, cgroup_fds, fds, oom_dir, size,
                                                ends, cgroup_dir_fd=cgroup_dir_fd, hold=hold)
            else:
                pid, sup_pid = self._start_inprocess(rc, root, cgroup_fds, fds, oom_dir,
                                                     cgroup_dir_fd=cgroup_dir_fd, hold=hold)
        except BaseException as exc:
            failed = _record.evolve(st, error=str(exc), exit_code=_start_exit_code(exc))
            self._release_run(_record.evolve(failed, cgroup=cgroup.dirs if cgroup else None),
                              exc)
            with contextlib.suppress(OSError):
                self._write(failed)
            raise
        finally:
            for fd in fds:
                os.close(fd)
            if cgroup is not None:
                cgroup.let_go()  # the supervisor holds it now (or a failed start removed it)
        # Synced, but not its directory (one fsync less on the start's path): a crash of the
        # machine leaves this state or the last one (created, or how the last run ended),
        # and either is what a reader after a reboot can show, since no run outlives one.
        self._write(State(Status.RUNNING, pid=pid, run=st.run + 1, started_at=format_time(
            started_ns), restart_count=0, supervisor=supervisor, supervisor_pid=sup_pid,
            cgroup=dict(cgroup.dirs) if cgroup is not None else None), sync_dir=False)

    def _start_inprocess(self, rc: RuntimeConfig, root: Any, cgroup_fds: Sequence[int],
                         fds: builtins.list[int], oom_dir: str | None, *,
                         cgroup_dir_fd: int = -1,
                         hold: Sequence[int] = ()) -> tuple[int, int]:
        """The first process as a child of this process (dies with it); the watching thread
        holds the cgroup (copies of ``hold``) until the run has ended."""
        from isolate.container._inprocess import InProcessSupervisor
        from isolate.runtime import container_plan

        parent = os.pidfd_open(os.getpid())
        fds.append(parent)

        def make_plan(stdio: Sequence[tuple[int, int]]) -> Any:
            return container_plan(rc, root=root, cgroup_fds=cgroup_fds, fds=stdio,
                                  parent_pidfd=parent, cgroup_dir_fd=cgroup_dir_fd)

        return InProcessSupervisor(self.dir).start(make_plan, log=self.log_path,
                                                   oom_cgroup=oom_dir, on_end=self._after_end,
                                                   hold=hold)

    def _start_shim(self, rc: RuntimeConfig, root: Any, cgroup_fds: Sequence[int],
                    fds: builtins.list[int], oom_dir: str | None,
                    size: tuple[int, int] = (0, 0),
                    ends: _EndOfRun | None = None, *,
                    cgroup_dir_fd: int = -1, hold: Sequence[int] = ()) -> tuple[int, int]:
        """The first process as a child of a new isolate-shim, which outlives us: it keeps
        the cgroup fds (and isolate-init's) for every restart, and ``hold`` (the cgroup's
        lock, see :meth:`CGroup.hold_fds`) for its whole life, holds the stdio or the pty,
        writes the log and applies the restart policy. When the container has ended for
        good it removes the run's cgroup and, when there is more to do than that (an
        ``auto_remove`` container, a network to release), runs :mod:`._cleanup`."""
        from isolate import _plan, _shim
        from isolate._plan import Fd
        from isolate.runtime import container_plan

        cfg = self.config
        keep = [*cgroup_fds, *([cgroup_dir_fd] if cgroup_dir_fd >= 0 else []), *hold]
        init_fd = -1
        if cfg.init:
            init = _shim.init_binary()
            if init is not None:
                init_fd = os.open(init, os.O_PATH | os.O_CLOEXEC)
                fds.append(init_fd)
                keep.append(init_fd)
        for ns in rc.namespaces:
            if ns.fd is not None:
                keep.append(ns.fd)  # a network driver's namespace, joined at every start
        extra = [_plan.console(rows=size[0], cols=size[1])] if cfg.tty else []
        cp = container_plan(rc, root=root, cgroup_fds=cgroup_fds, parent_pidfd=Fd.PARENT,
                            extra=extra, init_fd=init_fd, cgroup_dir_fd=cgroup_dir_fd)
        maps: dict[str, Any] = {}
        if cp.needs_parent:
            if os.geteuid() == 0:
                maps = {"uid_map": "\n".join(m.line() for m in cp.uid_map),
                        "gid_map": "\n".join(m.line() for m in cp.gid_map)}
            else:
                maps = {"newuidmap": [n for m in cp.uid_map
                                      for n in (m.inside, m.outside, m.count)],
                        "newgidmap": [n for m in cp.gid_map
                                      for n in (m.inside, m.outside, m.count)]}
        started = _shim.start(cp.plan, _shim.ShimConfig(
            self.dir, log_path=self.log_path, log_max_size=cfg.log_max_size or 0,
            log_max_file=cfg.log_max_file, tty=cfg.tty, stdin=cfg.open_stdin,
            restart=_shim.RestartPolicy(cfg.restart.name, cfg.restart.max_retries),
            stop_signal=int(self._record.get("stop_signal", signal.SIGTERM)),
            oom_cgroup=oom_dir, cgroups=ends.cgroups if ends else (),
            exit_command=self._exit_command() if ends and ends.command else (),
            exit_lock=os.path.join(self.dir, "wait.lock") if cfg.auto_remove else None,
            keep_fds=keep, **maps))  # type: ignore[arg-type]
        return started.pid, started.shim_pid

    def _exit_command(self) -> tuple[str, ...]:
        """What the shim runs when the container has ended for good: this interpreter,
        without ``site`` (the shim's environment has only PATH; our ``sys.path`` is passed
        instead, which also saves the start-up's ``.pth`` files), on :mod:`._cleanup`; with
        the path of the namespace playing the host for the store's networks, so that it
        releases them where they live (:meth:`_network_host_path`)."""
        return (sys.executable, "-S", "-c", _CLEANUP, os.path.abspath(self.store.images.root),
                self.id, self._network_host_path(),
                *[os.path.abspath(p) for p in sys.path if p])  # (the shim is in /)

    def _network_host_path(self) -> str:
        """The path of the store's network host (``network_host`` given as a path or a
        handle opened from one, else ``$ISOLATE_NETWORK_NS``), or "" (the caller's own
        namespace, or a handle without a path: the exit command then finds the networks'
        namespace is not its own, refuses, and leaves the release to the next reader)."""
        from isolate.container.netdriver import HOST_ENV

        host = self.store.network_host
        if host is None:
            return os.environ.get(HOST_ENV) or ""
        if isinstance(host, (str, os.PathLike)):
            return os.path.abspath(os.fspath(host))
        path = getattr(host, "path", None)
        return path if isinstance(path, str) else ""

    def _hold(self, img: Image) -> None:
        """Make sure the store keeps the image for this container (a create that crashed
        right after publishing it took no hold)."""
        holder = f"container-{self.id}"
        if not os.path.exists(os.path.join(self.store.images.root, "holds", holder)):
            self.store.images.hold(img, holder)

    def _write_etc(self, setup: net.NetworkSetup) -> None:
        from isolate.container import network as net

        hosts = setup.hosts if setup.hosts is not None else net.hosts_file(
            self.hostname, [self.name], setup.addresses, self.config.extra_hosts)
        for name, text in (("hostname", self.hostname + "\n"), ("hosts", hosts),
                           ("resolv.conf", setup.resolv_conf)):
            # Rewritten in place: a running container's bind mount holds the inode.
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)

    # -- signals, stop, wait -----------------------------------------------------------------------
    def _pidfd(self, st: State) -> int | None:
        """A pidfd of the current run's first process, or None when it is gone."""
        try:
            fd = os.pidfd_open(st.pid)
        except (ProcessLookupError, OSError):
            return None
        # The pid could have been reused once the run ended: only trust it while the run's
        # supervisor is alive and has recorded no end of it.
        exit_ = read_json(os.path.join(self.dir, "exit.json"))
        if not self._supervisor_alive() or (exit_ is not None and
                                            int(exit_.get("pid", -1)) == st.pid):
            os.close(fd)
            return None
        return fd

    def _signal(self, st: State, sig: int) -> None:
        from isolate import lowlevel

        fd = self._pidfd(st)
        if fd is None:
            return
        try:
            lowlevel.pidfd_send_signal(fd, sig)
        except IsolateOSError as exc:
            if exc.errno != errno.ESRCH:
                raise
        finally:
            os.close(fd)

    def _wait_exit(self, st: State, timeout: float | None) -> State:
        """Wait (without the lock being needed) until the run of ``st`` has ended and its end
        is recorded, or ``timeout`` passes; the observed state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self._pidfd(st)
        if fd is not None:
            try:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                while True:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if poller.poll(None if left is None else left * 1000):
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        return self._observe(st)
            finally:
                os.close(fd)
        # The process is gone: the supervisor records its end in a moment (this process's
        # own says when; isolate-shim's is polled for).
        limit = time.monotonic() + _RECORD_WAIT
        if st.supervisor == "inprocess":
            from isolate.container._inprocess import end_recorded

            recorded = end_recorded(self.dir, st.pid)
            if recorded is not None:
                recorded.wait(_RECORD_WAIT)
        delay = 0.0005
        while True:
            now_st = self._observe(st)
            if not now_st.status.running or now_st.pid != st.pid or time.monotonic() > limit:
                return now_st
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _tell_shim(self, st: State, verb: str, sig: int, timeout: float | None = None) -> bool:
        """Send ``stop`` or ``kill`` to the run's isolate-shim; False when it has none (or
        cannot be reached, and signals must do)."""
        if st.supervisor != "shim" or not self._supervisor_alive():
            return False
        from isolate import _shim

        try:
            with _shim.AttachClient.connect(self.dir) as client:
                if verb == "stop":
                    client.stop(sig, timeout)
                else:
                    client.kill(sig)
        except (IsolateOSError, OSError):
            return False
        return True

    def _wait_supervisor(self, st: State) -> State:
        """Wait until the run's supervisor has ended (with a restart policy, the container
        has ended for good); the observed state."""
        from isolate import _shim

        pid = _shim.read_pid(self.dir) or 0
        fd = -1
        try:
            fd = os.pidfd_open(pid) if pid > 0 else -1
        except OSError:
            fd = -1
        try:
            if fd >= 0 and self._supervisor_alive():
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.poll()
        finally:
            if fd >= 0:
                os.close(fd)
        _shim.wait_exit(self.dir)  # the lock goes just after the process (or its pid reused)
        return self._observe(st)

    def kill(self, sig: int | str = "KILL") -> None:
        """Send ``sig`` to the container's first process (``docker kill``); SIGKILL or the
        stop signal also means "stopped" for the restart policy.

        Raises:
            ConfigError: not a signal.
            StateError: it is not running (Docker's message).
        """
        number = parse_signal(sig)
        with self._locked() as st:
            st.status.check("kill", self.id)
            if number in (signal.SIGKILL, self._record.get("stop_signal")):
                st = _record.evolve(st, stopped=True)
                self._write(st)
            if not self._tell_shim(st, "kill", number):
                self._signal(st, number)

    def stop(self, timeout: float | None = None, sig: int | str | None = None) -> bool:
        """Stop the container (``docker stop``): its stop signal (or ``sig``, as ``docker
        stop --signal``), then SIGKILL after ``timeout`` seconds (default: its stop timeout,
        else 10). A container that is not running is left alone; returns whether it was
        running.

        Raises:
            ConfigError: ``sig`` is not a signal.
            StateError: it is dead or being removed.
        """
        number = parse_signal(sig) if sig is not None else None
        with self._locked() as st:
            if st.status in (Status.DEAD, Status.REMOVING):
                st.status.check("stop", self.id)
            if not st.status.can_stop():
                return False
            self._stop_locked(st, timeout, number)
            return True

    def _stop_locked(self, st: State, timeout: float | None, sig: int | None = None) -> State:
        if timeout is None:
            timeout = float(self._record.get("stop_timeout", 10))
        st = _record.evolve(st, stopped=True)
        if self.config.restart.enabled:
            self._write(st)  # before the signal: the policy must not restart it
        if self._tell_shim(st, "stop", sig or 0, timeout):
            # The shim sends the stop signal, SIGKILL after the timeout, and restarts nothing
            # more: it ends once the container has.
            if st.status is Status.PAUSED:
                self._thaw(st)
            return self._settle(_record.evolve(self._wait_supervisor(st), stopped=True))
        self._signal(st, sig or int(self._record.get("stop_signal", signal.SIGTERM)))
        if st.status is Status.PAUSED:
            self._thaw(st)
        ended = self._wait_exit(st, timeout)
        if ended.status.running:
            self._signal(st, signal.SIGKILL)
            if st.cgroup:
                cg = _cgroup_at(st.cgroup)
                if cg is not None:
                    cg.kill()
            ended = self._wait_exit(st, None)
        return self._settle(_record.evolve(ended, stopped=True))

    def restart(self, timeout: float | None = None) -> None:
        """Stop (as :meth:`stop`) and start again.

        Raises:
            StateError: it is dead or being removed.
            what :meth:`start` raises.
        """
        with self._locked() as st:
            st.status.check("restart", self.id)
            if st.status.can_stop():
                st = self._stop_locked(st, timeout)
            self._start_locked(st)

    @contextlib.contextmanager
    def awaiting(self) -> Iterator[None]:
        """Within the block, this process is one that will wait for the container: an
        ``auto_remove`` container that ends meanwhile is left for it to read how it ended (and
        remove, as :meth:`wait` does), by its supervisor and by listers alike -- ``docker
        run`` waits from before the start for the same reason.

        Raises:
            NotFoundError: it was removed.
        """
        with self._wait_lock(fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def _wait_lock(self, how: int) -> Iterator[None]:
        """``wait.lock`` held (shared by waiters, exclusive by the supervisor's cleanup).

        Raises:
            NotFoundError: it was removed."""
        try:
            held = os.open(os.path.join(self.dir, "wait.lock"),
                           os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"No such container: {self.id}", kind="container",
                                ref=self.id) from None
        try:
            fcntl.flock(held, how)
            yield
        finally:
            os.close(held)

    def wait(self, timeout: float | None = None, condition: str = "not-running"
             ) -> ExitStatus:
        """Wait for the container (``docker wait``; the Engine API's ``condition``); how its
        last run ended. ``"not-running"``: until it is not running (at once if it is not);
        ``"next-exit"``: until a run ends that is running now or starts later;
        ``"removed"``: until it has been removed (by anyone). An ``auto_remove`` container
        is removed once it has ended.

        Raises:
            ConfigError: an unknown condition.
            TimeoutError: the condition does not hold after ``timeout`` seconds.
            NotFoundError: it was removed (before the wait, or, but for ``"removed"``,
                before its end could be read).
        """
        if condition not in _WAIT_CONDITIONS:
            raise ConfigError(f"invalid condition: {condition!r} (one of "
                              f"{', '.join(_WAIT_CONDITIONS)})")
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            if deadline is None:
                return None
            rest = deadline - time.monotonic()
            if rest <= 0:
                raise TimeoutError(f"container {self.short_id} is still not {condition} "
                                   f"after {timeout} s")
            return rest

        def ended(first: State, st: State) -> bool:
            if condition != "next-exit":
                return not st.status.running
            exited = not st.status.running or st.status is Status.RESTARTING
            if first.status.running:  # this run's end, or a restart since
                return exited or (st.run, st.restart_count) != (first.run, first.restart_count)
            return st.run > first.run and (exited or st.restart_count > 0)

        with self.awaiting():
            first = st = self.state
            while True:
                if ended(first, st):
                    result = ExitStatus(st.exit_code, st.oom_killed, st.finished_at, st.error)
                    if self.config.auto_remove and st.status in (Status.EXITED, Status.DEAD):
                        with contextlib.suppress(NotFoundError):
                            self._auto_remove()
                    break
                rest = left()
                if st.status.running:
                    # Wake up now and then: a restart makes a new first process.
                    observed = self._wait_exit(st, 1.0 if rest is None else min(rest, 1.0))
                    if ended(first, observed):
                        # The end as the supervisor recorded it, as a read of the whole
                        # state now would find it too.
                        st = observed
                        continue
                else:
                    time.sleep(0.05 if rest is None else min(rest, 0.05))  # until a start
                try:
                    st = self.state
                except NotFoundError:
                    if condition != "removed":
                        raise
                    return ExitStatus(st.exit_code, st.oom_killed, st.finished_at, st.error)
        if condition == "removed":
            delay = 0.001
            while os.path.exists(self.dir):
                rest = left()
                time.sleep(delay if rest is None else min(delay, rest))
                delay = min(delay * 2, 0.1)
        return result

    def _awaited(self) -> bool:
        """Whether someone waits for this container (holds ``wait.lock``)."""
        return lock_held(os.path.join(self.dir, "wait.lock"), shared=True)

    def _after_end(self) -> None:
        """What the supervisor's exit command does (:mod:`._cleanup`; the in-process
        supervisor's thread calls it) once the container has ended for good: settle the run
        (its cgroup and network released, its end recorded) and remove an ``auto_remove``
        container -- after everyone who waits for it (holds ``wait.lock``, see
        :meth:`awaiting`) has read how it ended; they may remove it first.

        Raises:
            NotFoundError: it is gone already.
            what :meth:`remove` raises.
        """
        remove = self.config.auto_remove
        with self._wait_lock(fcntl.LOCK_EX) if remove else contextlib.nullcontext(), \
                self._locked() as st:
            if remove and st.status in (Status.EXITED, Status.DEAD):
                self._remove_locked(st, volumes=True)

    def _auto_remove(self) -> None:
        with contextlib.suppress(StateError):
            self.remove(volumes=True)

    # -- pause -------------------------------------------------------------------------------------
    def _cgroup(self, st: State, what: str) -> CGroup:
        """The run's cgroup, or UnsupportedError saying that there is none."""
        cg = _cgroup_at(st.cgroup) if st.cgroup else None
        if cg is None:
            raise UnsupportedError(f"cannot {what} container {self.short_id}: it has no cgroup "
                                   "(a rootless container gets one only where cgroups are "
                                   "delegated to the user)", missing="a delegated cgroup")
        return cg

    def pause(self) -> None:
        """Freeze every process of the container (``docker pause``).

        Raises:
            StateError: it is not running, or already paused.
            UnsupportedError: no freezer (no cgroup).
        """
        with self._locked() as st:
            st.status.check("pause", self.id)
            self._cgroup(st, "pause").freeze()
            self._write(_record.evolve(st, status=Status.PAUSED))

    def unpause(self) -> None:
        """Let a paused container run again.

        Raises:
            StateError: it is not paused.
        """
        with self._locked() as st:
            st.status.check("unpause", self.id)
            self._thaw(st)
            self._write(_record.evolve(st, status=Status.RUNNING))

    def _thaw(self, st: State) -> None:
        self._cgroup(st, "unpause").thaw()

    # -- removing, renaming ------------------------------------------------------------------------
    def remove(self, *, force: bool = False, volumes: bool = False) -> None:
        """Remove the container (``docker rm``): ``force`` kills a running one first;
        ``volumes`` also removes its anonymous volumes (named ones are kept).

        Raises:
            StateError: it runs (or is paused) and ``force`` is false (Docker's message).
            NotFoundError: it is gone already.
        """
        with self._locked() as st:
            st.status.check("remove", self.id, force=force)
            if st.status.running:
                shim = self._tell_shim(st, "kill", signal.SIGKILL)
                if not shim:
                    self._signal(st, signal.SIGKILL)
                if st.status is Status.PAUSED:
                    self._thaw(st)
                if st.cgroup and not shim:  # (a shim kills and removes it as it ends)
                    cg = _cgroup_at(st.cgroup)
                    if cg is not None:
                        cg.kill()
                st = self._settle(self._wait_supervisor(st) if shim else
                                  self._wait_exit(st, None))
            self._remove_locked(st, volumes)

    def _remove_locked(self, st: State, volumes: bool) -> None:
        self._release_run(st)
        anonymous = [n for n in self.volumes.values() if self._anonymous_volume(n)]
        trash = self.store.trash(self.id)
        # Held over the rename: no lister disposes of the trash while we do.
        dirfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(dirfd, fcntl.LOCK_EX)
            # The moment of removal: from here on no one finds it, and a crash leaves only a
            # trash dir, which the next list() disposes of.
            os.rename(self.dir, trash)
            if _durable(self._record):  # (else a crash brings it back, for the next list())
                fsync_dir(self.store.root)
            self.store._dispose(trash)
        finally:
            os.close(dirfd)
        if volumes and anonymous:
            self.store.volumes.remove_unused(anonymous)

    def _anonymous_volume(self, name: str) -> bool:
        try:
            return self.store.volumes.get(name).anonymous
        except NotFoundError:
            return False

    def _finish_crashed_removal(self) -> bool:
        """A removal whose remover died before the point of removal: finish it (when no one
        holds the lock); whether it is gone."""
        try:
            fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                         0o600)
        except (FileNotFoundError, NotADirectoryError):
            return True  # removed meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a live remover is at it
            st = read_state(os.path.join(self.dir, "state.json"))
            if st is None or st.status is not Status.REMOVING:
                return st is None
            self._remove_locked(st, False)
            return True
        finally:
            os.close(fd)

    # -- networks ----------------------------------------------------------------------------------
    def connect(self, network: str, *, aliases: Sequence[str] = (), ip: str | None = None,
                ip6: str | None = None) -> None:
        """Attach the container to one more bridge network (``docker network connect``): at
        once when it runs (a new interface; its ``/etc/hosts`` and ``resolv.conf`` follow),
        and at every later start.

        Raises:
            ConfigError: an unknown network, a bad alias or address, already connected.
            StateError: its network mode is not a bridge network (none, host, pasta...).
            NetworkError: the kernel or nft refused.
        """
        from isolate.container import netdriver

        with self._locked() as st:
            netdriver.connect(self._network_request(), st.pid if st.status.running else None,
                              network, aliases=aliases, ip=ip, ip6=ip6)

    def disconnect(self, network: str, *, force: bool = False) -> None:
        """Detach the container from a network (``docker network disconnect``), now and for
        later starts.

        Raises:
            ConfigError: it is not connected to that network (unless ``force``).
            NetworkError: a rule or device could not be removed.
        """
        from isolate.container import netdriver

        with self._locked() as st:
            netdriver.disconnect(self._network_request(),
                                 st.pid if st.status.running else None, network, force=force)

    def rename(self, new_name: str) -> None:
        """Give the container another name (``docker rename``).

        Raises:
            ConfigError: not a valid name.
            ConflictError: the name is in use.
        """
        from isolate.container.config import _name

        name = _name(new_name)
        assert name is not None
        with self._locked() as st:
            st.status.check("rename", self.id)
            old = self.name
            if name == old:
                return
            with FileLock(os.path.join(self.store.root, "names.lock")).hold():
                owner = self.store._name_owner(name)
                if owner is not None:
                    raise ConflictError(f'Error when allocating new name: Conflict. The '
                                        f'container name "/{name}" is already in use by '
                                        f'container "{owner}". You have to remove (or rename) '
                                        "that container to be able to reuse that name.")
                self.store._write_name(name, self.id)
                record = dict(self._record, name=name)
                record["config"] = dict(record["config"], name=name)
                write_json(os.path.join(self.dir, "config.json"), record,
                           durable=_durable(record))
                self._record, self._config = record, None
                self.store._unlink_name(old, self.id)
            # The container's /etc/hosts names it: keep that true for a running one.
            with contextlib.suppress(FileNotFoundError), \
                    open(os.path.join(self.dir, "hosts"), "r+") as f:
                text = f.read().replace(f" {old}\n", f" {name}\n")
                f.seek(0)
                f.write(text)
                f.truncate()

    # -- exec --------------------------------------------------------------------------------------
    def _namespaces(self, st: State) -> dict[NamespaceKind, int]:
        """Open fds of the running first process's namespaces, for exec to join."""
        from isolate.namespaces import NamespaceKind

        kinds = [NamespaceKind.MNT, NamespaceKind.UTS, NamespaceKind.IPC, NamespaceKind.NET,
                 NamespaceKind.CGROUP, NamespaceKind.PID]
        if self._record.get("uid_map"):
            kinds.insert(0, NamespaceKind.USER)
        out: dict[NamespaceKind, int] = {}
        try:
            for kind in kinds:
                out[kind] = os.open(f"/proc/{st.pid}/ns/{kind.value}", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            for fd in out.values():
                os.close(fd)
            raise
        return out

    def exec(self, command: Sequence[str], *, user: str | None = None,
             env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None,
             stdin: int | None = None, stdout: int | None = None, stderr: int | None = None,
             privileged: bool = False, tty: bool = False, rows: int = 0,
             cols: int = 0) -> Exec:
        """Start ``command`` in the running container (``docker exec``): in all its
        namespaces and its cgroup, its root, as its user (or ``user``: uid, uid:gid or a name
        from the container's /etc/passwd), with its environment plus ``env``, in its working
        dir (or ``workdir``), with its capabilities, seccomp profile and no_new_privs.
        ``stdin``/``stdout``/``stderr`` are fds of ours (default: /dev/null for stdin, ours
        for the others); with ``tty`` the process gets a pseudo-terminal of the container's own
        devpts instead (``rows`` x ``cols``), as its stdio and controlling terminal, whose
        master is :attr:`Exec.pty`. Returns an :class:`Exec` handle.

        Raises:
            StateError: it is not running or paused (Docker's messages).
            ConfigError: a bad command, user or env.
            SpawnError: the command cannot be run (``exec`` step: 126/127 in the CLI).
        """
        from isolate import lowlevel
        from isolate.container.config import _env
        from isolate.container.preset import runtime_config
        from isolate.container.users import resolve_user
        from isolate.fs.mounts import check_container_path
        from isolate.runtime import exec_plan

        if isinstance(command, (str, bytes)) or not command:
            raise ConfigError("exec needs a command: a non-empty list of arguments")
        extra_env = dict(_env(env))
        cwd = check_container_path(workdir, "working directory") if workdir else None
        with self._locked() as st:
            st.status.check("exec", self.id)
            cfg = self.config
            if privileged:
                cfg = _record.evolve(cfg, privileged=True)
            img = self.store.images.get(self.image_id)
            resolved = _resolved(self._record, self.dir, {t: "/" for t in self.volumes}, None)
            if user is not None:
                layers = [*self.store.images.layer_dirs(img), self.upper_dir]
                resolved = _record.evolve(resolved, user=resolve_user(user, (), layers))
            rc = runtime_config(cfg, img.config, resolved)
            proc_env = dict(rc.process.env)
            if user is not None:
                proc_env["HOME"] = resolved.user.home if "HOME" not in cfg.env_dict else \
                    proc_env["HOME"]
            proc_env.update(extra_env)
            rc = _record.evolve(rc, process=_record.evolve(
                rc.process, args=tuple(command), env=proc_env,
                cwd=cwd or rc.process.cwd))
            namespaces = self._namespaces(st)
            cgroup_fds: list[int] = []
            null = -1
            ours = theirs = None
            extra = []
            if tty:
                import socket

                from isolate import _plan

                ours, theirs = socket.socketpair(socket.AF_UNIX,
                                                 socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
                extra = [_plan.console(theirs.fileno(), rows=rows, cols=cols)]
            try:
                if st.cgroup:
                    cg = _cgroup_at(st.cgroup)
                    if cg is not None:
                        cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC)
                                      for p in cg.join_files(_joined_controllers(
                                          cfg, not cfg.privileged))]
                if stdin is None:
                    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
                if tty:
                    fds = [(0, 0), (1, 1), (2, 2)]  # the pty the CONSOLE op made
                else:
                    fds = [(stdin if stdin is not None else null, 0),
                           (stdout if stdout is not None else 1, 1),
                           (stderr if stderr is not None else 2, 2)]
                plan = exec_plan(rc, namespaces, cgroup_fds=cgroup_fds, fds=fds, extra=extra)
                child = lowlevel.spawn(plan)
                pty = -1
                if ours is not None:
                    try:
                        _, received, _, _ = socket.recv_fds(ours, 16, 1, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        received = []
                    if not received:
                        child.kill()
                        child.wait()
                        child.close()
                        raise IsolateOSError(errno.EIO, "the exec process's terminal did not "
                                             "come from its CONSOLE op", step="console")
                    pty = received[0]
            finally:
                for fd in [*namespaces.values(), *cgroup_fds]:
                    os.close(fd)
                if null >= 0:
                    os.close(null)
                for sock in (ours, theirs):
                    if sock is not None:
                        sock.close()
            return Exec(child, pty)

    def attach(self) -> Any:
        """A connection to the running container's supervisor (``docker attach``): an
        :class:`isolate._shim.AttachClient` to ask for its output (``attach()``, then
        ``read_frame()``, or ``read_raw()`` with a tty), write its stdin, resize its terminal,
        stop or kill it. Close it when done.

        Raises:
            StateError: it is not running.
            UnsupportedError: it is supervised in-process (no socket).
        """
        from isolate import _shim

        st = self.state
        if not st.status.running:
            raise StateError("You cannot attach to a stopped container, start it first",
                             current=st.status.value, requested="attach")
        if st.supervisor != "shim":
            raise UnsupportedError("attaching needs the supervisor isolate-shim; this "
                                   "container is supervised in-process", missing="isolate-shim")
        return _shim.AttachClient.connect(self.dir)

    def resize(self, rows: int, cols: int) -> None:
        """Set the size of the container's terminal (a ``tty`` container).

        Raises:
            StateError: it is not running.
            UnsupportedError: it is supervised in-process.
        """
        with self.attach() as client:
            client.resize(rows, cols)

    def exec_run(self, command: Sequence[str], *, input: bytes | None = None,
                 timeout: float | None = None, **options: Any) -> tuple[int, bytes, bytes]:
        """Run ``command`` in the container to its end (as :meth:`exec`); returns (exit
        code, stdout, stderr).

        Raises:
            TimeoutError: it did not end in ``timeout`` seconds (it is killed).
            what :meth:`exec` raises.
        """
        import subprocess
        import threading

        in_r = in_w = -1
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        if input is not None:
            in_r, in_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = self.exec(command, stdin=in_r if in_r >= 0 else None, stdout=out_w,
                             stderr=err_w, **options)
        except BaseException:
            for fd in (out_r, err_r, in_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (out_w, err_w, in_r):
                if fd >= 0:
                    os.close(fd)
        chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}

        def feed() -> None:
            with contextlib.suppress(OSError), os.fdopen(in_w, "wb") as f:
                f.write(input or b"")

        feeder = threading.Thread(target=feed, daemon=True) if in_w >= 0 else None
        if feeder is not None:
            feeder.start()
        with proc:
            deadline = None if timeout is None else time.monotonic() + timeout
            poller = select.poll()
            for fd in chunks:
                poller.register(fd, select.POLLIN)
            open_fds = set(chunks)
            try:
                while open_fds:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        proc.kill()
                        raise subprocess.TimeoutExpired(list(command), timeout or 0)
                    for fd, _ in poller.poll(None if left is None else left * 1000):
                        data = os.read(fd, 65536)
                        if data:
                            chunks[fd].append(data)
                        else:
                            poller.unregister(fd)
                            open_fds.discard(fd)
            finally:
                for fd in chunks:
                    os.close(fd)
            code = proc.wait()
        return code, b"".join(chunks[out_r]), b"".join(chunks[err_r])

    # -- files -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _root(self, *, writable: bool = False) -> Iterator[int]:
        """An fd of the container's root for the body: a running container's own (through
        /proc/PID/root, so what its mounts show), else a view of its overlay."""
        st = self.state
        if st.status.running:
            fd = self._pidfd(st)
            if fd is not None:
                try:
                    root = os.open(f"/proc/{st.pid}/root", os.O_PATH | os.O_DIRECTORY
                                   | os.O_CLOEXEC)
                finally:
                    os.close(fd)
                try:
                    yield root
                finally:
                    os.close(root)
                return
        img = self.store.images.get(self.image_id)
        lowers = [*self.store.images.layer_dirs(img), os.path.join(self.dir, "mountpoints")]
        with open_image_view(lowers, userxattr=bool(self._record.get("userxattr")),
                             upper=(self.upper_dir, os.path.join(self.dir, "work")),
                             writable=writable) as fd:
            yield fd

    def get_archive(self, path: str, out: BinaryIO) -> None:
        """Write ``path`` of the container (running or not) to ``out`` as a tar, as ``docker
        cp CONTAINER:PATH -`` does; symlinks in the container never lead outside it.

        Raises:
            NotFoundError: the container or the path does not exist.
        """
        from isolate.container.files import get_archive

        with self._root() as root:
            get_archive(root, path, out)

    def put_archive(self, path: str, archive: IO[bytes] | str) -> None:
        """Unpack the tar ``archive`` into the directory ``path`` of the container (running
        or not), as ``docker cp - CONTAINER:PATH`` does.

        Raises:
            NotFoundError: the path does not exist in the container.
            ConfigError: it is not a directory.
            UnsafeArchive: a hostile entry.
        """
        from isolate.container.files import put_archive

        self._write_root(lambda root: put_archive(root, path, archive))

    def copy_from(self, src: str, dst: str) -> None:
        """``docker cp CONTAINER:SRC DST`` with Docker's path rules (see
        :func:`isolate.container.files.copy_out`); running or not.

        Raises:
            NotFoundError: ``SRC`` is not in the container.
            ConfigError: a directory onto a file, a missing destination directory.
        """
        from isolate.container.files import copy_out

        with self._root() as root:
            copy_out(root, src, dst)

    def copy_to(self, src: str, dst: str) -> None:
        """``docker cp SRC CONTAINER:DST`` with Docker's path rules (see
        :func:`isolate.container.files.copy_in`); running or not.

        Raises:
            ConfigError: ``SRC`` is missing, a directory onto a file.
            NotFoundError: the destination's parent is not in the container.
        """
        from isolate.container.files import copy_in

        self._write_root(lambda root: copy_in(root, src, dst))

    def _write_root(self, write: Callable[[int], None]) -> None:
        """Run ``write`` on an fd of the container's root, to change it: the live root while
        it runs, else one mounted writable under the container's lock (a start meanwhile is
        refused, so two writers never share an upper dir)."""
        if self.state.status.running:
            with self._root() as root:
                write(root)
            return
        with self._locked() as st:
            if st.status.running:
                raise StateError(f"container {self.short_id} started meanwhile",
                                 current=st.status.value, requested="cp")
            with self._root(writable=True) as root:
                write(root)

    def export(self, out: BinaryIO) -> None:
        """Write the container's whole root (image and changes, flattened; not its volumes
        or other mounts) to ``out`` as a tar (``docker export``)."""
        from isolate.fs import layers as fslayers

        img = self.store.images.get(self.image_id)
        lowers = [*self.store.images.layer_dirs(img), os.path.join(self.dir, "mountpoints")]
        with open_image_view(lowers, userxattr=bool(self._record.get("userxattr")),
                             upper=(self.upper_dir, os.path.join(self.dir, "work"))) as fd:
            fslayers.write_tar(f"/proc/self/fd/{fd}", out, whiteouts="keep")

    def diff(self) -> builtins.list[Any]:
        """What the container changed in its image (``docker diff``): :class:`Change`
        records (A, C, D), sorted by path."""
        from isolate.container.files import changes

        img = self.store.images.get(self.image_id)
        return changes(self.upper_dir, self.store.images.layer_dirs(img))

    # -- logs, commit, stats, inspect --------------------------------------------------------------
    def logs(self, **options: Any) -> Iterator[Any]:
        """The container's output as :class:`isolate.container.logs.LogRecord` (see
        :func:`isolate.container.logs.read_logs` for ``tail``, ``since``, ``until``,
        ``follow``, ``stdout``, ``stderr``)."""
        from isolate.container.logs import read_logs

        return read_logs(self, **options)

    def commit(self, ref: str | None = None, *, author: str = "", message: str = "",
               changes: Sequence[str] = (), pause: bool = True) -> Image:
        """A new image of the container's changes on top of its image (``docker commit``);
        see :func:`isolate.container.commit.commit`."""
        from isolate.container.commit import commit

        return commit(self, ref, author=author, message=message, changes=changes,
                      pause=pause)

    def stats(self, interval: float = 0.5) -> Any:
        """One :class:`isolate.container.stats.ContainerStats` reading (``docker stats
        --no-stream``), the cpu % measured over ``interval`` seconds.

        Raises:
            StateError: it is not running.
            UnsupportedError: it has no cgroup (rootless without delegation)."""
        from isolate.container.stats import stats

        return stats(self, interval)

    def stats_stream(self, interval: float = 1.0) -> Iterator[Any]:
        """A reading every ``interval`` seconds until the container stops (``docker stats``).

        Raises:
            UnsupportedError: it has no cgroup."""
        from isolate.container.stats import stats_stream

        return stats_stream(self, interval)

    def top(self) -> tuple[builtins.list[str], builtins.list[builtins.list[str]]]:
        """Its processes as ``docker top`` shows them: (titles, rows).

        Raises:
            StateError: it is not running."""
        from isolate.container.stats import top

        return top(self)

    def inspect(self) -> dict[str, Any]:
        """``docker inspect``'s object for the container."""
        from isolate.container.inspect import inspect

        return inspect(self)


def _check_devices(cfg: ContainerConfig) -> None:
    """Refuse, at create, a ``--device`` that is no device node, or one whose access (less
    than ``rwm``) only a device cgroup could enforce where there is none to set: an ordinary
    user's (the kernel gives device policies to root only).

    Raises:
        ConfigError: not a character or block device.
        UnsupportedError: narrowed access for an ordinary user.
    """
    from isolate.cgroups.devices import rule_for_node

    for device in cfg.devices:
        rule_for_node(device.source or device.path, device.access)
    narrowed = [d.path for d in cfg.devices if d.access != "rwm"]
    if narrowed and os.geteuid() != 0:
        raise UnsupportedError(
            f"devices {', '.join(narrowed)} ask for less access than rwm, which only a device "
            "cgroup enforces, and only root may give a cgroup a device policy",
            missing="a device cgroup")


def _device_policy(cgroup: CGroup, cfg: ContainerConfig) -> bool:
    """Docker's device allow-list, plus the container's ``--device`` nodes with their access,
    on its cgroup (a second line behind the nodev mounts); False where the host cannot set
    one (rootless, or no devices controller).

    Raises:
        ConfigError: a ``--device`` node is gone since the container was created.
    """
    from isolate.cgroups import DEFAULT_RULES
    from isolate.cgroups.devices import rule_for_node

    rules = [*DEFAULT_RULES, *(rule_for_node(d.source or d.path, d.access)
                               for d in cfg.devices)]
    try:
        cgroup.set_devices(rules)
    except UnsupportedError:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _layout_joining(controllers: frozenset[str]) -> Layout:
    """The host's cgroup layout with only the v1 hierarchies of ``controllers`` (made once
    per set: the host layout is the process's)."""
    from isolate.cgroups.cgroup import host_layout

    return host_layout().only(lambda h: bool(h.controllers & controllers))


def _joined_controllers(cfg: ContainerConfig, devices: bool) -> set[str]:
    """The v1 hierarchies a container's processes join (the v2 one always): those its limits
    use, those that count what it uses or stop it (memory and OOM kills, pids, cpu, block
    I/O, the freezer), and ``devices`` where its device policy lives. Each is a migration per
    process on a v1 host, and cpuset's costs milliseconds: it is joined only for a cpuset
    limit."""
    wanted = {"memory", "pids", "cpu", "cpuacct", "blkio", "io", "freezer"}
    if devices:
        wanted.add("devices")
    limits = cfg.limits
    if limits is not None and (limits.cpuset_cpus is not None or
                               limits.cpuset_mems is not None):
        wanted.add("cpuset")
    return wanted


def _with_spare_netns(rc: RuntimeConfig, cfg: ContainerConfig, fds: builtins.list[int]
                      ) -> RuntimeConfig:
    """``rc`` joining the network namespace made ahead for a process that starts containers
    one after another (:mod:`isolate._spare_netns`, as sandboxes do), when it asks for a new
    one and no user namespace owns it; the fd goes to ``fds``, closed once the first process
    runs (a shim keeps a copy, as for any joined namespace). Not for a container with a
    restart policy: each of its runs gets a new namespace, as with Docker."""
    from isolate import _spare_netns
    from isolate.namespaces import NamespaceKind
    from isolate.runtime import NamespaceSpec, takes_netns

    if cfg.restart.enabled or not takes_netns(rc):
        return rc
    spare = _spare_netns.take()
    if spare < 0:
        return rc
    fds.append(spare)
    net = NamespaceKind.NET
    return _record.evolve(rc, namespaces=tuple(
        NamespaceSpec(net, fd=spare) if n.kind is net else n for n in rc.namespaces))


def _start_exit_code(exc: BaseException) -> int:
    """Docker's exit code for a start that failed: 127 for a command not found, 126 for one
    that cannot be executed, 128 for any other failure."""
    if isinstance(exc, IsolateOSError) and exc.step == "exec":
        return 127 if exc.errno == errno.ENOENT else 126
    return 128


def _wants_volumes(config: ContainerConfig, img: Image) -> bool:
    """Whether a container of ``config`` and ``img`` has volumes (named or anonymous)."""
    return bool(img.config.volumes) or any(isinstance(m, VolumeMount) for m in config.mounts)
