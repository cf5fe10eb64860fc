"""The network hook of a container's start: which network namespace it gets and what its
``/etc/hosts`` and ``/etc/resolv.conf`` say.

Owns the interface a network driver implements (:class:`NetworkDriver`: ``prepare`` before the
container's first process exists, ``release`` once it is gone, from persisted facts only) and
the built-in modes: ``none`` (a network namespace of its own with only ``lo``), ``host`` (the
host's) and ``container:NAME`` (another running container's). Bridge networks, ``pasta`` and
``slirp4netns`` plug in here (:func:`register_driver`; :mod:`isolate.container.netdriver`
registers them); nothing else in the container layer knows about networking.
"""

from __future__ import annotations

from _collections_abc import Callable, Mapping, Sequence

from isolate import _record
from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError, UnsupportedError

if TYPE_CHECKING:
    from typing import Any

    from isolate.container.config import ContainerConfig
    from isolate.namespaces import IdMap
    from isolate.runtime import NamespaceSpec

__all__ = [
    "NetworkDriver",
    "NetworkRequest",
    "NetworkSetup",
    "driver_for",
    "host_resolv_conf",
    "hosts_file",
    "register_driver",
]



@_record.record
class NetworkRequest:
    """What a driver is told about the container it prepares: its id, name, hostname, the
    mode it asked for (``--network``), its state dir (for files the driver keeps), and
    ``lookup``, which gives the pid of another container's first process by name or id (for
    ``container:NAME``).

    For the drivers of :mod:`isolate.net`: ``config`` (its network options: further
    networks, aliases, addresses, ports, DNS, extra hosts), ``exposed_ports`` (the image's
    ExposedPorts, for ``publish_all``), ``store_root`` (the store whose ``networks/`` holds
    the networks), ``host`` (the network namespace that plays the host: a path, fd or handle;
    None: ``$ISOLATE_NETWORK_NS``, else the caller's own), and the container's ``uid_map`` and
    ``gid_map`` (rootless: the driver may make the container's user namespace with them)."""

    container_id: str
    name: str
    hostname: str
    mode: str
    state_dir: str
    lookup: Callable[[str], int] = _record.field(eq=False, repr=False)
    config: ContainerConfig | None = _record.field(default=None, eq=False, repr=False)
    exposed_ports: tuple[str, ...] = ()
    store_root: str = ""
    host: Any = _record.field(default=None, eq=False)
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()


@_record.record
class NetworkSetup:
    """A driver's answer: ``namespace`` (None: a new network namespace made with the
    container; ``"host"``: the caller's; a :class:`~isolate.runtime.NamespaceSpec` to join,
    e.g. a namespace a bridge driver made and holds by fd), ``addresses`` (the container's own
    address per name, for its ``/etc/hosts``), ``resolv_conf`` (the file's text), ``facts``
    (what :meth:`NetworkDriver.release` needs later, persisted in ``network.json``).

    ``user_namespace``: a user namespace the container joins instead of making one (a
    rootless driver makes it, with the container's maps, to own the network namespace);
    ``hosts``: the whole ``/etc/hosts`` text when the driver writes it (else it is made from
    ``addresses``); ``fds``: fds the setup holds (its namespaces) -- the container layer
    hands them to the supervisor, which keeps them for restarts, and closes its own copies
    once the first process runs (or the start failed)."""

    namespace: NamespaceSpec | str | None = None
    addresses: tuple[str, ...] = ()
    resolv_conf: str = ""
    facts: Mapping[str, object] = _record.field(factory=dict)
    user_namespace: NamespaceSpec | None = None
    hosts: str | None = None
    fds: tuple[int, ...] = ()

    @property
    def own_namespace(self) -> bool:
        """Whether the container has a network namespace other than the host's."""
        return self.namespace != "host"


_DRIVER_DOC = """How a network mode gets a container ready. ``prepare`` runs under the container's
lock before its first process starts and may make persistent things (a namespace, a veth, an
address lease); ``release`` undoes them after the container ended (also after a crash, from
``facts`` alone) and must not fail when there is nothing left."""

# A Protocol for the type checker; at run time (typing is not loaded on a container's start)
# a plain base class of the same name, for drivers that name it as their base.
if TYPE_CHECKING:
    from typing import Protocol

    class NetworkDriver(Protocol):  # (its documentation: _DRIVER_DOC)

        def prepare(self, request: NetworkRequest) -> NetworkSetup:
            """Get the network of ``request``'s container ready; what its start uses."""
            ...

        def release(self, request: NetworkRequest, facts: Mapping[str, object]) -> None:
            """Undo what :meth:`prepare` made, from ``facts`` alone; nothing left is no error."""
            ...
