"""Container networking on :mod:`isolate.net`: the driver of the network hook for bridge
networks (the default ``bridge`` and user-defined ones), user-mode networks (``pasta``,
``slirp4netns``) and ``ns:PATH``.

Owns how a container's network options become endpoints: the network namespace made before
its first process (held by fd -- the supervisor keeps it for restarts, and it goes with the
supervisor), the endpoints connected in it under the container's name, aliases, addresses and
published ports, the ``/etc/hosts`` and ``/etc/resolv.conf`` that go with them, and their
release: when the container stops, or -- after a crash -- at the next change of any network
(whose owner-liveness check is the container's own state) or by prune. Also ``network
connect``/``disconnect`` of a container, the ports and networks ``ps``/``port``/``inspect``
show, and which network namespace plays the host (a store option, else
``$ISOLATE_NETWORK_NS``, else the caller's own). It never enters a namespace, and of the
container's state dir writes only ``network.json`` (its facts) and ``attachments.json`` (the
networks connected or disconnected after create).
"""

from __future__ import annotations

import os
import sys
from _collections_abc import Callable, Mapping, Sequence

from isolate import _ctx as contextlib
from isolate import _json as json
from isolate._procs import lock_held
from isolate._typing import TYPE_CHECKING
from isolate.container.network import (
    NetworkRequest,
    NetworkSetup,
    host_resolv_conf,
    register_driver,
)
from isolate.container.state import write_json
from isolate.errors import ConfigError, StateError

if TYPE_CHECKING:
    from typing import Any

    from isolate.container.config import ContainerConfig
    from isolate.container.network import NetworkDriver
    from isolate.net import (
        Endpoint,
        NetNamespace,
        NetnsLike,
        Network,
        NetworkMode,
        NetworkRecords,
        Networks,
        PortBinding,
    )

__all__ = [
    "HOST_ENV",
    "NamespaceAttachment",
    "NetDriver",
    "RootlessNamespaces",
    "attach_namespace",
    "connect",
    "container_alive",
    "disconnect",
    "format_ports",
    "network_doc",
    "network_row",
    "network_settings",
    "open_networks",
    "open_records",
    "owner_of",
    "published_ports",
    "require_networks",
]

#: The environment variable naming the network namespace that plays the host (a path such as
#: ``/proc/PID/ns/net`` or ``/run/netns/NAME``) when the store gives none: a testing and
#: advanced knob, so that a test (or a lab) builds every bridge and rule inside a namespace
#: of its own. Every process acting on one store's networks must agree on it.
HOST_ENV = "ISOLATE_NETWORK_NS"
_FACTS = "network.json"
_ATTACHMENTS = "attachments.json"
_PASTA_DNS = "169.254.1.1"  # where pasta answers DNS (forwarded to the host's resolvers)
_SLIRP_DNS = "10.0.2.3"


def owner_of(container_id: str) -> str:
    """The owner string of a container's endpoints (``container:<id>``)."""
    return f"container:{container_id}"


def container_alive(containers_dir: str) -> Callable[[str], bool]:
    """The liveness check of endpoint owners for one store's containers: a container owns
    its endpoints while someone acts on it (holds its lock: it is being started, say) or its
    supervisor lives (holds ``shim.lock``); a removed container owns nothing. Owners that are
    not containers (a sandbox's process) go to :func:`isolate.net.default_alive`. It takes no
    lock and never blocks, so it may run under the networks' lock."""
    from isolate.net import default_alive

    def alive(owner: str) -> bool:
        kind, _, cid = owner.partition(":")
        if kind != "container":
            return default_alive(owner)
        state_dir = os.path.join(containers_dir, cid)
        if not cid or "/" in cid or not os.path.isdir(state_dir):
            return False
        return lock_held(os.path.join(state_dir, "lock")) or \
            lock_held(os.path.join(state_dir, "shim.lock"))
    return alive


def _host(host: NetnsLike) -> NetnsLike:
    """The namespace playing the host: ``host``, else ``$ISOLATE_NETWORK_NS``, else None
    (the caller's own)."""
    if host is not None:
        return host
    return os.environ.get(HOST_ENV) or None


def open_networks(store_root: str, host: NetnsLike = None) -> Networks:
    """The networks of the store at ``store_root`` (``STORE/networks``), built in ``host``
    (see :data:`HOST_ENV`), with the containers' liveness check. The caller closes it.

    The first use records which namespace the store's networks live in; opening them from
    another one (a test's host namespace forgotten, ``$ISOLATE_NETWORK_NS`` unset) is refused
    while any network exists, so that nothing is torn down or made in the wrong namespace.

    Raises:
        ConfigError: the networks live in another namespace.
        UnsupportedError: nft is missing.
        NetworkError: the namespace cannot be opened.
    """
    from isolate.net import Networks

    directory = os.path.join(store_root, "networks")
    alive = container_alive(os.path.join(store_root, "containers"))
    if os.geteuid() != 0:
        nets = _rootless_networks(directory, _host(host), alive)
    else:
        nets = Networks(directory, host=_host(host), alive=alive)
    try:
        _check_host(nets, directory)
    except BaseException:
        nets.close()
        raise
    return nets


