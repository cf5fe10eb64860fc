"""The container preset: a :class:`ContainerConfig` and its image become a runtime config with
Docker's defaults.

Owns what a container is by default, as Docker makes it: its 14 capabilities (``--cap-add``,
``--cap-drop``, ``--privileged``), Docker's seccomp profile fitted to them, the masked and
read-only ``/proc`` paths, no_new_privs only when asked, the system mounts (``/dev`` populated
with the standard nodes, ``/dev/shm`` of ``--shm-size``, a read-only ``/sys``), the files
``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf`` bound from the state dir, the
user's mounts in Docker's order, and the environment and command as Docker builds them. Every
filesystem it mounts is ``nodev`` but ``/dev/pts`` and the device nodes bound one by one, so
CAP_MKNOD (in Docker's set) cannot open a device even where no device cgroup is enforced.
It decides; :mod:`isolate.runtime.compiler` turns the decision into operations.
"""

from __future__ import annotations

import os
from _collections_abc import Mapping, Sequence

from isolate import _memo as functools
from isolate import _record
from isolate.container.config import BindMount, ContainerConfig, TmpfsMount, VolumeMount
from isolate.container.users import ImageUser
from isolate.errors import ConfigError
from isolate.image import ImageConfig
from isolate.namespaces import IdMap
from isolate.runtime import (
    DEFAULT_DEVICES,
    DEFAULT_PATH,
    Capabilities,
    Device,
    Mount,
    NamespaceSpec,
    Process,
    Root,
    RuntimeConfig,
    User,
    host_devices,
    standard_mounts,
)
from isolate.runtime.docker import docker_seccomp_profile
from isolate.security import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    CapabilitySet,
    SeccompProfile,
    read_process_caps,
)

__all__ = ["Resolved", "capabilities_for", "command_for", "environment_for", "runtime_config"]


def command_for(cfg: ContainerConfig, image: ImageConfig) -> tuple[str, ...]:
    """The command as Docker builds it: the entrypoint (``cfg``'s, else the image's), then
    ``cfg.command`` or -- unless an entrypoint was given -- the image's Cmd.

    Raises:
        ConfigError: no command at all.
    """
    entry = cfg.entrypoint if cfg.entrypoint is not None else (image.entrypoint or ())
    if cfg.command is not None:
        rest: Sequence[str] = cfg.command
    elif cfg.entrypoint is not None:
        rest = ()  # --entrypoint resets the image's Cmd, as in Docker
    else:
        rest = image.cmd or ()
    command = (*entry, *rest)
    if not command:
        raise ConfigError("No command specified")
    return command


def capabilities_for(cfg: ContainerConfig) -> CapabilitySet:
    """Docker's default set with ``cap_add`` and ``cap_drop`` applied (``ALL`` in either, as
    Docker reads it), every capability with ``privileged`` -- never more than the caller's
    own bounding set holds, so that a container made inside a container still starts.

    Raises:
        ConfigError: an unknown capability name.
        IsolateOSError, UnsupportedError: this process's capabilities cannot be read."""
    return _capabilities(cfg.privileged, frozenset(cfg.cap_add), frozenset(cfg.cap_drop),
                         _bounding_mask())


