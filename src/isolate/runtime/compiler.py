"""The compiler: a :class:`~isolate.runtime.RuntimeConfig` turned into spawn plans.

Owns the one place where a config's root, mounts, devices, masks, identity and security become
set-up operations in the kernel's order -- for a sandbox (namespaces and a root made once, then
many processes, each with its own pid namespace, ``/proc`` and private mounts), for a container
(one plan that builds everything in the container's first process) and for ``exec`` into a
running one. It builds plans and makes no system calls, except to look at the host where the
plan must match it (which top-level entries a spliced host root binds, which masked paths this
kernel has). Front-ends fill the config; none of them builds mount, identity or security ops.
"""

from __future__ import annotations

import os

from isolate import _memo, _plan, _record
from isolate._plan import Mode, Op, OpFlag, OpKind, Plan
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError
from isolate.fs.mounts import (
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    MS_STRICTATIME,
)
from isolate.namespaces import IdMap, NamespaceKind, write_id_maps
from isolate.runtime.config import Device, Mount, RuntimeConfig, User

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "ContainerPlan",
    "ProcessTemplate",
    "RootOps",
    "SharedNamespaces",
    "container_plan",
    "exec_plan",
    "identity_ops",
    "mountpoints",
    "root_ops",
    "shared_plan",
    "standard_mounts",
    "takes_netns",
    "view_plan",
]

_STAGING = "/tmp"
_NEWROOT = "/tmp/.isolate-root"
_EMPTY = "/tmp/.isolate-empty"
_SLOTS = 64
_DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
              ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
              ("ptmx", "pts/ptmx"), ("core", "/proc/kcore"))
_JOIN_ORDER = (NamespaceKind.USER, NamespaceKind.CGROUP, NamespaceKind.IPC,
               NamespaceKind.UTS, NamespaceKind.NET, NamespaceKind.MNT, NamespaceKind.TIME,
               NamespaceKind.PID)
_ATTR = {"ro": MOUNT_ATTR_RDONLY, "nosuid": MOUNT_ATTR_NOSUID, "nodev": MOUNT_ATTR_NODEV,
         "noexec": MOUNT_ATTR_NOEXEC}
_MS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
       "strictatime": MS_STRICTATIME}


def standard_mounts(*, own_network: bool, sysfs_writable: bool = False,
                    private_tmp: bool = False) -> list[Mount]:
    """The system mounts a process tree gets, as Docker's default spec lists them: a tmpfs on
    ``/dev`` (populated from the config's devices), ``devpts``, ``/dev/shm``, ``mqueue`` and
    ``/sys`` -- a fresh sysfs with a network namespace of its own, else the host's bound. With
    ``private_tmp``, a tmpfs on ``/tmp`` for each process. ``/proc`` needs no entry: every
    pid namespace gets a fresh one."""
    mounts = [
        Mount("/dev", "tmpfs", "tmpfs", ("nosuid", "strictatime", "mode=755", "size=65536k")),
        Mount("/dev/pts", "devpts", "devpts",
              ("nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=620")),
        Mount("/dev/shm", "tmpfs", "shm", ("nosuid", "nodev", "noexec", "mode=1777")),
        Mount("/dev/mqueue", "mqueue", "mqueue", ("nosuid", "nodev", "noexec")),
    ]
    ro = () if sysfs_writable else ("ro",)
    if own_network:
        mounts.append(Mount("/sys", "sysfs", "sysfs", ("nosuid", "nodev", "noexec", *ro)))
    else:
        mounts.append(Mount("/sys", "bind", "/sys", ("rbind", *ro)))
    if private_tmp:
        mounts.append(Mount("/tmp", "tmpfs", "tmpfs", ("nosuid", "nodev", "mode=1777"),
                            per_process=True))
    return mounts


# -- the root and the mounts ---------------------------------------------------------------------

def _flags(options: Sequence[str]) -> int:
    flags = 0
    for o in options:
        flags |= _MS.get(o, 0)
    return flags


def _attrs(options: Sequence[str]) -> int:
    out = 0
    for o in options:
        out |= _ATTR.get(o, 0)
    return out


def _mount_op(m: Mount, *, in_root: bool = True, optional: bool = False) -> Op:
    """A filesystem mount (not a bind) of ``m``."""
    return _plan.mount(m.source or m.type, m.destination, m.type, _flags(m.options), m.data,
                       in_root=in_root, mkdir=in_root, optional=optional)


def _bind_attach(m: Mount, slot: int) -> list[Op]:
    assert m.source is not None
    ops = [_plan.move_mount(slot, m.destination, is_file=not os.path.isdir(m.source),
                            source=m.source)]
    attr = _attrs(m.options)
    if attr:
        what = " ".join(o for o in m.options if o in _ATTR)
        ops.append(_plan.setattr_(m.destination, attr, in_root=True,
                                  recursive="bind" not in m.options,
                                  what=f"make {m.destination} {what}"))
    return ops


def _needs_spliced_root(cfg: RuntimeConfig) -> bool:
    """Whether a host-root config mounts something where the host has nothing.

    The read-only host root cannot grow a mount point, so then the root becomes a tmpfs with
    each top-level entry of the host bound into it (as bubblewrap builds roots), where new
    top-level directories can be made. Otherwise the whole host tree is bound at once.
    """
    if cfg.root.path is not None or not cfg.root.readonly:
        return False
    missing = [m.destination for m in _uncovered(cfg.mounts)
               if not os.path.lexists(m.destination)]
    for target in missing:
        top = "/" + target.split("/")[1]
        if os.path.lexists(top) and top != target:
            raise ConfigError(
                f"mount target {target} does not exist in the read-only host root, and only "
                f"new top-level directories can be made ({top} exists); use a target that "
                "exists, a new top-level path, or a writable root")
    return bool(missing)


def mountpoints(cfg: RuntimeConfig) -> list[tuple[str, bool]]:
    """``(path, is_file)`` of every mount point the config needs in its root before the root
    turns read-only: ``/proc``, ``/dev``, ``/sys`` and each mount's destination that no
    earlier mount covers (those are made once their parent is mounted; ``/tmp`` only when
    something is mounted there, such as a private tmp: a container of an image without
    ``/tmp`` gets none, as in Docker). An image root gets them in a layer of its own, so that
    a read-only root needs no writes."""
    out: list[tuple[str, bool]] = [(p, False) for p in ("/proc", "/dev", "/sys")]
    for m in _uncovered(cfg.mounts):
        point = (m.destination, m.type == "bind" and not os.path.isdir(m.source or "/"))
        if point not in out:
            out.append(point)
    return out