def open_records(store_root: str) -> NetworkRecords:
    """The records of the store's networks and endpoints, for reading only (``network ls``,
    ``network inspect``): no namespace is opened -- for an ordinary user, no rootless netns
    (holder, pasta) is made just to list what is recorded.

    Raises:
        NetworkError: the records cannot be read.
    """
    from isolate.net.network import NetworkRecords

    return NetworkRecords(os.path.join(store_root, "networks"))


def _rootless_networks(directory: str, host: NetnsLike,
                       alive: Callable[[str], bool]) -> Networks:
    """An ordinary user's networks: in the user's rootless netns (made if there is none, torn
    down when the last handle that finds no endpoint left closes), whose resolvers forward
    to pasta's (or slirp4netns's) DNS there."""
    from isolate.net import Networks
    from isolate.net.rootless_netns import UserNetns

    user = UserNetns(directory, host, make_namespaces=_user_namespaces)
    try:
        if user.created:
            # A new namespace: the one the records were made in is gone with its holder.
            write_json(os.path.join(directory, "namespace.json"),
                       {"inode": os.fstat(user.netns.fileno()).st_ino})
        return Networks(directory, host=user.netns, alive=alive, upstream=[user.upstream],
                        on_close=lambda n: user.close(idle=lambda: not n.endpoints()))
    except BaseException:
        user.close()
        raise


def _check_host(nets: Networks, directory: str) -> None:
    path = os.path.join(directory, "namespace.json")
    ino = os.fstat(nets.host.fileno()).st_ino
    try:
        with open(path, encoding="utf-8") as f:
            recorded = int(json.load(f)["inode"])
    except (OSError, ValueError, KeyError, TypeError):
        recorded = None
    if recorded == ino:
        return
    if recorded is not None and nets.networks():
        raise ConfigError(
            f"the networks of this store live in network namespace net:[{recorded}], and this "
            f"process acts in net:[{ino}]: point ${HOST_ENV} (or the store's network_host) at "
            f"the namespace they were made in")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    write_json(path, {"inode": ino})


# -- what a container asks for -----------------------------------------------------------------

def _modes(cfg: ContainerConfig, state_dir: str) -> list[NetworkMode]:
    """The networks a start attaches, in order: the config's (``network`` and
    ``extra_networks``, the first with ``network_aliases``/``ip``/``ip6``), then those
    connected later, less those disconnected."""
    from isolate import _record
    from isolate.net import parse_network

    first = parse_network(cfg.network)
    if first.kind == "network":
        first = _record.evolve(first, aliases=(*first.aliases, *cfg.network_aliases),
                             ip=first.ip or cfg.ip, ip6=first.ip6 or cfg.ip6)
    modes = [first, *(parse_network(n) for n in cfg.extra_networks)]
    if not first.joins_network:
        return modes
    att = _read(os.path.join(state_dir, _ATTACHMENTS)) or {}
    gone = set(att.get("disconnected") or ())
    modes = [m for m in modes if m.network not in gone]
    for extra in att.get("connected") or ():
        mode = parse_network(str(extra["network"]))
        if all(m.network != mode.network for m in modes):
            modes.append(_record.evolve(mode, aliases=tuple(extra.get("aliases") or ()),
                                      ip=extra.get("ip"), ip6=extra.get("ip6")))
    return modes


def _port_specs(cfg: ContainerConfig, exposed: Sequence[str]) -> list[str]:
    """``-p`` specs, plus with ``-P`` one ephemeral host port for every exposed port no
    ``-p`` publishes."""
    specs = list(cfg.ports)
    if cfg.publish_all:
        from isolate.net import parse_publish

        taken = {(p, m.protocol) for m in map(parse_publish, specs) for p in m.container_ports}
        for item in exposed:
            port, _, proto = item.partition("/")
            if port.isdigit() and (int(port), proto or "tcp") not in taken:
                specs.append(f"{port}/{proto or 'tcp'}")
    return specs


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _binding_facts(bindings: Sequence[PortBinding]) -> list[dict[str, object]]:
    return [b.to_json() for b in bindings]


def _endpoint_facts(ep: Endpoint) -> dict[str, object]:
    return {"network": ep.network, "endpoint": ep.id, "ifname": ep.ifname, "ipv4": ep.ipv4,
            "prefixlen": ep.prefixlen, "gateway": ep.gateway, "ipv6": ep.ipv6,
            "prefixlen6": ep.prefixlen6 if ep.ipv6 else 0, "gateway6": ep.gateway6,
            "aliases": [a for a in (ep.name, *ep.aliases) if a]}


# -- the driver ---------------------------------------------------------------------------------

