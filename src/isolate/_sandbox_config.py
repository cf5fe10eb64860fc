"""The validated configuration of a :class:`isolate.Sandbox` (``isolate.sandbox.SandboxConfig``).

Owns what a sandbox's options mean and their checks (converters name the bad value), nothing of
what a sandbox does with them. It is a module of its own so that ``import isolate.sandbox``
builds none of its records (:mod:`isolate._record`): ``isolate.sandbox`` loads this module
when a config is first made (its module ``__getattr__`` re-exports ``SandboxConfig``).
"""

from __future__ import annotations

import os

# collections.abc's classes, from the module the interpreter has loaded at start: importing
# collections.abc loads the collections package too (~2 ms of a run's start).
from _collections_abc import Iterable, Mapping, Sequence

from isolate import _record
from isolate._typing import TYPE_CHECKING
from isolate._units import parse_seconds
from isolate.errors import ConfigError

if TYPE_CHECKING:
    from typing import Any

    import attrs

    from isolate import runtime, security
    from isolate.cgroups import Limits
    from isolate.fs.mounts import Bind, Tmpfs
    from isolate.image import Image, Store

__all__ = ["OPTIONS", "SandboxConfig", "check_cwd", "check_env", "check_timeout", "close_match",
           "names_of"]

def _binds(value: Iterable[Bind | str]) -> tuple[Bind, ...]:
    from isolate.fs.mounts import Bind

    if isinstance(value, (str, Bind)):
        value = [value]
    return tuple(b if isinstance(b, Bind) else Bind.parse(b) for b in value)


def _devices(value: Iterable[runtime.Device | str]) -> tuple[runtime.Device, ...]:
    if not value:
        return ()
    from isolate import runtime

    if isinstance(value, (str, runtime.Device)):
        value = [value]
    return tuple(d if isinstance(d, runtime.Device) else runtime.Device.parse(d) for d in value)


def _tmpfs(value: Iterable[Tmpfs | str]) -> tuple[Tmpfs, ...]:
    from isolate.fs.mounts import Tmpfs

    if isinstance(value, (str, Tmpfs)):
        value = [value]
    return tuple(t if isinstance(t, Tmpfs) else Tmpfs(t) for t in value)


def check_env(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...] | None:
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


def check_cwd(value: str | None) -> str | None:
    if value is None:
        return None
    from isolate.fs.mounts import check_container_path

    return check_container_path(value, "cwd")


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


def _network(value: bool | str) -> str:
    """``network``: False/``"none"`` (only ``lo``), True/``"host"``, ``"bridge"`` or a
    network's name (Docker's long form too), ``"pasta[:OPTS]"``, ``"slirp4netns[:OPTS]"``."""
    if value is False or value == "none":
        return "none"
    if value is True or value == "host":
        return "host"
    if not isinstance(value, str) or not value:
        raise ConfigError(f"network must be True, False, 'none', 'host', a network's name, "
                          f"'pasta' or 'slirp4netns', not {value!r}")
    from isolate.net import parse_network

    mode = parse_network(value)
    if not (mode.joins_network or mode.kind in ("pasta", "slirp4netns")):
        raise ConfigError(f"a sandbox's network is none, host, a network's name, pasta or "
                          f"slirp4netns, not {value!r}")
    return value