def _uncovered(mounts: Sequence[Mount]) -> list[Mount]:
    """The mounts whose destination no earlier mount covers: their mount points must be in
    the root itself (the others are made in the filesystem mounted above them)."""
    out: list[Mount] = []
    for i, m in enumerate(mounts):
        if not any(m.destination.startswith(e.destination.rstrip("/") + "/")
                   for e in mounts[:i]):
            out.append(m)
    return out


@_record.record
class RootOps:
    """A config's mount namespace set-up, in two parts: ``shared`` (what all processes of a
    sandbox can share: the new root, /dev, /sys, the mounts, masks of /sys, ``pivot_root``),
    and ``own`` (what each process needs for itself after the pivot, with plain paths: a
    ``/proc`` for its pid namespace with the masked and read-only paths, the ``per_process``
    mounts, the sysctls)."""

    shared: tuple[Op, ...]
    own: tuple[Op, ...]


def root_ops(cfg: RuntimeConfig, root: Op | None = None) -> RootOps:
    """Compile the root, mounts, devices and masks of ``cfg``.

    ``root`` is an op that puts the new root's tree in slot 0 (an image's overlay) instead of
    a clone of ``cfg.root.path`` or of the caller's root.

    Raises:
        ConfigError: a target the read-only host root cannot get, or too many binds.
    """
    P = _plan
    spliced = root is None and _needs_spliced_root(cfg)
    own_root = cfg.root.path is not None or root is not None
    # The caller's root becomes its namespace copy's root (a chrooted caller's copy holds
    # what lies above it), and nothing mounted from here on propagates out.
    before: list[Op] = [P.reroot()]
    # The host root is cloned last, past the sources cloned from it, once the host mounts
    # the sandbox covers are out of it (_hidden_mounts_out).
    host_root = root is None and not spliced and cfg.root.path is None
    if root is not None:
        before.append(root)
    elif not spliced and not host_root:
        before.append(P.open_tree(cfg.root.path or "/", 0))
    inside: list[Op] = []
    slot = 1
    device_slots: list[tuple[int, str, str]] = []
    # Nodes made with mknod (outside a user namespace, where CAP_MKNOD means it) need no slot.
    made = [d for d in cfg.devices if d.node is not None and not cfg.in_user_namespace]
    # Past the last slot, sources are only counted (and refused below, all at once).
    for dev in cfg.devices:
        assert dev.source is not None
        if dev.node is not None and not cfg.in_user_namespace:
            continue
        if slot < _SLOTS:
            before.append(P.open_tree(dev.source, slot, recursive=False,
                                      optional=dev.optional))
            device_slots.append((slot, dev.path, dev.source))
        slot += 1
    # A per-process mount with shared mounts below it is made once here too: their mount
    # points live in it, and each process takes them over into its own (_process_ops).
    shared_mounts = [m for m in cfg.mounts
                     if not m.per_process or _shared_below(cfg.mounts, m)]
    bind_slots: dict[int, int] = {}
    for i, m in enumerate(shared_mounts):
        if m.type == "bind":
            assert m.source is not None
            if slot < _SLOTS:
                before.append(P.open_tree(m.source, slot, recursive="bind" not in m.options))
                bind_slots[i] = slot
            slot += 1
    if spliced:
        for name in sorted(os.listdir("/")):
            path = "/" + name
            if name in ("proc", "sys", "dev", "tmp") and not (
                    name == "proc" and cfg.in_user_namespace):
                # (A user namespace needs the host's /proc shown to mount one: bound below.)
                inside.append(P.mkdir(path))
            elif os.path.islink(path):
                inside.append(P.symlink(os.readlink(path), path))
            else:
                if slot < _SLOTS:
                    before.append(P.open_tree(path, slot))
                    inside.append(P.move_mount(slot, path, is_file=not os.path.isdir(path),
                                               source=path))
                slot += 1
        for m in _uncovered(cfg.mounts):
            if not os.path.lexists(m.destination):
                is_file = m.type == "bind" and not os.path.isdir(m.source or "/")
                inside.append(P.mkdir(m.destination, is_file=is_file))
    proc_slot = -1
    if (own_root or spliced) and cfg.in_user_namespace:
        # In a user namespace the kernel mounts a new proc only where one is already fully
        # visible (mount_too_revealing). A clone of the host root brings the host's /proc
        # along; an own root, or a spliced one (a tmpfs with /proc only a directory), gets it
        # bound here, and each process covers it with a proc of its own.
        if slot < _SLOTS:
            before.append(P.open_tree("/proc", slot))
            proc_slot = slot
        slot += 1
    if host_root:
        before.extend(_hidden_mounts_out(cfg, shared_mounts))
        before.append(P.open_tree("/", 0))
    if slot > _SLOTS:
        bound = len(cfg.devices) - len(made)
        raise ConfigError(f"too many binds: {slot - 1 - bound} (the limit is "
                          f"{_SLOTS - 1 - bound}, counting the host's top-level entries)")

    if spliced:
        attach_root = P.mount("tmpfs", _NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755",
                              note="mount a tmpfs as the new root")
    else:
        attach_root = P.move_mount(
            0, _NEWROOT, in_root=False, create=False,
            source="the image" if root is not None else cfg.root.path or "/")
    staging = [
        P.mount("tmpfs", _STAGING, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700,size=16k"),
        P.mkdir(_NEWROOT, in_root=False),
        P.mkdir(_EMPTY, in_root=False),
        attach_root,
        Op(OpKind.ROOT, s2=_NEWROOT.encode(), note="open the new root"),
    ]
    if own_root:
        # Mount points must exist before the root turns read-only; in a host root they do.
        inside.extend(P.mkdir(path, is_file=is_file) for path, is_file in mountpoints(cfg))
    if proc_slot >= 0:
        inside.append(P.move_mount(proc_slot, "/proc", create=False, source="/proc"))
    # Before /dev and the mounts, which bring their own flags: no device node in the root is
    # usable unless the config says so (a read-only mount does not stop writes to one).
    root_attr = ((MOUNT_ATTR_RDONLY if cfg.root.readonly else 0)
                 | (MOUNT_ATTR_NODEV if cfg.root.nodev else 0))
    if root_attr:
        what = ", ".join(w for w, on in (("read-only", cfg.root.readonly),
                                         ("nodev", cfg.root.nodev)) if on)
        inside.append(P.setattr_("/", root_attr, in_root=True, recursive=True,
                                 what=f"make the root {what}"))
    for i, m in enumerate(shared_mounts):
        if m.type == "bind":
            inside.extend(_bind_attach(m, bind_slots[i]))
            continue
        inside.append(_mount_op(m))
        if m.destination == "/dev" and m.type == "tmpfs":
            inside.extend(_dev_ops(device_slots, made))
    sys_masks = [p for p in cfg.masked_paths if p.startswith("/sys/") and os.path.exists(p)]
    if sys_masks:
        # /sys masks go in before the pivot, while the staging tmpfs can lend them one empty
        # read-only directory: a bind of it is cheaper than a tmpfs per masked path.
        inside.append(P.mount(_EMPTY, _EMPTY, None, MS_BIND))
        inside.append(P.setattr_(_EMPTY, MOUNT_ATTR_RDONLY, what="make the mask read-only"))
    for path in sys_masks:
        inside.append(Op(OpKind.MASK, OpFlag.IN_ROOT, s1=_EMPTY.encode(), s2=path.encode(),
                         note=f"mask {path}"))
    after = [Op(OpKind.PIVOT_ROOT, OpFlag.IN_ROOT, s2=b"/", note="pivot_root into the new root")]
    return RootOps(tuple(before + staging + inside + after), tuple(_process_ops(cfg)))


def _hidden_mounts_out(cfg: RuntimeConfig, shared: Sequence[Mount]) -> list[Op]:
    """Leave out of the clone of the host root the host's mounts the sandbox covers.

    The host's ``/proc``, ``/sys`` and ``/dev`` (with the cgroup, tracing, devpts and shm
    mounts below them: 19 mounts here) lie under the sandbox's own, never seen, yet each
    process's copy of the mount namespace copied them and its end tore them down. In the
    shared child's private copy of the caller's namespace they are made unbindable, which a
    recursive clone skips with everything below; a target that is not a host mount is left
    as it is. Not in a user namespace: there the host's mounts are locked together (the
    clone would fail), and a new ``/proc`` needs the host's fully visible.
    """
    if cfg.in_user_namespace:
        return []
    covered = ["/proc"] + [m.destination for m in _uncovered(shared)]
    return [_plan.setattr_(path, propagation=_plan.MS_UNBINDABLE, recursive=True,
                           optional=True, if_mounted=True,
                           what=f"leave the host's {path} out of the root")
            for path in dict.fromkeys(covered)
            if path != "/" and os.path.isdir(path) and not os.path.islink(path)]


def _dev_ops(device_slots: Sequence[tuple[int, str, str]],
             made: Sequence[Device] = ()) -> list[Op]:
    """After a tmpfs on /dev: the configured device nodes (binds of the host's, and those
    made with mknod) and the standard symlinks. Built once per process for each set of
    devices (every container with Docker's default nodes has the same)."""
    return list(_dev_ops_of(tuple(device_slots), tuple(made)))


@_memo.lru_cache(maxsize=16)
def _dev_ops_of(device_slots: tuple[tuple[int, str, str], ...],
                made: tuple[Device, ...]) -> tuple[Op, ...]:
    out = []
    for slot, path, source in device_slots:
        op = _plan.move_mount(slot, path, is_file=True, source=source)
        out.append(_record.evolve(op, flags=op.flags | OpFlag.OPTIONAL))
    for dev in made:
        assert dev.node is not None
        kind, major, minor, mode, uid, gid = dev.node
        op = _plan.mknod(dev.path, kind, major, minor, mode=mode, uid=uid, gid=gid,
                         note=f"make the device node {dev.path}")
        out.append(_record.evolve(op, flags=op.flags | OpFlag.OPTIONAL) if dev.optional else op)
    for name, target in _DEV_LINKS:
        out.append(_plan.symlink(target, f"/dev/{name}"))
    return tuple(out)


def _shared_below(mounts: Sequence[Mount], per_process: Mount) -> list[Mount]:
    """The shared mounts (of ``mounts``) right below a per-process one (not below each
    other)."""
    prefix = per_process.destination.rstrip("/") + "/"
    out: list[Mount] = []
    for m in mounts:
        if not m.per_process and m.destination.startswith(prefix) and not any(
                m.destination.startswith(o.destination.rstrip("/") + "/") for o in out):
            out.append(m)
    return out


def _process_ops(cfg: RuntimeConfig) -> list[Op]:
    """After the pivot, for one process: a fresh /proc (masked as Docker masks it), the
    per-process mounts, the sysctls.

    Paths a kernel does not have are left out when the plan is made: the host's /proc shows
    what a fresh one will (same kernel), and each left-out path is one mount less per process.
    The ops are built once per process for each set of what they depend on (every container
    with Docker's masks has the same; the kernel's /proc does not change under a process).
    """
    if any(m.per_process for m in cfg.mounts):
        # (Their binds below look at the host's sources: built each time.)
        return list(_build_process_ops(cfg.sysctl, cfg.mounts, cfg.masked_paths,
                                       cfg.readonly_paths))
    return list(_process_ops_of(cfg.sysctl, cfg.masked_paths, cfg.readonly_paths))


@_memo.lru_cache(maxsize=16)
def _process_ops_of(sysctl: tuple[tuple[str, str], ...], masked_paths: tuple[str, ...],
                    readonly_paths: tuple[str, ...]) -> tuple[Op, ...]:
    return _build_process_ops(sysctl, (), masked_paths, readonly_paths)


def _build_process_ops(sysctl: tuple[tuple[str, str], ...], mounts: tuple[Mount, ...],
                       masked_paths: tuple[str, ...], readonly_paths: tuple[str, ...]
                       ) -> tuple[Op, ...]:
    P = _plan
    ops = [P.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                   note="mount a fresh /proc")]
    for key, value in sysctl:
        ops.append(P.write_file("/proc/sys/" + key.replace(".", "/"), value.encode()))
    for m in mounts:
        if m.per_process:
            if m.type == "bind":
                raise ConfigError(f"a per-process bind ({m.destination}) is not supported")
            # Shared mounts below it (a bind of a test's temp dir under a private /tmp) are
            # cloned before it covers them and attached again on top of it.
            below = list(enumerate(_shared_below(mounts, m), start=_SLOTS - len(mounts)))
            ops.extend(P.open_tree(s.destination, slot, note=f"keep {s.destination}")
                       for slot, s in below)
            op = _mount_op(m, in_root=False)
            ops.append(_record.evolve(op, note=f"mount a private {m.destination}"
                                    if m.destination == "/tmp" else op.note))
            for slot, s in below:
                is_file = s.type == "bind" and not os.path.isdir(s.source or "/")
                ops.append(P.move_mount(slot, s.destination, in_root=False, is_file=is_file,
                                        source=s.destination))
    for path in masked_paths:
        if path.startswith("/proc/") and os.path.exists(path):
            ops.append(Op(OpKind.MASK, s2=path.encode(), note=f"mask {path}"))
    for path in readonly_paths:
        if os.path.exists(path):
            ops.append(P.mount(path, path, None, MS_BIND | MS_REC, optional=True,
                               note=f"bind {path} for read-only"))
            ops.append(P.setattr_(path, MOUNT_ATTR_RDONLY, recursive=True, optional=True,
                                  what=f"make {path} read-only"))
    return tuple(ops)


