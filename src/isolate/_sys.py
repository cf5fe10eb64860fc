"""The only importer of ``isolate._native``: calls into C, checks results, raises typed errors.

Everything above this module sees Python values and isolate exceptions, never cffi objects or
raw return codes. It holds no policy: which namespaces, which mounts, in which order, is decided
by the layers above.
"""

from __future__ import annotations

import errno
import os
import struct

from isolate import _memo
from isolate._native._isolate import ffi, lib
from isolate._typing import TYPE_CHECKING
from isolate.errors import IsolateOSError, MountError, NamespaceError, SpawnError

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "LayerUnpacker",
    "bpf_prog_attach",
    "bpf_prog_load",
    "clone3_works",
    "fsconfig",
    "fsmount",
    "fsopen",
    "mount",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "openat2",
    "pidfd_open",
    "pidfd_send_signal",
    "pivot_root",
    "sethostname",
    "setns",
    "spawn",
    "umount2",
    "unshare",
    "vfork_into_cgroup_works",
]

_lib: Any = lib


def _path(value: str | bytes | os.PathLike[str] | None) -> Any:
    if value is None:
        return ffi.NULL
    return os.fsencode(value)


def _fail(cls: type[IsolateOSError], message: str, filename: Any = None,
          step: str | None = None) -> IsolateOSError:
    err = ffi.errno
    return cls(err, message, os.fsdecode(filename) if filename is not None else None, step=step)


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace behind ``fd`` (this thread only, for most kinds);
    ``nstype`` is the ``CLONE_NEW*`` kind the kernel checks it against (0: any).

    Raises NamespaceError (``step="setns"``) with the errno.
    """
    if _lib.iso_setns(fd, nstype) < 0:
        raise _fail(NamespaceError, f"setns fd {fd}", step="setns")


def unshare(flags: int) -> None:
    """unshare(2): move the calling thread into new namespaces (``CLONE_NEW*`` flags).

    Raises NamespaceError (``step="unshare"``) with the errno.
    """
    if _lib.iso_unshare(flags) < 0:
        raise _fail(NamespaceError, f"unshare {flags:#x}", step="unshare")


def new_netns() -> int:
    """A new network namespace with ``lo`` up, made by the calling thread, which is back in
    its own namespace on return: an O_CLOEXEC fd of it, the caller's to close.

    Raises NamespaceError with the errno: ``step="new netns"`` when none was made,
    ``step="return"`` when the thread could not go back to its own namespace (it is still in
    the new one and must run nothing that opens sockets)."""
    stranded = ffi.new("int *")
    fd = int(_lib.iso_new_netns(stranded))
    if fd < 0:
        raise _fail(NamespaceError, "a new network namespace",
                    step="return" if stranded[0] else "new netns")
    return fd


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) of the calling process's mount namespace: ``new_root`` becomes ``/``,
    the old root is moved to ``put_old`` (below ``new_root``).

    Raises MountError (``step="pivot_root"``) with the errno.
    """
    if _lib.iso_pivot_root(_path(new_root), _path(put_old)) < 0:
        raise _fail(MountError, f"pivot_root to {new_root}", new_root, step="pivot_root")


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None = None,
          flags: int = 0, data: str | None = None) -> None:
    """mount(2) in the calling process's mount namespace (``MS_*`` flags).

    Raises MountError (``step="mount"``) naming the filesystem, the target and the options.
    """
    if _lib.iso_mount(_path(source), _path(target), _path(fstype), flags, _path(data)) < 0:
        what = fstype or "bind"
        extra = f" ({data})" if data else ""
        raise _fail(MountError, f"mount {what} on {os.fsdecode(target)}{extra}", target,
                    step="mount")


def umount2(target: str | os.PathLike[str], flags: int = 0) -> None:
    """umount2(2) of ``target`` (``MNT_*`` flags). Raises MountError (``step="umount"``)."""
    if _lib.iso_umount2(_path(target), flags) < 0:
        raise _fail(MountError, f"umount {os.fsdecode(target)}", target, step="umount")