class NetDriver:
    """The network driver for ``bridge``, user-defined networks, ``pasta``, ``slirp4netns``
    and ``ns:PATH`` (registered with the network hook when this module is imported)."""

    def prepare(self, request: NetworkRequest) -> NetworkSetup:
        """Make the container's network namespace and attach it (see the module's text).

        Raises:
            ConfigError: an unknown network, an address in use, a malformed or busy port (
                nothing is made).
            UnsupportedError: nft, pasta or slirp4netns missing; a bridge network asked for
                by an ordinary user.
            NetworkError: the kernel or a helper refused (what was made is undone).
        """
        from isolate.runtime import NamespaceSpec

        cfg = request.config
        if cfg is None:
            raise ConfigError("the network driver needs the container's config")
        if request.mode.startswith("ns:"):
            return NetworkSetup(NamespaceSpec("net", path=request.mode[3:]),
                                resolv_conf=host_resolv_conf())
        modes = _modes(cfg, request.state_dir)
        first = modes[0]
        if first.kind in ("pasta", "slirp4netns"):
            return self._user_mode(request, cfg, first)
        return self._bridge(request, cfg, modes)

    def release(self, request: NetworkRequest, facts: Mapping[str, object]) -> None:
        """Undo :meth:`prepare` from ``facts``: stop a user-mode helper, release the
        container's endpoints (rules, proxy, address, veth). Nothing left is no error.

        Raises:
            NetworkError: a rule or device could not be removed (its record stays, and the
                next change or prune tries again).
        """
        user_mode = facts.get("user_mode")
        if isinstance(user_mode, dict):
            from isolate.net import UserModeNetwork

            UserModeNetwork.from_json(user_mode).stop()
        proxy = facts.get("rootless_proxy")
        if isinstance(proxy, dict):
            from isolate.net._helpers import HelperProcess

            found = HelperProcess.from_json(proxy)
            if found is not None:
                found.stop()
        if facts.get("driver") == "bridge":
            with open_networks(request.store_root, request.host) as nets:
                nets.release(owner_of(request.container_id))

    # -- bridges ---------------------------------------------------------------------------
    def _bridge(self, request: NetworkRequest, cfg: ContainerConfig,
                modes: Sequence[NetworkMode]) -> NetworkSetup:
        from isolate.net import NetNamespace
        from isolate.runtime import NamespaceSpec

        owner = owner_of(request.container_id)
        ports = _port_specs(cfg, request.exposed_ports)
        rootless = os.geteuid() != 0
        outer: _OuterPorts | None = None
        with open_networks(request.store_root, request.host) as nets:
            # What an earlier run left (its supervisor SIGKILLed before anyone noticed).
            nets.release(owner)
            if rootless:
                # The host's ports first (one in use is an error before anything is made);
                # inside the rootless netns the same ports are published, for hairpin.
                outer = _OuterPorts.hold(request.host, owner, ports)
                ports = outer.inner_specs
                try:
                    ns = _rootless_container_ns(nets, request)
                except BaseException:
                    outer.close()
                    raise
            else:
                ns = NetNamespace.create()
            try:
                eps = [self._attach(nets, ns, request, cfg, mode, ports if i == 0 else ())
                       for i, mode in enumerate(modes)]
                if not eps:
                    from isolate.net import loopback_up

                    loopback_up(ns)
                hosts, resolv = _etc_files(nets, request, cfg, eps)
                if outer is not None and eps:
                    outer.start(nets, eps[0])
                fd = os.dup(ns.fileno())
                user_fd = os.dup(ns.userns_fd) if rootless else -1
            except BaseException as exc:
                if outer is not None and outer.proxy is not None:
                    outer.proxy.stop()
                _undo(exc, lambda: nets.release(owner), "releasing its endpoints")
                raise
            finally:
                ns.close()
                if outer is not None:
                    outer.close()
        bindings = outer.bindings if outer is not None else [b for e in eps for b in e.ports]
        facts: dict[str, object] = {
            "driver": "bridge", "owner": owner, "ports": _binding_facts(bindings),
            "endpoints": {e.network_name: _endpoint_facts(e) for e in eps}}
        if outer is not None and outer.proxy is not None:
            facts["rootless_proxy"] = outer.proxy.to_json()
        return NetworkSetup(NamespaceSpec("net", fd=fd),
                            user_namespace=NamespaceSpec("user", fd=user_fd)
                            if user_fd >= 0 else None,
                            addresses=tuple(a for e in eps for a in e.addresses),
                            resolv_conf=resolv, hosts=hosts, facts=facts,
                            fds=(fd,) if user_fd < 0 else (user_fd, fd))

    @staticmethod
    def _attach(nets: Networks, netns: NetnsLike, request: NetworkRequest, cfg: ContainerConfig,
                mode: NetworkMode, ports: Sequence[str]) -> Endpoint:
        user_defined = mode.kind == "network"
        # On a user-defined network its name, short id and aliases resolve (Docker's
        # DNSNames); the default bridge has no resolver.
        aliases = (*mode.aliases, request.container_id[:12]) if user_defined else ()
        return nets.connect(mode.network, netns, owner=owner_of(request.container_id),
                            name=request.name if user_defined else None,
                            aliases=tuple(dict.fromkeys(aliases)), ip=mode.ip, ip6=mode.ip6,
                            ports=ports, dns=cfg.dns)

    # -- user-mode networks ----------------------------------------------------------------
    def _user_mode(self, request: NetworkRequest, cfg: ContainerConfig,
                   mode: NetworkMode) -> NetworkSetup:
        from isolate.net import NetNamespace, attach_user_mode, loopback_up
        from isolate.net.rootless import find_program
        from isolate.runtime import NamespaceSpec

        ports = _port_specs(cfg, request.exposed_ports)
        extra = list(mode.options)
        # pasta, or slirp4netns where pasta is missing; a program given options is forced.
        program = find_program(mode.kind if extra or mode.kind != "pasta" else None)[0]
        if program == "pasta" and not any(o.startswith("--dns-forward") for o in extra):
            extra += ["--dns-forward", _PASTA_DNS]
        host = NetNamespace.of(_host(request.host))
        user_fd = -1
        try:
            if os.geteuid() != 0:
                # The container's own user namespace, made now with its maps, owns the network
                # namespace: the container joins both (pasta acts as root of it, and the
                # container can mount its sysfs).
                user_fd, net_fd = _rootless_namespaces(host, request)
                ns = NetNamespace.of(net_fd, userns=user_fd)
            else:
                ns = NetNamespace.create()
                net_fd = os.dup(ns.fileno())
        except BaseException:
            host.close()
            raise
        fds = (net_fd,) if user_fd < 0 else (user_fd, net_fd)
        try:
            loopback_up(ns)
            um = attach_user_mode(ns, ports=ports, host=host, program=program,
                                  extra_args=extra)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        finally:
            ns.close()
            host.close()
        resolv = _resolv_with(_PASTA_DNS if program == "pasta" else _SLIRP_DNS, cfg)
        facts = {"driver": program, "user_mode": um.to_json(),
                 "ports": _binding_facts(um.ports)}
        return NetworkSetup(NamespaceSpec("net", fd=net_fd),
                            user_namespace=NamespaceSpec("user", fd=user_fd)
                            if user_fd >= 0 else None,
                            resolv_conf=resolv, facts=facts, fds=fds)