# -- identity and privileges ---------------------------------------------------------------------

def identity_ops(cfg: RuntimeConfig, user: User | None = None) -> list[Op]:
    """Credentials and privileges of ``cfg.process`` (or ``user``), in the kernel's order:
    bounding set, keepcaps, supplementary groups, gid, uid, capability sets (the ambient ones
    raised last), no_new_privs.

    In a user namespace whose gid map an ordinary user wrote for their own gid, setgroups is
    denied: groups are left alone, and ids stay 0 unless asked otherwise.
    """
    proc = cfg.process
    user = user if user is not None else proc.user
    caps = proc.capabilities
    ops: list[Op] = [Op(OpKind.CAPBSET, a=caps.bounding.mask,
                        note="drop capabilities from the bounding set")]
    if user.uid != 0 and caps.permitted.mask:
        ops.append(Op(OpKind.KEEPCAPS, a=1, note="keep capabilities across setuid"))
    userns = cfg.in_user_namespace
    if not userns or _may_setgroups(cfg):
        ops.append(_plan.setgroups(list(user.additional_gids)))
    if user.gid != 0 or not userns:
        ops.append(Op(OpKind.SETRESGID, a=user.gid, note=f"setresgid {user.gid}"))
    if user.uid != 0 or not userns:
        ops.append(Op(OpKind.SETRESUID, a=user.uid, note=f"setresuid {user.uid}"))
    ops.append(Op(OpKind.CAPS, a=caps.permitted.mask, b=caps.inheritable.mask,
                  c=caps.ambient.mask, note="set capabilities"))
    if proc.no_new_privileges:
        ops.append(Op(OpKind.NO_NEW_PRIVS, note="set no_new_privs"))
    return ops