def mount_setattr(target: str | os.PathLike[str] | int, *, attr_set: int = 0,
                  attr_clr: int = 0, propagation: int = 0, recursive: bool = False) -> None:
    """mount_setattr(2) on a path, or on an fd (AT_EMPTY_PATH): set ``attr_set``, clear
    ``attr_clr`` (``MOUNT_ATTR_*``), change ``propagation`` (``MS_PRIVATE`` ...).

    Raises MountError (``step="mount_setattr"``) with the errno.
    """
    flags = 0x8000 if recursive else 0  # AT_RECURSIVE
    if isinstance(target, int):
        r = _lib.iso_mount_setattr(target, b"", flags | 0x1000, attr_set, attr_clr,
                                   propagation)
    else:
        r = _lib.iso_mount_setattr(-100, _path(target), flags, attr_set, attr_clr, propagation)
    if r < 0:
        raise _fail(MountError, f"change mount attributes of {target}", step="mount_setattr")


def open_tree(path: str | os.PathLike[str], flags: int) -> int:
    """open_tree(2): an fd of the mount at ``path`` (``OPEN_TREE_CLONE`` = 1 for a detached
    copy, ``AT_RECURSIVE`` = 0x8000 with the mounts below). The caller closes it.

    Raises MountError (``step="open_tree"``) with the errno.
    """
    fd = int(_lib.iso_open_tree(-100, _path(path), flags))
    if fd < 0:
        raise _fail(MountError, f"open_tree {os.fsdecode(path)}", path, step="open_tree")
    return fd


def move_mount(from_fd: int, to_path: str | os.PathLike[str], *, to_fd: int = -100) -> None:
    """move_mount(2): attach the mount tree ``from_fd`` (from :func:`open_tree` or
    :func:`fsmount`) at ``to_path`` (relative to ``to_fd``).

    Raises MountError (``step="move_mount"``) with the errno.
    """
    flags = 0x4  # MOVE_MOUNT_F_EMPTY_PATH
    if _lib.iso_move_mount(from_fd, b"", to_fd, _path(to_path), flags) < 0:
        raise _fail(MountError, f"attach mount on {os.fsdecode(to_path)}", to_path,
                    step="move_mount")


def fsopen(fstype: str, flags: int = 0x1) -> int:
    """fsopen(2); FSOPEN_CLOEXEC by default."""
    fd = int(_lib.iso_fsopen(fstype.encode(), flags))
    if fd < 0:
        raise _fail(MountError, f"fsopen {fstype}", step="fsopen")
    return fd


FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | bytes | None = None,
             aux: int = 0, *, what: str = "") -> None:
    """fsconfig(2) on an :func:`fsopen` fd (``FSCONFIG_*`` command, key, value).

    Raises MountError (``step="fsconfig"``) naming ``what`` (or the key and value).
    """
    raw: Any = ffi.NULL if value is None else (value if isinstance(value, bytes)
                                               else value.encode())
    k: Any = ffi.NULL if key is None else key.encode()
    if _lib.iso_fsconfig(fd, cmd, k, raw, aux) < 0:
        detail = what or (f"{key}={value!r}" if key else f"command {cmd}")
        raise _fail(MountError, f"configure filesystem: {detail}", step="fsconfig")


def fsmount(fd: int, flags: int = 0x1, attr_flags: int = 0) -> int:
    """fsmount(2): a detached mount fd of a configured filesystem (FSMOUNT_CLOEXEC default).

    Raises MountError (``step="fsmount"``) with the errno.
    """
    mfd = int(_lib.iso_fsmount(fd, flags, attr_flags))
    if mfd < 0:
        raise _fail(MountError, "fsmount", step="fsmount")
    return mfd


