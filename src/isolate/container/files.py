"""A container's files from outside: ``cp`` both ways, ``export``, ``diff``, and the views
they work through.

Owns getting at a container's root without mounting anything where anyone else sees it: a
running container's through ``/proc/PID/root`` (its own mount namespace), a stopped one's
through a *view*, an overlay mounted by a short-lived child in a namespace of its own and held
by one fd (:func:`isolate.runtime.view_plan`). Every path is resolved inside that root
(``RESOLVE_IN_ROOT``), so a symlink in the container never leads out of it; what is written
into it is unpacked by :func:`isolate.fs.layers.extract`, which follows no symlink at all.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from typing import IO, BinaryIO, cast

from isolate import _plan, _record, lowlevel
from isolate.container.users import open_in_root
from isolate.errors import ConfigError, IsolateOSError, NotFoundError
from isolate.fs import layers as fslayers
from isolate.namespaces import IdMap
from isolate.runtime import view_plan

__all__ = ["Change", "changes", "get_archive", "open_view", "put_archive", "resolve_in"]



@contextlib.contextmanager
def open_view(lowers: Sequence[str], upper: tuple[str, str] | None = None, *,
              userxattr: bool = False, writable: bool = False) -> Iterator[int]:
    """An ``O_PATH`` fd of the overlay of ``lowers`` (lowest first) for the ``with`` body.

    Read-only, an ``upper`` dir is stacked as the topmost lower (its whiteouts and opaque
    dirs mean the same there), so the work dir is never touched; with ``writable`` it is the
    overlay's upper dir (``(upper, work)``), for writes into a stopped container. Rootless,
    the child maps our own ids in a user namespace of its own.

    Raises:
        MountError: the overlay cannot be mounted.
    """
    if upper is not None and not writable:
        lowers, upper = [*lowers, upper[0]], None
    up, work = upper if upper is not None else (None, None)
    if work is not None:
        # A stopped auto_remove container's work dir may keep its volatile run's mark,
        # which refuses any mount (an overlay of a stopped container uses it no more).
        from isolate import _sys

        _sys.clear_volatile(work)
    op = _plan.overlay(list(lowers), upper=up, work=work, slot=0,
                       options=("userxattr",) if userxattr else (),
                       note="mount the container's files")
    self_map = None
    if os.geteuid() != 0:
        self_map = (IdMap.self_map("uid"), IdMap.self_map("gid"))
    with lowlevel.spawn(view_plan(op, self_map=self_map)) as child:
        child.wait()
        opened = [fd for _, fd in sorted(child.opened.items())]
    try:
        yield opened[0]  # the tree; opened[1], its namespace, keeps it attached
    finally:
        for fd in opened:
            os.close(fd)


def resolve_in(root_fd: int, path: str, flags: int = os.O_PATH) -> int:
    """Open ``path`` inside the root ``root_fd`` (symlinks resolved as the container would,
    never above its root; no magic links).

    Raises:
        NotFoundError: the path does not exist in the container (Docker's words).
        IsolateOSError: another failure.
    """
    try:
        return open_in_root(root_fd, path, flags)
    except IsolateOSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFoundError(f"Could not find the file {path} in container",
                                kind="path", ref=path) from None
        raise


def _split(path: str) -> tuple[str, str]:
    norm = os.path.normpath("/" + path.lstrip("/"))
    if norm == "/":
        return "/", "."
    return os.path.dirname(norm), os.path.basename(norm)


def get_archive(root_fd: int, path: str, out: BinaryIO) -> tarfile.TarInfo:
    """Write ``path`` of the container (a file, or a directory with all below it) to ``out``
    as a tar whose entries are named from the path's last component, as ``docker cp`` makes
    it; returns the entry of ``path`` itself. The parent directories are resolved inside the
    root; the last component and everything below it are not followed (a symlink is copied
    as a symlink).

    Raises:
        NotFoundError: no such path in the container.
        IsolateOSError: reading failed.
    """
    parent, base = _split(path)
    pfd = resolve_in(root_fd, parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if base == ".":
            name = "."
            st = os.fstat(pfd)
            fd = os.dup(pfd)
        else:
            try:
                fd = os.open(base, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
            except FileNotFoundError:
                raise NotFoundError(f"Could not find the file {path} in container",
                                    kind="path", ref=path) from None
            st = os.fstat(fd)
            name = base
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            try:
                top = _add(tar, fd, st, name, pfd, base)
            finally:
                os.close(fd)
        return top
    except OSError as exc:
        if isinstance(exc, IsolateOSError):
            raise
        raise IsolateOSError(exc.errno or errno.EIO, f"cannot read {path} of the container",
                             path, step="get_archive") from exc
    finally:
        os.close(pfd)


def _tarinfo(name: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    return ti


def _add(tar: tarfile.TarFile, fd: int, st: os.stat_result, name: str, parent_fd: int,
         base: str) -> tarfile.TarInfo:
    """Add the O_PATH ``fd`` (``base`` in ``parent_fd``) as ``name``, recursing into a
    directory through fds only."""
    ti = _tarinfo(name, st)
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        ti.type = tarfile.DIRTYPE
        tar.addfile(ti)
        dfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd) \
            if base == "." else os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                        | os.O_CLOEXEC, dir_fd=parent_fd)
        try:
            for entry in sorted(os.listdir(dfd)):
                cfd = os.open(entry, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                try:
                    _add(tar, cfd, os.fstat(cfd), f"{name}/{entry}" if name != "." else entry,
                         dfd, entry)
                finally:
                    os.close(cfd)
        finally:
            os.close(dfd)
    elif stat.S_ISREG(mode):
        ti.size = st.st_size
        rfd = os.open(base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                      dir_fd=parent_fd)
        with os.fdopen(rfd, "rb") as f:
            tar.addfile(ti, f)
    elif stat.S_ISLNK(mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink("", dir_fd=fd)
        tar.addfile(ti)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        tar.addfile(ti)
    elif stat.S_ISFIFO(mode):
        ti.type = tarfile.FIFOTYPE
        tar.addfile(ti)
    return ti


def put_archive(root_fd: int, path: str, archive: IO[bytes] | str) -> None:
    """Unpack the tar ``archive`` (a stream or a file's path) into the directory ``path`` of
    the container, as ``docker cp`` (and the Engine API's ``PUT /archive``) does. The
    directory is resolved inside the root; the archive's entries are unpacked without
    following any symlink, so neither can reach outside the container.

    Raises:
        NotFoundError: ``path`` does not exist in the container.
        ConfigError: ``path`` is not a directory.
        UnsafeArchive: a hostile entry (``..``, absolute, through a symlink).
        IsolateOSError: writing failed.
    """
    fd = resolve_in(root_fd, path, os.O_RDONLY)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise ConfigError(f"extraction point is not a directory: {path}")
        fslayers.extract(archive if isinstance(archive, str) else cast(BinaryIO, archive),
                         f"/proc/self/fd/{fd}", whiteouts="keep")
    finally:
        os.close(fd)


@_record.record
class Change:
    """One line of ``docker diff``: ``kind`` is ``"A"`` (added), ``"C"`` (changed) or
    ``"D"`` (deleted)."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def _in_lowers(lowers: Sequence[str], rel: str) -> bool:
    from isolate.container.users import image_path_exists

    return image_path_exists(lowers, rel)


def changes(upper: str, lowers: Sequence[str]) -> list[Change]:
    """What a container changed in its image, from its overlay upper dir: a whiteout is
    ``D``, a path the image has is ``C`` (directories that hold a change too, as Docker
    lists them), anything else ``A``; sorted by path.

    Raises:
        IsolateOSError: the upper dir cannot be read.
    """
    out: list[Change] = []

    def walk(dirpath: str, rel: str) -> None:
        try:
            names = sorted(os.listdir(dirpath))
        except OSError as exc:
            raise IsolateOSError(exc.errno or errno.EIO, "cannot read the container's "
                                 "changes", dirpath, step="diff") from exc
        for name in names:
            full = os.path.join(dirpath, name)
            path = f"{rel}/{name}"
            st = os.lstat(full)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(Change("D", path))
                continue
            existed = _in_lowers(lowers, path)
            out.append(Change("C" if existed else "A", path))
            if stat.S_ISDIR(st.st_mode):
                walk(full, path)

    walk(upper, "")
    return sorted(out, key=lambda c: c.path)


# -- docker cp's path rules -------------------------------------------------------------------

def _stat_in(root_fd: int, path: str) -> os.stat_result | None:
    """lstat of ``path`` in the root (its parents resolved inside it), or None."""
    parent, base = _split(path)
    try:
        pfd = resolve_in(root_fd, parent, os.O_PATH | os.O_DIRECTORY)
    except NotFoundError:
        return None
    try:
        if base == ".":
            return os.fstat(pfd)
        try:
            return os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
    finally:
        os.close(pfd)


def _renamed(src: IO[bytes], out: IO[bytes], top: str | None) -> None:
    """Copy the tar ``src`` to ``out`` with its first component renamed to ``top`` (None:
    dropped, so the contents of the top directory land where it would have)."""
    with tarfile.open(fileobj=src, mode="r|") as tin, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            _, _, rest = member.name.partition("/")
            if top is None:
                if not rest:
                    continue  # the top directory itself: its target exists already
                member.name = rest
            else:
                member.name = top + ("/" + rest if rest else "")
            data = tin.extractfile(member) if member.isfile() else None
            tout.addfile(member, data)


def copy_out(root_fd: int, src: str, dst: str) -> None:
    """``docker cp CONTAINER:SRC DST``: a file becomes ``DST`` (or ``DST/name`` when ``DST``
    is a directory); a directory becomes ``DST`` when ``DST`` does not exist, else
    ``DST/name``; ``SRC/.`` copies a directory's contents into ``DST``. Symlinks are copied
    as symlinks; nothing of the container is followed out of it.

    Raises:
        NotFoundError: ``SRC`` is not in the container.
        ConfigError: a directory onto a file; ``DST/`` for a file when no such directory.
    """
    import tempfile

    st = _stat_in(root_fd, src)
    if st is None:
        raise NotFoundError(f"Could not find the file {src} in container", kind="path",
                            ref=src)
    src_dir = stat.S_ISDIR(st.st_mode)
    contents = src_dir and (src.endswith("/.") or src == ".")
    base = os.path.basename(os.path.normpath("/" + src.lstrip("/"))) or "."
    if os.path.isdir(dst):
        target_dir, top = dst, (None if contents else base)
    elif os.path.lexists(dst):
        if src_dir:
            raise ConfigError(f"cannot copy a directory to a file: {dst}")
        # extract() replaces the file (unlinks it first, never writes through a link).
        target_dir, top = os.path.dirname(os.path.abspath(dst)) or "/", os.path.basename(dst)
    else:
        if dst.endswith("/") and not src_dir:
            raise ConfigError(f"destination directory {dst} must exist")
        parent = os.path.dirname(os.path.abspath(dst.rstrip("/"))) or "/"
        if not os.path.isdir(parent):
            raise ConfigError(f"destination directory {parent} must exist")
        target_dir, top = parent, os.path.basename(dst.rstrip("/"))
        if contents:
            os.mkdir(os.path.join(parent, top), stat.S_IMODE(st.st_mode))
            target_dir, top = os.path.join(parent, top), None
    with tempfile.TemporaryFile() as raw, tempfile.TemporaryFile() as renamed:
        get_archive(root_fd, src, raw)  # type: ignore[arg-type]
        raw.seek(0)
        _renamed(raw, renamed, top)
        renamed.seek(0)
        fslayers.extract(cast(BinaryIO, renamed), target_dir, whiteouts="keep")


def copy_in(root_fd: int, src: str, dst: str) -> None:
    """``docker cp SRC CONTAINER:DST``, with the same rules as :func:`copy_out` the other
    way: resolved and written inside the container only.

    Raises:
        ConfigError: ``SRC`` is missing, a directory onto a file, a missing parent.
        NotFoundError: the parent of ``DST`` is not in the container.
    """
    import tempfile

    if not os.path.lexists(src):
        raise ConfigError(f"could not find the file {src} (no such file or directory)")
    src_dir = os.path.isdir(src) and not os.path.islink(src)
    contents = src_dir and (src.endswith("/.") or src == ".")
    base = os.path.basename(os.path.normpath(src))
    st = _stat_in(root_fd, dst)
    if st is not None and stat.S_ISDIR(st.st_mode):
        target, name = dst, (None if contents else base)
    elif st is not None:
        if src_dir:
            raise ConfigError(f"cannot copy a directory to a file: {dst}")
        target, name = os.path.dirname(os.path.normpath("/" + dst.lstrip("/"))), \
            os.path.basename(os.path.normpath(dst))
    else:
        if dst.endswith("/") and not src_dir:
            raise ConfigError(f"destination directory {dst} must exist")
        norm = os.path.normpath("/" + dst.lstrip("/"))
        target, name = os.path.dirname(norm), os.path.basename(norm)
    with tempfile.TemporaryFile() as buf:
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            if name is None:
                for entry in sorted(os.listdir(src)):
                    tar.add(os.path.join(src, entry), arcname=entry)
            else:
                tar.add(src, arcname=name)
        buf.seek(0)
        put_archive(root_fd, target, cast(IO[bytes], buf))