def _pdeathsig_again(parent_pidfd: int) -> Op:
    """The parent-death signal once more, after the credentials: the kernel clears it when
    the uid or gid changes, and the parent may have died in between (its pidfd says so)."""
    # A raw op: the fd may be a placeholder (Fd.PARENT) the supervisor fills in.
    return Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=parent_pidfd,
              note="die with the parent (set again after the credentials change)")


def _may_setgroups(cfg: RuntimeConfig) -> bool:
    """Whether setgroups works in the config's user namespace: not when only our own id is
    mapped by an ordinary user (the kernel needs setgroups denied to write that gid map)."""
    gids = cfg.gid_mappings
    if not cfg.has_new(NamespaceKind.USER):
        return os.geteuid() == 0
    return os.geteuid() == 0 or not _self_map(gids, os.getegid())


def _self_map(lines: Sequence[IdMap], own: int) -> bool:
    return len(lines) == 1 and lines[0].outside == own and lines[0].count == 1


def _tail(cfg: RuntimeConfig, argv: Sequence[str], env: Mapping[str, str], cwd: str,
          fds: Sequence[tuple[int, int]], identity: Sequence[Op], seccomp: Op | None, *,
          init_fd: int = -1, start: int = 0) -> list[Op]:
    """The per-process end of a plan: cwd, umask, rlimits, identity, fds, seccomp, exec.
    With ``init_fd`` (an O_PATH fd of isolate-init) the plan execs the init, which runs the
    command as its child; ``start`` is the index in the plan where these ops begin."""
    tail = [Op(OpKind.CHDIR, s2=_plan.fsencode(cwd, "cwd"), note=f"chdir {cwd}")]
    if cfg.process.user.umask is not None:
        tail.append(Op(OpKind.UMASK, a=cfg.process.user.umask, note="set umask"))
    for r in cfg.process.rlimits:
        tail.append(Op(OpKind.RLIMIT, a=r.number, b=r.soft, c=r.hard,
                       note=f"set rlimit {r.type}"))
    if seccomp is not None and not cfg.process.no_new_privileges:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while the
        # process still has it (as runc does); the profile must then allow the few calls that
        # drop the credentials (capset, setresuid, prctl...), as Docker's does.
        tail.append(seccomp)
        seccomp = None
    tail.extend(identity)
    tail += _plan.exec_tail(_plan.exec_(argv[0], argv, env), [(s, d, False) for s, d in fds],
                            seccomp, init_fd=init_fd, index=start + len(tail))
    return tail


def _seccomp_op(cfg: RuntimeConfig) -> Op | None:
    return None if cfg.seccomp is None else _plan.seccomp(cfg.seccomp.compile())


# -- sandboxes: shared namespaces, then many processes -------------------------------------------

#: Whole process plans a ProcessTemplate keeps (the oldest goes first).
_PLANS_KEPT = 8

_SHARED_KINDS = (NamespaceKind.USER, NamespaceKind.NET, NamespaceKind.UTS, NamespaceKind.IPC,
                 NamespaceKind.MNT)


def _child_maps_itself(cfg: RuntimeConfig) -> bool:
    """Whether a child in a new user namespace can write its maps itself: only an ordinary
    user's map of their own ids (anything else needs the parent, or newuidmap)."""
    return (os.geteuid() != 0 and _self_map(cfg.uid_mappings, os.geteuid())
            and _self_map(cfg.gid_mappings, os.getegid()))


def _self_map_ops(cfg: RuntimeConfig) -> list[Op]:
    return _write_self_maps(cfg.uid_mappings[0], cfg.gid_mappings[0])


