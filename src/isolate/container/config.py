"""What a container is made of: :class:`ContainerConfig` and the records it holds.

Owns the vocabulary of ``docker create`` as frozen records validated when made (a bad
value is a :class:`~isolate.errors.ConfigError` naming it, with Docker's words where Docker has
them, before any system call), the parsers of Docker's strings (``-v``, ``--mount``,
``--tmpfs``, ``--restart``, signals), and the JSON form kept in a container's state dir. Values
only: nothing here touches the disk or the image; :mod:`isolate.container.preset` turns a config
and its image into a runtime config.
"""

from __future__ import annotations

import os
from _collections_abc import Iterable, Mapping

from isolate import _match, _record
from isolate._sig import signal
from isolate._typing import TYPE_CHECKING
from isolate._units import parse_size
from isolate.errors import ConfigError

if TYPE_CHECKING:
    from typing import Any, Final, Literal

    import attrs

    from isolate.cgroups import Limits
    from isolate.runtime import Device, Rlimit

__all__ = [
    "BindMount",
    "ContainerConfig",
    "MountSpec",
    "RestartPolicy",
    "TmpfsMount",
    "VolumeMount",
    "parse_mount",
    "parse_signal",
    "parse_tmpfs",
    "parse_volume",
]

#: The stop timeout Docker uses when neither the container nor its image sets one.
DEFAULT_STOP_TIMEOUT: Final = 10
#: Docker's default size of /dev/shm.
DEFAULT_SHM_SIZE: Final = 64 << 20


# -- small parsers ------------------------------------------------------------------------------

