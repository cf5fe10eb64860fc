"""``with isolate.Sandbox() as sb``: run commands and Python functions in isolation.

Owns the defaults for sandboxing code (read-only host root, private /tmp, fresh /proc, minimal
/dev, no network, no capabilities, no_new_privs, a seccomp filter, masked /proc paths) and the
lifetime of everything a sandbox starts. It builds on the public lower layers only (plans, mount
records, security, cgroups); it never makes mounts or namespaces in the calling process.

Each ``run``/``popen`` gets fresh namespaces of its own and is pid 1 in its pid namespace (or,
with ``init=True``, pid 2 under a tiny init that is pid 1), so ending it (or its timeout) ends
its whole process tree; leaving the ``with`` block ends every
process the sandbox started, and with them every mount and namespace they held.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from isolate import _plan, lowlevel
from isolate._plan import Mode, Op, OpFlag, OpKind, Plan
from isolate.cgroups import DEFAULT_RULES, CGroup, Limits
from isolate.cgroups.cgroup import add_note
from isolate.cgroups.devices import rule_for_node
from isolate.errors import (
    CallError,
    ConfigError,
    IsolateError,
    MountError,
    SpawnError,
    StateError,
    UnsupportedError,
)
from isolate.fs.mounts import (
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_SLAVE,
    MS_STRICTATIME,
    Bind,
    Device,
    Tmpfs,
    check_container_path,
)
from isolate.process import SandboxedPopen

if TYPE_CHECKING:
    from isolate import security
    from isolate._image_root import ImageRoot
    from isolate.image import Image, Store

__all__ = ["Sandbox", "SandboxConfig", "SandboxResult"]

T = TypeVar("T")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_STAGING = "/tmp"
_NEWROOT = "/tmp/.isolate-root"
_EMPTY = "/tmp/.isolate-empty"


def _binds(value: Iterable[Bind | str]) -> tuple[Bind, ...]:
    if isinstance(value, (str, Bind)):
        value = [value]
    return tuple(b if isinstance(b, Bind) else Bind.parse(b) for b in value)


def _devices(value: Iterable[Device | str]) -> tuple[Device, ...]:
    if isinstance(value, (str, Device)):
        value = [value]
    return tuple(d if isinstance(d, Device) else Device.parse(d) for d in value)


def _tmpfs(value: Iterable[Tmpfs | str]) -> tuple[Tmpfs, ...]:
    if isinstance(value, (str, Tmpfs)):
        value = [value]
    return tuple(t if isinstance(t, Tmpfs) else Tmpfs(t) for t in value)


def _env(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...] | None:
    if value is None:
        return None
    out = []
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"env must map str to str, not {k!r}: {v!r}")
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise ConfigError(f"invalid environment variable {k!r}")
        out.append((k, v))
    return tuple(out)


def _cwd(value: str | None) -> str | None:
    return None if value is None else check_container_path(value, "cwd")


def _image(value: Image | str | None) -> Image | str | None:
    if value is None:
        return None
    from isolate.image import Image, Reference

    if isinstance(value, Image):
        return value
    if not isinstance(value, str):
        raise ConfigError(f"image must be an Image or a reference string, not {value!r}")
    if not value.startswith("sha256:"):
        Reference.parse(value)  # a malformed name is a ConfigError now, not at start
    return value


def _store(value: Store | None) -> Store | None:
    if value is None:
        return None
    from isolate.image import Store

    if not isinstance(value, Store):
        raise ConfigError(f"store must be an isolate.image.Store, not {value!r}")
    return value


def _hostname(value: str) -> str:
    if not isinstance(value, str) or not 0 < len(value.encode()) <= 64 or "\0" in value:
        raise ConfigError(f"hostname must be 1 to 64 bytes without NUL, not {value!r}")
    return value


def _id(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
        raise ConfigError(f"uid/gid must be an int in [0, 2**32-2], not {value!r}")
    return value


def _timeout(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, not {value!r}")
    return float(value)


def _rootfs(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    raw = os.fspath(value)
    if not isinstance(raw, str) or "\0" in raw:
        raise ConfigError(f"rootfs must be a str path without NUL, not {raw!r}")
    return os.path.abspath(raw)


def _overlay_mode(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if value not in ("auto", "kernel", "fuse"):
        raise ConfigError(f"{attribute.name} must be 'auto', 'kernel' or 'fuse', not {value!r}")


def _caps(value: Iterable[str] | security.CapabilitySet | None
          ) -> security.CapabilitySet | None:
    from isolate import security  # imported when first needed
    if value is None:
        return None
    if isinstance(value, security.CapabilitySet):
        return value
    if isinstance(value, str):
        value = [value]
    return security.CapabilitySet.from_names(list(value))


@attrs.frozen
class SandboxConfig:
    """Everything a :class:`Sandbox` does, validated when made (no system call is made).

    Raises :class:`isolate.errors.ConfigError` naming the bad value.
    """

    rootfs: str | None = attrs.field(default=None, converter=_rootfs)
    readonly: bool = True
    binds: tuple[Bind, ...] = attrs.field(default=(), converter=_binds)
    tmpfs: tuple[Tmpfs, ...] = attrs.field(default=(), converter=_tmpfs)
    #: Host device nodes given to the sandbox (``Device`` or ``"HOST[:CONTAINER][:rwm]"``).
    devices: tuple[Device, ...] = attrs.field(default=(), converter=_devices)
    env: tuple[tuple[str, str], ...] | None = attrs.field(default=None, converter=_env)
    cwd: str | None = attrs.field(default=None, converter=_cwd)
    hostname: str = attrs.field(default="sandbox", converter=_hostname)
    network: bool = False
    uid: int | None = attrs.field(default=None, converter=_id)
    gid: int | None = attrs.field(default=None, converter=_id)
    timeout: float | None = attrs.field(default=None, converter=_timeout)
    privileged: bool = False
    capabilities: security.CapabilitySet | None = attrs.field(default=None, converter=_caps)
    seccomp: security.SeccompProfile | bool = True
    user_namespace: bool | None = None
    limits: Limits | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.instance_of(Limits)))
    best_effort: bool = False
    cgroupns: bool = True
    die_with_parent: bool = True
    #: Run a tiny init as pid 1 (like ``docker run --init``): it reaps orphaned zombies and
    #: forwards signals, and the command runs as pid 2 with default signal behaviour.
    init: bool = False
    image: Image | str | None = attrs.field(default=None, converter=_image)
    store: Store | None = attrs.field(default=None, converter=_store, eq=False)
    #: Who mounts an image's overlay: "kernel", "fuse" (fuse-overlayfs) or "auto" (the
    #: kernel, falling back to fuse-overlayfs where it refuses a rootless overlay).
    overlay: str = attrs.field(default="auto", validator=_overlay_mode)

    def __attrs_post_init__(self) -> None:
        if self.image is not None and self.rootfs is not None:
            raise ConfigError("give an image or a rootfs, not both")
        if self.store is not None and self.image is None:
            raise ConfigError("store is only used with image=")
        if self.rootfs is not None and not os.path.isdir(self.rootfs):
            raise ConfigError(f"rootfs {self.rootfs!r} is not a directory")
        for bind in self.binds:
            if not os.path.lexists(bind.source):
                raise ConfigError(f"bind source {bind.source!r} does not exist")
        for device in self.devices:
            rule_for_node(device.source, device.access)  # a device node, or ConfigError
        targets = [b.target for b in self.binds] + [t.target for t in self.tmpfs]
        for target in targets:
            if target == "/":
                raise ConfigError("cannot mount over the sandbox's root directory '/'")

    @property
    def rootless(self) -> bool:
        """Whether the sandbox runs in a user namespace (the default when not root)."""
        if self.user_namespace is not None:
            return self.user_namespace
        return os.geteuid() != 0


# -- compiling a config into a plan ----------------------------------------------------------

def _needs_spliced_root(cfg: SandboxConfig) -> bool:
    """Whether a host-root sandbox mounts something where the host has nothing.

    The read-only host root cannot grow a mount point, so then the root becomes a tmpfs with
    each top-level entry of the host bound into it (as bubblewrap builds roots), where new
    top-level directories can be made. Otherwise the whole host tree is bound at once.
    """
    if cfg.rootfs is not None or cfg.image is not None or not cfg.readonly:
        return False
    targets = [b.target for b in cfg.binds] + [t.target for t in cfg.tmpfs]
    missing = [t for t in targets if not os.path.lexists(t)]
    for target in missing:
        top = "/" + target.split("/")[1]
        if os.path.lexists(top) and top != target:
            raise ConfigError(
                f"mount target {target} does not exist in the read-only host root, and only "
                f"new top-level directories can be made ({top} exists); use a target that "
                "exists, a new top-level path, or readonly=False")
    return bool(missing)


def _root_ops(cfg: SandboxConfig, root: Op | None = None) -> tuple[list[Op], list[Op]]:
    """Mount namespace set-up, in two parts.

    The first part is what all processes of a sandbox can share: the new root, /dev, /sys,
    binds, extra tmpfs mounts, pivot_root. The second is what each process needs for itself,
    run after the pivot with plain paths: a /proc for its pid namespace (with its masked and
    read-only paths) and a private /tmp.

    ``root`` is an op that puts the new root's tree in slot 0 (an image's overlay) instead of
    a clone of ``cfg.rootfs`` or the host root."""
    from isolate import security  # imported when first needed
    P = _plan
    spliced = _needs_spliced_root(cfg)
    # The caller's root becomes its namespace copy's root (a chrooted caller's copy holds
    # what lies above it), and nothing mounted from here on propagates out.
    before: list[Op] = [P.reroot()]
    if root is not None:
        before.append(root)
    elif not spliced:
        before.append(P.open_tree(cfg.rootfs or "/", 0))
    own_root = cfg.rootfs is not None or root is not None
    inside: list[Op] = []
    slot = 1
    for dev in _DEVICES:
        before.append(P.open_tree(f"/dev/{dev}", slot, recursive=False, optional=True))
        slot += 1
    # Each bind and device: its source opened now, attached once the root is there.
    bind_ops: list[Op] = []
    device_ops: list[Op] = []
    records: list[tuple[Bind | Device, list[Op]]] = [
        *((b, bind_ops) for b in cfg.binds), *((d, device_ops) for d in cfg.devices)]
    for record, attached in records:
        opening, attaching = record.ops(slot)
        before.extend(opening)
        attached.extend(attaching)
        slot += 1
    if spliced:
        for name in sorted(os.listdir("/")):
            path = "/" + name
            if name in ("proc", "sys", "dev", "tmp") and not (name == "proc" and cfg.rootless):
                inside.append(P.mkdir(path))
            elif os.path.islink(path):
                inside.append(P.symlink(os.readlink(path), path))
            else:
                before.append(P.open_tree(path, slot))
                inside.append(P.move_mount(slot, path, is_file=not os.path.isdir(path),
                                           source=path))
                slot += 1
        for target in [b.target for b in cfg.binds] + [t.target for t in cfg.tmpfs]:
            if not os.path.lexists(target):
                source = next((b.source for b in cfg.binds if b.target == target), None)
                is_file = source is not None and not os.path.isdir(source)
                inside.append(P.mkdir(target, is_file=is_file))
    if slot > 64:
        raise ConfigError(f"too many binds: {slot - 1 - len(_DEVICES)} (the limit is "
                          f"{64 - 1 - len(_DEVICES)}, counting devices and the host's "
                          "top-level entries)")

    if spliced:
        attach_root = P.mount("tmpfs", _NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755",
                              note="mount a tmpfs as the new root")
    else:
        attach_root = P.move_mount(
            0, _NEWROOT, in_root=False, create=False,
            source="the image" if root is not None else cfg.rootfs or "/")
    staging = [
        P.mount("tmpfs", _STAGING, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700,size=16k"),
        P.mkdir(_NEWROOT, in_root=False),
        P.mkdir(_EMPTY, in_root=False),
        attach_root,
        Op(OpKind.ROOT, s2=_NEWROOT.encode(), note="open the new root"),
    ]
    # No device node in the root is usable (a read-only mount does not stop writes to one):
    # the host's disks, an image's nodes, a chroot tree's /dev. /dev comes after, with its own.
    root_attr = (MOUNT_ATTR_RDONLY if cfg.readonly else 0) | (
        0 if cfg.privileged else MOUNT_ATTR_NODEV)
    ro_root = [P.setattr_("/", root_attr, in_root=True, recursive=True,
                          what="make the root " + ", ".join(
                              w for w, on in (("read-only", cfg.readonly),
                                              ("nodev", not cfg.privileged)) if on))
               ] if root_attr else []
    if own_root:
        # Mount points must exist before the root turns read-only; in a host root they do.
        mountpoints = ["/proc", "/dev", "/sys", "/tmp"]
        mountpoints += [t.target for t in cfg.tmpfs]
        pre = [P.mkdir(m) for m in mountpoints]
        pre += [P.mkdir(b.target, is_file=not os.path.isdir(b.source)) for b in cfg.binds]
        inside.extend(pre)
        if cfg.rootless:
            # In a user namespace the kernel mounts a new proc only where one is already fully
            # visible (mount_too_revealing). A host root brings the host's /proc along; an own
            # root gets it bound here, and each process covers it with a proc of its own.
            before.append(P.open_tree("/proc", slot))
            inside.append(P.move_mount(slot, "/proc", create=False, source="/proc"))
            slot += 1
    inside.extend(ro_root)

    inside.append(P.mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME,
                          "mode=755,size=65536k", in_root=True, mkdir=True))
    for i, dev in enumerate(_DEVICES, start=1):
        op = P.move_mount(i, f"/dev/{dev}", is_file=True, source=f"/dev/{dev}")
        inside.append(attrs.evolve(op, flags=op.flags | OpFlag.OPTIONAL))
    inside.extend(device_ops)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx"), ("core", "/proc/kcore")):
        inside.append(P.symlink(target, f"/dev/{name}"))
    inside.append(P.mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                          "newinstance,ptmxmode=0666,mode=620", in_root=True, mkdir=True))
    inside.append(P.mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          "mode=1777", in_root=True, mkdir=True))
    inside.append(P.mount("mqueue", "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          in_root=True, mkdir=True))
    if not cfg.network:
        # A fresh sysfs shows only this network namespace's devices.
        sys_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
        if not cfg.privileged:
            sys_flags |= MS_RDONLY
        inside.append(P.mount("sysfs", "/sys", "sysfs", sys_flags, in_root=True, mkdir=True))
    elif own_root:
        before.append(P.open_tree("/sys", slot))
        inside.append(P.move_mount(slot, "/sys", source="/sys"))
        if not cfg.privileged:
            inside.append(P.setattr_("/sys", MOUNT_ATTR_RDONLY, in_root=True, recursive=True,
                                     what="make /sys read-only"))
    elif not cfg.privileged and not cfg.readonly:
        inside.append(P.setattr_("/sys", MOUNT_ATTR_RDONLY, in_root=True, recursive=True,
                                 what="make /sys read-only"))
    for t in cfg.tmpfs:
        inside.extend(t.ops())
    inside.extend(bind_ops)

    if not cfg.privileged:
        # /sys masks go in before the pivot, while the staging tmpfs can lend them one empty
        # read-only directory: a bind of it is cheaper than a tmpfs per masked path.
        sys_masks = [m for m in security.DEFAULT_MASKED_PATHS
                     if m.startswith("/sys/") and os.path.exists(m)]
        if sys_masks:
            inside.append(P.mount(_EMPTY, _EMPTY, None, MS_BIND))
            inside.append(P.setattr_(_EMPTY, MOUNT_ATTR_RDONLY,
                                     what="make the mask read-only"))
        for path in sys_masks:
            inside.append(Op(OpKind.MASK, OpFlag.IN_ROOT, s1=_EMPTY.encode(),
                             s2=path.encode(), note=f"mask {path}"))
    after: list[Op] = [Op(OpKind.PIVOT_ROOT, OpFlag.IN_ROOT, s2=b"/",
                          note="pivot_root into the new root")]
    return before + staging + inside + after, _process_ops(cfg)


def _process_ops(cfg: SandboxConfig) -> list[Op]:
    """A fresh /proc (masked as Docker masks it) and a private /tmp, for one process.

    Paths a kernel does not have are left out when the plan is made: the host's /proc shows
    what a fresh one will (same kernel), and each left-out path is one mount less per process.
    """
    from isolate import security  # imported when first needed
    P = _plan
    ops = [
        P.mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                note="mount a fresh /proc"),
        P.mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777",
                note="mount a private /tmp"),
    ]
    if cfg.privileged:
        return ops
    for path in security.DEFAULT_MASKED_PATHS:
        if path.startswith("/proc/") and os.path.exists(path):
            ops.append(Op(OpKind.MASK, s2=path.encode(), note=f"mask {path}"))
    for path in security.DEFAULT_READONLY_PATHS:
        if os.path.exists(path):
            ops.append(P.mount(path, path, None, MS_BIND | MS_REC, optional=True,
                               note=f"bind {path} for read-only"))
            ops.append(P.setattr_(path, MOUNT_ATTR_RDONLY, recursive=True, optional=True,
                                  what=f"make {path} read-only"))
    return ops


def _identity_ops(cfg: SandboxConfig) -> list[Op]:
    """User namespace maps (rootless), credentials and privileges, in the kernel's order."""
    from isolate import security  # imported when first needed
    ops: list[Op] = []
    if cfg.privileged:
        # Not simply all(): a caller whose own bounding set lacks one (a container, a
        # supervisor that dropped some) cannot grant it, and capset would fail with EPERM.
        keep = security.CapabilitySet.all() & security.read_process_caps().bounding
    elif cfg.capabilities is not None:
        keep = cfg.capabilities
    else:
        keep = security.CapabilitySet.none()
    uid = cfg.uid if cfg.uid is not None else 0
    gid = cfg.gid if cfg.gid is not None else (uid if cfg.uid is not None else 0)
    ops.append(Op(OpKind.CAPBSET, a=keep.mask, note="drop capabilities from the bounding set"))
    if uid != 0 and keep.mask:
        ops.append(Op(OpKind.KEEPCAPS, a=1, note="keep capabilities across setuid"))
    if not cfg.rootless:
        ops.append(_plan.setgroups([gid] if cfg.gid is not None or cfg.uid is not None else []))
    if gid != 0 or not cfg.rootless:
        ops.append(Op(OpKind.SETRESGID, a=gid, note=f"setresgid {gid}"))
    if uid != 0 or not cfg.rootless:
        ops.append(Op(OpKind.SETRESUID, a=uid, note=f"setresuid {uid}"))
    ambient = keep.mask if uid != 0 else 0
    ops.append(Op(OpKind.CAPS, a=keep.mask, b=ambient, c=ambient,
                  note="set capabilities"))
    if not cfg.privileged:
        ops.append(Op(OpKind.NO_NEW_PRIVS, note="set no_new_privs"))
    return ops