def _user_namespaces() -> tuple[int, int]:
    """A user namespace with the rootless maps (the user's ids and subordinate ranges, as
    every rootless container's) and a network namespace it owns: the rootless netns."""
    from isolate.namespaces import Namespace, rootless_maps

    maps = rootless_maps()
    nss = Namespace.create(["user", "net"], uid_map=maps.uid_map, gid_map=maps.gid_map)
    try:
        return os.dup(nss["user"].fileno()), os.dup(nss["net"].fileno())
    finally:
        nss.close()


def _rootless_container_ns(nets: Networks, request: NetworkRequest) -> NetNamespace:
    """A rootless container's user and network namespaces, made inside the rootless netns's
    user namespace (so that its bridges' veths may go in), with the container's maps."""
    from isolate.net import NetNamespace

    user_fd, net_fd = _rootless_fds(nets, request.uid_map, request.gid_map)
    return NetNamespace(net_fd, user_fd)


def _rootless_fds(nets: Networks, uid_map: Sequence[Any], gid_map: Sequence[Any]
                  ) -> tuple[int, int]:
    """``(user fd, net fd)`` made inside the rootless netns of ``nets`` with these maps."""
    from isolate.net.rootless_netns import RECORD, nested_namespaces

    record = _read(os.path.join(nets.dir.file(), RECORD)) or {}
    holder = record.get("holder") or {}
    return nested_namespaces(nets.host, uid_map=uid_map, gid_map=gid_map,
                             holder_pid=int(holder["pid"]) if holder else None)


class _OuterPorts:
    """A rootless container's published ports on the host: bound there (as the user), served
    by a port proxy that runs in the rootless netns and connects to the container's address
    there (rootlessport's job). ``inner_specs``: the same host ports, published inside."""

    def __init__(self, owner: str, bindings: list[PortBinding], socks: list[Any]) -> None:
        self.owner = owner
        self.bindings = bindings
        self.socks = socks
        self.proxy: Any = None
        self.inner_specs = [f"{b.host_port}:{b.container_port}/{b.protocol}"
                            for b in bindings]

    @classmethod
    def hold(cls, host: NetnsLike, owner: str, specs: Sequence[str]) -> _OuterPorts:
        from isolate.net import NetNamespace, parse_publish
        from isolate.net.rootless import hold_ports

        with NetNamespace.of(_host(host)) as hostns:
            bindings, socks = hold_ports(hostns, [parse_publish(p) for p in specs])
        return cls(owner, bindings, socks)

    def start(self, nets: Networks, ep: Endpoint) -> None:
        if not self.bindings or not ep.ipv4:
            return
        from isolate.net._helpers import HelperProcess
        from isolate.net.network import _python_env

        args = []
        for i, b in enumerate(self.bindings):
            args += [f"--{b.protocol}", f"{3 + i}={ep.ipv4}:{b.container_port}"]
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            child = nets.host.spawn(
                [sys.executable, "-m", "isolate.net._proxyd", "--for", self.owner, *args],
                env=_python_env(), fds=[null, null, null, *(s.fileno() for s in self.socks)],
                detach=True)
        finally:
            os.close(null)
        self.proxy = HelperProcess.of(child.pid, "rootless port proxy")
        child.close()  # it runs on, detached
        # Kept with the networks too: a crash that loses the container (and the release that
        # reads its facts) leaves it to the next change or prune there.
        nets.keep_helper(self.owner, self.proxy)

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []


def _rootless_namespaces(host: NetNamespace, request: NetworkRequest) -> tuple[int, int]:
    """``(user fd, net fd)``: a new user namespace with the container's maps and a network
    namespace it owns. Where the host is itself a user namespace of ours (a test's, or a
    rootless "host" holding bridges), they are made inside it, mapping its ids one to one --
    so that helpers running there (pasta) may join them."""
    if host.userns_fd < 0:
        from isolate.namespaces import Namespace

        nss = Namespace.create(["user", "net"], uid_map=request.uid_map or None,
                               gid_map=request.gid_map or None)
        try:
            return os.dup(nss["user"].fileno()), os.dup(nss["net"].fileno())
        finally:
            nss.close()
    from isolate.net.rootless_netns import nested_namespaces

    return nested_namespaces(host, uid_map=request.uid_map, gid_map=request.gid_map)


def _resolv_with(server: str, cfg: ContainerConfig) -> str:
    from isolate.net import resolv_conf

    return resolv_conf(dns=list(cfg.dns) or [server], search=list(cfg.dns_search) or None,
                       options=list(cfg.dns_options) or None)


def _etc_files(nets: Networks, request: NetworkRequest, cfg: ContainerConfig,
               eps: Sequence[Endpoint]) -> tuple[str, str]:
    """``/etc/hosts`` (the container's addresses under its hostname and name) and
    ``/etc/resolv.conf`` (the first resolver of its networks, or the host's servers)."""
    from isolate.net import ExtraHost, hosts_file

    extra = [ExtraHost(h, ip) for h, ip in cfg.extra_hosts]
    _, resolv = nets.container_files(owner_of(request.container_id), request.hostname,
                                     dns=cfg.dns, dns_search=list(cfg.dns_search) or None,
                                     dns_options=list(cfg.dns_options) or None)
    gateway = next((e.gateway for e in eps if e.gateway), None)
    hosts = hosts_file(request.hostname, [a for e in eps for a in e.addresses], extra=extra,
                       gateway=gateway,
                       aliases=[request.name] if request.name != request.hostname else ())
    return hosts, resolv


def _undo(exc: BaseException, fn: Callable[[], object], what: str) -> None:
    try:
        fn()
    except Exception as undo:  # the first error is the one to see
        if hasattr(exc, "add_note"):
            exc.add_note(f"{what} also failed: {undo}")


# -- a namespace of a sandbox ------------------------------------------------------------------

class NamespaceAttachment:
    """What :func:`attach_namespace` made for one network namespace: ``hosts`` and
    ``resolv_conf`` (the files' text), ``ports`` (the bindings, as :func:`published_ports`
    gives them); :meth:`release` undoes it (idempotent)."""

    def __init__(self, hosts: str, resolv_conf: str, ports: list[dict[str, object]],
                 release: Callable[[], None]) -> None:
        self.hosts = hosts
        self.resolv_conf = resolv_conf
        self.ports = ports
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        """Disconnect the endpoint (or stop the user-mode helper).

        Raises:
            NetworkError: a rule or device could not be removed (prune retries)."""
        release, self._release = self._release, None
        if release is not None:
            release()


class RootlessNamespaces:
    """An ordinary user's user and network namespaces for a bridge network (a sandbox's or a
    build step's, as podman makes a rootless container's): made inside the user's rootless
    netns's user namespace -- so that a bridge's veth can be moved into the network namespace
    -- with the maps ``uid_map``/``gid_map`` (IdMap lines in the caller's ids).

    :attr:`user_fd` and :attr:`net_fd` are the namespaces (the caller joins them, and
    :meth:`take` hands them over); the store's networks stay open (so that the rootless netns
    is not torn down before an endpoint holds it) until :func:`attach_namespace` is given this
    object, or :meth:`close`. A no-op object (``user_fd == net_fd == -1``) for root or a
    ``mode`` that is not a bridge network.

    Raises ConfigError (the networks live elsewhere), UnsupportedError (pasta, slirp4netns or
    nft missing), NamespaceError / NetworkError (the kernel or a helper refused: nothing is
    left).
    """

    def __init__(self, mode: str, *, store_root: str, host: NetnsLike = None,
                 uid_map: Sequence[Any] = (), gid_map: Sequence[Any] = ()) -> None:
        from isolate.net import parse_network

        self.user_fd = self.net_fd = -1
        self.nets: Networks | None = None
        if os.geteuid() == 0 or not parse_network(mode).joins_network:
            return
        self.nets = open_networks(store_root, host)
        try:
            self.user_fd, self.net_fd = _rootless_fds(self.nets, uid_map, gid_map)
        except BaseException:
            self.close()
            raise

    @property
    def active(self) -> bool:
        """Whether namespaces were made (an ordinary user on a bridge network)."""
        return self.net_fd >= 0

    def take(self) -> tuple[int, int]:
        """``(user fd, net fd)``, the caller's to close from now on."""
        fds = self.user_fd, self.net_fd
        self.user_fd = self.net_fd = -1
        return fds

    def close(self) -> None:
        """Close the namespaces not taken and the networks (idempotent)."""
        for fd in self.take():
            if fd >= 0:
                os.close(fd)
        nets, self.nets = self.nets, None
        if nets is not None:
            nets.close()