def _write_self_maps(uid: IdMap, gid: IdMap) -> list[Op]:
    return [
        _plan.write_file("/proc/self/setgroups", b"deny"),
        _plan.write_file("/proc/self/uid_map", uid.line().encode()),
        _plan.write_file("/proc/self/gid_map", gid.line().encode()),
    ]


def _become_root_ops(cfg: RuntimeConfig) -> list[Op]:
    """Once the parent has written the maps: become uid/gid 0 of the new user namespace. The
    child still has the ids it was cloned with, which the maps need not include; files it
    makes (mount points in a fresh tmpfs) need ids the namespace maps (else EOVERFLOW)."""
    if not (any(m.inside == 0 for m in cfg.uid_mappings)
            and any(m.inside == 0 for m in cfg.gid_mappings)):
        return []
    return [_plan.setgroups([]),
            Op(OpKind.SETRESGID, a=0, note="become gid 0 of the user namespace"),
            Op(OpKind.SETRESUID, a=0, note="become uid 0 of the user namespace")]


def _hostname_ops(cfg: RuntimeConfig) -> list[Op]:
    ops = []
    if cfg.hostname is not None:
        ops.append(Op(OpKind.SETHOSTNAME, s1=_plan.fsencode(cfg.hostname, "hostname"),
                      note=f"sethostname {cfg.hostname}"))
    if cfg.domainname is not None:
        ops.append(Op(OpKind.SETDOMAINNAME, s1=_plan.fsencode(cfg.domainname, "domainname"),
                      note=f"setdomainname {cfg.domainname}"))
    return ops