def parse_signal(value: str | int) -> int:
    """A signal as Docker takes it: ``"SIGTERM"``, ``"TERM"``, ``"term"`` or ``15``.

    Raises:
        ConfigError: not a signal of this system.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    elif isinstance(value, str):
        import signal as signals  # here: its enum of names costs a run that names none

        name = value.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        sig = getattr(signals.Signals, name, None) if name.isidentifier() else None
        if sig is None:
            raise ConfigError(f"Invalid signal: {value}")
        return int(sig)
    else:
        raise ConfigError(f"Invalid signal: {value!r}")
    if not 0 < number < signal.NSIG:
        raise ConfigError(f"Invalid signal: {value}")
    return number


def _name(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _match.container_name(value.removeprefix("/")):
        raise ConfigError(f"Invalid container name ({value}), only [a-zA-Z0-9][a-zA-Z0-9_.-] "
                          "are allowed")
    return value.removeprefix("/")


def _args(value: Iterable[str] | str | None, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise ConfigError(f"{what} must be a list of arguments, not a string: {value!r}")
    out = tuple(os.fsdecode(v) for v in value)
    for v in out:
        if "\0" in v:
            raise ConfigError(f"{what}: an argument contains a NUL byte: {v!r}")
    return out


def _command(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return _args(value, "command")


def _entrypoint(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return _args(value, "entrypoint")


def _group_add(value: Iterable[str] | None) -> tuple[str, ...]:
    return _args([str(v) for v in value or ()], "group_add") or ()


def _workdir(value: str | None) -> str | None:
    if value is None:
        return None
    from isolate.fs.mounts import check_container_path  # (a listing never loads the mounts)

    return check_container_path(value, "working directory")


def _stop_signal(value: str | int | None) -> int | None:
    return None if value is None else parse_signal(value)


def _env(value: Mapping[str, str] | Iterable[str] | None) -> tuple[tuple[str, str], ...]:
    from isolate.runtime.config import parse_env

    return () if value is None else parse_env(value)


def _labels(value: Mapping[str, str] | Iterable[str] | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items: Iterable[Any] = value.items() if isinstance(value, Mapping) else value
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            key, _, val = item.partition("=")
        else:
            key, val = item
        if not isinstance(key, str) or not isinstance(val, str) or not key:
            raise ConfigError(f"a label is a non-empty str key with a str value, not "
                              f"{key!r}: {val!r}")
        out[key] = val
    return tuple(sorted(out.items()))


def _caps(value: Iterable[str] | str | None) -> tuple[str, ...]:
    from isolate.security import Capability

    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    out = []
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(f"a capability is a name, not {name!r}")
        if name.strip().upper() in ("ALL", "CAP_ALL"):
            out.append("ALL")
            continue
        try:
            out.append(Capability.parse(name).name)
        except ConfigError:
            raise ConfigError(f'unknown capability: "{name}"') from None
    return tuple(dict.fromkeys(out))


def _rlimits(value: Iterable[Rlimit | str] | None) -> tuple[Rlimit, ...]:
    from isolate.runtime import Rlimit

    out: dict[str, Rlimit] = {}
    for item in value or ():
        r = item if isinstance(item, Rlimit) else Rlimit.parse(item)
        out[r.type] = r  # a later --ulimit of the same kind wins, as in Docker
    return tuple(out.values())


def _devices(value: Iterable[Device | str | Mapping[str, Any]] | str | None
             ) -> tuple[Device, ...]:
    """``--device`` values: ``HOST[:CONTAINER][:rwm]`` strings, :class:`isolate.runtime.Device`
    records, or their JSON (``config.json``)."""
    from isolate.runtime import Device

    if not value:
        return ()
    if isinstance(value, (str, Device)):
        value = [value]
    out: list[Device] = []
    for item in value:
        if isinstance(item, Mapping):
            out.append(Device(**item))
        elif isinstance(item, Device):
            out.append(item)
        else:
            out.append(Device.parse(item))
    return tuple(out)


def _hostname(value: str | None) -> str | None:
    if value is None:
        return None
    if (not isinstance(value, str) or not 0 < len(value) <= 63
            or not _match.hostname(value)):
        raise ConfigError(f"invalid hostname format: {value}")
    return value


def _seccomp(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"seccomp must be 'default', 'unconfined' or a profile's path, not "
                          f"{value!r}")
    if value not in ("default", "unconfined"):
        return os.path.abspath(value)
    return value


def _sysctls(value: Mapping[str, str] | Iterable[tuple[str, str]] | None
             ) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    out = []
    for key, val in items:
        if not isinstance(key, str) or not isinstance(val, str) or not key:
            raise ConfigError(f"invalid sysctl {key!r}={val!r}")
        out.append((key, val))
    return tuple(out)


def _extra_hosts(value: Iterable[str | tuple[str, str]] | None) -> tuple[tuple[str, str], ...]:
    out = []
    for item in value or ():
        if isinstance(item, tuple):
            host, address = item
        else:
            host, sep, address = str(item).partition(":")
            if not sep:
                raise ConfigError(f"invalid argument \"{item}\" for \"--add-host\" flag: bad "
                                  "format for add-host")
        if not host or not address or any(c.isspace() for c in host + address):
            raise ConfigError(f"invalid argument \"{item}\" for \"--add-host\" flag: bad "
                              "format for add-host")
        from isolate.net.options import parse_add_host

        parsed = parse_add_host(f"{host}={address}")  # NAME:IP, IP may be host-gateway
        out.append((parsed.name, parsed.ip))
    return tuple(out)


# -- network options (parsed by isolate.net's parsers, imported only when used) -----------------

def _network_mode(value: str) -> Any:
    from isolate.net.options import parse_network

    return parse_network(value)


def _extra_networks(value: Iterable[str] | str | None) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    for item in items:
        if not isinstance(item, str) or not _network_mode(item).joins_network:
            raise ConfigError(f"a further network must be a bridge network's name, not "
                              f"{item!r}")
    return tuple(items)


def _aliases(value: Iterable[str] | str | None) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not items:
        return ()
    from isolate.net.options import parse_network_alias

    return tuple(dict.fromkeys(parse_network_alias(a) for a in items))


def _ip4(value: str | None) -> str | None:
    if value is None:  # (before the import: isolate.net loads only for a container that asks)
        return None
    from isolate.net.options import parse_ip

    return parse_ip(value, 4)


def _ip6(value: str | None) -> str | None:
    if value is None:
        return None
    from isolate.net.options import parse_ip

    return parse_ip(value, 6)


def _ports(value: Iterable[str] | str | None) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not items:
        return ()
    from isolate.net.ports import PortMapping, parse_publish

    return tuple(str(p if isinstance(p, PortMapping) else parse_publish(p)) for p in items)


def _expose(value: Iterable[str] | str | None) -> tuple[str, ...]:
    """``--expose PORT[-END][/PROTO]`` as ``PORT/PROTO`` items (a range one by one)."""
    items = [value] if isinstance(value, str) else list(value or ())
    out = []
    for spec in items:
        port, _, proto = str(spec).partition("/")
        lo, sep, hi = port.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or \
                proto not in ("", "tcp", "udp", "sctp") or \
                not 0 < int(lo) <= int(hi or lo) <= 65535:
            raise ConfigError(f"invalid range format for --expose: {spec}")
        out += [f"{p}/{proto or 'tcp'}" for p in range(int(lo), int(hi or lo) + 1)]
    return tuple(dict.fromkeys(out))


def _dns_values(value: Iterable[str] | str | None, kind: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value or ())
    if not items:
        return ()
    from isolate.net import options

    parse = {"dns": options.parse_dns, "search": options.parse_dns_search,
             "option": options.parse_dns_option}[kind]
    return tuple(parse(v) for v in items)


def _dns(value: Iterable[str] | str | None) -> tuple[str, ...]:
    return _dns_values(value, "dns")


def _dns_search(value: Iterable[str] | str | None) -> tuple[str, ...]:
    return _dns_values(value, "search")


def _dns_options(value: Iterable[str] | str | None) -> tuple[str, ...]:
    return _dns_values(value, "option")


def _positive_int(what: str, *, allow_none: bool = True) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{what} must be an int >= 0, not {value!r}")
    return check


# -- restart policies ---------------------------------------------------------------------------

_POLICIES: Final = ("no", "on-failure", "always", "unless-stopped")


@_record.record
class RestartPolicy:
    """``--restart``: ``no``, ``on-failure`` (at most ``max_retries`` times; 0: no limit),
    ``always`` or ``unless-stopped``. The supervisor applies it, with Docker's back-off."""

    name: str = "no"
    max_retries: int = 0

    def __attrs_post_init__(self) -> None:
        if self.name not in _POLICIES:
            raise ConfigError(f"invalid restart policy: unknown policy '{self.name}'; use one "
                              "of 'no', 'always', 'on-failure', or 'unless-stopped'")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) \
                or self.max_retries < 0:
            raise ConfigError("invalid restart policy: maximum retry count must be a positive "
                              "integer")
        if self.max_retries and self.name != "on-failure":
            raise ConfigError("invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'")

    @classmethod
    def parse(cls, spec: str) -> RestartPolicy:
        """``NAME[:MAX_RETRIES]`` as ``docker run --restart`` takes it.

        Raises:
            ConfigError: Docker's message for a bad policy.
        """
        name, sep, count = spec.partition(":")
        if ":" in count:
            raise ConfigError(f"invalid restart policy format: {spec}")
        if sep and not count.isdigit():
            raise ConfigError("invalid restart policy: maximum retry count must be a positive "
                              "integer")
        return cls(name or "no", int(count) if sep else 0)

    @property
    def enabled(self) -> bool:
        """Whether the supervisor ever starts the container again (any policy but ``no``)."""
        return self.name != "no"

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