def attach_namespace(netns: int, mode: str, *, store_root: str, hostname: str,
                     host: NetnsLike = None, userns: int = -1, ports: Sequence[str] = (),
                     owner: str | None = None,
                     rootless: RootlessNamespaces | None = None) -> NamespaceAttachment:
    """Attach a network namespace that already exists (a sandbox's: ``netns`` an fd, owned by
    ``userns`` when rootless) to ``mode`` -- ``bridge``, a network's name, ``pasta`` or
    ``slirp4netns`` -- publishing ``ports``. ``owner`` (default: this process, so a crash is
    reclaimed by prune) holds the endpoint. An ordinary user's namespace joins a bridge
    network only when made by ``rootless`` (:class:`RootlessNamespaces`, closed here).

    Raises:
        ConfigError: an unknown network, a malformed or busy port.
        UnsupportedError: nft, pasta or slirp4netns missing; a bridge for an ordinary user's
            namespace not made by ``rootless``.
        NetworkError: the kernel or a helper refused (nothing is left).
    """
    try:
        return _attach_namespace(netns, mode, store_root=store_root, hostname=hostname,
                                 host=host, userns=userns, ports=ports, owner=owner,
                                 rootless=rootless)
    finally:
        if rootless is not None:
            rootless.close()


def _attach_namespace(netns: int, mode: str, *, store_root: str, hostname: str,
                      host: NetnsLike, userns: int, ports: Sequence[str],
                      owner: str | None,
                      rootless: RootlessNamespaces | None) -> NamespaceAttachment:
    from isolate.net import (
        NetNamespace,
        attach_user_mode,
        hosts_file,
        parse_network,
        process_owner,
        resolv_conf,
    )

    m = parse_network(mode)
    if m.kind in ("pasta", "slirp4netns"):
        from isolate.net.rootless import find_program

        program = find_program(m.kind if m.options or m.kind != "pasta" else None)[0]
        extra = list(m.options)
        if program == "pasta":
            extra += ["--dns-forward", _PASTA_DNS]
        with NetNamespace.of(netns, userns=userns if userns >= 0 else None) as ns:
            um = attach_user_mode(ns, ports=ports, host=_host(host), program=program,
                                  extra_args=extra)
        server = _PASTA_DNS if program == "pasta" else _SLIRP_DNS
        return NamespaceAttachment(hosts_file(hostname), resolv_conf(dns=[server]),
                                   _binding_facts(um.ports), um.stop)
    if not m.joins_network:
        raise ConfigError(f"a namespace is attached to a bridge network, pasta or "
                          f"slirp4netns, not {mode!r}")
    nets = rootless.nets if rootless is not None else None
    if os.geteuid() != 0 and nets is None:
        from isolate.errors import UnsupportedError

        raise UnsupportedError(f"bridge network {m.network!r}: an ordinary user's namespace "
                               "joins a bridge network only when made inside the rootless "
                               "netns (RootlessNamespaces)", missing="rootless bridge networks")
    who = owner or process_owner(os.getpid())
    outer: _OuterPorts | None = None
    with contextlib.ExitStack() as stack:
        if nets is None:
            nets = stack.enter_context(open_networks(store_root, host))
        target: NetnsLike = netns
        if userns >= 0:
            target = stack.enter_context(NetNamespace.of(netns, userns=userns))
        if rootless is not None and ports:
            # As a rootless container's: the host's ports bound first (one in use is an
            # error before anything is made), served by a proxy in the rootless netns; the
            # same ports published inside, for hairpin.
            outer = _OuterPorts.hold(host, who, ports)
            stack.callback(outer.close)
            ports = outer.inner_specs
        ep = nets.connect(m.network, target, owner=who,
                          name=hostname if m.kind == "network" else None, aliases=m.aliases,
                          ip=m.ip, ip6=m.ip6, ports=ports)
        net = nets.get(ep.network)
        if outer is not None:
            try:
                outer.start(nets, ep)
            except BaseException as exc:
                _undo(exc, lambda: nets.disconnect(ep.id), "releasing its endpoint")
                raise
    proxy = outer.proxy if outer is not None else None
    # Its network's resolver (it forwards other names), else the host's servers.
    resolv = resolv_conf(resolver=net.gateway if net.dns else None)

    def release() -> None:
        if proxy is not None:
            proxy.stop()
        with open_networks(store_root, host) as nets:
            try:
                nets.disconnect(ep.id)
            except ConfigError:
                pass  # gone already (pruned)
    bindings = outer.bindings if outer is not None else ep.ports
    return NamespaceAttachment(hosts_file(hostname, ep.addresses, gateway=ep.gateway),
                               resolv, _binding_facts(bindings), release)


def require_networks(store_root: str, cfg: ContainerConfig, host: Any = None) -> None:
    """Check that the user-defined networks ``cfg`` names exist (as ``docker create`` does:
    an unknown network fails the create, not the first start). Opens the networks only when
    ``cfg`` names one.

    Raises:
        ConfigError: no such network.
        UnsupportedError: nft is missing.
    """
    from isolate.net import parse_network

    if cfg.network_mode_kind not in ("bridge", "network"):
        return
    wanted = [m.network for m in map(parse_network, (cfg.network, *cfg.extra_networks))
              if m.kind == "network"]
    if not wanted:
        return
    with open_networks(store_root, host) as nets:
        for name in wanted:
            if name != "bridge":
                nets.get(name)


# -- connect / disconnect of a container ------------------------------------------------------