def _controllers_for(limits: Limits | None, cgroup: CGroup, devices: bool) -> set[str]:
    """The v1 controllers a sandbox's processes join: those its limits use, those that
    account for what it uses (memory and OOM kills, cpu, pids), and ``devices`` when it has a
    device policy. Each is one write per process on a v1 host; blkio without io limits and
    the like are left out."""
    wanted = {"memory", "pids", "cpu", "cpuacct"}
    if devices:
        wanted.add("devices")
    if limits is not None and (limits.cpuset_cpus is not None
                               or limits.cpuset_mems is not None):
        wanted.add("cpuset")
    if limits is not None and (limits.io_weight is not None or limits.io_devices):
        wanted |= {"blkio", "io"}
    if not any(h.version == 2 for h in cgroup.layout.hierarchies):
        wanted.add("freezer")  # kill() freezes first where there is no cgroup.kill
    return wanted


_SHARED_KINDS = ("user", "net", "uts", "ipc", "mnt")
_NSTYPE = {"user": _plan.CLONE_NEWUSER, "net": _plan.CLONE_NEWNET,
           "uts": _plan.CLONE_NEWUTS, "ipc": _plan.CLONE_NEWIPC, "mnt": _plan.CLONE_NEWNS}


def _make_shared_namespaces(cfg: SandboxConfig, root: Sequence[Op] = ()) -> dict[str, int]:
    """Create the namespaces all processes of one sandbox share and return fds that keep
    them alive: user (when rootless), net (unless host networking), uts, ipc, and -- when
    ``root`` ops are given -- a mount namespace with the sandbox's root built once.

    One short-lived child makes them all. It shares our fd table (VFORK mode, CLONE_FILES), so
    the ``/proc/self/ns/*`` files it opens are ours; then it sets the hostname, brings ``lo``
    up, builds the root and exits without exec'ing. Holding the fds (not a process, not a bind
    mount) keeps the namespaces alive, and closing them frees them: nothing can outlive the
    sandbox.
    """
    kinds = ["uts", "ipc"]
    if not cfg.network:
        kinds.append("net")
    if root:
        kinds.append("mnt")
    if cfg.rootless:
        kinds.insert(0, "user")
    p = Plan(sum(_NSTYPE[k] for k in kinds), Mode.VFORK, share_files=True)
    # Opened first, before the root changes: the namespace is the same whatever is mounted.
    p.extend(_plan.open_(f"/proc/self/ns/{k}", note=f"open the {k} namespace") for k in kinds)
    if cfg.rootless:
        if cfg.uid not in (None, 0) or cfg.gid not in (None, 0):
            raise ConfigError("a rootless sandbox maps only uid 0 (your own user); "
                              f"uid={cfg.uid} gid={cfg.gid} cannot be used")
        uid, gid = os.geteuid(), os.getegid()
        p.extend([
            _plan.write_file("/proc/self/setgroups", b"deny"),
            _plan.write_file("/proc/self/uid_map", f"0 {uid} 1".encode()),
            _plan.write_file("/proc/self/gid_map", f"0 {gid} 1".encode()),
        ])
    p.add(Op(OpKind.SETHOSTNAME, s1=_plan.fsencode(cfg.hostname, "hostname"),
             note=f"sethostname {cfg.hostname}"))
    if not cfg.network:
        p.add(Op(OpKind.LOOPBACK_UP, note="bring up lo"))
    if root:
        p.extend(root)
        # Nothing mounted later in a process's copy may propagate back into the shared tree.
        p.add(Op(OpKind.MOUNT, a=MS_REC | MS_SLAVE, s2=b"/",
                 note="make the shared root a slave tree"))
    with lowlevel.spawn(p) as child:
        child.wait()
        opened = child.opened
    return {kind: opened[i] for i, kind in enumerate(kinds)}