def _restart(value: RestartPolicy | str | None) -> RestartPolicy:
    if value is None:
        return RestartPolicy()
    if isinstance(value, RestartPolicy):
        return value
    if isinstance(value, str):
        return RestartPolicy.parse(value)
    raise ConfigError(f"restart must be a RestartPolicy or a string like 'on-failure:3', "
                      f"not {value!r}")


# -- mounts -------------------------------------------------------------------------------------

def _target(value: str) -> str:
    from isolate.fs.mounts import check_container_path

    try:
        path = check_container_path(value, "mount destination")
    except ConfigError:
        raise ConfigError(f"invalid mount config: mount path must be absolute: {value}") \
            from None
    if path == "/":
        raise ConfigError("invalid mount config: destination can't be '/'")
    return path


def _host_path(value: str | os.PathLike[str]) -> str:
    raw = os.fspath(value)
    if not isinstance(raw, str) or not raw or "\0" in raw:
        raise ConfigError(f"invalid mount config: bad bind source {raw!r}")
    return os.path.abspath(raw)


def _volume_name(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _match.container_name(value):
        raise ConfigError(f'"{value}" includes invalid characters for a local volume name, '
                          "only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to "
                          "pass a host directory, use absolute path")
    return value


@_record.record
class BindMount:
    """A host path bound at ``target`` (``-v /host:/ctr[:ro]``, ``--mount type=bind``).

    ``create`` makes a missing host directory when the container is created, as ``-v`` does
    (``--mount`` refuses a missing source instead)."""

    source: str = _record.field(converter=_host_path)
    target: str = _record.field(converter=_target)
    readonly: bool = False
    create: bool = False

    @property
    def type(self) -> Literal["bind"]:
        """``"bind"``, as ``--mount type=`` names it."""
        return "bind"


@_record.record
class VolumeMount:
    """A volume at ``target``: named (``-v data:/ctr``, created on first use) or anonymous
    (``name=None``: ``-v /ctr`` and the image's ``Volumes``, a fresh volume per container).
    A new, empty volume is seeded with the image's content at ``target`` unless ``nocopy``."""

    name: str | None = _record.field(converter=_volume_name)
    target: str = _record.field(converter=_target)
    readonly: bool = False
    nocopy: bool = False

    @property
    def type(self) -> Literal["volume"]:
        """``"volume"``, as ``--mount type=`` names it."""
        return "volume"


def _tmpfs_size(value: int | str | None) -> int | None:
    return None if value is None else parse_size(value)


def _mode(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o7777:
        raise ConfigError(f"tmpfs mode must be an int in [0, 0o7777], not {value!r}")


@_record.record
class TmpfsMount:
    """A fresh tmpfs at ``target`` (``--tmpfs /ctr:size=64m``), nosuid and nodev; ``noexec``
    by default as Docker mounts it."""

    target: str = _record.field(converter=_target)
    size: int | None = _record.field(default=None, converter=_tmpfs_size)
    mode: int = _record.field(default=0o1777, validator=_mode)
    noexec: bool = True
    readonly: bool = False

    @property
    def type(self) -> Literal["tmpfs"]:
        """``"tmpfs"``, as ``--mount type=`` names it."""
        return "tmpfs"


MountSpec = BindMount | VolumeMount | TmpfsMount


def parse_volume(spec: str) -> BindMount | VolumeMount:
    """``-v``: ``/host:/ctr[:OPTS]`` (a bind, the host dir made if missing),
    ``name:/ctr[:OPTS]`` (a named volume) or ``/ctr`` (an anonymous volume). ``OPTS`` is a
    comma-separated list of ``ro``, ``rw``, ``nocopy`` (and ``z``/``Z``, accepted and ignored:
    no SELinux here).

    Raises:
        ConfigError: Docker's message for a malformed spec.
    """
    parts = spec.split(":")
    if not spec or len(parts) > 3 or not all(parts[:2]):
        raise ConfigError(f"invalid volume specification: '{spec}'")
    if len(parts) == 1:
        return VolumeMount(None, parts[0])
    source, target = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 else []
    for o in opts:
        if o not in ("ro", "rw", "nocopy", "z", "Z", "rprivate", "private", "rslave",
                     "slave", ""):
            raise ConfigError(f"invalid mode: {o}")
    readonly = "ro" in opts
    if source.startswith(("/", ".", "~")):
        return BindMount(os.path.expanduser(source), target, readonly, create=True)
    return VolumeMount(source, target, readonly, nocopy="nocopy" in opts)


def parse_tmpfs(spec: str) -> TmpfsMount:
    """``--tmpfs /ctr[:OPTS]`` with ``size=``, ``mode=``, ``exec``/``noexec``, ``ro``/``rw``
    (other mount flags are accepted where Docker passes them on: ``nosuid``, ``nodev``).

    Raises:
        ConfigError: a malformed spec.
    """
    target, _, opts = spec.partition(":")
    kw: dict[str, Any] = {}
    for o in filter(None, opts.split(",")):
        key, sep, value = o.partition("=")
        if key == "size" and sep:
            kw["size"] = value
        elif key == "mode" and sep:
            try:
                kw["mode"] = int(value, 8)
            except ValueError:
                raise ConfigError(f"invalid tmpfs mode: {value}") from None
        elif o in ("exec", "noexec"):
            kw["noexec"] = o == "noexec"
        elif o in ("ro", "rw"):
            kw["readonly"] = o == "ro"
        elif o in ("nosuid", "nodev", "suid", "dev"):
            continue  # always nosuid, nodev: a tmpfs of the container's is no way out
        else:
            raise ConfigError(f"invalid tmpfs option: {o!r}")
    return TmpfsMount(target, **kw)


def parse_mount(spec: str) -> MountSpec:
    """``--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,volume-nocopy]
    [,tmpfs-size=...][,tmpfs-mode=...]`` (``src``, ``dst``, ``destination``, ``ro`` too).

    Raises:
        ConfigError: Docker's message for a malformed spec.
    """
    fields: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if not sep and key in ("readonly", "ro", "volume-nocopy"):
            value = "true"
        elif not sep:
            raise ConfigError(f"invalid field '{item}' must be a key=value pair")
        fields[{"src": "source", "dst": "target", "destination": "target",
                "ro": "readonly"}.get(key, key)] = value
    kind = fields.pop("type", "volume")
    target = fields.pop("target", "")
    if not target:
        raise ConfigError("target is required")
    readonly = fields.pop("readonly", "false").lower() in ("1", "true", "yes")
    source = fields.pop("source", "")
    if kind == "bind":
        fields.pop("bind-propagation", None)
        _no_more(fields, kind)
        if not source:
            raise ConfigError("invalid mount config for type \"bind\": field Source must not "
                              "be empty")
        return BindMount(source, target, readonly)
    if kind == "volume":
        nocopy = fields.pop("volume-nocopy", "false").lower() in ("1", "true", "yes")
        fields.pop("volume-driver", None)
        _no_more(fields, kind)
        return VolumeMount(source or None, target, readonly, nocopy)
    if kind == "tmpfs":
        if source:
            raise ConfigError("invalid mount config for type \"tmpfs\": field Source must be "
                              "empty")
        kw: dict[str, Any] = {"readonly": readonly}
        if "tmpfs-size" in fields:
            kw["size"] = fields.pop("tmpfs-size")
        if "tmpfs-mode" in fields:
            try:
                kw["mode"] = int(fields.pop("tmpfs-mode"), 8)
            except ValueError:
                raise ConfigError("invalid tmpfs-mode") from None
        _no_more(fields, kind)
        return TmpfsMount(target, noexec=False, **kw)
    raise ConfigError(f"invalid mount config: mount type unknown: \"{kind}\"")


def _no_more(fields: Mapping[str, str], kind: str) -> None:
    if fields:
        raise ConfigError(f"unexpected key '{next(iter(fields))}' in '--mount "
                          f"type={kind},...'")


def _mounts(value: Iterable[MountSpec | str]) -> tuple[MountSpec, ...]:
    out: list[MountSpec] = []
    for m in value:
        if isinstance(m, str):
            m = parse_volume(m)
        if not isinstance(m, (BindMount, VolumeMount, TmpfsMount)):
            raise ConfigError(f"mounts must be BindMount, VolumeMount or TmpfsMount records "
                              f"(or -v strings), not {m!r}")
        out.append(m)
    seen: set[str] = set()
    for m in out:
        if m.target in seen:
            raise ConfigError(f"Duplicate mount point: {m.target}")
        seen.add(m.target)
    return tuple(out)


# -- the config ---------------------------------------------------------------------------------

def _image(value: object) -> str:
    from isolate.image import Image, Reference

    if isinstance(value, Image):
        return value.id
    if not isinstance(value, str) or not value:
        raise ConfigError(f"image must be an Image or a reference, not {value!r}")
    if not value.startswith("sha256:"):
        Reference.parse(value)  # malformed: a ConfigError now, not at create
    return value


def _network(value: str | None) -> str:
    if value is None or value == "":
        return ""  # the default: decided once the other fields are known
    if not isinstance(value, str):
        raise ConfigError(f"network must be a mode or network name, not {value!r}")
    if value.startswith("container:") and not value.partition(":")[2]:
        raise ConfigError("--network container: needs a container name or id")
    if value not in ("none", "host") and not value.startswith("container:"):
        _network_mode(value)  # a malformed mode or name is a ConfigError now
    return value


def _check_limits(instance: object, attribute: attrs.Attribute[Any], value: Limits | None
                  ) -> None:
    if value is not None:  # (the cgroup code loads only for a config that has limits)
        from isolate.cgroups import Limits

        _record.instance_of(Limits)(instance, attribute, value)


def _shm_size(value: int | str) -> int:
    return parse_size(value)


def _log_size(value: int | str | None) -> int | None:
    return None if value is None else parse_size(value)


@_record.record
class ContainerConfig:
    """Everything ``docker create`` takes that isolate does, validated when made.

    The command is Docker's: ``entrypoint`` (None: the image's; ``[]``: none) followed by
    ``command`` (None: the image's Cmd, unless an entrypoint was given). ``env`` is added to
    the image's (later keys win). ``user`` is ``uid``, ``uid:gid``, ``name`` or
    ``name:group``, looked up in the image's own ``/etc/passwd`` and ``/etc/group`` when the
    container is created (None: the image's User); ``group_add`` adds supplementary groups
    (names from the image's ``/etc/group``, or numbers). ``hostname`` defaults to the short
    id. ``mounts`` are :class:`BindMount`, :class:`VolumeMount`, :class:`TmpfsMount` (or
    ``-v`` strings); the image's ``Volumes`` become anonymous volumes unless a mount covers
    them. ``seccomp`` is ``"default"`` (Docker's profile), ``"unconfined"`` or a path to a
    Docker JSON profile (read when the container is created). ``stop_signal`` and
    ``stop_timeout`` default to the image's StopSignal (else SIGTERM) and 10 s. ``devices``
    (``--device HOST[:CONTAINER][:rwm]``) are host device nodes bound in, each allowed by the
    container's device cgroup with its access on top of Docker's default list.

    Networking (``docs/networking.md``): ``network`` is ``"none"`` (a network namespace with
    only ``lo``), ``"host"``, ``"container:NAME"``, ``"bridge"`` (the default network), a
    user-defined network's name (or Docker's long form ``name=N,alias=A,ip=X``),
    ``"pasta[:OPTS]"`` or ``"slirp4netns[:OPTS]"`` (user-mode networking, the rootless way),
    or ``"ns:PATH"`` (join a network namespace file). Left out, it is ``"bridge"`` when ports
    are published and ``"none"`` otherwise (Docker's default is always ``bridge``; isolate
    makes no bridge in the host's namespace unless asked; for an ordinary user it is
    ``"pasta"``, as in podman). ``extra_networks`` are further
    networks (``--network`` given again); ``network_aliases``, ``ip`` and ``ip6`` apply to the
    first one; ``ports`` are ``-p`` specs and ``publish_all`` (``-P``) publishes the image's
    ExposedPorts and ``expose`` (``--expose``: ``PORT[-END][/PROTO]``) on ephemeral ports;
    ``dns``, ``dns_search``, ``dns_options`` and ``extra_hosts`` (``NAME:IP``, IP may be
    ``host-gateway``) shape ``/etc/resolv.conf`` and ``/etc/hosts``.

    Raises:
        ConfigError: a bad value or combination, in Docker's words where it has them.
    """

    image: str = _record.field(converter=_image)
    command: tuple[str, ...] | None = _record.field(default=None, converter=_command)
    entrypoint: tuple[str, ...] | None = _record.field(default=None, converter=_entrypoint)
    env: tuple[tuple[str, str], ...] = _record.field(default=(), converter=_env)
    workdir: str | None = _record.field(default=None, converter=_workdir)
    user: str | None = None
    group_add: tuple[str, ...] = _record.field(default=(), converter=_group_add)
    name: str | None = _record.field(default=None, converter=_name)
    hostname: str | None = _record.field(default=None, converter=_hostname)
    domainname: str | None = None
    mounts: tuple[MountSpec, ...] = _record.field(default=(), converter=_mounts)
    read_only: bool = False
    limits: Limits | None = _record.field(default=None, validator=_check_limits)
    cap_add: tuple[str, ...] = _record.field(default=(), converter=_caps)
    cap_drop: tuple[str, ...] = _record.field(default=(), converter=_caps)
    privileged: bool = False
    devices: tuple[Device, ...] = _record.field(default=(), converter=_devices)
    seccomp: str = _record.field(default="default", converter=_seccomp)
    no_new_privileges: bool = False
    rlimits: tuple[Rlimit, ...] = _record.field(default=(), converter=_rlimits)
    sysctls: tuple[tuple[str, str], ...] = _record.field(default=(), converter=_sysctls)
    tty: bool = False
    open_stdin: bool = False
    labels: tuple[tuple[str, str], ...] = _record.field(default=(), converter=_labels)
    stop_signal: int | None = _record.field(default=None, converter=_stop_signal)
    stop_timeout: int | None = _record.field(default=None,
                                           validator=_positive_int("stop timeout"))
    restart: RestartPolicy = _record.field(default=None, converter=_restart)
    auto_remove: bool = False
    init: bool = False
    network: str = _record.field(default="", converter=_network)
    extra_hosts: tuple[tuple[str, str], ...] = _record.field(default=(),
                                                           converter=_extra_hosts)
    extra_networks: tuple[str, ...] = _record.field(default=(), converter=_extra_networks)
    network_aliases: tuple[str, ...] = _record.field(default=(), converter=_aliases)
    ip: str | None = _record.field(default=None, converter=_ip4)
    ip6: str | None = _record.field(default=None, converter=_ip6)
    ports: tuple[str, ...] = _record.field(default=(), converter=_ports)
    publish_all: bool = False
    expose: tuple[str, ...] = _record.field(default=(), converter=_expose)
    dns: tuple[str, ...] = _record.field(default=(), converter=_dns)
    dns_search: tuple[str, ...] = _record.field(default=(), converter=_dns_search)
    dns_options: tuple[str, ...] = _record.field(default=(), converter=_dns_options)
    shm_size: int = _record.field(default=DEFAULT_SHM_SIZE, converter=_shm_size)
    log_max_size: int | None = _record.field(default=None, converter=_log_size)
    log_max_file: int = _record.field(default=1, validator=_positive_int("log max-file",
                                                                        allow_none=False))

    def __attrs_post_init__(self) -> None:
        if self.auto_remove and self.restart.enabled:
            raise ConfigError("Conflicting options: --restart and --rm")
        if self.user is not None and (not isinstance(self.user, str) or not self.user
                                      or "\0" in self.user or self.user.count(":") > 1):
            raise ConfigError(f"invalid user: {self.user!r} (uid, uid:gid, name or "
                              "name:group)")
        if self.log_max_file < 1:
            raise ConfigError("max-file cannot be less than 1")
        if self.log_max_file > 1 and self.log_max_size is None:
            raise ConfigError("max-file cannot be set without max-size")
        self._check_network()

    def _check_network(self) -> None:
        """The network options together, as Docker checks them (its words where it has
        them); the default network mode is filled in here."""
        if not self.network:
            # Published ports need a network: the default bridge, or -- for an ordinary user,
            # who cannot make one in the host's namespace -- pasta, as podman does.
            default = "bridge" if os.geteuid() == 0 else "pasta"
            object.__setattr__(self, "network", default if self.ports or self.publish_all
                               else "none")
        kind = self.network_mode_kind
        if kind == "host" and self.hostname is not None:
            raise ConfigError("Conflicting options: hostname and the network mode")
        if any(k.startswith("net.") for k, _ in self.sysctls) and kind == "host":
            raise ConfigError("sysctl net.* is not allowed when the network mode is host")
        if kind == "container":
            for given, what in ((self.hostname is not None, "hostname and the network mode"),
                                (bool(self.dns or self.dns_search or self.dns_options),
                                 "dns and the network mode"),
                                (bool(self.ports or self.publish_all),
                                 "port publishing and the container type network mode"),
                                (bool(self.extra_hosts),
                                 "custom host-to-IP mapping and the network mode")):
                if given:
                    raise ConfigError(f"Conflicting options: {what}")
        bridged = kind in ("bridge", "network")
        if (self.ports or self.publish_all) and kind in ("none", "host"):
            raise ConfigError(f"ports are published only from a network of the container's "
                              f"own (bridge, a network's name, pasta), not with --network "
                              f"{self.network}")
        if self.extra_networks and not bridged:
            raise ConfigError(f"container cannot be connected to multiple networks with one "
                              f"of the networks in {self.network} mode")
        if (self.network_aliases or self.ip or self.ip6) and kind != "network":
            what = "network-scoped aliases are" if self.network_aliases else \
                "user specified IP address is"
            raise ConfigError(f"{what} supported only for containers in user defined "
                              "networks")
        if any(ip == "host-gateway" for _, ip in self.extra_hosts) and not bridged:
            raise ConfigError("--add-host NAME:host-gateway needs a bridge network (the "
                              "host's address on it)")

    @property
    def network_mode_kind(self) -> str:
        """What ``network`` is: ``none``, ``host``, ``container``, ``ns``, ``bridge`` (the
        default network), ``network`` (a user-defined one), ``pasta`` or ``slirp4netns``."""
        if self.network in ("none", "host"):
            return self.network
        head = self.network.partition(":")[0]
        if head in ("container", "ns"):
            return head
        return str(_network_mode(self.network).kind)

    # -- conveniences ----------------------------------------------------------------------
    @property
    def env_dict(self) -> dict[str, str]:
        """``env`` as a dict."""
        return dict(self.env)

    @property
    def labels_dict(self) -> dict[str, str]:
        """``labels`` as a dict."""
        return dict(self.labels)

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values (what ``config.json`` in the state dir holds)."""
        def mount(m: MountSpec) -> dict[str, Any]:
            return {"type": m.type, **_record.asdict(m)}
        out: dict[str, Any] = {}
        for f in _record.fields(ContainerConfig):
            value = getattr(self, f.name)
            if f.name == "mounts":
                value = [mount(m) for m in value]
            elif f.name == "limits":
                value = None if value is None else _record.asdict(value)
            elif f.name == "devices":
                value = [_record.asdict(d) for d in value]
            elif f.name == "rlimits":
                value = [[r.type, r.soft, r.hard] for r in value]
            elif f.name == "restart":
                value = str(value)
            elif f.name in ("env", "labels", "sysctls", "extra_hosts"):
                value = [list(kv) for kv in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerConfig:
        """The inverse of :meth:`to_json`.

        Raises:
            ConfigError: the data does not make a valid config.
        """
        from isolate.cgroups import IoDeviceLimit, Limits
        from isolate.runtime import Rlimit

        kw = dict(data)
        mounts = []
        for m in kw.get("mounts") or ():
            m = dict(m)
            kind = m.pop("type")
            mounts.append({"bind": BindMount, "volume": VolumeMount,
                           "tmpfs": TmpfsMount}[kind](**m))
        kw["mounts"] = mounts
        if kw.get("limits") is not None:
            limits = dict(kw["limits"])
            limits["io_devices"] = [IoDeviceLimit(**{**d, "device": tuple(d["device"])})
                                    for d in limits.get("io_devices", ())]
            kw["limits"] = Limits(**limits)
        kw["rlimits"] = [Rlimit(t, s, h) for t, s, h in kw.get("rlimits") or ()]
        for key in ("env", "labels", "sysctls", "extra_hosts"):
            kw[key] = [tuple(kv) for kv in kw.get(key) or ()]
        known = {f.name for f in _record.fields(ContainerConfig)}
        try:
            return cls(**{k: v for k, v in kw.items() if k in known})
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"container config: {exc}") from None