def _bounding_mask() -> int:
    """This process's bounding set as a mask (``CapBnd`` of its status file: one read,
    where every start and inspect asks)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return int(line[7:], 16)
    except OSError:
        pass
    return read_process_caps().bounding.mask  # says what is wrong


@functools.lru_cache(maxsize=64)
def _capabilities(privileged: bool, add: frozenset[str], drop: frozenset[str],
                  bounding_mask: int) -> CapabilitySet:
    bounding = CapabilitySet.from_mask(bounding_mask, strict=False)
    if privileged:
        return CapabilitySet.all() & bounding
    if "ALL" in add:
        caps = CapabilitySet.all()
    elif "ALL" in drop:
        caps = CapabilitySet.none()
    else:
        caps = CapabilitySet.docker_default()
    caps = caps | CapabilitySet.from_names(add - {"ALL"})
    if "ALL" not in drop:
        caps = caps - CapabilitySet.from_names(drop)
    return caps & bounding


def environment_for(cfg: ContainerConfig, image: ImageConfig, hostname: str,
                    home: str) -> dict[str, str]:
    """The environment as Docker builds it: PATH (when neither sets it), HOSTNAME, TERM
    with a tty, the image's, the caller's (later keys win), HOME from the user's passwd entry
    when unset."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if cfg.tty:
        env["TERM"] = "xterm"
    env.update(image.env_dict)
    env.update(cfg.env_dict)
    env.setdefault("HOME", home)
    return env


@_record.record
class Resolved:
    """What creating and starting a container worked out, that the preset needs: the
    ``command``, ``user`` and ``hostname``; ``etc_files`` (container path -> host file:
    hostname, hosts, resolv.conf); ``volume_dirs`` (mount target -> the volume's host dir);
    the ``network`` namespace (None: a new one; ``"host"``; a spec to join); the root
    ``overlay`` is passed to the compiler separately. Rootless: ``uid_map``/``gid_map`` of
    the container's user namespace, or ``user_namespace``, one to join (a network driver
    made it, with those maps, to own the network namespace it made). ``seccomp_json``: the
    text of a profile file read at create."""

    command: tuple[str, ...]
    user: ImageUser
    hostname: str
    etc_files: Mapping[str, str]
    volume_dirs: Mapping[str, str] = _record.field(factory=dict)
    network: NamespaceSpec | str | None = None
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    seccomp_json: str | None = None
    user_namespace: NamespaceSpec | None = None


def _host_devices_made(cfg: ContainerConfig, in_user_namespace: bool) -> bool:
    """Whether the container's /dev gets the host's every device node, made with mknod: a
    privileged container outside a user namespace (as Docker's ``--privileged``). In one,
    CAP_MKNOD makes no usable node and a bind per node would be a mount each, so a rootless
    privileged container has the default nodes and its ``--device`` ones, as without."""
    return cfg.privileged and not in_user_namespace


def _devices(cfg: ContainerConfig, in_user_namespace: bool) -> tuple[Device, ...]:
    """Docker's default nodes and the ``--device`` ones; privileged (outside a user
    namespace), every host node instead of the defaults."""
    if not _host_devices_made(cfg, in_user_namespace):
        return (*DEFAULT_DEVICES, *cfg.devices)
    own = {d.path for d in cfg.devices}
    return (*(d for d in host_devices() if d.path not in own), *cfg.devices)


def _system_mounts(cfg: ContainerConfig, own_network: bool,
                   in_user_namespace: bool) -> list[Mount]:
    out = []
    for m in standard_mounts(own_network=own_network, sysfs_writable=cfg.privileged):
        if m.destination == "/dev" and not _host_devices_made(cfg, in_user_namespace):
            # nodev: the nodes are bound in one by one (binds keep their own flags), so a
            # node made here with CAP_MKNOD cannot be opened.
            m = _record.evolve(m, options=(*m.options, "nodev"))
        elif m.destination == "/dev/shm":
            m = _record.evolve(m, options=(*m.options, f"size={cfg.shm_size}"))
        out.append(m)
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        # A pure cgroup v2 host: the container's own cgroup (its cgroup namespace's root).
        out.append(Mount("/sys/fs/cgroup", "cgroup2", "cgroup2",
                         ("nosuid", "nodev", "noexec", *(() if cfg.privileged else ("ro",)))))
    return out