class _Compiled:
    """The parts of a sandbox's plan that do not change from one run to the next."""

    def __init__(self, cfg: SandboxConfig, shared: Mapping[str, int],
                 cgroup_fds: Sequence[int] = (), image_root: ImageRoot | None = None,
                 parent_pidfd: int = -1) -> None:
        from isolate import security  # imported when first needed
        # Into the cgroup first: no instruction of the workload runs outside its limits.
        cgroup = [Op(OpKind.CGROUP_JOIN, a=fd, note="join the sandbox's cgroup")
                  for fd in cgroup_fds]
        joins = [Op(OpKind.SETNS, a=shared[k], b=_NSTYPE[k], note=f"join the sandbox's {k} "
                    "namespace") for k in _SHARED_KINDS if k in shared]
        # With a shared root (a mount namespace made at enter), each process joins it and
        # unshares a copy of its own; otherwise it builds its root itself.
        self.shared_root = "mnt" in shared
        # A fuse-overlayfs root is a mount in a namespace of its own: join it, then unshare
        # (below) to work on a copy. It goes after the user namespace if it belongs to it.
        mnt_join, after_user = (image_root.mount_join() if image_root is not None
                                else (None, False))
        if mnt_join is not None:
            joins.insert(1 if after_user else 0, mnt_join)
        if cfg.rootless or cfg.init:
            # Rootless, our mount and pid namespaces must belong to the sandbox's user
            # namespace, so they are made after joining it: unshare the mount namespace, and
            # fork into a new pid namespace (the grandchild is pid 1 there, and our child as
            # Python's). With an init, pid 1 outlives the command's exec, so it must be a
            # process of its own, not a vfork child in our memory: the fork makes it one.
            flags = 0
            joins.append(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWNS, note="unshare mount namespace"))
            joins.append(Op(OpKind.FORK_INTO_PIDNS, a=-1, note="fork into a new pid namespace"))
        elif self.shared_root or mnt_join is not None:
            flags = _plan.CLONE_NEWPID
            joins.append(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWNS, note="unshare mount namespace"))
        else:
            flags = _plan.CLONE_NEWNS | _plan.CLONE_NEWPID
        if cfg.cgroupns:
            # After joining the cgroup, so that it becomes the namespace's root ("/").
            joins.append(Op(OpKind.UNSHARE, a=_plan.CLONE_NEWCGROUP,
                            note="unshare cgroup namespace"))
        p = Plan(flags, Mode.VFORK)
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
        self.image_root = image_root
        # A writable image root with a kernel overlay gets a throwaway upper dir per process,
        # so each process builds its whole root; other image roots are built by each process
        # from the same ops (encoded once); every other root was built once, at enter.
        self.per_process_root = (image_root is not None and not cfg.readonly
                                 and image_root.upper_per_process)
        if self.shared_root:
            p.extend(_process_ops(cfg))
        elif not self.per_process_root:
            shared_ops, own_ops = _root_ops(
                cfg, image_root.overlay_op(0) if image_root else None)
            p.extend(shared_ops + own_ops)
        self.base = p.freeze()
        self.identity = _identity_ops(cfg)
        if parent_pidfd >= 0:
            # The kernel clears the parent-death signal when the credentials change (a uid
            # or gid other than 0): set it again once they are final, and check the caller
            # again, since it may have died in between.
            self.identity.append(Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=parent_pidfd,
                                    note="die with the parent (set again after setresuid)"))
        # The init forks the command after the credentials are dropped, so it keeps none the
        # command lacks; it runs outside the seccomp filter (a custom profile could deny what
        # it needs: wait4, kill), so it makes itself non-dumpable against ptrace.
        if cfg.init:
            self.identity.append(_plan.init())
        self.seccomp: Op | None = None
        if cfg.seccomp is not False and not cfg.privileged:
            profile = (cfg.seccomp if isinstance(cfg.seccomp, security.SeccompProfile)
                       else security.SeccompProfile.default())
            self.seccomp = _plan.seccomp(profile.compile())
        self._cwd: dict[str, Op] = {}

    def plan(self, argv: Sequence[str], env: Mapping[str, str], cwd: str,
             fds: Sequence[tuple[int, int]], upper: tuple[str, str] | None = None) -> Plan:
        chdir = self._cwd.get(cwd)
        if chdir is None:
            chdir = Op(OpKind.CHDIR, s2=_plan.fsencode(cwd, "cwd"), note=f"chdir {cwd}")
            self._cwd[cwd] = chdir
        root: list[Op] = []
        if self.per_process_root:
            # A writable image root: a throwaway upper dir per process, so the whole root is
            # built by each process.
            assert self.image_root is not None and upper is not None
            shared, own = _root_ops(self.cfg, self.image_root.overlay_op(0, upper))
            root = shared + own
        tail = [*root, chdir, *self.identity, _plan.fds([(s, d, False) for s, d in fds])]
        if self.seccomp is not None:
            tail.append(self.seccomp)
        tail.append(_plan.exec_(argv[0], argv, env))
        return self.base.extended(tail)