def _ports(value: Iterable[str] | str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    if not items:
        return ()
    from isolate.net import parse_publish

    return tuple(str(parse_publish(p)) for p in items)


def _id(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32 - 1:
        raise ConfigError(f"uid/gid must be an int in [0, 2**32-2], not {value!r}")
    return value


def check_timeout(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):  # a number, not text: SandboxConfig takes no units
        raise ConfigError(f"timeout: expected a number of seconds, got {value!r}")
    return parse_seconds(value, name="timeout")


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


def _limits(value: Limits | Mapping[str, Any] | None) -> Limits | None:
    """A :class:`Limits`, or a mapping of its fields (``{"memory_max": "64M"}``)."""
    if value is None:
        return None
    from isolate.cgroups import Limits  # imported when first needed

    if isinstance(value, Limits):
        return value
    if isinstance(value, Mapping):
        names = {f.name for f in _record.fields(Limits)}
        unknown = sorted(str(k) for k in value if k not in names)
        if unknown:
            raise ConfigError(f"limits: unknown limit {names_of(unknown)}"
                              f"{close_match(unknown[0], names)} (the fields of "
                              "isolate.Limits: " + ", ".join(sorted(names)) + ")")
        return Limits(**value)
    raise ConfigError(f"limits must be an isolate.Limits or a mapping of its fields, not "
                      f"{value!r}")


def _pull(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if value not in ("missing", "always", "never"):
        raise ConfigError(f"pull must be 'missing', 'always' or 'never', not {value!r}")


def names_of(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def close_match(name: str, known: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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


@_record.record
class SandboxConfig:
    """Everything a :class:`Sandbox` does, validated when made (no system call is made).

    Raises :class:`isolate.errors.ConfigError` naming the bad value.
    """

    rootfs: str | None = _record.field(default=None, converter=_rootfs)
    readonly: bool = True
    binds: tuple[Bind, ...] = _record.field(default=(), converter=_binds)
    tmpfs: tuple[Tmpfs, ...] = _record.field(default=(), converter=_tmpfs)
    #: Host device nodes given to the sandbox (``isolate.runtime.Device`` or
    #: ``"HOST[:CONTAINER][:rwm]"``, as ``docker run --device`` takes them).
    devices: tuple[runtime.Device, ...] = _record.field(default=(), converter=_devices)
    env: tuple[tuple[str, str], ...] | None = _record.field(default=None, converter=check_env)
    cwd: str | None = _record.field(default=None, converter=check_cwd)
    hostname: str = _record.field(default="sandbox", converter=_hostname)
    #: ``"none"`` (or False: only ``lo``), ``"host"`` (or True: the host's network),
    #: ``"bridge"`` or a network's name (the store's networks: an endpoint in the sandbox's
    #: network namespace, its /etc/hosts and resolv.conf bound in), ``"pasta"`` or
    #: ``"slirp4netns"`` (user-mode networking, the rootless way).
    network: str = _record.field(default="none", converter=_network)
    #: ``-p`` specs published from the sandbox's network (not with none or host).
    ports: tuple[str, ...] = _record.field(default=(), converter=_ports)
    #: The network namespace that plays the host for bridge networks and pasta (a path, fd
    #: or :class:`isolate.net.NetNamespace`); None: ``$ISOLATE_NETWORK_NS``, else ours.
    network_host: Any = _record.field(default=None, eq=False, hash=False)
    uid: int | None = _record.field(default=None, converter=_id)
    gid: int | None = _record.field(default=None, converter=_id)
    timeout: float | None = _record.field(default=None, converter=check_timeout)
    privileged: bool = False
    capabilities: security.CapabilitySet | None = _record.field(default=None, converter=_caps)
    seccomp: security.SeccompProfile | bool = True
    user_namespace: bool | None = None
    limits: Limits | None = _record.field(default=None, converter=_limits)
    best_effort: bool = False
    cgroupns: bool = True
    die_with_parent: bool = True
    #: Run a tiny init as pid 1 (like ``docker run --init``): it reaps orphaned zombies and
    #: forwards signals, and the command runs as pid 2 with default signal behaviour.
    init: bool = False
    image: Image | str | None = _record.field(default=None, converter=_image)
    store: Store | None = _record.field(default=None, converter=_store, eq=False)
    #: Who mounts an image's overlay: "kernel", "fuse" (fuse-overlayfs) or "auto" (the
    #: kernel, falling back to fuse-overlayfs where it refuses a rootless overlay).
    overlay: str = _record.field(default="auto", validator=_overlay_mode)
    #: When to pull an image given by name, as ``isolate run --pull``: "missing" (when the
    #: store lacks it), "always" (before each start), "never" (a missing image is an error).
    pull: str = _record.field(default="missing", validator=_pull)

    def __attrs_post_init__(self) -> None:
        if self.image is not None and self.rootfs is not None:
            raise ConfigError("give an image or a rootfs, not both")
        if self.store is not None and self.image is None and not self.attaches_network:
            raise ConfigError("store is only used with image= or a network's name")
        if self.ports and self.network in ("none", "host"):
            raise ConfigError(f"ports are published only from a network of the sandbox's own "
                              f"(a network's name, pasta), not with network={self.network!r}")
        if self.pull != "missing" and self.image is None:
            raise ConfigError("pull is only used with image=")
        if self.rootfs is not None and not os.path.isdir(self.rootfs):
            raise ConfigError(f"rootfs {self.rootfs!r} is not a directory")
        for bind in self.binds:
            if not os.path.lexists(bind.source):
                raise ConfigError(f"bind source {bind.source!r} does not exist")
        if self.devices:
            from isolate.cgroups.devices import rule_for_node

            for device in self.devices:  # each a device node, or a ConfigError
                rule_for_node(device.source or device.path, device.access)
        targets = [b.target for b in self.binds] + [t.target for t in self.tmpfs]
        for target in targets:
            if target == "/":
                raise ConfigError("cannot mount over the sandbox's root directory '/'")

    @property
    def host_network(self) -> bool:
        """Whether the sandbox shares the caller's network namespace."""
        return self.network == "host"

    @property
    def attaches_network(self) -> bool:
        """Whether the sandbox's network namespace is attached to a network (a bridge network
        or a user-mode one) rather than left with only ``lo`` or shared with the host."""
        return self.network not in ("none", "host")

    @property
    def rootless(self) -> bool:
        """Whether the sandbox runs in a user namespace (the default when not root)."""
        if self.user_namespace is not None:
            return self.user_namespace
        return os.geteuid() != 0


#: The names of SandboxConfig's fields (``Sandbox``'s keywords mirror them).
OPTIONS = frozenset(f.name for f in _record.fields(SandboxConfig))