def _user_mounts(cfg: ContainerConfig, resolved: Resolved) -> list[Mount]:
    """The caller's mounts and the image's anonymous volumes, parents before children (as
    Docker sorts them: by the number of path components)."""
    out: list[tuple[int, Mount]] = []
    nodev = ("dev",) if cfg.privileged else ("nodev",)
    for m in cfg.mounts:
        depth = m.target.count("/")
        if isinstance(m, BindMount):
            out.append((depth, Mount(m.target, "bind", m.source,
                                     ("rbind", *nodev, *(("ro",) if m.readonly else ())))))
        elif isinstance(m, VolumeMount):
            source = resolved.volume_dirs[m.target]
            out.append((depth, Mount(m.target, "bind", source,
                                     ("rbind", "nodev", *(("ro",) if m.readonly else ())))))
        elif isinstance(m, TmpfsMount):
            options = ["nosuid", "nodev", f"mode={m.mode:o}"]
            if m.noexec:
                options.append("noexec")
            if m.size is not None:
                options.append(f"size={m.size}")
            if m.readonly:
                options.append("ro")
            out.append((depth, Mount(m.target, "tmpfs", "tmpfs", options)))
    out.sort(key=lambda item: item[0])
    return [m for _, m in out]


def runtime_config(cfg: ContainerConfig, image: ImageConfig, resolved: Resolved
                   ) -> RuntimeConfig:
    """The runtime config of a container's first process (the root comes as an op).

    Raises:
        ConfigError: what the runtime config refuses, or a bad seccomp profile file.
    """
    caps = capabilities_for(cfg)
    user = resolved.user
    env = environment_for(cfg, image, resolved.hostname, user.home)
    process = Process(
        args=resolved.command, env=env,
        cwd=cfg.workdir or image.working_dir or "/",
        user=User(user.uid, user.gid, user.additional_gids),
        capabilities=Capabilities.of(caps), rlimits=cfg.rlimits,
        no_new_privileges=cfg.no_new_privileges, terminal=cfg.tty)
    own_network = resolved.network != "host"
    in_user_namespace = resolved.user_namespace is not None or bool(resolved.uid_map)
    mounts = _system_mounts(cfg, own_network, in_user_namespace)
    for target, source in sorted(resolved.etc_files.items()):
        mounts.append(Mount(target, "bind", source, ("rbind", "nosuid", "nodev", "noexec")))
    mounts += _user_mounts(cfg, resolved)
    namespaces: list[NamespaceSpec | str] = ["mnt", "pid", "uts", "ipc", "cgroup"]
    if isinstance(resolved.network, NamespaceSpec):
        namespaces.append(resolved.network)
    elif resolved.network is None:
        namespaces.append("net")
    uid_map, gid_map = resolved.uid_map, resolved.gid_map
    if resolved.user_namespace is not None:
        namespaces.insert(0, resolved.user_namespace)
        uid_map = gid_map = ()  # written already, by whoever made it
    elif uid_map:
        namespaces.insert(0, "user")
    seccomp: SeccompProfile | None = None
    if not cfg.privileged and cfg.seccomp == "default":
        seccomp = docker_seccomp_profile(caps)
    elif not cfg.privileged and cfg.seccomp != "unconfined":
        if resolved.seccomp_json is None:
            raise ConfigError(f"seccomp profile {cfg.seccomp} was not read")
        seccomp = SeccompProfile.from_docker_json(resolved.seccomp_json, capabilities=caps)
    return RuntimeConfig(
        process=process,
        root=Root(None, readonly=cfg.read_only, nodev=not cfg.privileged),
        hostname=resolved.hostname, domainname=cfg.domainname,
        devices=_devices(cfg, in_user_namespace),
        mounts=mounts, namespaces=namespaces,
        uid_mappings=uid_map, gid_mappings=gid_map,
        masked_paths=() if cfg.privileged else DEFAULT_MASKED_PATHS,
        readonly_paths=() if cfg.privileged else DEFAULT_READONLY_PATHS,
        seccomp=seccomp, sysctl=cfg.sysctls, sysfs_readonly=not cfg.privileged,
        die_with_parent=False, init=cfg.init)