def connect(request: NetworkRequest, pid: int | None, network: str, *,
            aliases: Sequence[str] = (), ip: str | None = None, ip6: str | None = None) -> None:
    """``docker network connect``: attach the container of ``request`` (its lock held;
    ``pid``: its first process while it runs, else None) to ``network`` -- at once when it
    runs (a new interface; its facts, ``/etc/hosts`` and ``resolv.conf`` follow), and at every
    later start.

    Raises:
        ConfigError: a bad alias or address, an unknown network, already connected.
        StateError: its network mode has no bridge (none, host, container:, pasta).
        NetworkError: the kernel or nft refused.
    """
    from isolate import _record
    from isolate.net import parse_ip, parse_network, parse_network_alias

    cfg = _config(request)
    mode = parse_network(network)
    if not mode.joins_network:
        raise ConfigError(f"cannot connect a container to {network!r}: not a bridge network")
    alias_list = [parse_network_alias(a) for a in aliases]
    ip = parse_ip(ip, 4) if ip is not None else None
    ip6 = parse_ip(ip6, 6) if ip6 is not None else None
    if cfg.network_mode_kind not in ("bridge", "network"):
        raise StateError(f"container {request.container_id[:12]} cannot be connected to "
                         f"network {network!r}: its network mode is {cfg.network}",
                         current=cfg.network, requested="connect")
    with open_networks(request.store_root, request.host) as nets:
        net = nets.get(mode.network) if mode.network != "bridge" else nets.ensure_default()
        if any(_same(nets, m.network, net.id) for m in _modes(cfg, request.state_dir)):
            raise ConfigError(f"endpoint with name {request.name} already exists in network "
                              f"{net.name}")
        if (alias_list or ip or ip6) and net.default:
            raise ConfigError("network-scoped aliases and user specified IP addresses are "
                              "supported only for containers in user defined networks")
        if pid is not None:
            m = _record.evolve(mode, aliases=(*mode.aliases, *alias_list), ip=mode.ip or ip,
                             ip6=mode.ip6 or ip6)
            ep = NetDriver._attach(nets, f"/proc/{pid}/ns/net", request, cfg, m, ())
            try:
                _refresh(nets, request, cfg, extra_endpoint=ep)
            except BaseException as exc:
                _undo(exc, lambda: nets.disconnect(ep), "disconnecting it again")
                raise
        _record_attachment(request.state_dir, net.name, connect={
            "network": net.name, "aliases": alias_list, "ip": ip, "ip6": ip6})


def disconnect(request: NetworkRequest, pid: int | None, network: str, *,
               force: bool = False) -> None:
    """``docker network disconnect``: detach the container of ``request`` (its lock held;
    ``pid`` while it runs) from ``network``, now and for later starts.

    Raises:
        ConfigError: it is not connected to that network (unless ``force``).
        NetworkError: a rule or device could not be removed.
    """
    cfg = _config(request)
    with open_networks(request.store_root, request.host) as nets:
        try:
            net = nets.get(network) if network != "bridge" else nets.ensure_default()
        except ConfigError:
            if force:
                return
            raise
        if not any(_same(nets, m.network, net.id) for m in _modes(cfg, request.state_dir)):
            if force:
                return
            raise ConfigError(f"container {request.container_id[:12]} is not connected to "
                              f"network {net.name}")
        if pid is not None:
            for ep in nets.endpoints(network=net.id, owner=owner_of(request.container_id)):
                nets.disconnect(ep)
            _refresh(nets, request, cfg)
        _record_attachment(request.state_dir, net.name, disconnect=True)


def _config(request: NetworkRequest) -> ContainerConfig:
    if request.config is None:
        raise ConfigError("the network driver needs the container's config")
    return request.config


def _same(nets: Networks, ref: str, net_id: str) -> bool:
    try:
        found = nets.ensure_default() if ref == "bridge" else nets.get(ref)
    except ConfigError:
        return False
    return found.id == net_id


def _record_attachment(state_dir: str, name: str, *, connect: dict[str, Any] | None = None,
                       disconnect: bool = False) -> None:
    path = os.path.join(state_dir, _ATTACHMENTS)
    att = _read(path) or {}
    connected = [c for c in att.get("connected") or () if c.get("network") != name]
    gone = [n for n in att.get("disconnected") or () if n != name]
    if connect is not None:
        connected.append(connect)
    if disconnect:
        gone.append(name)
    write_json(path, {"connected": connected, "disconnected": gone})


def _refresh(nets: Networks, request: NetworkRequest, cfg: ContainerConfig,
             extra_endpoint: Endpoint | None = None) -> None:
    """Rewrite a running container's facts, /etc/hosts and resolv.conf from its endpoints."""
    owner = owner_of(request.container_id)
    eps = nets.endpoints(owner=owner)
    if extra_endpoint is not None and all(e.id != extra_endpoint.id for e in eps):
        eps.append(extra_endpoint)
    hosts, resolv = _etc_files(nets, request, cfg, eps)
    facts_path = os.path.join(request.state_dir, _FACTS)
    facts = _read(facts_path) or {"driver": "bridge", "owner": owner}
    facts["ports"] = _binding_facts([b for e in eps for b in e.ports])
    facts["endpoints"] = {e.network_name: _endpoint_facts(e) for e in eps}
    write_json(facts_path, facts)
    for name, text in (("hosts", hosts), ("resolv.conf", resolv)):
        # In place: the running container's bind mount holds the inode.
        with open(os.path.join(request.state_dir, name), "w") as f:
            f.write(text)