def _explain_root_failure(exc: MountError) -> None:
    """A caller chrooted into a plain directory (not a mount point) is refused, and told why."""
    if exc.step == "reroot" and exc.errno == errno.EINVAL:
        raise MountError(
            errno.EINVAL, "the calling process's root directory is not a mount point (it was "
            "chrooted into a plain directory), so what lies above it in its mount namespace "
            "cannot be kept out of the sandbox; make that directory a mount point before "
            "chrooting (mount --bind DIR DIR), or run outside the chroot", "/",
            step="reroot") from exc


def _explain_userns_failure(exc: SpawnError, cfg: SandboxConfig) -> None:
    """A kernel that refuses the rootless sandbox its user namespace says only EPERM."""
    if cfg.rootless and exc.step == "clone" and exc.errno == errno.EPERM:
        raise UnsupportedError(
            "the kernel refused a user namespace for this rootless sandbox (EPERM): it "
            "refuses one to a process in a chroot, and where unprivileged user namespaces are "
            "turned off (user.max_user_namespaces=0, kernel.unprivileged_userns_clone=0, an "
            "LSM policy)", missing="user namespaces") from exc


def _explain_overlay_failure(exc: MountError, cfg: SandboxConfig) -> None:
    """A kernel that refuses overlayfs in a user namespace is a missing feature, not a bug:
    say so. (overlay="auto" falls back to fuse-overlayfs before it gets here.)"""
    if exc.step == "overlay" and cfg.rootless and exc.errno in (errno.EPERM, errno.EINVAL):
        raise UnsupportedError(
            f"cannot mount the image rootless: this kernel refuses overlayfs in a user "
            f"namespace ({exc}); it needs Linux >= 5.11, or use overlay='fuse' "
            "(fuse-overlayfs), or run as root") from exc