@_record.mutable
class SharedNamespaces:
    """The short-lived child that makes what all processes of a sandbox share: the new
    namespaces among user, net, uts and ipc, and -- with root ops -- a mount namespace with
    the root built once. Spawn :attr:`plan` (with :meth:`parent_step` when
    :attr:`needs_parent`), wait for it, then :meth:`collect` the fds that keep them alive.

    When the child can map its ids itself, it shares our fd table (VFORK, ``share_files``)
    and opens ``/proc/self/ns/*`` into it; otherwise it waits while the parent writes its
    maps (newuidmap for subordinate ranges) and opens its namespaces by pid.
    """

    plan: Plan
    kinds: list[NamespaceKind]
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    opened: dict[NamespaceKind, int] = _record.field(factory=dict)

    @property
    def needs_parent(self) -> bool:
        """Whether the child waits for :meth:`parent_step` (pass it to ``lowlevel.spawn``)."""
        return self.plan.needs_sync

    def parent_step(self, pid: int) -> None:
        """Write the child's maps and open its namespaces (closed again on failure).

        Raises NamespaceError, UnsupportedError (no newuidmap)."""
        try:
            write_id_maps(pid, self.uid_map, self.gid_map or None)
            for kind in self.kinds:
                self.opened[kind] = os.open(f"/proc/{pid}/ns/{kind.value}",
                                            os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise

    def collect(self, child_opened: Mapping[int, int]) -> dict[NamespaceKind, int]:
        """The namespace fds by kind, given the finished child's ``Child.opened``; the
        caller owns them from now on."""
        if self.needs_parent:
            out, self.opened = self.opened, {}
            return out
        # The namespaces are the first fds the plan opens (after joins, when it joins some).
        first = sorted(child_opened)
        return {kind: child_opened[first[i]] for i, kind in enumerate(self.kinds)}

    def close(self) -> None:
        """Close the namespace fds not yet handed over by :meth:`collect`."""
        for fd in self.opened.values():
            os.close(fd)
        self.opened.clear()


def shared_plan(cfg: RuntimeConfig, root: Sequence[Op] = (), *,
                netns: int = -1) -> SharedNamespaces:
    """Compile the shared part of a sandbox: new user/net/uts/ipc namespaces as ``cfg`` asks,
    and a mount namespace holding ``root`` (ops from :func:`root_ops`) when given.

    ``netns`` is an fd of a network namespace made for this sandbox and never used yet (``lo``
    up, as :func:`isolate._sys.new_netns` makes it): the child joins it first instead of
    making one, for a ``cfg`` with a new network namespace and no user namespace
    (:func:`takes_netns`). The caller still owns ``netns``; :meth:`SharedNamespaces.collect`
    gives an fd of its own for it.

    The plan is checked and encoded once per ``(cfg, root)`` (both immutable) and kept: a
    fresh sandbox per run would otherwise pay both again for the same op list.

    Raises ConfigError: ``netns`` for a ``cfg`` that does not take one."""
    if netns >= 0 and not takes_netns(cfg):
        raise ConfigError("netns: this sandbox makes no network namespace of its own, or "
                          "makes it inside a user namespace")
    p, kinds, by_parent = _shared_ops(cfg, tuple(root), netns >= 0)
    if netns >= 0:
        p = p.with_fd(0, netns)
    if by_parent:
        return SharedNamespaces(p, list(kinds), cfg.uid_mappings, cfg.gid_mappings)
    return SharedNamespaces(p, list(kinds))


def takes_netns(cfg: RuntimeConfig) -> bool:
    """Whether :func:`shared_plan` of ``cfg`` can take a network namespace made ahead: it
    asks for a new one, and for no user namespace (which would have to own it)."""
    return cfg.has_new(NamespaceKind.NET) and cfg.namespace(NamespaceKind.USER) is None


@_memo.lru_cache(maxsize=16)
def _shared_ops(cfg: RuntimeConfig, root: tuple[Op, ...], spare_net: bool = False
                ) -> tuple[Plan, tuple[NamespaceKind, ...], bool]:
    """The frozen plan of :func:`shared_plan`, its namespace kinds, and whether the parent
    writes the id maps. With ``spare_net`` (only for :func:`takes_netns`), the plan's first op
    joins a network namespace made ahead, whose fd :meth:`Plan.with_fd` puts in, instead of
    cloning into a new one and bringing its ``lo`` up."""
    user = cfg.namespace(NamespaceKind.USER)
    # A joined user namespace (a rootless bridge's, made inside the rootless netns's) must
    # own the new ones: the child joins it (and a joined network namespace) first, then
    # unshares the rest; the fds of the joined ones are opened like the new ones'.
    late = user is not None and user.joins
    kinds: list[NamespaceKind] = [
        k for k in _SHARED_KINDS if k is not NamespaceKind.MNT
        and (cfg.has_new(k) or (late and k in (NamespaceKind.USER, NamespaceKind.NET)
                                and cfg.namespace(k) is not None))]
    if root:
        kinds.append(NamespaceKind.MNT)
    by_parent = cfg.has_new(NamespaceKind.USER) and not _child_maps_itself(cfg)
    flags = sum(k.flag for k in kinds)
    if late:
        p = Plan(0, Mode.VFORK, share_files=True)
        p.extend(_join_ops(cfg))
        new = sum(k.flag for k in kinds if cfg.has_new(k) or k is NamespaceKind.MNT)
        if new:
            p.add(Op(OpKind.UNSHARE, a=new, note="unshare the sandbox's namespaces"))
        p.extend(_plan.open_(f"/proc/self/ns/{k.value}", note=f"open the {k.value} namespace")
                 for k in kinds)
    elif by_parent:
        p = Plan(flags, Mode.FORK)
        p.add(Op(OpKind.WAIT_PARENT, note="wait for the user namespace's maps"))
        p.extend(_become_root_ops(cfg))
    else:
        p = Plan(flags & ~NamespaceKind.NET.flag if spare_net else flags, Mode.VFORK,
                 share_files=True)
        if spare_net:
            # A placeholder fd, which with_fd replaces: the net namespace made ahead (lo up).
            p.add(Op(OpKind.SETNS, a=0, b=NamespaceKind.NET.flag,
                     note="join the network namespace made ahead for this sandbox"))
        # Opened first, before the root changes: the namespace is the same whatever is mounted.
        p.extend(_plan.open_(f"/proc/self/ns/{k.value}", note=f"open the {k.value} namespace")
                 for k in kinds)
        if NamespaceKind.USER in kinds:
            p.extend(_self_map_ops(cfg))
    if NamespaceKind.UTS in kinds:
        p.extend(_hostname_ops(cfg))
    if NamespaceKind.NET in kinds and not spare_net:
        p.add(Op(OpKind.LOOPBACK_UP, note="bring up lo"))
    if root:
        p.extend(root)
        # Nothing mounted later in a process's copy may propagate back into the shared tree.
        p.add(Op(OpKind.MOUNT, a=MS_REC | MS_SLAVE, s2=b"/",
                 note="make the shared root a slave tree"))
    return p.freeze(), tuple(kinds), by_parent


class ProcessTemplate:
    """The parts of a sandbox process's plan that do not change from one run to the next,
    pre-encoded once; :meth:`plan` adds the per-process tail.

    ``shared`` are the fds of :class:`SharedNamespaces` (by kind); ``cgroup_fds`` are
    ``cgroup.procs`` (or v1 ``tasks``) files to join first; ``cgroup_dir_fd`` is a v2 cgroup
    directory each process is cloned into (``CLONE_INTO_CGROUP``; only where
    ``isolate._sys.vfork_into_cgroup_works()``), -1 for none; ``mount_join`` is an op joining a
    mount namespace that holds the root (fuse-overlayfs), placed after the user namespace when
    ``join_after_user``; ``root`` is an op mounting the root into slot 0 when each process
    builds its root itself (an image overlay); with ``per_process_root`` the root op differs per
    process and is given to :meth:`plan`; ``parent_pidfd`` is a pidfd of the caller for the
    parent-death signal (-1: none).
    """

    def __init__(self, cfg: RuntimeConfig, shared: Mapping[NamespaceKind, int], *,
                 cgroup_fds: Sequence[int] = (), cgroup_dir_fd: int = -1,
                 mount_join: Op | None = None,
                 join_after_user: bool = False, root: Op | None = None,
                 per_process_root: bool = False, parent_pidfd: int = -1,
                 init_fd: int = -1) -> None:
        cgroup = [Op(OpKind.CGROUP_JOIN, a=fd, note="join the sandbox's cgroup")
                  for fd in cgroup_fds]
        joins = [Op(OpKind.SETNS, a=shared[k], b=k.flag,
                    note=f"join the sandbox's {k.value} namespace")
                 for k in _SHARED_KINDS if k in shared]
        self.shared_root = NamespaceKind.MNT in shared
        if mount_join is not None:
            joins.insert(1 if join_after_user else 0, mount_join)
        # With isolate-init (init_fd), pid 1 execs the init, which runs the command; without
        # it, the fork-based INIT op stays pid 1 and must not be a vfork child in our memory.
        self.init_fd = init_fd
        fork_init = cfg.init and init_fd < 0
        if cfg.in_user_namespace or fork_init:
            # In a user namespace our mount and pid namespaces must belong to it, so they are
            # made after joining it: unshare the mount namespace, and fork into a new pid
            # namespace (the grandchild is pid 1 there, and our child as Python's). With an
            # INIT op, pid 1 outlives the command's exec, so it must be a process of its own,
            # not a vfork child in our memory: the fork makes it one.
            flags = 0
            joins.append(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWNS, note="unshare mount namespace"))
            joins.append(Op(OpKind.FORK_INTO_PIDNS, a=-1, note="fork into a new pid namespace"))
        elif self.shared_root or mount_join is not None:
            flags = _plan.CLONE_NEWPID
            joins.append(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWNS, note="unshare mount namespace"))
        else:
            flags = _plan.CLONE_NEWNS | _plan.CLONE_NEWPID
        if cfg.has_new(NamespaceKind.CGROUP):
            # After joining the cgroup, so that it becomes the namespace's root ("/").
            joins.append(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWCGROUP,
                            note="unshare cgroup namespace"))
        p = Plan(flags, Mode.VFORK, cgroup_fd=cgroup_dir_fd)
        p.extend(cgroup)
        p.extend(joins)
        if parent_pidfd >= 0:
            # If the caller dies (even SIGKILLed), its sandboxed processes die with it: each
            # is pid 1 of its pid namespace (or its init is), so its whole tree goes too.
            p.add(Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=parent_pidfd,
                     note="die with the parent"))
        # kill(0, sig) reaches the caller's whole process group, pid namespace or not.
        p.add(Op(OpKind.SETSID, note="start a new session"))
        self.cfg = cfg
        self.per_process_root = per_process_root
        if self.shared_root:
            p.extend(_process_ops(cfg))
        elif not per_process_root:
            ops = root_ops(cfg, root)
            p.extend(ops.shared + ops.own)
        self.base = p.freeze()
        self.identity = identity_ops(cfg)
        if parent_pidfd >= 0:
            self.identity.append(_pdeathsig_again(parent_pidfd))
        # The fork-based init forks the command after the credentials are dropped, so it keeps
        # none the command lacks; it runs outside the seccomp filter (a custom profile could
        # deny what it needs: wait4, kill), so it makes itself non-dumpable against ptrace.
        # The exec'd init runs under the filter, as docker run --init's does.
        if fork_init:
            self.identity.append(_plan.init())
        self.seccomp = _seccomp_op(cfg)
        # The last few whole plans, frozen: a sandbox that runs the same command again (a
        # test's loop, a fresh sandbox per run of one command) checks and encodes it once.
        self._plans: dict[tuple[object, ...], Plan] = {}

    def plan(self, argv: Sequence[str], env: Mapping[str, str], cwd: str,
             fds: Sequence[tuple[int, int]], root: Op | None = None) -> Plan:
        """The whole plan of one process: ``argv`` with ``env`` in ``cwd``, the fds
        ``(source, target)`` arranged; ``root`` is this process's root op when the template
        has ``per_process_root``. The plan is the caller's to run, not to change: one asked
        for again with the same arguments may be the same plan."""
        head: list[Op] = []
        if self.per_process_root:
            if root is None:
                raise ConfigError("this template builds each process's root: pass root=")
            ops = root_ops(self.cfg, root)
            head = [*ops.shared, *ops.own]
        else:
            key = (*argv, None, *env.items(), None, cwd, *fds)
            try:
                return self._plans[key]
            except KeyError:
                pass
        start = len(self.base.ops) + len(head)
        plan = self.base.extended([*head, *_tail(self.cfg, argv, env, cwd, fds,
                                                 self.identity, self.seccomp,
                                                 init_fd=self.init_fd, start=start)])
        if not head:
            plan.freeze()
            if len(self._plans) >= _PLANS_KEPT:
                try:
                    del self._plans[next(iter(self._plans))]
                except (KeyError, StopIteration, RuntimeError):
                    pass  # (another thread's run changed it meanwhile)
            self._plans[key] = plan
        return plan


