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

import _thread
import errno
import os
import stat
import sys
import time

from isolate import _memo
from isolate._sig import signal
from isolate.errors import (
    CallError,
    ConfigError,
    IsolateError,
    MountError,
    SpawnError,
    StateError,
    UnsupportedError,
)

# Not typing's: 'import isolate.sandbox' loads neither typing nor collections.abc (nor the re
# that typing loads), which an interpreter without site packages that preload them (Debian's
# python3) would otherwise pay for at import (~7 ms). Type checkers take any TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    import threading
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, NoReturn, Protocol, TypeVar

    # The building blocks are imported where they are first used (entering a sandbox, the
    # first Bind, limits): 'import isolate.sandbox' stays cheap, and a sandbox without limits
    # never loads the cgroup code.
    from isolate import lowlevel, runtime, security
    from isolate._image_root import ImageRoot
    from isolate._plan import Op, Plan
    from isolate._sandbox_config import SandboxConfig
    from isolate._sandbox_result import SandboxResult
    from isolate.cgroups import CGroup, DeviceRule, Layout, Limits
    from isolate.fs.mounts import Bind, Tmpfs
    from isolate.image import Image, Store
    from isolate.namespaces import NamespaceKind
    from isolate.runtime import RuntimeConfig

    T = TypeVar("T")
    P = TypeVar("P", bound="_Process")

    class _Process(Protocol):
        """What the sandbox needs of a process it started: a Popen or a lowlevel Child."""

        returncode: int | None

        def poll(self) -> int | None: ...
        def wait(self) -> int: ...
        def kill(self) -> None: ...