# -- what ps, port and inspect show ------------------------------------------------------------

def published_ports(state_dir: str) -> list[dict[str, object]]:
    """The ports a container's current run publishes (from its facts, so reading them needs
    neither the host's namespace nor isolate.net): ``protocol``, ``host_ip``, ``host_port``,
    ``container_port`` each; [] when it publishes none or is not running."""
    facts = _read(os.path.join(state_dir, _FACTS)) or {}
    return [p for p in facts.get("ports") or () if isinstance(p, dict)]


def format_ports(ports: Sequence[Mapping[str, object]]) -> str:
    """Ports as ``docker ps`` shows them: ``0.0.0.0:9090->80/tcp, [::]:53->53/udp``."""
    out = []
    for p in ports:
        ip = str(p.get("host_ip") or "0.0.0.0")
        if ":" in ip:
            ip = f"[{ip}]"
        out.append(f"{ip}:{p['host_port']}->{p['container_port']}/{p['protocol']}")
    return ", ".join(out)


def network_settings(state_dir: str) -> dict[str, Any]:
    """Docker's ``NetworkSettings`` of ``inspect`` from the container's facts: ``Ports``
    (``{"80/tcp": [{"HostIp": ..., "HostPort": ...}]}``), ``Networks`` (per network: its id,
    the endpoint's id, addresses, gateway, aliases), ``IPAddress``/``Gateway`` of the default
    bridge."""
    facts = _read(os.path.join(state_dir, _FACTS)) or {}
    ports: dict[str, list[dict[str, str]]] = {}
    for p in published_ports(state_dir):
        ports.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": str(p.get("host_ip") or "0.0.0.0"), "HostPort": str(p["host_port"])})
    networks = {}
    for name, e in (facts.get("endpoints") or {}).items():
        networks[name] = {
            "NetworkID": e.get("network"), "EndpointID": e.get("endpoint"),
            "Gateway": e.get("gateway") or "", "IPAddress": e.get("ipv4") or "",
            "IPPrefixLen": e.get("prefixlen") or 0, "IPv6Gateway": e.get("gateway6") or "",
            "GlobalIPv6Address": e.get("ipv6") or "",
            "GlobalIPv6PrefixLen": e.get("prefixlen6") or 0,
            "Aliases": e.get("aliases") or None, "DNSNames": e.get("aliases") or None}
    default = networks.get("bridge", {})
    return {"Ports": ports, "Networks": networks,
            "IPAddress": default.get("IPAddress", ""), "Gateway": default.get("Gateway", ""),
            "IPPrefixLen": default.get("IPPrefixLen", 0)}


# -- what network ls and network inspect show -------------------------------------------------

def network_row(net: Network, *, no_trunc: bool = False) -> dict[str, str]:
    """A row of ``network ls``: ``ID`` (12 characters unless ``no_trunc``), ``Name``,
    ``Driver``, ``Scope``, ``IPv6``, ``Internal``, ``Labels``, ``CreatedAt``."""
    return {"ID": net.id if no_trunc else net.id[:12], "Name": net.name,
            "Driver": net.driver, "Scope": "local", "IPv6": str(bool(net.subnet6)).lower(),
            "Internal": str(net.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(net.labels.items())),
            "CreatedAt": net.created}


def network_doc(net: Network, endpoints: Sequence[Endpoint],
                name_of: Callable[[str], str | None] = lambda owner: None) -> dict[str, Any]:
    """``docker network inspect``'s document of ``net`` with its ``endpoints``:
    ``Containers`` keyed by container id (for a container's endpoint; the owner string for
    others, such as a sandbox's), ``name_of(container_id)`` naming those without a name on
    the network (the default bridge's)."""
    ipam = [{"Subnet": net.subnet, "Gateway": net.gateway}]
    if net.subnet6:
        ipam.append({"Subnet": net.subnet6, "Gateway": net.gateway6 or ""})
    members: dict[str, Any] = {}
    for ep in endpoints:
        kind, _, cid = ep.owner.partition(":")
        key = cid if kind == "container" and cid else ep.owner
        members[key] = {
            "Name": ep.name or (name_of(cid) if kind == "container" else None) or ep.owner,
            "EndpointID": ep.id,
            "IPv4Address": f"{ep.ipv4}/{ep.prefixlen}" if ep.ipv4 else "",
            "IPv6Address": f"{ep.ipv6}/{ep.prefixlen6}" if ep.ipv6 else ""}
    options = {"com.docker.network.bridge.name": net.bridge,
               "com.docker.network.driver.mtu": str(net.mtu)}
    return {"Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local",
            "Driver": net.driver, "EnableIPv6": bool(net.subnet6),
            "IPAM": {"Driver": "default", "Options": {}, "Config": ipam},
            "Internal": net.internal, "Attachable": False, "Ingress": False,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": members,
            "Options": options, "Labels": dict(net.labels)}


_DRIVER: NetworkDriver = NetDriver()
for _mode in ("bridge", "pasta", "slirp4netns", "ns"):
    register_driver(_mode, _DRIVER, fallback=_mode == "bridge")
del _mode