# -- containers: one plan builds everything in the first process ----------------------------------

@_record.record
class ContainerPlan:
    """What starting a container's first process takes: the ``plan`` and, when its new user
    namespace maps ids the child cannot map itself, the maps its parent writes while it waits
    at ``WAIT_PARENT`` (:meth:`parent_step` does it in Python; a supervisor may do it in C)."""

    plan: Plan
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()

    @property
    def needs_parent(self) -> bool:
        """Whether the child waits for :meth:`parent_step` (pass it to ``lowlevel.spawn``)."""
        return self.plan.needs_sync

    def parent_step(self, pid: int) -> None:
        """Write the maps of ``pid``'s user namespace (newuidmap/newgidmap where needed).

        Raises NamespaceError, UnsupportedError (no newuidmap)."""
        write_id_maps(pid, self.uid_map, self.gid_map or None)


def _join_ops(cfg: RuntimeConfig) -> list[Op]:
    """SETNS ops for every joined namespace but pid, in the order the kernel needs."""
    ops = []
    for kind in _JOIN_ORDER:
        spec = cfg.namespace(kind)
        if spec is None or not spec.joins or kind is NamespaceKind.PID:
            continue
        if spec.fd is not None:
            ops.append(Op(OpKind.SETNS, a=spec.fd, b=kind.flag,
                          note=f"join the {kind.value} namespace (fd {spec.fd})"))
        else:
            ops.append(Op(OpKind.SETNS, a=-1, b=kind.flag,
                          s2=_plan.fsencode(spec.path or "", "namespace path"),
                          note=f"join the {kind.value} namespace {spec.path}"))
    return ops


def container_plan(cfg: RuntimeConfig, *, root: Op | None = None,
                   cgroup_fds: Sequence[int] = (),
                   fds: Sequence[tuple[int, int]] = ((0, 0), (1, 1), (2, 2)),
                   parent_pidfd: int = -1, extra: Sequence[Op] = (),
                   init_fd: int = -1, cgroup_dir_fd: int = -1) -> ContainerPlan:
    """The plan of a container's first process.

    It is cloned into the new namespaces (user first, with its maps), joins the configured
    ones and its cgroup (``cgroup_fds``: ``cgroup.procs`` or v1 ``tasks`` files to write;
    ``cgroup_dir_fd``: a v2 cgroup directory to be cloned into, where
    ``isolate._sys.vfork_into_cgroup_works()``, -1 for none), gets a cgroup namespace rooted
    there, builds the root (``root``: an op putting the root tree in slot 0,
    such as an image overlay; else ``cfg.root.path``) and the mounts, drops to
    ``cfg.process``'s identity and execs ``cfg.process.args``. ``extra`` ops run right before
    the credentials change (a console for a terminal, say). ``parent_pidfd``: a pidfd of the
    parent, whose death then kills the container (-1: none; ``Fd.PARENT`` for the
    supervisor's own). ``init_fd``: with ``cfg.init``, an O_PATH fd of isolate-init (the
    static init of ``isolate._shim.init_binary()``) that the plan execs as pid 1; without one
    the fork-based INIT op is pid 1.

    Raises:
        ConfigError: no ``process.args``, a joined pid namespace, or what :func:`root_ops`
            refuses.
    """
    proc = cfg.process
    if not proc.args:
        raise ConfigError("a container's process needs args")
    pid = cfg.namespace(NamespaceKind.PID)
    if pid is not None and pid.joins:
        raise ConfigError("a container's first process gets a new pid namespace or the "
                          "caller's; joining one is what exec does")
    new = [k for k in NamespaceKind if cfg.has_new(k)]
    user = cfg.namespace(NamespaceKind.USER)
    # A joined user namespace must own the new ones: join it first, then unshare them (and
    # fork into a new pid namespace). Otherwise the clone makes them all at once, user first;
    # the cgroup namespace comes after joining the cgroup (it is rooted where the process is)
    # and the time namespace needs an unshare and a join of its own.
    late = user is not None and user.joins
    later = (NamespaceKind.CGROUP, NamespaceKind.TIME)
    clone = [] if late else [k for k in new if k not in later]
    by_parent = NamespaceKind.USER in new and not _child_maps_itself(cfg)
    # A fork-based init stays alive after the exec: never in our memory (VFORK).
    fork_init = cfg.init and init_fd < 0
    mode = Mode.FORK if (by_parent or NamespaceKind.TIME in new or fork_init) else Mode.VFORK
    p = Plan(sum(k.flag for k in clone), mode, cgroup_fd=cgroup_dir_fd)
    if by_parent:
        p.add(Op(OpKind.WAIT_PARENT, note="wait for the user namespace's maps"))
        p.extend(_become_root_ops(cfg))
    elif NamespaceKind.USER in new:
        p.extend(_self_map_ops(cfg))
    for fd in cgroup_fds:
        p.add(Op(OpKind.CGROUP_JOIN, a=fd, note="join the container's cgroup"))
    p.extend(_join_ops(cfg))
    if late:
        others = sum(k.flag for k in new if k not in (*later, NamespaceKind.PID))
        if others:
            p.add(Op(OpKind.UNSHARE, a=others, note="unshare the container's namespaces"))
    if NamespaceKind.CGROUP in new:
        p.add(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWCGROUP, note="unshare cgroup namespace"))
    if NamespaceKind.TIME in new:
        p.add(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWTIME, note="unshare time namespace"))
        p.add(Op(OpKind.SETNS, a=-1, b=_plan.CLONE_NEWTIME,
                 s2=b"/proc/self/ns/time_for_children", note="enter the new time namespace"))
    if late and NamespaceKind.PID in new:
        p.add(Op(OpKind.FORK_INTO_PIDNS, a=-1, note="fork into a new pid namespace"))
    if parent_pidfd != -1:
        p.add(Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=parent_pidfd,
                 note="die with the supervisor"))
    p.add(Op(OpKind.SETSID, note="start a new session"))
    if cfg.has_new(NamespaceKind.UTS):
        p.extend(_hostname_ops(cfg))
    if cfg.has_new(NamespaceKind.NET):
        p.add(Op(OpKind.LOOPBACK_UP, note="bring up lo"))
    if cfg.has_new(NamespaceKind.MNT):
        ops = root_ops(cfg, root)
        p.extend(ops.shared + ops.own)
    p.extend(extra)
    identity = identity_ops(cfg)
    if parent_pidfd != -1:
        identity.append(_pdeathsig_again(parent_pidfd))
    if cfg.init and init_fd < 0:
        identity.append(_plan.init())
    p.extend(_tail(cfg, proc.args, proc.env_dict, proc.cwd, fds, identity, _seccomp_op(cfg),
                   init_fd=init_fd if cfg.init else -1, start=len(p.ops)))
    if by_parent:
        return ContainerPlan(p, cfg.uid_mappings, cfg.gid_mappings)
    return ContainerPlan(p)