__all__ = ["Sandbox", "SandboxConfig", "SandboxResult"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
_STAGING = "/tmp"
_NEWROOT = "/tmp/.isolate-root"
_EMPTY = "/tmp/.isolate-empty"


def __getattr__(name: str) -> Any:
    """``SandboxConfig`` and ``SandboxResult``, made when first asked for: the config class
    and the records it is made of cost more to build than the rest of this module, and the
    result is a :mod:`subprocess` class (subprocess loads locale, re, enum, selectors and
    threading: ~10 ms of a start). A program that only imports ``isolate.sandbox``, or runs
    its processes through :meth:`Sandbox.spawn`, need not pay for them.

    Raises AttributeError for a name the module does not have.
    """
    value: Any
    if name == "SandboxConfig":
        from isolate._sandbox_config import SandboxConfig

        value = SandboxConfig
    elif name == "SandboxResult":
        from isolate._sandbox_result import SandboxResult

        value = SandboxResult
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, ``SandboxConfig`` and ``SandboxResult`` among them."""
    return sorted({*globals(), "SandboxConfig", "SandboxResult"})


#: Where the memory controller counts OOM kills ("oom_kill N"): v2's file, then v1's.
_OOM_FILES = ("memory.events", "memory.oom_control")


# -- the preset: a SandboxConfig as a runtime config ---------------------------------------------

def runtime_config(cfg: SandboxConfig) -> RuntimeConfig:
    """``cfg`` as the :class:`isolate.runtime.RuntimeConfig` its processes run with: the
    sandbox's strict defaults (no capabilities unless asked, no_new_privs, the default seccomp
    profile, Docker's masked and read-only paths, a private /tmp per process) filled in, and
    the read-only binds ``Sandbox.call`` needs (see ``_with_call_binds``).

    Rootless, the user namespace maps ids as :func:`isolate.namespaces.rootless_maps` does
    (0 is the caller, 1.. its subordinate ranges where it has them).

    Raises:
        ConfigError: what the runtime config refuses.
        UnsupportedError: rootless, ``uid``/``gid`` is not mapped (no subordinate range, or
            one too small).
    """
    if cfg.image is None:
        # The same config gives the same runtime config (records are frozen): a fresh sandbox
        # per run reuses it. What it depends on besides cfg is in the key.
        try:
            return _cached_runtime_config(cfg, tuple(sys.path), sys.executable, os.geteuid())
        except TypeError:  # an unhashable value somewhere (a custom profile's mapping)
            pass
    return _runtime_config(cfg)


@_memo.lru_cache(maxsize=16)
def _cached_runtime_config(cfg: SandboxConfig, path: tuple[str, ...], executable: str,
                           euid: int) -> RuntimeConfig:
    return _runtime_config(cfg)


def _runtime_config(cfg: SandboxConfig) -> RuntimeConfig:
    from isolate import runtime, security  # imported when first needed
    from isolate.namespaces import IdMap, NamespaceKind, rootless_maps

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
    chosen = cfg.uid is not None or cfg.gid is not None
    # An unprivileged command keeps the capabilities it was given across its exec only as
    # ambient ones.
    carried = keep if uid != 0 else security.CapabilitySet.none()
    process = runtime.Process(
        cwd=cfg.cwd or "/",
        user=runtime.User(uid, gid, (gid,) if chosen else ()),
        capabilities=runtime.Capabilities(keep, keep, keep, carried, carried),
        no_new_privileges=not cfg.privileged)
    kinds = [NamespaceKind.MNT, NamespaceKind.PID, NamespaceKind.UTS, NamespaceKind.IPC]
    if not cfg.host_network:
        kinds.append(NamespaceKind.NET)
    if cfg.cgroupns:
        kinds.append(NamespaceKind.CGROUP)
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    if cfg.rootless:
        kinds.insert(0, NamespaceKind.USER)
        maps = rootless_maps()
        maps.check(uid, gid, "the sandbox's process")
        uid_map, gid_map = maps.uid_map, maps.gid_map
    host_root = cfg.rootfs is None and cfg.image is None
    mounts = runtime.standard_mounts(own_network=not cfg.host_network,
                                     sysfs_writable=cfg.privileged, private_tmp=True)
    if cfg.host_network and host_root and (cfg.readonly or cfg.privileged):
        # The host root brings its /sys along, read-only with the rest of it.
        mounts = [m for m in mounts if m.destination != "/sys"]
    mounts += [runtime.Mount.from_tmpfs(t) for t in cfg.tmpfs]
    mounts += [runtime.Mount.from_bind(b) for b in _with_call_binds(cfg)]
    seccomp = None
    if cfg.seccomp is not False and not cfg.privileged:
        seccomp = (cfg.seccomp if isinstance(cfg.seccomp, security.SeccompProfile)
                   else security.SeccompProfile.default())
    return runtime.RuntimeConfig(
        process=process, root=runtime.Root(cfg.rootfs, cfg.readonly, nodev=not cfg.privileged),
        hostname=cfg.hostname, devices=(*runtime.DEFAULT_DEVICES, *cfg.devices),
        mounts=mounts, namespaces=kinds, uid_mappings=uid_map, gid_mappings=gid_map,
        masked_paths=() if cfg.privileged else security.DEFAULT_MASKED_PATHS,
        readonly_paths=() if cfg.privileged else security.DEFAULT_READONLY_PATHS,
        seccomp=seccomp, sysfs_readonly=not cfg.privileged,
        die_with_parent=cfg.die_with_parent, init=cfg.init)


def _with_call_binds(cfg: SandboxConfig) -> list[Bind]:
    """``cfg.binds`` and, with the host's root, read-only binds of what ``Sandbox.call``'s
    interpreter needs where the sandbox would hide it: this Python, its prefixes and its
    ``sys.path`` entries below the private ``/tmp`` (a virtualenv of tox, nox or pytest) or
    below a tmpfs or bind of ``cfg``. Each goes before the binds below it, so those stay on
    top. Nothing is added in the usual case, where the interpreter lives in ``/usr``."""
    from isolate.fs.mounts import Bind

    binds = list(cfg.binds)
    if cfg.rootfs is not None or cfg.image is not None:
        return binds  # another root: the interpreter must be in it (Caller says so if not)
    # What each path shows: the last mount above it decides (a hider, or a bind's source).
    covers: list[tuple[str, str | None]] = [("/tmp", None)]
    covers += [(t.target, None) for t in cfg.tmpfs]
    covers += [(b.target, b.source) for b in cfg.binds]
    # Only strings are compared here (this runs for every sandbox); the file system is asked
    # only about the few paths that would be hidden.
    hidden = sorted({p for p in _call_paths(sys.executable, sys.prefix, sys.exec_prefix,
                                            sys.base_prefix, sys.base_exec_prefix,
                                            tuple(sys.path))
                     if not _shown(p, covers) and os.path.exists(p)})
    added: list[str] = []
    for path in hidden:
        if not any(_below(path, a) for a in added):
            added.append(path)
    for path in added:
        bind = Bind(path, path, readonly=True)
        at = next((i for i, b in enumerate(binds) if _below(b.target, path)), len(binds))
        binds.insert(at, bind)
    return binds


@_memo.lru_cache(maxsize=8)
def _call_paths(executable: str, *prefixes_and_path: str | tuple[str, ...]) -> frozenset[str]:
    """The absolute paths a call's interpreter needs: the executable (and where its symlinks
    lead), the prefixes and the ``sys.path`` entries."""
    raw: list[str] = [executable, os.path.realpath(executable)]
    for item in prefixes_and_path:
        raw.extend([item] if isinstance(item, str) else item)
    return frozenset(os.path.normpath(p) for p in raw if p and os.path.isabs(p))


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _shown(path: str, covers: Sequence[tuple[str, str | None]]) -> bool:
    """Whether the sandbox shows the host's ``path`` at ``path``. A path that is itself a
    hider (``/tmp``) counts as shown: binding it would undo the sandbox's own mount."""
    for target, source in reversed(covers):
        if path == target and source is None:
            return True
        if _below(path, target):
            return source is not None and os.path.normpath(
                os.path.join(source, os.path.relpath(path, target))) == path
    return True


# -- compiled once per config ----------------------------------------------------------------
# A fresh sandbox per run (the way tests and CI jobs use one) would compile the same root and
# the same process plan each time. Both are immutable, so they are kept per config, and per
# what of the host they were compiled against (_host_view): a change there compiles anew.

def _host_view(rc: RuntimeConfig) -> tuple[object, ...]:
    """What a compiled root depends on of the host, at the cost of a few lstat calls: the
    top-level entries (a spliced root binds them), which mount targets exist, and whether
    each bind source is a file or a directory."""
    def kind(path: str) -> int | None:
        try:
            return stat.S_IFMT(os.stat(path).st_mode)
        except OSError:
            return None

    view: list[object] = [os.stat("/").st_mtime_ns]
    for m in rc.mounts:
        view.append(os.path.lexists(m.destination))
        if m.type == "bind" and m.source is not None:
            view.append(kind(m.source))
    return tuple(view)


@_memo.lru_cache(maxsize=16)
def _shared_root(rc: RuntimeConfig, host: tuple[object, ...]) -> tuple[Op, ...]:
    from isolate import runtime

    return runtime.root_ops(rc).shared