def _kill_all(procs: Iterable[subprocess.Popen[Any]]) -> None:
    """SIGKILL each process still running: as each is pid 1 of its own pid namespace, its
    whole tree goes with it."""
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass


class SandboxResult(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """A :class:`subprocess.CompletedProcess` that also says whether the OOM killer ended the
    process (``oom_killed``): a memory limit shows up as that, not as a bare SIGKILL."""

    oom_killed: bool = False
    #: With a writable image root: the process's overlay upper dir (its changes, in the
    #: layout :func:`isolate.fs.layers.diff` commits); removed when the sandbox closes.
    upper_dir: str | None = None

    def __repr__(self) -> str:
        base = super().__repr__()
        return base[:-1] + ", oom_killed=True)" if self.oom_killed else base


class Sandbox:
    """A place to run untrusted commands and functions, safe by default also for root callers.

    ``Sandbox(**options)`` takes the fields of :class:`SandboxConfig`: ``rootfs``, ``readonly``,
    ``binds`` (``Bind`` or ``"SRC:DST[:ro|rw][,dev]"``), ``devices`` (``Device`` or
    ``"HOST[:CONTAINER][:rwm]"``), ``tmpfs``, ``env``, ``cwd``, ``hostname``,
    ``network`` (False: only ``lo``; True: the host's network), ``uid``/``gid``, ``timeout``
    (seconds, for the whole sandbox), ``privileged``, ``capabilities`` (names kept),
    ``seccomp`` (True, False or a :class:`isolate.security.SeccompProfile`),
    ``user_namespace`` (default: only when not root), ``image``/``store``, ``overlay``
    (who mounts an image: ``"auto"``, ``"kernel"`` or ``"fuse"`` for fuse-overlayfs),
    ``limits`` (a :class:`isolate.Limits`), ``best_effort``, ``cgroupns``,
    ``die_with_parent`` (default True: a process gets SIGKILL when the caller's process ends,
    even SIGKILLed, so nothing outlives a crashed caller; the thread that started it may end
    before it), and ``init`` (default False: each process is pid 1 of its pid namespace;
    True: a tiny init is pid 1, reaps orphans, forwards signals, and the process is pid 2).

    Use it as a context manager; leaving the block ends every process the sandbox started.
    Raises :class:`ConfigError` for bad options, before anything is started.
    """

    def __init__(self, config: SandboxConfig | None = None, /, **options: Any) -> None:
        if config is not None and options:
            raise ConfigError("pass a SandboxConfig or keyword options, not both")
        self.config = config if config is not None else SandboxConfig(**options)
        self._compiled: _Compiled | None = None
        # Strong references: a Popen the caller dropped is still ours to end at close.
        self._procs: set[subprocess.Popen[Any]] = set()
        self._lock = threading.Lock()
        self._caller_lock = threading.Lock()
        self._closed = False
        self._deadline: float | None = None
        self._timer: threading.Timer | None = None
        self._expired = False  # the sandbox's timeout has killed its processes
        self._caller: Any = None
        self._namespaces: dict[str, int] = {}
        self.cgroup: CGroup | None = None
        self._cgroup_fds: list[int] = []
        self._image_root: ImageRoot | None = None
        self._parent_pidfd = -1

    # -- lifetime -----------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        self._check_open()
        if self._compiled is not None:
            raise StateError("the sandbox was entered already", current="open",
                             requested="enter")
        try:
            self._make_cgroup()
            self._open_image()
            image_root = self._image_root
            shared_root: list[Op] = []
            chosen = False
            if image_root is not None and not self.config.rootless and self.config.readonly:
                # Without a user namespace the choice needs none: make it now, so that a
                # read-only kernel overlay can be mounted once, like any other shared root.
                image_root.choose_overlay(self.config.overlay, None, writable=False,
                                          die_with_parent=self.config.die_with_parent)
                chosen = True
            if image_root is None or (chosen and image_root.fuse is None):
                # The root is the same for every process: build it once, here. (Otherwise an
                # image's overlay is chosen below, once the user namespace exists.)
                shared_root = _root_ops(
                    self.config, image_root.overlay_op(0) if image_root else None)[0]
            try:
                self._namespaces = _make_shared_namespaces(self.config, shared_root)
            except MountError as exc:
                _explain_root_failure(exc)
                _explain_overlay_failure(exc, self.config)
                raise
            except SpawnError as exc:
                _explain_userns_failure(exc, self.config)
                raise
            if image_root is not None and not chosen:
                image_root.choose_overlay(self.config.overlay, self._namespaces.get("user"),
                                          writable=not self.config.readonly,
                                          die_with_parent=self.config.die_with_parent)
            if self.config.die_with_parent:
                self._parent_pidfd = os.pidfd_open(os.getpid())
            self._compiled = _Compiled(self.config, self._namespaces, self._cgroup_fds,
                                       image_root, self._parent_pidfd)
        except BaseException as exc:
            self._release(exc)
            raise
        if self.config.timeout is not None:
            self._deadline = time.monotonic() + self.config.timeout
            self._timer = threading.Timer(self.config.timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End every process of the sandbox (each one's whole tree) and wait for them."""
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            self._closed = True
            procs = list(self._procs)
            self._procs.clear()
        if self._caller is not None:
            self._caller.close()
            self._caller = None
        _kill_all(procs)
        for proc in procs:
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._release()

    def _make_cgroup(self) -> None:
        """The sandbox's cgroup, when it has limits or a device asks for less than ``rwm``
        (only a device cgroup can narrow that), with Docker's device allow-list plus
        ``devices``. Raises UnsupportedError (unless ``best_effort``), CgroupError."""
        cfg = self.config
        narrowed = [d.source for d in cfg.devices if d.access != "rwm"]
        if cfg.limits is None and not narrowed:
            return
        if narrowed and os.geteuid() != 0:
            raise UnsupportedError(
                f"devices {', '.join(narrowed)} ask for less access than rwm, which only a "
                "device cgroup enforces, and only root may give a cgroup a device policy",
                missing="a device cgroup")
        try:
            self.cgroup = CGroup.create(limits=cfg.limits, best_effort=cfg.best_effort)
        except UnsupportedError as exc:
            if not cfg.best_effort or narrowed:
                raise
            warnings.warn(f"sandbox runs without resource limits: {exc}", RuntimeWarning,
                          stacklevel=3)
            return
        policy = not cfg.privileged and self._set_device_policy()
        for path in self.cgroup.procs_files(_controllers_for(cfg.limits, self.cgroup, policy)):
            self._cgroup_fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))

    def _set_device_policy(self) -> bool:
        """Docker's device allow-list plus the sandbox's devices, on its cgroup; False where
        the host cannot (not root: the kernel gives device policies to root only, and a
        rootless sandbox cannot make or open device nodes of its own anyway)."""
        cfg = self.config
        assert self.cgroup is not None
        rules = [*DEFAULT_RULES, *(rule_for_node(d.source, d.access) for d in cfg.devices)]
        try:
            self.cgroup.set_devices(rules)
        except UnsupportedError as exc:
            if os.geteuid() != 0 and not any(d.access != "rwm" for d in cfg.devices):
                return False
            if not cfg.best_effort:
                raise
            warnings.warn(f"sandbox runs without a device policy: {exc}", RuntimeWarning,
                          stacklevel=4)
            return False
        return True

    def _open_image(self) -> None:
        """With ``image=``: prepare its root and make its config the run defaults (env is
        merged, explicit options win)."""
        cfg = self.config
        if cfg.image is None:
            return
        from isolate._image_root import ImageRoot, check_rootless_user

        mountpoints = [(m, False) for m in ("/proc", "/dev", "/sys", "/tmp")]
        mountpoints += [(t.target, False) for t in cfg.tmpfs]
        mountpoints += [(b.target, not os.path.isdir(b.source)) for b in cfg.binds]
        root = ImageRoot.open(cfg.image, cfg.store, mountpoints=mountpoints,
                              rootless=cfg.rootless)
        self._image_root = root
        defaults = root.defaults()
        env: dict[str, str] = dict(defaults["env"])  # type: ignore[call-overload]
        env.update(cfg.env or ())
        changes: dict[str, Any] = {"image": root.image, "env": env}
        if cfg.cwd is None and "cwd" in defaults:
            changes["cwd"] = defaults["cwd"]
        if cfg.uid is None and cfg.gid is None and "uid" in defaults:
            if cfg.rootless:
                check_rootless_user(defaults["uid"], defaults["gid"],  # type: ignore[arg-type]
                                    root.image)
            changes["uid"], changes["gid"] = defaults["uid"], defaults["gid"]
        self.config = attrs.evolve(cfg, **changes)

    @property
    def image(self) -> Image | None:
        """The image the sandbox runs (resolved once the sandbox is entered), or None."""
        if self._image_root is not None:
            return self._image_root.image
        image = self.config.image
        return None if image is None or isinstance(image, str) else image

    def image_command(self, argv: Sequence[str] | None = None) -> list[str]:
        """The command to run for ``argv`` in the image, as Docker builds it: the image's
        Entrypoint, then ``argv`` or (when ``argv`` is empty) the image's Cmd.

        Raises:
            StateError: the sandbox has no image or was not entered yet.
            ConfigError: neither ``argv`` nor the image gives a command.
        """
        from isolate._image_root import image_command

        if self._image_root is None:
            raise StateError("image_command needs an entered sandbox made with image=",
                             current="new" if self.config.image else "no image",
                             requested="image_command")
        return image_command(self._image_root.image, argv)

    def _release(self, error: BaseException | None = None) -> None:
        """Free namespaces, the image root and the cgroup; a failure is raised, or noted on
        ``error``."""
        namespaces, self._namespaces = self._namespaces, {}
        fds, self._cgroup_fds = self._cgroup_fds, []
        if self._parent_pidfd >= 0:
            fds.append(self._parent_pidfd)
            self._parent_pidfd = -1
        for fd in [*namespaces.values(), *fds]:
            os.close(fd)
        image_root, self._image_root = self._image_root, None
        if image_root is not None:
            try:
                image_root.close()
            except (OSError, IsolateError) as exc:
                if error is None:
                    raise
                add_note(error, f"while removing the sandbox's image scratch dir: {exc}")
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is None:
            return
        try:
            cgroup.delete()
        except IsolateError as exc:
            if error is None:
                raise
            add_note(error, f"while removing the sandbox's cgroup: {exc}")

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            procs = list(self._procs)
        _kill_all(procs)

    def __del__(self) -> None:
        if getattr(self, "_compiled", None) is not None and not getattr(self, "_closed", True):
            warnings.warn("an isolate.Sandbox was not closed; leave its with block or call "
                          "close()", ResourceWarning, stacklevel=2, source=self)

    def _check_open(self) -> None:
        if self._closed:
            raise StateError("the sandbox is closed", current="closed", requested="run")

    def _remaining(self, timeout: float | None) -> float | None:
        if self._deadline is None:
            return timeout
        left = max(self._deadline - time.monotonic(), 0.001)
        return left if timeout is None else min(timeout, left)

    def oom_kills(self) -> int:
        """How many processes of this sandbox the OOM killer has killed (0 without limits)."""
        if self.cgroup is None:
            return 0
        return self.cgroup.events().oom_kill

    # -- running commands ---------------------------------------------------------------------
    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a process of this sandbox gets: ``env`` if given, else the
        configured one, else a clean default (PATH, HOME, and TERM/LANG/LC_ALL/TZ from here).
        The caller's other variables never leak in by default."""
        if env is not None:
            return dict(_env(env) or ())
        if self.config.env is not None:
            return dict(self.config.env)
        base = {"PATH": DEFAULT_PATH, "HOME": "/root" if not self.config.uid else "/tmp"}
        for key in ("TERM", "LANG", "LC_ALL", "TZ"):
            if key in os.environ:
                base[key] = os.environ[key]
        return base

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in the sandbox; returns a :class:`subprocess.Popen`.

        Takes Popen's stdio options (``stdin``, ``stdout``, ``stderr``, ``text``,
        ``encoding``, ``pass_fds`` ...). ``env`` replaces the sandbox environment for this
        process; ``cwd`` is a path inside the sandbox.

        Raises :class:`ConfigError` for bad arguments, :class:`StateError` when the sandbox is
        closed, and :class:`isolate.errors.SpawnError` (or ``MountError``...) naming the set-up
        step or the program that failed.
        """
        self._check_open()
        if self._compiled is None:
            raise StateError("use the sandbox in a with block (or call __enter__) first",
                             current="new", requested="run")
        if isinstance(argv, (str, bytes)):
            raise ConfigError("argv must be a sequence of arguments, not a string")
        argv = [os.fsdecode(a) for a in argv]
        if not argv:
            raise ConfigError("argv must not be empty")
        for bad in ("preexec_fn", "shell", "executable", "start_new_session", "cwd"):
            if popen_kwargs.get(bad):
                raise ConfigError(f"{bad} is not supported in a sandbox")
        environment = self.environment(env)
        workdir = (check_container_path(cwd, "cwd") if cwd is not None
                   else self.config.cwd or "/")
        compiled = self._compiled
        upper = None
        if compiled.per_process_root and self._image_root is not None:
            upper = self._image_root.new_upper()

        def factory(fds: list[tuple[int, int]]) -> Plan:
            return compiled.plan(argv, environment, workdir, fds, upper)

        with self._lock:
            self._check_open()
            try:
                proc = SandboxedPopen(argv, plan_factory=factory, **popen_kwargs)
            except MountError as exc:
                _explain_root_failure(exc)
                _explain_overlay_failure(exc, self.config)
                raise
            # Forget the ones already reaped, so a long-lived sandbox does not collect them.
            self._procs = {p for p in self._procs if p.returncode is None}
            self._procs.add(proc)
        shared_upper = self._image_root.shared_upper if self._image_root else None
        proc.upper_dir = upper[0] if upper else shared_upper  # type: ignore[attr-defined]
        return proc

    def run(self, argv: Sequence[str], *, input: bytes | str | None = None,
            capture_output: bool = False, timeout: float | None = None,
            check: bool = False, env: Mapping[str, str] | None = None,
            cwd: str | None = None, **popen_kwargs: Any) -> SandboxResult:
        """Run ``argv`` to completion, as :func:`subprocess.run` would.

        On timeout (``timeout``, or the sandbox's own running out first) the process and its
        whole tree are killed and :class:`subprocess.TimeoutExpired` is raised; with
        ``check=True`` a non-zero exit raises :class:`subprocess.CalledProcessError`.
        """
        if input is not None:
            if popen_kwargs.get("stdin") is not None:
                raise ConfigError("stdin and input cannot both be given")
            popen_kwargs["stdin"] = subprocess.PIPE
        if capture_output:
            if popen_kwargs.get("stdout") is not None or popen_kwargs.get("stderr") is not None:
                raise ConfigError("stdout/stderr and capture_output cannot both be given")
            popen_kwargs["stdout"] = subprocess.PIPE
            popen_kwargs["stderr"] = subprocess.PIPE
        timeout = self._remaining(timeout)
        oom_before = self.oom_kills()
        with self.popen(argv, env=env, cwd=cwd, **popen_kwargs) as proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                exc.stdout, exc.stderr = proc.communicate()
                raise
            except BaseException:
                proc.kill()
                raise
            retcode = proc.poll()
            assert retcode is not None
        oom_killed = retcode == -signal.SIGKILL and self.oom_kills() > oom_before
        if retcode == -signal.SIGKILL and self._expired and not oom_killed \
                and timeout is not None:
            # The sandbox's timer killed it just before our own wait for the same deadline
            # ran out: the same timeout, whichever thread saw it first.
            raise subprocess.TimeoutExpired(proc.args, timeout, output=stdout, stderr=stderr)
        result = SandboxResult(proc.args, retcode, stdout, stderr)
        result.upper_dir = getattr(proc, "upper_dir", None)
        result.oom_killed = oom_killed
        if check and retcode:
            raise subprocess.CalledProcessError(retcode, proc.args, output=stdout,
                                                stderr=stderr)
        return result

    # -- running Python -----------------------------------------------------------------------
    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the sandbox and return its result.

        ``fn``, its arguments and its result must be picklable (a module-level function).
        An exception raised by ``fn`` is re-raised here, with the child's traceback text
        attached as a note. The sandbox must be able to run this Python interpreter (the
        default host root can; a custom ``rootfs`` needs it inside).

        Raises :class:`isolate.errors.CallError` (a :class:`RuntimeError`) when the child
        dies without answering, :class:`TimeoutError` when the sandbox's timeout ends it.
        """
        self._check_open()
        from isolate._caller import Caller

        with self._caller_lock:
            if self._caller is None:
                self._caller = Caller(self)
            caller = self._caller
        try:
            result: T = caller.call(fn, args, kwargs, self._remaining(None))
        except CallError as exc:
            # The sandbox's timer may end the helper a moment before the call's own deadline.
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise TimeoutError(f"sandboxed call of {fn!r} ended by the sandbox's timeout "
                                   f"of {self.config.timeout} s") from exc
            raise
        return result