def openat2(dir_fd: int, path: str | os.PathLike[str], flags: int, mode: int = 0,
            resolve: int = 0) -> int:
    """openat2(2): open ``path`` relative to ``dir_fd`` with ``RESOLVE_*`` restrictions
    (``RESOLVE_IN_ROOT`` = 0x10 keeps symlinks inside ``dir_fd``). The caller closes the fd.

    The kernel answers EAGAIN to ``RESOLVE_IN_ROOT``/``RESOLVE_BENEATH`` when a rename
    anywhere raced a ``..`` in the walk and it could not prove the walk stayed inside: that
    is retried (as openat2(2) suggests), a bounded number of times.

    Raises IsolateOSError (``step="openat2"``) with the errno and the path.
    """
    for _ in range(_OPENAT2_TRIES):
        fd = int(_lib.iso_openat2(dir_fd, _path(path), flags, mode, resolve))
        if fd >= 0:
            return fd
        if ffi.errno != errno.EAGAIN or not resolve & _RESOLVE_SCOPED:
            break
    raise _fail(IsolateOSError, f"open {os.fsdecode(path)}", path, step="openat2")


_OPENAT2_TRIES = 64
_RESOLVE_SCOPED = 0x08 | 0x10  # RESOLVE_BENEATH | RESOLVE_IN_ROOT


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2): a close-on-exec fd that refers to process ``pid`` (readable once it
    has exited; never a recycled pid). Raises IsolateOSError (``step="pidfd_open"``)."""
    fd = int(_lib.iso_pidfd_open(pid, flags))
    if fd < 0:
        raise _fail(IsolateOSError, f"pidfd_open {pid}", step="pidfd_open")
    return fd


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """pidfd_send_signal(2): signal the process behind ``pidfd``.

    Raises IsolateOSError (``step="pidfd_send_signal"``; ESRCH once it has been reaped).
    """
    if _lib.iso_pidfd_send_signal(pidfd, sig, 0) < 0:
        raise _fail(IsolateOSError, f"send signal {sig}", step="pidfd_send_signal")


def sethostname(name: str) -> None:
    """sethostname(2) in the calling thread's uts namespace.

    Raises NamespaceError (``step="sethostname"``) with the errno.
    """
    raw = name.encode()
    if _lib.iso_sethostname(raw, len(raw)) < 0:
        raise _fail(NamespaceError, f"sethostname {name!r}", step="sethostname")


_BPF_PROG_LOAD = 5
_BPF_PROG_ATTACH = 8
_BPF_LOG_SIZE = 1 << 16
_BPF_LOAD_ATTEMPTS = 5


def _address(buf: Any) -> int:
    return int(ffi.cast("uintptr_t", buf))


def bpf_prog_load(prog_type: int, insns: bytes, license: str = "GPL") -> int:
    """bpf(BPF_PROG_LOAD): load ``insns`` (``struct bpf_insn[]``) as a ``prog_type`` program;
    returns its fd (O_CLOEXEC, as the kernel makes every BPF fd). A program the verifier
    rejects is tried once more to put the verifier's log in the error.

    Raises:
        IsolateOSError: the kernel refused it (EPERM without the capability, EINVAL with the
            verifier's reason), ``step="bpf"``.
    """
    code = ffi.new("char[]", insns)
    lic = ffi.new("char[]", license.encode())
    log = ffi.new("char[]", _BPF_LOG_SIZE)
    for log_level in (0, 1):
        # union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type (72 bytes).
        attr = bytearray(72)
        struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(insns) // 8, _address(code),
                         _address(lic), log_level, _BPF_LOG_SIZE if log_level else 0,
                         _address(log) if log_level else 0)
        for _attempt in range(_BPF_LOAD_ATTEMPTS):
            fd = int(_lib.iso_bpf(_BPF_PROG_LOAD, ffi.from_buffer(attr), len(attr)))
            err = ffi.errno
            # EAGAIN: the verifier stopped for a signal that arrived meanwhile (as libbpf
            # does, try again a few times)
            if fd >= 0 or err != 11:
                break
        if fd >= 0:
            return fd
        if err != 22 or log_level:  # EINVAL: ask the verifier why
            text = ffi.string(log).decode(errors="replace").strip() if log_level else ""
            raise IsolateOSError(err, "load BPF program" + (f" ({text[-500:]})" if text
                                                            else ""), step="bpf")
    raise AssertionError("unreachable")


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """bpf(BPF_PROG_ATTACH): attach program ``prog_fd`` to ``target_fd`` (a cgroup dir).

    Raises:
        IsolateOSError: the kernel refused it, ``step="bpf"``.
    """
    attr = bytearray(struct.pack("=IIIII", target_fd, prog_fd, attach_type, flags, 0))
    if _lib.iso_bpf(_BPF_PROG_ATTACH, ffi.from_buffer(attr), len(attr)) < 0:
        raise _fail(IsolateOSError, "attach BPF program", step="bpf")


def clone3_works() -> bool:
    """Whether the kernel has clone3 (asks it once per call). Raises nothing."""
    return bool(_lib.iso_clone3_works())


@_memo.lru_cache(maxsize=1)
def vfork_into_cgroup_works() -> bool:
    """Whether a VFORK plan may carry a ``cgroup_fd`` (``clone3`` with ``CLONE_VM`` and
    ``CLONE_INTO_CGROUP``: this build has the wrapper, for x86-64, and the kernel clone3;
    CLONE_INTO_CGROUP itself needs Linux 5.7). Asked once. Raises nothing."""
    return bool(_lib.iso_vfork_into_cgroup_works()) and _kernel_at_least(5, 7)


#: The overlay option that skips the sync of the upper dir's filesystem at unmount.
VOLATILE = "volatile"


@_memo.lru_cache(maxsize=1)
def overlay_volatile() -> tuple[str, ...]:
    """``("volatile",)`` where overlayfs takes it (Linux 5.10), else ``()``: the options of an
    overlay whose upper dir nobody needs after a crash of the machine (a throwaway root, a
    build step's, an ``auto_remove`` container's). Without it the overlay's unmount, at the
    end of its last process, syncs the whole filesystem of the upper dir (0.4 ms here on a
    quiet disk, 1.5 ms and more on a busy one) while the caller waits for that end.
    Such a work dir keeps ``work/incompat/volatile`` and refuses a second mount until it is
    gone: :func:`clear_volatile`. Asked once. Raises nothing."""
    return (VOLATILE,) if _kernel_at_least(5, 10) else ()


def clear_volatile(work: str) -> None:
    """Remove the mark a ``volatile`` overlay leaves in its ``work`` dir, so that the dir can
    be mounted again (as podman does before it mounts a volatile container's root again).
    Only for a work dir no mounted overlay uses: the mark is how the kernel tells a mount
    after a crash, whose upper dir may have lost writes, and nothing outlives a crash
    that uses one (what would mount it again is removed with its container). Raises nothing."""
    mark = os.path.join(work, "work", "incompat", VOLATILE)
    for remove, path in ((os.unlink, os.path.join(mark, "dirty")), (os.rmdir, mark)):
        try:
            remove(path)
        except OSError:
            pass


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        got = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
    except ValueError:
        return False
    return got >= (major, minor)


def spawn(plan: bytearray) -> tuple[int, int]:
    """Clone a child that runs ``plan`` (made by :meth:`isolate._plan.Plan.encode`).

    Returns ``(pid, pidfd)``. Set-up failures in the child are reported on the plan's status
    fd, not here; this raises :class:`SpawnError` only when the clone itself fails.
    """
    out = ffi.new("struct iso_spawn_result *")
    buf = ffi.from_buffer("uint8_t[]", plan)
    if _lib.iso_spawn(buf, len(plan), out) < 0:
        err = int(out.err)
        step = "clone" if out.step == 100 else "plan"
        raise SpawnError(err, f"spawn: {step} failed", step=step)
    return int(out.pid), int(out.pidfd)


_DIR_RECORD = struct.Struct("<IIIqHH")


class LayerUnpacker:
    """The C fast path of layer extraction (extract.c) over one destination root fd.

    :meth:`feed` unpacks the plain entries of a tar stream chunk by chunk and stops at the first
    header it leaves to the caller. The caller owns ``root_fd``; :meth:`close` frees the rest.
    """

    def __init__(self, root_fd: int, *, chown: bool, track_created: bool) -> None:
        self._x = ffi.new("struct iso_extract *")
        self._consumed = ffi.new("uint64_t *")
        flags = (_lib.ISO_X_CHOWN if chown else 0) | (
            _lib.ISO_X_TRACK_CREATED if track_created else 0)
        _lib.iso_extract_init(self._x, root_fd, flags)

    def feed(self, buf: bytes, at: int) -> tuple[bool, int]:
        """Unpack from ``buf[at:]``. Returns ``(handoff, used)``: ``used`` bytes were taken;
        with ``handoff`` the next header is the caller's, else all of the input that could be
        used was (a partial header, or the middle of a file's data, is left or kept pending).

        Raises IsolateOSError (``step="extract"``, errno and entry name kept) when a filesystem
        call failed after an entry was begun.
        """
        view = ffi.from_buffer("uint8_t[]", buf)
        r = _lib.iso_extract_feed(self._x, view + at, len(buf) - at, self._consumed)
        used = int(self._consumed[0])
        if r == _lib.ISO_X_ERROR:
            name = self.entry
            raise IsolateOSError(int(self._x.err), f"cannot extract layer entry {name!r}", name,
                                 step="extract")
        return r == _lib.ISO_X_HANDOFF, used

    @property
    def entry(self) -> str:
        """The name of the entry last begun, decoded as tarfile decodes names."""
        return os.fsdecode(ffi.string(self._x.entry))

    @property
    def owner(self) -> tuple[int, int]:
        """``(uid, gid)`` of the file or symlink last begun (what a failed chown asked for)."""
        return int(self._x.uid), int(self._x.gid)

    @property
    def data_pending(self) -> int:
        """Bytes of the current file's data not yet seen."""
        return int(self._x.remaining)

    @property
    def padding_pending(self) -> int:
        return int(self._x.padding)

    @property
    def files(self) -> int:
        return int(self._x.files)

    @property
    def written(self) -> int:
        """Regular-file data written."""
        return int(self._x.bytes)

    def take_created(self) -> list[bytes]:
        """The paths (normalised, ``/``-separated) created since the last call."""
        x = self._x
        if not x.created_len:
            return []
        data = ffi.buffer(x.created, x.created_len)[:]
        x.created_len = 0
        paths: list[bytes] = data.split(b"\0")[:-1]
        return paths

    def take_dirs(self) -> list[tuple[bytes, bytes, int, int, int, int]]:
        """Directory entries made since the last call, in archive order:
        ``(path, entry, mode, uid, gid, mtime)``."""
        x = self._x
        if not x.dirs_len:
            return []
        data = ffi.buffer(x.dirs, x.dirs_len)[:]
        x.dirs_len = 0
        result = []
        at = 0
        size = _DIR_RECORD.size
        while at < len(data):
            mode, uid, gid, mtime, plen, elen = _DIR_RECORD.unpack_from(data, at)
            at += size
            path = data[at : at + plen]
            entry = data[at + plen : at + plen + elen]
            at += plen + elen
            result.append((path, entry, mode, uid, gid, mtime))
        return result

    def forget_dirs(self) -> None:
        """Drop the cached directory fd: the caller is about to change the tree."""
        _lib.iso_extract_forget_dirs(self._x)

    def close(self) -> None:
        _lib.iso_extract_release(self._x)