@_memo.lru_cache(maxsize=16)
def _template(rc: RuntimeConfig, namespaces: tuple[tuple[NamespaceKind, int], ...],
              cgroup_fds: tuple[int, ...], cgroup_dir_fd: int, parent_pidfd: int,
              init_fd: int, host: tuple[object, ...]) -> runtime.ProcessTemplate:
    """The process plan of a sandbox whose shared namespaces (and cgroup files, pidfd of the
    caller, init binary) are at these fd numbers: a later sandbox gets the same numbers when
    the last one closed its fds, so a fresh sandbox per run reuses it."""
    from isolate import runtime

    return runtime.ProcessTemplate(rc, dict(namespaces), cgroup_fds=cgroup_fds,
                                   cgroup_dir_fd=cgroup_dir_fd, parent_pidfd=parent_pidfd,
                                   init_fd=init_fd)


def _controllers_for(limits: Limits | None, layout: Layout, devices: bool) -> set[str]:
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
    if layout.v2 is None:
        wanted.add("freezer")  # kill() freezes first where there is no cgroup.kill
    return wanted


def _sandbox_layout(limits: Limits | None, *, devices: bool) -> tuple[Layout, set[str]]:
    """The host's cgroup layout cut to the hierarchies a sandbox's processes join (and the
    controllers they are): its group is made, limited and removed in those only, not in
    every v1 hierarchy of a hybrid host (4 of 9 here), which halves what a limited sandbox
    adds to its start and end."""
    from isolate.cgroups import host_layout

    layout = host_layout()
    wanted = _controllers_for(limits, layout, devices)
    return _cut_layout(layout, frozenset(wanted)), wanted


@_memo.lru_cache(maxsize=8)
def _cut_layout(layout: Layout, wanted: frozenset[str]) -> Layout:
    """``layout`` without the v1 hierarchies of none of the ``wanted`` controllers (kept: the
    same object for the same cut, which the cgroup pool's lookups compare)."""
    from isolate import _record

    return _record.evolve(layout, v1=tuple(h for h in layout.v1 if h.controllers & wanted))


def _make_shared_namespaces(rc: RuntimeConfig, root: Sequence[Op] = ()
                            ) -> dict[NamespaceKind, int]:
    """Create the namespaces all processes of one sandbox share and return fds that keep
    them alive: user (when rootless), net (unless host networking), uts, ipc, and -- when
    ``root`` ops are given -- a mount namespace with the sandbox's root built once.

    One short-lived child makes them all (:func:`isolate.runtime.shared_plan`), sets the
    hostname, brings ``lo`` up (or joins a network namespace made ahead with it up), builds
    the root and exits without exec'ing. Holding the fds
    (not a process, not a bind mount) keeps the namespaces alive, and closing them frees
    them: nothing can outlive the sandbox.
    """
    from isolate import _spare_netns, lowlevel, runtime

    # A process entering sandboxes one after another takes a network namespace made ahead
    # (isolate._spare_netns): what the clone would make, off this path.
    spare = _spare_netns.take() if runtime.takes_netns(rc) else -1
    try:
        shared = runtime.shared_plan(rc, root, netns=spare)
        try:
            with lowlevel.spawn(shared.plan, parent_step=shared.parent_step
                                if shared.needs_parent else None) as child:
                child.wait()
                return shared.collect(child.opened)
        finally:
            shared.close()
    finally:
        if spare >= 0:
            os.close(spare)


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
    """A kernel that refuses the rootless sandbox its user namespace says only EPERM; so
    does one that refuses an ordinary user namespaces without one."""
    if exc.step != "clone" or exc.errno != errno.EPERM:
        return
    if not cfg.rootless and os.geteuid() != 0:
        raise UnsupportedError(
            "an ordinary user may create namespaces only inside a user namespace of its own, "
            "and this sandbox has none (user_namespace=False): leave user_namespace unset "
            "(the default when not root), or run as root (clone: EPERM)",
            missing="CAP_SYS_ADMIN") from exc
    if cfg.rootless:
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


def _add_note(error: BaseException, note: str) -> None:
    from isolate.cgroups.cgroup import add_note

    add_note(error, note)


def _kill_all(procs: Iterable[_Process]) -> None:
    """SIGKILL each process still running: as each is pid 1 of its own pid namespace, its
    whole tree goes with it."""
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass


class Sandbox:
    """A place to run untrusted commands and functions, safe by default also for root callers.

    ``Sandbox(**options)`` takes the fields of :class:`SandboxConfig` as keyword arguments
    (or one ``SandboxConfig``): ``rootfs``, ``readonly``, ``binds`` (``Bind`` or
    ``"SRC:DST[:ro|rw][,dev]"``), ``devices`` (``"HOST[:CONTAINER][:rwm]"`` or
    :class:`isolate.runtime.Device`), ``tmpfs``, ``env``, ``cwd``, ``hostname``, ``network``
    (False or ``"none"``: only ``lo``; True or ``"host"``: the host's network; ``"bridge"`` or
    a network's name: an endpoint on that network of the store, with its /etc/hosts and
    resolv.conf; ``"pasta"``/``"slirp4netns"``: user-mode networking), ``ports`` (``-p``
    specs, with a network of its own), ``network_host`` (the namespace playing the host for
    those; default ``$ISOLATE_NETWORK_NS``, else ours), ``uid``/``gid``, ``timeout`` (seconds, for
    the whole sandbox: past it the sandbox takes no new work), ``privileged``, ``capabilities``
    (names kept), ``seccomp`` (True, False or a :class:`isolate.security.SeccompProfile`),
    ``user_namespace`` (default: only when not root), ``image`` (an ``Image`` or a name),
    ``store`` (default: ``$ISOLATE_STORE``, else the default store, as the CLI), ``pull``
    (``"missing"``, ``"always"``, ``"never"``), ``overlay`` (who mounts an image:
    ``"auto"``, ``"kernel"`` or ``"fuse"`` for fuse-overlayfs), ``limits`` (a
    :class:`isolate.Limits` or a mapping of its fields), ``best_effort``, ``cgroupns``,
    ``die_with_parent`` (default True: a process gets SIGKILL when the caller's process ends,
    even SIGKILLed, so nothing outlives a crashed caller; the thread that started it may end
    before it), and ``init`` (default False: each process is pid 1 of its pid namespace;
    True: a tiny init is pid 1, reaps orphans, forwards signals, and the process is pid 2).

    Use it as a context manager; leaving the block ends every process the sandbox started.
    Raises :class:`ConfigError` for bad or unknown options, before anything is started.
    """

    def __init__(self, config: SandboxConfig | None = None, /, *,
                 rootfs: str | os.PathLike[str] | None = None,
                 readonly: bool = True,
                 binds: Iterable[Bind | str] | Bind | str = (),
                 tmpfs: Iterable[Tmpfs | str] | Tmpfs | str = (),
                 devices: Iterable[runtime.Device | str] | runtime.Device | str = (),
                 env: Mapping[str, str] | None = None,
                 cwd: str | None = None,
                 hostname: str = "sandbox",
                 network: bool | str = "none",
                 ports: Iterable[str] | str = (),
                 network_host: Any = None,
                 uid: int | None = None,
                 gid: int | None = None,
                 timeout: float | None = None,
                 privileged: bool = False,
                 capabilities: Iterable[str] | security.CapabilitySet | None = None,
                 seccomp: security.SeccompProfile | bool = True,
                 user_namespace: bool | None = None,
                 limits: Limits | Mapping[str, Any] | None = None,
                 best_effort: bool = False,
                 cgroupns: bool = True,
                 die_with_parent: bool = True,
                 init: bool = False,
                 image: Image | str | None = None,
                 store: Store | None = None,
                 overlay: str = "auto",
                 pull: str = "missing",
                 **unknown: NoReturn) -> None:
        # The keywords mirror SandboxConfig's fields (a test keeps them in step), so that a
        # type checker catches a misspelt option; at run time it is a ConfigError naming it.
        from isolate import _record
        from isolate._sandbox_config import OPTIONS, SandboxConfig, close_match, names_of

        if unknown:
            names = sorted(unknown)
            raise ConfigError(f"unknown Sandbox option {names_of(names)}"
                              f"{close_match(names[0], OPTIONS)}")
        options = {name: value for name, value in locals().items() if name in OPTIONS}
        if config is None:
            config = SandboxConfig(**options)
        elif any(options[f.name] != f.default for f in _record.fields(SandboxConfig)):
            raise ConfigError("pass a SandboxConfig or keyword options, not both")
        self.config = config
        self._compiled: runtime.ProcessTemplate | None = None
        self._runtime: RuntimeConfig | None = None
        self._runtime_of: SandboxConfig | None = None
        # Strong references: a Popen the caller dropped is still ours to end at close.
        self._procs: set[_Process] = set()
        self._lock = _thread.allocate_lock()
        self._caller_lock = _thread.allocate_lock()
        self._closed = False
        self._deadline: float | None = None
        self._timer: threading.Timer | None = None
        self._expired = False  # the sandbox's timeout has killed its processes
        self._caller: Any = None
        self._namespaces: dict[NamespaceKind, int] = {}
        self.cgroup: CGroup | None = None
        self._cgroup_fds: list[int] = []
        self._cgroup_dir_fd = -1  # its v2 directory, to clone processes into (-1: none)
        self._image_root: ImageRoot | None = None
        self._parent_pidfd = -1
        self._init_fd = -1
        self._etc_dir: str | None = None
        self._attachment: Any = None
        self._rootless_net: Any = None

    # -- lifetime -----------------------------------------------------------------------------
    def __enter__(self) -> Sandbox:
        """Start the sandbox: check its config, create its cgroup (with ``limits``), prepare
        an image's root, and make the namespaces and root every process shares. Returns the
        sandbox; leaving the ``with`` block closes it (:meth:`close`).

        Raises StateError when entered twice or after close, ConfigError, UnsupportedError
        (the host lacks what the config asks for), and MountError, NamespaceError,
        CgroupError or ImageError when setting up fails; nothing is left behind then.
        """
        self._check_open()
        if self._compiled is not None:
            raise StateError("the sandbox was entered already", current="open",
                             requested="enter")
        from isolate import runtime
        from isolate.namespaces import NamespaceKind

        try:
            self._make_cgroup()
            self._prepare_network_files()
            self._open_image()
            image_root = self._image_root
            rc = self.runtime
            host = _host_view(rc) if image_root is None else ()
            shared_root: tuple[Op, ...] = ()
            chosen = False
            if image_root is not None and not self.config.rootless and self.config.readonly:
                # Without a user namespace the choice needs none: make it now, so that a
                # read-only kernel overlay can be mounted once, like any other shared root.
                image_root.choose_overlay(self.config.overlay, None, writable=False,
                                          die_with_parent=self.config.die_with_parent)
                chosen = True
            if image_root is None:
                # The root is the same for every process: build it once, here.
                shared_root = _shared_root(rc, host)
            elif chosen and image_root.fuse is None:
                # (Otherwise an image's overlay is chosen below, once the user namespace exists.)
                shared_root = runtime.root_ops(rc, image_root.overlay_op(0)).shared
            try:
                self._namespaces = _make_shared_namespaces(self._rootless_bridge(rc),
                                                           shared_root)
            except MountError as exc:
                _explain_root_failure(exc)
                _explain_overlay_failure(exc, self.config)
                raise
            except SpawnError as exc:
                _explain_userns_failure(exc, self.config)
                raise
            self._attach_network()
            if image_root is not None and not chosen:
                image_root.choose_overlay(self.config.overlay,
                                          self._namespaces.get(NamespaceKind.USER),
                                          writable=not self.config.readonly,
                                          die_with_parent=self.config.die_with_parent)
            if self.config.die_with_parent:
                self._parent_pidfd = os.pidfd_open(os.getpid())
            if self.config.init:
                from isolate import _shim

                init_path = _shim.init_binary()
                if init_path is not None:
                    # Opened here, before any root changes: the static init runs in any root.
                    self._init_fd = os.open(init_path, os.O_PATH | os.O_CLOEXEC)
            if image_root is None:
                self._compiled = _template(rc, tuple(self._namespaces.items()),
                                           tuple(self._cgroup_fds), self._cgroup_dir_fd,
                                           self._parent_pidfd, self._init_fd, host)
            else:
                mount_join, after_user = image_root.mount_join()
                self._compiled = runtime.ProcessTemplate(
                    rc, self._namespaces, cgroup_fds=self._cgroup_fds,
                    cgroup_dir_fd=self._cgroup_dir_fd, mount_join=mount_join,
                    join_after_user=after_user, root=image_root.overlay_op(0),
                    per_process_root=(not self.config.readonly
                                      and image_root.upper_per_process),
                    parent_pidfd=self._parent_pidfd, init_fd=self._init_fd)
        except BaseException as exc:
            self._release(exc)
            raise
        if self.config.timeout is not None:
            self._deadline = time.monotonic() + self.config.timeout
            import threading  # here: a sandbox without a timeout needs no thread

            self._timer = threading.Timer(self.config.timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """:meth:`close` the sandbox; exceptions from the block propagate."""
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
            for name in ("stdin", "stdout", "stderr"):  # a Popen's pipes (a Child has none)
                stream = getattr(proc, name, None)
                if stream is not None:
                    stream.close()
            close = getattr(proc, "close", None)  # a Child's pidfd (closing twice is fine)
            if close is not None:
                close()
        self._release()

    def _prepare_network_files(self) -> None:
        """With a network to attach: files for /etc/hosts and /etc/resolv.conf, bound in
        (their text is written once the endpoint exists: the binds hold the inodes)."""
        if not self.config.attaches_network:
            return
        import tempfile

        from isolate.fs.mounts import Bind

        self._etc_dir = tempfile.mkdtemp(prefix="isolate-sandbox-net-")
        binds = []
        for name in ("hosts", "resolv.conf"):
            path = os.path.join(self._etc_dir, name)
            with open(path, "w"):
                pass
            os.chmod(path, 0o644)
            binds.append(Bind(path, f"/etc/{name}", readonly=True))
        os.chmod(self._etc_dir, 0o755)
        from isolate import _record

        self.config = _record.evolve(self.config, binds=(*self.config.binds, *binds))

    def _rootless_bridge(self, rc: RuntimeConfig) -> RuntimeConfig:
        """``rc``, or -- for an ordinary user's sandbox on a bridge network -- ``rc`` joining a
        user and network namespace made inside the rootless netns's user namespace with the
        sandbox's maps (as podman does for rootless containers), so that the network's veth
        can be moved into it; they are kept until the network is attached."""
        from isolate.namespaces import NamespaceKind

        cfg = self.config
        if not cfg.attaches_network or not rc.has_new(NamespaceKind.USER) \
                or not rc.has_new(NamespaceKind.NET):
            return rc
        from isolate import _record
        from isolate._image_root import open_store
        from isolate.container.netdriver import RootlessNamespaces
        from isolate.runtime import NamespaceSpec

        store = cfg.store if cfg.store is not None else open_store(None)
        made = RootlessNamespaces(cfg.network, store_root=store.root, host=cfg.network_host,
                                  uid_map=rc.uid_mappings, gid_map=rc.gid_mappings)
        if not made.active:
            made.close()
            return rc
        self._rootless_net = made
        fds = {NamespaceKind.USER: made.user_fd, NamespaceKind.NET: made.net_fd}
        # (The maps are the joined namespace's now: written when it was made.)
        return _record.evolve(rc, uid_mappings=(), gid_mappings=(), namespaces=tuple(
            NamespaceSpec(n.kind, fd=fds[n.kind]) if n.kind in fds else n
            for n in rc.namespaces))

    def _attach_network(self) -> None:
        """Attach the shared network namespace to the configured network, and write the
        sandbox's /etc/hosts and resolv.conf."""
        cfg = self.config
        if not cfg.attaches_network:
            return
        from isolate._image_root import open_store
        from isolate.container.netdriver import attach_namespace
        from isolate.namespaces import NamespaceKind

        store = cfg.store if cfg.store is not None else open_store(None)
        self._attachment = attach_namespace(
            self._namespaces[NamespaceKind.NET], cfg.network, store_root=store.root,
            hostname=cfg.hostname, host=cfg.network_host,
            userns=self._namespaces.get(NamespaceKind.USER, -1), ports=cfg.ports,
            rootless=self._take_rootless_net())
        assert self._etc_dir is not None
        for name, text in (("hosts", self._attachment.hosts),
                           ("resolv.conf", self._attachment.resolv_conf)):
            with open(os.path.join(self._etc_dir, name), "w") as f:
                f.write(text)

    @property
    def ports(self) -> list[dict[str, object]]:
        """The ports the sandbox publishes (``protocol``, ``host_ip``, ``host_port``,
        ``container_port`` each): ephemeral host ports are known once it is entered."""
        return list(self._attachment.ports) if self._attachment is not None else []

    def _make_cgroup(self) -> None:
        """The sandbox's cgroup, when it has limits or a device asks for less than ``rwm``
        (only a device cgroup can narrow that), with Docker's device allow-list plus
        ``devices``. Raises UnsupportedError (unless ``best_effort``), CgroupError."""
        cfg = self.config
        narrowed = [d.path for d in cfg.devices if d.access != "rwm"]
        if cfg.limits is None and not narrowed:
            return
        if narrowed and os.geteuid() != 0:
            raise UnsupportedError(
                f"devices {', '.join(narrowed)} ask for less access than rwm, which only a "
                "device cgroup enforces, and only root may give a cgroup a device policy",
                missing="a device cgroup")
        from isolate.cgroups.pool import default_pool

        # Where a device policy may go, the devices hierarchy too (joined only if it does).
        layout, controllers = _sandbox_layout(cfg.limits, devices=not cfg.privileged)
        rules = None if cfg.privileged else self._device_rules()
        try:
            # A group this process gave back empty, when one fits (isolate.cgroups.pool):
            # making and removing one costs ~1 ms on a hybrid host, reusing one ~0.1 ms.
            self.cgroup = default_pool().take(layout, limits=cfg.limits,
                                              best_effort=cfg.best_effort, devices=rules)
        except UnsupportedError as exc:
            if not cfg.best_effort or narrowed:
                raise
            import warnings  # (here: loaded only when there is something to say)

            warnings.warn(f"sandbox runs without resource limits: {exc}", RuntimeWarning,
                          stacklevel=3)
            return
        if rules is not None and not self._set_device_policy(rules):
            controllers.discard("devices")
        from isolate import _sys

        into = _sys.vfork_into_cgroup_works()
        pool = default_pool()
        for path in self.cgroup.join_files(controllers):
            if into and os.path.basename(path) == "cgroup.procs":
                # The v2 hierarchy: each process is cloned straight into the group
                # (CLONE_INTO_CGROUP), which spares it the cgroup.procs write and the kernel
                # lock that write takes (an RCU grace period after a quiet moment).
                self._cgroup_dir_fd = pool.opened(self.cgroup, os.path.dirname(path),
                                                  os.O_RDONLY | os.O_DIRECTORY)
            else:
                self._cgroup_fds.append(pool.opened(self.cgroup, path, os.O_WRONLY))

    def _device_rules(self) -> tuple[DeviceRule, ...]:
        """Docker's device allow-list plus the sandbox's devices."""
        from isolate.cgroups import DEFAULT_RULES
        from isolate.cgroups.devices import rule_for_node

        return (*DEFAULT_RULES, *(rule_for_node(d.source or d.path, d.access)
                                  for d in self.config.devices))

    def _set_device_policy(self, rules: Sequence[DeviceRule]) -> bool:
        """``rules`` on the sandbox's cgroup; False where the host cannot (not root: the
        kernel gives device policies to root only, and a rootless sandbox cannot make or open
        device nodes of its own anyway)."""
        cfg = self.config
        assert self.cgroup is not None
        from isolate.cgroups.pool import default_pool

        try:
            default_pool().set_devices(self.cgroup, rules)
        except UnsupportedError as exc:
            if os.geteuid() != 0 and not any(d.access != "rwm" for d in cfg.devices):
                return False
            if not cfg.best_effort:
                raise
            import warnings

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
        from isolate import runtime
        from isolate._image_root import ImageRoot, check_rootless_user
        from isolate.namespaces import rootless_maps

        # The layers are extracted for the maps the sandbox's user namespace gets.
        maps = rootless_maps() if cfg.rootless else None
        root = ImageRoot.open(cfg.image, cfg.store,
                              mountpoints=runtime.mountpoints(runtime_config(cfg)),
                              rootless=cfg.rootless, pull=cfg.pull, maps=maps)
        self._image_root = root
        defaults = root.defaults()
        env: dict[str, str] = dict(defaults["env"])  # type: ignore[call-overload]
        env.update(cfg.env or ())
        changes: dict[str, Any] = {"image": root.image, "env": env}
        if cfg.cwd is None and "cwd" in defaults:
            changes["cwd"] = defaults["cwd"]
        if cfg.uid is None and cfg.gid is None and "uid" in defaults:
            if maps is not None:
                check_rootless_user(defaults["uid"], defaults["gid"],  # type: ignore[arg-type]
                                    root.image, maps)
            changes["uid"], changes["gid"] = defaults["uid"], defaults["gid"]
        from isolate import _record

        self.config = _record.evolve(cfg, **changes)

    @property
    def runtime(self) -> RuntimeConfig:
        """The :class:`isolate.runtime.RuntimeConfig` the sandbox's processes run with (with
        an image, complete once the sandbox is entered and the image's defaults applied)."""
        if self._runtime is None or self._runtime_of is not self.config:
            self._runtime = runtime_config(self.config)
            self._runtime_of = self.config
        return self._runtime

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
        try:
            self._release_resources(error)
        except BaseException as exc:
            self._release_network(exc)
            raise
        self._release_network(error)

    def _take_rootless_net(self) -> Any:
        made, self._rootless_net = self._rootless_net, None
        return made

    def _release_network(self, error: BaseException | None) -> None:
        """Disconnect the sandbox's endpoint (or stop its user-mode helper) and remove its
        /etc files; a failure is raised, or noted on ``error``."""
        made = self._take_rootless_net()
        if made is not None:  # (entering failed before the network was attached)
            made.close()
        etc_dir, self._etc_dir = self._etc_dir, None
        if etc_dir is not None:
            import shutil

            shutil.rmtree(etc_dir, ignore_errors=True)
        attachment, self._attachment = self._attachment, None
        if attachment is None:
            return
        try:
            attachment.release()
        except (OSError, IsolateError) as exc:
            if error is None:
                raise
            _add_note(error, f"while releasing the sandbox's network: {exc}")

    def _release_resources(self, error: BaseException | None) -> None:
        namespaces, self._namespaces = self._namespaces, {}
        fds, self._cgroup_fds = self._cgroup_fds, []
        if self._cgroup_dir_fd >= 0:
            fds.append(self._cgroup_dir_fd)
            self._cgroup_dir_fd = -1
        if self._parent_pidfd >= 0:
            fds.append(self._parent_pidfd)
            self._parent_pidfd = -1
        if self._init_fd >= 0:
            fds.append(self._init_fd)
            self._init_fd = -1
        for fd in [*namespaces.values(), *fds]:
            os.close(fd)
        image_root, self._image_root = self._image_root, None
        if image_root is not None:
            try:
                image_root.close()
            except (OSError, IsolateError) as exc:
                if error is None:
                    raise
                _add_note(error, f"while removing the sandbox's image scratch dir: {exc}")
        cgroup, self.cgroup = self.cgroup, None
        if cgroup is None:
            return
        from isolate.cgroups.pool import default_pool

        try:
            default_pool().give_back(cgroup)  # kept empty for the next sandbox, or deleted
        except IsolateError as exc:
            if error is None:
                raise
            _add_note(error, f"while removing the sandbox's cgroup: {exc}")

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            procs = list(self._procs)
        _kill_all(procs)

    def __del__(self) -> None:
        if getattr(self, "_compiled", None) is not None and not getattr(self, "_closed", True):
            import warnings

            warnings.warn("an isolate.Sandbox was not closed; leave its with block or call "
                          "close()", ResourceWarning, stacklevel=2, source=self)

    def _check_open(self, requested: str = "run") -> None:
        """Refuse work once closed, or once the sandbox's timeout has passed: an expired
        sandbox has killed its processes (the call helper too) and takes nothing new, the same
        way whichever thread notices first (the deadline, not the timer, decides)."""
        if self._closed:
            raise StateError("the sandbox is closed", current="closed", requested=requested)
        self._remaining(None, requested)

    def _remaining(self, timeout: float | None, requested: str = "run") -> float | None:
        """``timeout`` cut to what is left of the sandbox's own; StateError when none is."""
        if self._deadline is None:
            return timeout
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise StateError(f"the sandbox's timeout of {self.config.timeout:g} s has expired; "
                             "it ended its processes and takes no new work", current="expired",
                             requested=requested)
        return left if timeout is None else min(timeout, left)

    def oom_kills(self) -> int:
        """How many processes of this sandbox the OOM killer has killed (0 without limits)."""
        if self.cgroup is None:
            return 0
        # Read before and after every run: the memory controller's one counter, not every
        # event of every hierarchy (a fifth of the cost).
        for name in _OOM_FILES:
            try:
                text = self.cgroup.read_control("memory", name)
            except UnsupportedError:
                break
            if text is not None:
                for line in text.splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill" and value.strip().isdigit():
                        return int(value)
        return self.cgroup.events().oom_kill

    # -- running commands ---------------------------------------------------------------------
    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment a process of this sandbox gets: ``env`` if given, else the
        configured one, else a clean default (PATH, HOME, and TERM/LANG/LC_ALL/TZ from here).
        The caller's other variables never leak in by default."""
        if env is not None:
            from isolate._sandbox_config import check_env

            return dict(check_env(env) or ())
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
        for bad in ("preexec_fn", "shell", "executable", "start_new_session", "cwd"):
            if popen_kwargs.get(bad):
                raise ConfigError(f"{bad} is not supported in a sandbox")

        def start(args: list[str], factory: Callable[[list[tuple[int, int]]], Plan]
                  ) -> subprocess.Popen[Any]:
            from isolate.process import SandboxedPopen

            return SandboxedPopen(args, plan_factory=factory, **popen_kwargs)

        return self._start(argv, env, cwd, start)

    def spawn(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              cwd: str | None = None, stdio: Sequence[int] = (-1, -1, -1),
              pass_fds: Iterable[int] = ()) -> lowlevel.Child:
        """Start ``argv`` in the sandbox, as :meth:`popen` does, without :mod:`subprocess`:
        returns an :class:`isolate.lowlevel.Child` (``pid``, ``poll``, ``wait``,
        ``send_signal`` and ``kill`` through its pidfd, ``fileno`` to wait on in an event loop).

        ``stdio`` gives the child's fds 0, 1 and 2: an fd of this process, or -1 for this
        process's own (the default: the caller's stdin, stdout and stderr); ``pass_fds`` keep
        their numbers. There are no pipes: make them with :func:`os.pipe` and pass their ends.
        Close the handle when done with it (or use it as a context manager, which kills the
        process if it still runs); the sandbox ends and closes those still running when it
        closes. This is the lighter start (subprocess alone costs ~10 ms to import), which
        ``isolate run`` uses.

        Raises what :meth:`popen` raises.
        """
        from isolate import lowlevel

        pairs = lowlevel.stdio_pairs(tuple(stdio), pass_fds)

        def start(args: list[str], factory: Callable[[list[tuple[int, int]]], Plan]
                  ) -> lowlevel.Child:
            return lowlevel.spawn(factory(pairs))

        return self._start(argv, env, cwd, start)

    def _start(self, argv: Sequence[str], env: Mapping[str, str] | None, cwd: str | None,
               start: Callable[[list[str], Callable[[list[tuple[int, int]]], Plan]], P]) -> P:
        """Check ``argv``, ``env`` and ``cwd``, then ``start(argv, plan_factory)`` under the
        sandbox's lock, and keep the process it returns, to end it at close."""
        if self._compiled is None:
            self._check_open()
            raise StateError("use the sandbox in a with block (or call __enter__) first",
                             current="new", requested="run")
        self._check_open()
        if isinstance(argv, (str, bytes)):
            raise ConfigError("argv must be a sequence of arguments, not a string")
        args = [os.fsdecode(a) for a in argv]
        if not args:
            raise ConfigError("argv must not be empty")
        environment = self.environment(env)
        if cwd is not None:
            from isolate._sandbox_config import check_cwd

            cwd = check_cwd(cwd)
        workdir = cwd or self.config.cwd or "/"
        compiled = self._compiled
        upper = None
        if compiled.per_process_root and self._image_root is not None:
            upper = self._image_root.new_upper()

        image_root = self._image_root
        root = (image_root.overlay_op(0, upper)
                if upper is not None and image_root is not None else None)

        def factory(fds: list[tuple[int, int]]) -> Plan:
            return compiled.plan(args, environment, workdir, fds, root)

        with self._lock:
            self._check_open()
            try:
                proc = start(args, factory)
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
        import subprocess

        from isolate._sandbox_result import SandboxResult

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

        ``fn``, its arguments and its result must be picklable by cloudpickle (functions of
        ``__main__``, lambdas and closures go by value). An exception raised by ``fn`` is
        re-raised here, with the child's traceback text attached as a note. The sandbox must be
        able to run this Python interpreter: with the host's root it can (the interpreter, its
        prefix and ``sys.path`` are bound in read-only where the sandbox would hide them, as a
        virtualenv under ``/tmp``); a custom ``rootfs`` or image needs it inside. What ``fn``
        prints reaches the caller's stdout and stderr before ``call`` returns. For a timeout of
        this call alone, use :meth:`call_with`.

        Raises:
            CallError: (a :class:`RuntimeError`) the call's process died without answering
                (the message says when the OOM killer ended it), or the helper interpreter
                cannot start.
            TimeoutError: the sandbox's timeout ended the call.
            StateError: the sandbox is closed, or its timeout had passed already.
        """
        return self.call_with(fn, args, kwargs)

    def call_with(self, fn: Callable[..., T], /, args: Sequence[Any] = (),
                  kwargs: Mapping[str, Any] | None = None, *,
                  timeout: float | None = None) -> T:
        """:meth:`call` with options: run ``fn(*args, **kwargs)`` in the sandbox.

        ``fn``'s arguments come as a tuple and a dict (as ``threading.Thread(target, args,
        kwargs)`` and ``multiprocessing.Pool.apply`` take them), so that isolate's own
        keywords cannot collide with ``fn``'s. ``timeout`` (seconds) limits this call: when it
        runs out, the call's process is killed and :class:`TimeoutError` raised, and the
        sandbox stays usable; the sandbox's own timeout applies as well.

        Raises what :meth:`call` raises, and ConfigError for a bad ``timeout``.
        """
        from isolate._sandbox_config import check_timeout

        timeout = check_timeout(timeout)
        self._check_open("call")
        if self._compiled is None:
            raise StateError("use the sandbox in a with block (or call __enter__) first",
                             current="new", requested="call")
        from isolate._caller import CallDied, Caller

        with self._caller_lock:
            caller = self._caller
            if caller is None or not caller.alive():
                # The helper is started on the first call, and again if it died (an OOM kill
                # may pick it rather than the call's process).
                self._caller = None
                if caller is not None:
                    caller.close()
                caller = self._caller = Caller(self)
        left = self._remaining(timeout, "call")
        # Which deadline comes first decides whose timeout a TimeoutError reports.
        by_sandbox = left is not None and (timeout is None or left < timeout)
        expired = TimeoutError(f"sandboxed call of {fn!r} ended by the sandbox's timeout of "
                               f"{self.config.timeout} s")
        oom_before = self.oom_kills()
        try:
            result: T = caller.call(fn, tuple(args), dict(kwargs or {}), left)
        except CallError as exc:
            # The sandbox's timer may end the call (and the helper) a moment before the
            # call's own deadline.
            if self._deadline is not None and time.monotonic() >= self._deadline:
                raise expired from exc
            if (isinstance(exc, CallDied) and exc.signal == signal.SIGKILL
                    and self.oom_kills() > oom_before):
                raise CallError(f"sandboxed call of {fn!r} was killed by the OOM killer: out of "
                                f"memory{self._memory_limit_text()}") from exc
            raise
        except TimeoutError:
            if by_sandbox:
                raise expired from None
            raise
        return result

    def _memory_limit_text(self) -> str:
        from isolate._units import human_size

        limits = self.config.limits
        if limits is None or limits.memory_max is None:
            return ""
        return f" (the sandbox's memory limit is {human_size(limits.memory_max)})"