def exec_plan(cfg: RuntimeConfig, namespaces: Mapping[NamespaceKind, int], *,
              cgroup_fds: Sequence[int] = (),
              fds: Sequence[tuple[int, int]] = ((0, 0), (1, 1), (2, 2)),
              user: User | None = None, extra: Sequence[Op] = ()) -> Plan:
    """The plan of a process joining a running container (``docker exec``).

    It joins the cgroup (``cgroup_fds``) and every namespace in ``namespaces`` (kind -> an
    open nsfs fd of the container's first process; the pid namespace by forking into it), then
    takes ``cfg.process``'s identity (``user`` overrides it), capabilities, rlimits, seccomp and
    no_new_privs, and execs ``cfg.process.args`` in ``cfg.process.cwd``.

    Raises:
        ConfigError: no ``process.args``.
    """
    proc = cfg.process
    if not proc.args:
        raise ConfigError("exec needs args")
    p = Plan(0, Mode.VFORK)
    for fd in cgroup_fds:
        p.add(Op(OpKind.CGROUP_JOIN, a=fd, note="join the container's cgroup"))
    for kind in _JOIN_ORDER:
        if kind in namespaces and kind is not NamespaceKind.PID:
            p.add(Op(OpKind.SETNS, a=namespaces[kind], b=kind.flag,
                     note=f"join the container's {kind.value} namespace"))
    if NamespaceKind.PID in namespaces:
        p.add(Op(OpKind.FORK_INTO_PIDNS, a=namespaces[NamespaceKind.PID],
                 note="join the container's pid namespace"))
    p.add(Op(OpKind.SETSID, note="start a new session"))
    p.extend(extra)
    identity = identity_ops(cfg, user)
    p.extend(_tail(cfg, proc.args, proc.env_dict, proc.cwd, fds, identity, _seccomp_op(cfg)))
    return p


# -- views: a tree mounted for the caller to read or write through an fd ------------------------

def view_plan(root: Op, *, self_map: tuple[IdMap, IdMap] | None = None) -> Plan:
    """The plan of a short-lived child that mounts ``root`` (an op putting a tree in slot 0,
    such as an image overlay) in a mount namespace of its own, opens the tree and that
    namespace for the caller and exits without exec'ing. Spawn it, wait for it, and take the
    two fds from ``Child.opened`` (the tree's first): the mount lives as long as they do, in a
    namespace no process is in, so nothing is ever mounted where others see it.
    ``self_map``: (uid, gid) maps of our own ids for a new user namespace, when an ordinary
    user mounts an overlay.

    The tree's fd is an ``O_PATH`` directory; open what is under it with ``RESOLVE_IN_ROOT``
    so that the tree's symlinks stay inside it. Keep the namespace's fd as long: in a tree no
    namespace holds any more, the kernel refuses (EAGAIN) every such lookup that follows a
    symlink with ``..`` in it.
    """
    target = _STAGING + "/.isolate-view"
    flags = _plan.CLONE_NEWNS | (_plan.CLONE_NEWUSER if self_map else 0)
    p = Plan(flags, Mode.VFORK, share_files=True)
    if self_map is not None:
        p.extend(_write_self_maps(*self_map))
    p.add(Op(OpKind.MOUNT, a=MS_REC | MS_SLAVE, s2=b"/",
             note="keep mounts from propagating out (rslave /)"))
    p.add(root)
    p.extend([_plan.mount("tmpfs", _STAGING, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700,size=16k"),
              _plan.mkdir(target, in_root=False),
              _plan.move_mount(0, target, in_root=False, create=False, source="the tree"),
              _plan.open_(target, os.O_PATH | os.O_DIRECTORY, note="open the mounted tree"),
              _plan.open_("/proc/self/ns/mnt", note="open the mount namespace")])
    return p