else:
    class NetworkDriver:
        __doc__ = _DRIVER_DOC  # its methods: the protocol above


def host_resolv_conf() -> str:
    """The host's ``/etc/resolv.conf``; a loopback nameserver (systemd-resolved's 127.0.0.53)
    cannot be reached from a network namespace of its own, so such lines are left out, as
    Docker does."""
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver" and (
                words[1].startswith("127.") or words[1] == "::1"):
            continue
        out.append(line)
    return "\n".join(out) + "\n" if out else ""


def hosts_file(hostname: str, names: Sequence[str], addresses: Sequence[str],
               extra: Sequence[tuple[str, str]]) -> str:
    """The container's ``/etc/hosts`` as Docker writes it: loopback names, then the
    container's own address(es) for its hostname and ``names`` (loopback in a namespace of
    its own without one), then ``--add-host`` entries."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::\tip6-localnet", "ff00::\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
    own = " ".join(dict.fromkeys([hostname, *names]))
    for addr in addresses or ("127.0.0.1",):
        lines.append(f"{addr}\t{own}")
    for host, addr in extra:
        lines.append(f"{addr}\t{host}")
    return "\n".join(lines) + "\n"


class _NoNetwork:
    """``none``: a network namespace of its own with only ``lo`` up."""

    def prepare(self, request: NetworkRequest) -> NetworkSetup:
        return NetworkSetup(None, (), host_resolv_conf())

    def release(self, request: NetworkRequest, facts: Mapping[str, object]) -> None:
        return None


class _HostNetwork:
    """``host``: the host's network namespace, its hosts and resolv.conf as they are."""

    def prepare(self, request: NetworkRequest) -> NetworkSetup:
        try:
            with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as f:
                resolv = f.read()
        except OSError:
            resolv = ""
        return NetworkSetup("host", (), resolv)

    def release(self, request: NetworkRequest, facts: Mapping[str, object]) -> None:
        return None


class _ContainerNetwork:
    """``container:NAME``: join the network namespace of another running container."""

    def prepare(self, request: NetworkRequest) -> NetworkSetup:
        from isolate.runtime import NamespaceSpec

        other = request.mode.partition(":")[2]
        pid = request.lookup(other)
        return NetworkSetup(NamespaceSpec("net", path=f"/proc/{pid}/ns/net"), (),
                            host_resolv_conf(), {"joined": other})

    def release(self, request: NetworkRequest, facts: Mapping[str, object]) -> None:
        return None


_DRIVERS: dict[str, NetworkDriver] = {"none": _NoNetwork(), "host": _HostNetwork(),
                                      "container": _ContainerNetwork()}
_FALLBACK: list[NetworkDriver] = []


def register_driver(name: str, driver: NetworkDriver, *, fallback: bool = False) -> None:
    """Make ``--network NAME`` (and ``--network NAME:...``) use ``driver``: the bridge
    networks of :mod:`isolate.net` register themselves here. With ``fallback``, ``driver``
    also serves every mode no driver is registered for (the names of user-defined networks).

    Raises:
        ConfigError: ``name`` is one of the built-in modes.
    """
    if name in ("none", "host", "container"):
        raise ConfigError(f"network mode {name!r} is built in")
    _DRIVERS[name] = driver
    if fallback:
        _FALLBACK[:] = [driver]


def driver_for(mode: str) -> NetworkDriver:
    """The driver for ``--network MODE`` (Docker's long form ``name=N,alias=A`` goes to the
    driver of ``N``).

    Raises:
        UnsupportedError: no driver knows the mode (e.g. ``bridge`` before bridge networks
            are installed).
    """
    if "=" in mode and not mode.startswith(("container:", "ns:")):
        for item in mode.split(","):
            key, _, value = item.partition("=")
            if key.strip() == "name":
                mode = value.strip()
                break
    key = mode.partition(":")[0]
    driver = _DRIVERS.get(key) or _DRIVERS.get(mode)
    if driver is None and key not in ("none", "host", "container") and _FALLBACK:
        driver = _FALLBACK[0]
    if driver is None:
        raise UnsupportedError(
            f"network {mode!r} not found: this isolate knows the modes none, host and "
            "container:NAME (bridge networks come with isolate.net)", missing=f"network {mode}")
    return driver
