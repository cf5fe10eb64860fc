"""An image as a sandbox's root: its layers held in the store, plus scratch dirs for overlays.

Owns what a sandbox needs on the host to mount an image (the store hold, the extracted lower
dirs, a small mount-point layer, throwaway upper/work dirs), the choice between the kernel's
overlayfs and fuse-overlayfs, and turning the image config into run defaults. It never mounts
anything itself: the overlay is made by the child, in its own mount namespace, from the op
:meth:`ImageRoot.overlay_op` returns (or by the fuse-overlayfs process it starts).
"""

from __future__ import annotations

import os
import stat
from _collections_abc import Callable, Iterable, Sequence

from isolate import _ctx as contextlib
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError, ImageError, IsolateOSError
from isolate.image import Image, Store
from isolate.image._disk import remove_tree

if TYPE_CHECKING:
    from typing import Any

    # What only preparing a root needs loads then: open_store() (every CLI command that
    # opens the store) costs no fuse, plan or namespace code.
    from isolate._fuse_root import FuseRoot
    from isolate._plan import Op
    from isolate.namespaces import IdMaps

__all__ = ["DEFAULT_PATH", "ImageRoot", "find_image", "image_command", "open_store"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def open_store(root: str | os.PathLike[str] | None = None) -> Store:
    """The store at ``root``, else at ``$ISOLATE_STORE``, else the default one
    (``/var/lib/isolate`` as root, ``$XDG_DATA_HOME/isolate`` otherwise): the one the CLI and
    a ``Sandbox(image=...)`` without ``store=`` use."""
    path = root or os.environ.get("ISOLATE_STORE") or None
    return Store(os.path.abspath(path) if path else None)


def find_image(store: Store, image: Image | str, pull: str = "missing",
               progress: Callable[[Any], None] | None = None) -> Image:
    """``image`` from ``store``: an :class:`Image` as it is there; a name (or id) pulled from
    its registry as ``pull`` says -- when the store lacks it (``"missing"``), always, or never
    (then a missing image is an error). ``progress`` gets the pull's events.

    Raises:
        ConfigError: a bad reference.
        ImageError (ImageNotFound, Unauthorized, RegistryUnreachable, DigestMismatch ...):
            the image is not in the store and cannot be pulled (or may not be).
    """
    if isinstance(image, Image):
        return store.get(image.id)
    if pull != "always" or image.startswith("sha256:"):
        try:
            return store.get(image)
        except ImageError:
            if pull == "never" or image.startswith("sha256:"):
                raise
    return store.pull(image, progress=progress)


def image_command(image: Image, argv: Sequence[str] | None) -> list[str]:
    """The command a container of ``image`` runs, as Docker picks it: Entrypoint followed by
    ``argv`` if given (even empty: then Entrypoint alone), else by the image's Cmd.

    Raises:
        ConfigError: the result is empty (no command given and none in the image).
    """
    entry = list(image.config.entrypoint or ())
    rest = list(argv) if argv else list(image.config.cmd or ())
    command = entry + rest
    if not command:
        raise ConfigError(f"image {image.short_id} has no Entrypoint or Cmd: give a command")
    return command


def _lookup(lowers: Sequence[str], table: str, name: str) -> tuple[int, int] | None:
    """(id, primary gid) of ``name`` in the image's ``/etc/passwd`` or ``/etc/group``, read as
    the merged overlay shows it, never outside the image (see :mod:`isolate.fs.inroot`).

    Raises:
        ImageError: the file is there but cannot be read: a FIFO, device or directory, too
            big, a symlink loop.
    """
    from isolate.fs import inroot

    try:
        data = inroot.read_file(lowers, f"/etc/{table}")
    except IsolateOSError as exc:
        raise ImageError(f"cannot read the image's /etc/{table}: {exc}") from exc
    if data is None:
        return None
    for line in data.decode("utf-8", "replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            gid = fields[3] if table == "passwd" and len(fields) > 3 else fields[2]
            return int(fields[2]), int(gid) if gid.isdigit() else int(fields[2])
    return None


def parse_user(spec: str, lowers: Sequence[str]) -> tuple[int, int | None]:
    """Turn an image's ``User`` (``uid``, ``name``, ``uid:gid``, ``name:group``) into numbers.

    A name is looked up in the image's own ``/etc/passwd``/``/etc/group``; with a user name
    and no group, the user's primary group is used, as Docker does.

    Raises:
        ImageError: a name the image does not define, or a passwd/group file that is not a
            regular file (a FIFO, a device ...).
    """
    user, _, group = spec.partition(":")
    gid: int | None = None
    if user.isdigit():
        uid = int(user)
    else:
        found = _lookup(lowers, "passwd", user)
        if found is None:
            raise ImageError(f"image user {user!r} is not in the image's /etc/passwd")
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            entry = _lookup(lowers, "group", group)
            if entry is None:
                raise ImageError(f"image group {group!r} is not in the image's /etc/group")
            gid = entry[0]
    return uid, gid


class ImageRoot:
    """An image prepared as the root of sandbox processes; :meth:`close` undoes it all.

    Get one with :meth:`open`. ``lowers`` are the overlay lower dirs, lowest first: the image's
    layers and, on top, a layer of empty mount points (so a read-only root needs no writes).
    """

    def __init__(self, store: Store, image: Image, holder: str, lowers: list[str],
                 scratch: str, options: tuple[str, ...], maps: IdMaps | None = None) -> None:
        self.store = store
        self.image = image
        self.holder = holder
        self.lowers = lowers
        self.scratch = scratch
        self.options = options
        #: The id maps of the user namespace the layers were extracted for (None: none).
        self.maps = maps
        self._count = 0
        #: The fuse-overlayfs process serving this root, when :meth:`choose_overlay` picked it.
        self.fuse: FuseRoot | None = None

    @classmethod
    def open(cls, image: Image | str, store: Store | None, *,
             mountpoints: Iterable[tuple[str, bool]], rootless: bool,
             pull: str = "missing", maps: IdMaps | None = None) -> ImageRoot:
        """Look ``image`` up in ``store`` (default: :func:`open_store`'s), pulling a name as
        ``pull`` says (:func:`find_image`), hold it, extract its layers and make the scratch
        dir. ``mountpoints`` are ``(path, is_file)`` to exist in the root. ``maps``: the maps
        of the sandbox's user namespace, for which the layers are extracted (owners kept, see
        :meth:`Store.layer_dirs`).

        Raises:
            ConfigError: a bad reference.
            ImageError (ImageNotFound, Unauthorized, RegistryUnreachable, DigestMismatch ...):
                the image cannot be found, pulled or extracted.
            UnsupportedError: the image is for a platform this host cannot run.
        """
        from isolate.image._binfmt import check_runnable

        store = store if store is not None else open_store()
        img = find_image(store, image, pull)
        check_runnable(img.platform)
        # (os.urandom: secrets.token_hex's bytes, without the hmac and OpenSSL hashlib that
        # secrets loads)
        holder = f"sandbox-{os.getpid()}-{os.urandom(6).hex()}"
        store.hold(img, holder, for_process=True)
        scratch = store.tmp.name("sandbox")
        try:
            lowers = store.layer_dirs(img, maps=maps)
            os.mkdir(scratch, 0o700)
            top = os.path.join(scratch, "mountpoints")
            os.mkdir(top, 0o755)
            deferred: list[tuple[str, str]] = []
            for path, is_file in mountpoints:
                _make_mountpoint(top, path, is_file, lowers, deferred)
            if deferred and maps is not None and maps.subordinate:
                # Directories of a mapped owner (an image user's home): only a helper in
                # the namespace may give our copies their owner.
                from isolate._mapped import MappedWorker

                with MappedWorker(maps) as worker:
                    worker.copy_metadata(deferred)
            # overlayfs needs a lower dir for an image without layers too: the top one is it.
            lowers = [*lowers, top]
        except BaseException:
            remove_tree(scratch)
            store.release(holder)
            raise
        # Rootless, layers were extracted with user.overlay.* xattrs and overlayfs must read
        # (and write) those; as root they are trusted.overlay.*, unless a helper extracted
        # them in a user namespace for the maps.
        mapped = maps is not None and maps.subordinate
        options = ("userxattr",) if rootless and (os.geteuid() != 0 or mapped) else ()
        return cls(store, img, holder, lowers, scratch, options, maps if mapped else None)

    def choose_overlay(self, mode: str, userns_fd: int | None, *, writable: bool,
                       die_with_parent: bool = True) -> None:
        """Pick who mounts the root: ``"kernel"`` (overlayfs in each process's mount
        namespace), ``"fuse"`` (one fuse-overlayfs process for the sandbox, started now), or
        ``"auto"``: the kernel, unless it refuses overlayfs in the user namespace
        ``userns_fd`` (a rootless sandbox), then fuse-overlayfs. As root, without a user
        namespace, "auto" never needs to ask. ``writable``: fuse-overlayfs gets one upper dir
        for the whole sandbox (the kernel path makes one per process). ``die_with_parent``:
        fuse-overlayfs ends when the calling process does (as the sandbox's processes do).

        Raises:
            UnsupportedError: fuse-overlayfs is needed but not installed.
            MountError: fuse-overlayfs failed to mount, or the kernel probe failed for another
                reason than a missing feature.
        """
        from isolate._fuse_root import FuseRoot, kernel_overlay_works

        if mode == "kernel" or (mode == "auto" and userns_fd is None):
            return
        if mode == "auto" and kernel_overlay_works(self.overlay_op(0), userns_fd, self.options):
            return
        upper = self.new_upper() if writable else None
        merged = os.path.join(self.scratch, "merged")
        os.mkdir(merged, 0o755)
        # As real root, fuse-overlayfs stays outside the sandbox's user namespace: layers the
        # store extracted as root mark opaque dirs with trusted.* xattrs, which only the
        # initial user namespace can read. Unprivileged it must run inside to mount at all.
        inside = userns_fd if os.geteuid() != 0 else None
        self.fuse = FuseRoot.start(self.lowers, merged, upper=upper, userns_fd=inside,
                                   log=os.path.join(self.scratch, "fuse-overlayfs.log"),
                                   die_with_parent=die_with_parent)

    def mount_join(self) -> tuple[Op | None, bool]:
        """With fuse-overlayfs: the op joining the mount namespace that holds its mount, and
        whether it goes after joining the sandbox's user namespace (True) or before (False).
        A process must unshare its mount namespace after it, to mount on a copy."""
        if self.fuse is None:
            return None, False
        return self.fuse.join_op(), self.fuse.in_userns

    @property
    def upper_per_process(self) -> bool:
        """Whether each writable process gets its own upper dir (kernel overlayfs) rather
        than the sandbox's one (fuse-overlayfs: :attr:`shared_upper`)."""
        return self.fuse is None

    @property
    def shared_upper(self) -> str | None:
        """fuse-overlayfs's upper dir, shared by all processes of a writable sandbox."""
        return self.fuse.upper if self.fuse is not None else None

    def overlay_op(self, slot: int, upper: tuple[str, str] | None = None) -> Op:
        """The op that mounts this root (lower-only, or with ``(upper, work)``) into ``slot``;
        with fuse-overlayfs, the op that clones its mount (``upper`` is then its own)."""
        note = f"mount image {self.image.short_id} ({len(self.image.layers)} layers)"
        if self.fuse is not None:
            return self.fuse.root_op(slot, note=note + " through fuse-overlayfs")
        from isolate import _plan, _sys

        up, work = upper if upper is not None else (None, None)
        # A process's upper dir is thrown away with the sandbox: nothing to sync at its end.
        options = self.options + (_sys.overlay_volatile() if upper is not None else ())
        return _plan.overlay(self.lowers, upper=up, work=work, slot=slot,
                             options=options, note=note)

    def new_upper(self) -> tuple[str, str]:
        """A fresh (upper, work) dir pair in the scratch dir: one process's writes."""
        self._count += 1
        base = os.path.join(self.scratch, f"rw{self._count}")
        os.mkdir(base, 0o700)
        upper, work = os.path.join(base, "upper"), os.path.join(base, "work")
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        return upper, work

    def close(self) -> None:
        """Stop fuse-overlayfs (if it runs), remove the scratch dir (all upper dirs) and
        release the hold."""
        fuse, self.fuse = self.fuse, None
        try:
            if fuse is not None:
                fuse.close()
        finally:
            try:
                self._remove_scratch()
            finally:
                self.store.release(self.holder)

    def _remove_scratch(self) -> None:
        """Remove the scratch dir. The upper dirs of an id-mapped root hold files of the
        mapped owners (what uid 1000 wrote inside), which only a helper in a user namespace
        with the same maps may remove."""
        from isolate._mapped import remove_tree as remove_mapped

        remove_mapped(self.scratch, self.maps)

    def defaults(self) -> dict[str, object]:
        """Run defaults from the image config: ``env`` (with PATH and HOME when the image
        has none), ``cwd``, and ``uid``/``gid`` from its User.

        Raises:
            ImageError: the image's User names a user or group it does not define.
        """
        cfg = self.image.config
        env = cfg.env_dict
        env.setdefault("PATH", DEFAULT_PATH)
        out: dict[str, object] = {"env": env}
        if cfg.working_dir:
            out["cwd"] = cfg.working_dir
        if cfg.user:
            uid, gid = parse_user(cfg.user, self.lowers)
            out["uid"], out["gid"] = uid, gid
        env.setdefault("HOME", "/root" if not out.get("uid") else "/")
        return out


def _make_mountpoint(top: str, path: str, is_file: bool, lowers: Sequence[str] = (),
                     deferred: list[tuple[str, str]] | None = None) -> None:
    """Make ``path`` (and its parents) in the mount-point layer ``top``. A directory the
    image already has gets the image's mode, owner and times: this layer lies above the
    image's, so overlayfs shows (and copies up) its directories' metadata, and a mount
    point below ``/root`` must not turn the image's 0700 ``/root`` into 0755. A directory
    whose owner we may not give (a mapped owner's, rootless) is left to the caller:
    ``(made, the image's directory)`` is added to ``deferred``."""
    parts = [p for p in path.split("/") if p]
    cur = top
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        last = i == len(parts) - 1
        if last and is_file:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(cur, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC,
                                 0o644))
        else:
            try:
                os.mkdir(cur, 0o755)
            except FileExistsError:
                continue
            _copy_dir_metadata(cur, "/".join(parts[:i + 1]), lowers, deferred)


def _copy_dir_metadata(made: str, rel: str, lowers: Sequence[str],
                       deferred: list[tuple[str, str]] | None = None) -> None:
    """Give ``made`` the metadata of directory ``rel`` in the topmost layer that has it (or,
    when its owner may not be given here, add the pair to ``deferred``)."""
    for layer in reversed(lowers):
        source = os.path.join(layer, rel)
        try:
            st = os.lstat(source)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            return  # a file, symlink or whiteout hides what lies below
        try:
            os.chown(made, st.st_uid, st.st_gid)
        except PermissionError:
            if deferred is not None:
                deferred.append((made, source))
            return
        except OSError:
            return
        with contextlib.suppress(OSError):
            os.chmod(made, stat.S_IMODE(st.st_mode))
            os.utime(made, ns=(st.st_atime_ns, st.st_mtime_ns))
        return


def check_rootless_user(uid: int | None, gid: int | None, image: Image, maps: IdMaps) -> None:
    """A rootless sandbox maps the ids of ``maps`` (its user namespace's); an image whose User
    is another id cannot run as it.

    Raises:
        UnsupportedError: ``uid`` or ``gid`` is not mapped; the message says how to map it, or
            to run as uid 0 instead.
    """
    maps.check(uid, gid, f"image {image.short_id} (User {image.config.user!r})")
