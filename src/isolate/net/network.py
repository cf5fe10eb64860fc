"""Bridge networks and their endpoints: the interface the container layer calls.

Owns :class:`Networks` -- create/remove/list networks; connect a network namespace to one (a
veth pair: the host end on the network's bridge, the other end moved into the namespace with its
address, MTU and default route) and disconnect it; publish ports; prune what a crash left --
and the records it persists for that (:class:`Network`, :class:`Endpoint`). Every operation acts
in the namespace that plays "the host" (default: the caller's) and works from the persisted
state alone, so any process can tear down what another made. Everything is validated, and every
address and host port chosen, before the first device or rule is made; a failure half-way
undoes what was made.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import ipaddress
import os
import secrets
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from isolate.errors import ConfigError, IsolateError, NetworkError
from isolate.net._helpers import HelperProcess, start_time
from isolate.net._ns import NetNamespace, NetnsLike, _default_env
from isolate.net._store import Directory
from isolate.net.files import ResolvConf, host_resolv_conf, hosts_file, resolv_conf
from isolate.net.firewall import NetworkRules, PortForward, make_firewall
from isolate.net.ipam import AddressPool, IPNetwork, pick_subnet, pick_subnet6
from isolate.net.options import ExtraHost, check_name, parse_dns, parse_ip, parse_network_alias
from isolate.net.ports import PortBinding, PortMapping, parse_publish

if TYPE_CHECKING:
    from pyroute2 import IPRoute

__all__ = ["DEFAULT_NETWORK", "Endpoint", "Network", "Networks", "process_owner"]

#: The default network's name (Docker's ``bridge``); it has no resolver, as in Docker.
DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "isolate0"
BRIDGE_PREFIX = "isob"
VETH_PREFIX = "isov"
_IFA_F_NODAD = 0x02


def process_owner(pid: int) -> str:
    """An owner string naming process ``pid`` (with its start time, so a recycled pid is not
    taken for it): :class:`Networks`' default liveness check understands it."""
    started = start_time(pid)
    if started is None:
        raise ConfigError(f"no process {pid}")
    return f"pid:{pid}:{started}"


def default_alive(owner: str) -> bool:
    """Owners made by :func:`process_owner` are alive while that process runs; any other owner
    is taken to be alive (the caller's predicate decides about those)."""
    kind, _, rest = owner.partition(":")
    if kind != "pid":
        return True
    pid, _, started = rest.partition(":")
    try:
        return start_time(int(pid)) == int(started)
    except ValueError:
        return True


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@attrs.frozen
class Network:
    """A bridge network as persisted (``DIR/<id>/network.json``)."""

    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    subnet6: str | None = None
    gateway6: str | None = None
    mtu: int = 1500
    internal: bool = False
    dns: bool = True
    sysctls: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    labels: Mapping[str, str] = attrs.field(factory=dict, hash=False)
    created: str = ""
    default: bool = False
    state: str = "ready"
    driver: str = "bridge"

    @property
    def rules(self) -> NetworkRules:
        """What the firewall needs to know of this network."""
        subnets = tuple(s for s in (self.subnet, self.subnet6) if s)
        return NetworkRules(self.id, self.bridge, subnets, self.internal)

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data, for the state files."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Network:
        """The record back from what :meth:`to_json` wrote."""
        names = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@attrs.frozen
class Endpoint:
    """One namespace's attachment to one network (``DIR/<net>/endpoints/<id>.json``)."""

    id: str
    network: str
    network_name: str
    owner: str
    ifname: str
    host_ifname: str
    ipv4: str
    prefixlen: int
    gateway: str | None
    ipv6: str | None = None
    prefixlen6: int = 64
    gateway6: str | None = None
    name: str | None = None
    aliases: tuple[str, ...] = ()
    netns: str | None = None
    ports: tuple[PortBinding, ...] = ()
    proxy: HelperProcess | None = None
    dns: tuple[str, ...] = ()
    state: str = "ready"

    @property
    def addresses(self) -> list[str]:
        """The endpoint's addresses (IPv4 first), as strings."""
        return [a for a in (self.ipv4, self.ipv6) if a]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data, for the state files."""
        data = attrs.asdict(self, recurse=False)
        data["aliases"] = list(self.aliases)
        data["dns"] = list(self.dns)
        data["ports"] = [p.to_json() for p in self.ports]
        data["proxy"] = self.proxy.to_json() if self.proxy else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        """The record back from what :meth:`to_json` wrote."""
        names = {a.name for a in attrs.fields(cls)}
        d = {k: v for k, v in data.items() if k in names}
        d["aliases"] = tuple(d.get("aliases") or ())
        d["dns"] = tuple(d.get("dns") or ())
        d["ports"] = tuple(PortBinding.from_json(p) for p in d.get("ports") or ())
        d["proxy"] = HelperProcess.from_json(d.get("proxy"))
        return cls(**d)


def _nl_error(exc: BaseException, what: str) -> NetworkError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None) or errno.EIO
    return NetworkError(int(code), what, step="netlink")


@contextlib.contextmanager
def _netlink(what: str) -> Iterator[None]:
    """Turn pyroute2's NetlinkError (and OSError) into NetworkError naming ``what``."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except (NetlinkError, OSError) as exc:
        if isinstance(exc, IsolateError):
            raise
        raise _nl_error(exc, what) from exc


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(text)


class _Steps:
    """Teardown steps that keep going after a failure: each error gets a note saying what was
    being done to what; :meth:`done` raises the first (or, with ``pending``, an error already
    being raised, the failures become notes on it)."""

    def __init__(self, subject: str, pending: BaseException | None = None) -> None:
        self.subject = subject
        self.pending = pending
        self.errors: list[Exception] = []

    def run(self, fn: Callable[[], object], what: str) -> None:
        try:
            fn()
        except Exception as exc:
            _note(exc, f"while {what} of {self.subject}")
            if self.pending is not None:
                _note(self.pending, f"also failed: {what}: {exc}")
            else:
                self.errors.append(exc)

    def done(self) -> None:
        if self.errors:
            raise self.errors[0]


class Networks:
    """Bridge networks kept in ``directory``, built in the namespace ``host``.

    ``firewall``: ``"nftables"`` (default) or ``"none"`` (no rules: published ports go through
    the userland proxy, no outbound masquerade). ``alive(owner) -> bool`` tells whether an
    endpoint's owner (a container id, say) still exists; endpoints of dead owners are removed
    on the next change and by :meth:`prune` (default: :func:`default_alive`). ``upstream``:
    the resolvers' forwarders (``"ADDR"`` or ``"ADDR#PORT"``; default: the host's
    /etc/resolv.conf). ``userland_proxy``: ``"auto"`` (only where DNAT cannot serve) or
    ``"always"``.

    Open it (``with Networks(...) as nets``) and close it when done; it holds a handle on the
    host namespace. Raises UnsupportedError (nft missing), NetworkError (cannot open ``host``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, host: NetnsLike = None,
                 firewall: str = "nftables", alive: Callable[[str], bool] | None = None,
                 upstream: Sequence[str] | None = None, userland_proxy: str = "auto") -> None:
        if userland_proxy not in ("auto", "always"):
            raise ConfigError(f"userland_proxy must be 'auto' or 'always', not "
                              f"{userland_proxy!r}")
        self.dir = Directory(directory)
        self._upstream = [parse_dns(u) for u in upstream] if upstream is not None else None
        self._alive = alive or default_alive
        self.userland_proxy = userland_proxy
        self.host = NetNamespace.of(host)
        # A netlink socket in the host namespace, kept while this object is open (each costs
        # a child and a socket) -- for the thread that opened it only: pyroute2's sockets
        # keep per-thread state. Other threads open one per operation.
        self._ipr: IPRoute | None = None
        self._owner_thread = threading.get_ident()
        try:
            self.firewall = make_firewall(firewall, self.host)
        except BaseException:
            self.host.close()
            raise

    def close(self) -> None:
        """Release what this handle holds (fds, netlink sockets); idempotent."""
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()
        self.host.close()

    @contextlib.contextmanager
    def _host_netlink(self) -> Iterator[IPRoute]:
        if threading.get_ident() != self._owner_thread:
            with self.host.netlink() as ipr:
                yield ipr
            return
        if self._ipr is None:
            self._ipr = self.host.netlink()
        yield self._ipr

    def __enter__(self) -> Networks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------
    def _all_networks(self) -> list[Network]:
        out = []
        for nid in self.dir.list():
            if len(nid) != 64 or not os.path.isdir(self.dir.file(nid)):
                continue  # host.json and other files beside the network dirs
            data = self.dir.read(nid, "network.json")
            if data is not None:
                out.append(Network.from_json(data))
        return out

    def _endpoints(self, net_id: str) -> list[Endpoint]:
        out = []
        for name in self.dir.list(net_id, "endpoints"):
            data = self.dir.read(net_id, "endpoints", name)
            if data is not None:
                out.append(Endpoint.from_json(data))
        return out

    def networks(self) -> list[Network]:
        """Every network, by name."""
        with self.dir.locked():
            return sorted((n for n in self._all_networks() if n.state == "ready"),
                          key=lambda n: n.name)

    def get(self, ref: str) -> Network:
        """The network named ``ref``, or whose id is or starts with ``ref``.

        Raises ConfigError (no such network, or an ambiguous id prefix).
        """
        with self.dir.locked():
            return self._get(ref)

    def _get(self, ref: str) -> Network:
        nets = [n for n in self._all_networks() if n.state == "ready"]
        for n in nets:
            if n.name == ref or n.id == ref:
                return n
        found = [n for n in nets if ref and n.id.startswith(ref)]
        if len(found) == 1:
            return found[0]
        if found:
            raise ConfigError(f"network id prefix {ref!r} is ambiguous")
        raise ConfigError(f"no such network: {ref!r}")

    def endpoints(self, *, network: str | None = None, owner: str | None = None
                  ) -> list[Endpoint]:
        """Endpoints, optionally of one network and/or one owner."""
        with self.dir.locked():
            nets = [self._get(network)] if network is not None else self._all_networks()
            eps = [e for n in nets for e in self._endpoints(n.id) if e.state == "ready"]
        return [e for e in eps if owner is None or e.owner == owner]

    # -- networks ---------------------------------------------------------------------------
    def create(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
               ipv6: bool = False, subnet6: str | None = None, gateway6: str | None = None,
               mtu: int = 1500, internal: bool = False, dns: bool = True,
               sysctls: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> Network:
        """Create a bridge network (Docker's ``network create``).

        ``subnet`` (CIDR; default: a free one of Docker's pools) and ``gateway`` (default: its
        first address); ``ipv6`` adds an IPv6 subnet (``subnet6``, default a unique-local
        /64); ``internal``: no traffic in or out of the network, only between its members;
        ``dns``: a resolver answering the members' names; ``sysctls``: ``net.*`` settings
        applied inside each member's namespace (``IFNAME`` in a name becomes its interface).

        Raises ConfigError (bad or duplicate name, a subnet overlapping a route of the host or
        another network, a gateway outside its subnet), NetworkError (the kernel or nft
        refused; nothing is left behind).
        """
        check_name(name)
        with self.dir.locked():
            self._recover()
            return self._create(name, subnet=subnet, gateway=gateway, ipv6=ipv6,
                                subnet6=subnet6, gateway6=gateway6, mtu=mtu,
                                internal=internal, dns=dns, sysctls=dict(sysctls or {}),
                                labels=dict(labels or {}))

    def ensure_default(self) -> Network:
        """The default network ``bridge`` (bridge ``isolate0``, no resolver), created on first
        use."""
        with self.dir.locked():
            self._recover()
            return self._default()

    def _default(self) -> Network:
        for n in self._all_networks():
            if n.default and n.state == "ready":
                return n
        return self._create(DEFAULT_NETWORK, dns=False, default=True)

    def _create(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                ipv6: bool = False, subnet6: str | None = None, gateway6: str | None = None,
                mtu: int = 1500, internal: bool = False, dns: bool = True,
                sysctls: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                default: bool = False) -> Network:
        existing = self._all_networks()
        if any(n.name == name for n in existing):
            raise ConfigError(f"network {name!r} already exists")
        if not isinstance(mtu, int) or not 68 <= mtu <= 65535:
            raise ConfigError(f"mtu must be 68-65535, not {mtu!r}")
        for key in sysctls or {}:
            if not key.startswith("net."):
                raise ConfigError(f"network sysctl {key!r} is not a net.* sysctl")
        nid = secrets.token_hex(32)
        taken = self._taken_subnets(existing)
        net4 = self._subnet(subnet, 4, taken) if subnet else pick_subnet(taken)
        gw4 = self._gateway(gateway, net4)
        net6 = gw6 = None
        if ipv6 or subnet6:
            net6 = self._subnet(subnet6, 6, taken) if subnet6 else pick_subnet6(nid, taken)
            gw6 = self._gateway(gateway6, net6)
        elif gateway6:
            raise ConfigError("gateway6 needs an IPv6 network (ipv6=True)")
        network = Network(
            id=nid, name=name, bridge=DEFAULT_BRIDGE if default else BRIDGE_PREFIX + nid[:11],
            subnet=str(net4), gateway=str(gw4), subnet6=str(net6) if net6 else None,
            gateway6=str(gw6) if gw6 else None, mtu=mtu, internal=internal, dns=dns,
            sysctls=sysctls or {}, labels=labels or {}, created=_now(), default=default,
            state="creating")
        self.dir.write(network.to_json(), nid, "network.json")
        try:
            self._make_bridge(network)
            guard = self._enable_forwarding(network)
            self.firewall.setup_network(network.rules, guard_forwarding=guard)
        except BaseException as exc:
            self._remove_network(network, existing, exc)
            raise
        network = attrs.evolve(network, state="ready")
        self.dir.write(network.to_json(), nid, "network.json")
        return network

    def _taken_subnets(self, existing: Iterable[Network]) -> list[IPNetwork]:
        taken: list[IPNetwork] = []
        for n in existing:
            taken += [ipaddress.ip_network(s) for s in (n.subnet, n.subnet6) if s]
        ours = {n.bridge for n in existing}
        with self._host_netlink() as ipr, _netlink("list the host's routes"):
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in ipr.get_routes(family=family, table=254):
                    if not r["dst_len"] or names.get(r.get_attr("RTA_OIF")) in ours:
                        continue
                    dst = r.get_attr("RTA_DST")
                    if dst is None:
                        continue
                    net = ipaddress.ip_network(f"{dst}/{r['dst_len']}", strict=False)
                    if net.version == 6 and net.is_link_local:
                        continue
                    taken.append(net)
        return taken

    @staticmethod
    def _subnet(text: str, version: int, taken: list[IPNetwork]) -> IPNetwork:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            raise ConfigError(f"invalid subnet {text!r}: {exc}") from None
        if net.version != version:
            raise ConfigError(f"subnet {text!r} is not an IPv{version} network")
        if net.num_addresses < 4:
            raise ConfigError(f"subnet {text!r} is too small")
        for t in taken:
            if net.overlaps(t):  # type: ignore[arg-type]
                raise ConfigError(f"subnet {net} overlaps {t}, a route of the host or another "
                                  "network's subnet")
        return net

    @staticmethod
    def _gateway(text: str | None, net: IPNetwork) -> ipaddress.IPv4Address | \
            ipaddress.IPv6Address:
        if text is None:
            return net.network_address + 1
        try:
            gw = ipaddress.ip_address(text)
        except ValueError:
            raise ConfigError(f"invalid gateway {text!r}") from None
        if gw not in net or gw == net.network_address or (
                net.version == 4 and gw == net.broadcast_address):
            raise ConfigError(f"gateway {gw} is not a host address of subnet {net}")
        return gw

    def _make_bridge(self, n: Network) -> None:
        with self._host_netlink() as ipr:
            with _netlink(f"create bridge {n.bridge}"):
                # A bridge without a MAC of its own takes its ports' lowest one, and changes
                # it when that port goes: every member's ARP entry for the gateway goes stale.
                mac = "02:" + ":".join(n.id[i:i + 2] for i in range(0, 10, 2))
                ipr.link("add", ifname=n.bridge, kind="bridge", mtu=n.mtu, address=mac)
            idx = ipr.link_lookup(ifname=n.bridge)[0]
            # The host's loopback reaches published ports through this bridge (DNAT from
            # 127.0.0.1 needs route_localnet on the way out); and no router advertisements.
            sysctls = {f"net.ipv4.conf.{n.bridge}.route_localnet": "1"}
            if n.subnet6:
                sysctls[f"net.ipv6.conf.{n.bridge}.accept_ra"] = "0"
            self.host.write_sysctls(sysctls)
            with _netlink(f"address bridge {n.bridge}"):
                net4 = ipaddress.ip_network(n.subnet)
                ipr.addr("add", index=idx, address=n.gateway, prefixlen=net4.prefixlen)
                if n.subnet6 and n.gateway6:
                    ipr.addr("add", index=idx, address=n.gateway6,
                             prefixlen=ipaddress.ip_network(n.subnet6).prefixlen,
                             flags=_IFA_F_NODAD)
                ipr.link("set", index=idx, state="up")

    def _enable_forwarding(self, n: Network) -> bool:
        """Turn on forwarding in the host namespace; remember what it was (restored when the
        last network goes). Returns whether isolate turned IPv4 forwarding on."""
        state = self.dir.read("host.json") or {}
        before: dict[str, str] = dict(state.get("sysctls") or {})
        keys = ["net.ipv4.ip_forward"]
        if n.subnet6:
            keys.append("net.ipv6.conf.all.forwarding")
        changed = False
        for key in keys:
            if key not in before:
                value = self.host.read_sysctl(key)
                before[key] = value
                changed = True
        if changed:
            self.dir.write({"sysctls": before}, "host.json")
        self.host.write_sysctls({k: "1" for k in keys})
        return before.get("net.ipv4.ip_forward") == "0"

    def remove(self, ref: str) -> None:
        """Remove a network (Docker's ``network rm``).

        Raises ConfigError (no such network; it still has endpoints), NetworkError.
        """
        with self.dir.locked():
            self._recover()
            n = self._get(ref)
            eps = self._endpoints(n.id)
            if eps:
                who = ", ".join(sorted({e.name or e.owner for e in eps}))
                raise ConfigError(f"network {n.name!r} is in use by {who}")
            self._remove_network(n, [x for x in self._all_networks() if x.id != n.id])

    def _remove_network(self, n: Network, others: Sequence[Network],
                        pending: BaseException | None = None) -> None:
        """Undo everything a network has, from its record; keep going after a failure."""
        steps = _Steps(f"network {n.name}", pending)
        live = [o for o in others if o.id != n.id]
        steps.run(lambda: self._stop_resolver(n), "stopping the resolver")
        steps.run(lambda: self.firewall.teardown_network(n.rules, complete=not live),
                  "removing the firewall rules")
        steps.run(lambda: self._delete_link(n.bridge), "deleting the bridge")
        if not live:
            steps.run(self._restore_forwarding, "restoring the host's forwarding sysctls")
        steps.done()
        self.dir.remove(n.id)

    def _restore_forwarding(self) -> None:
        state = self.dir.read("host.json") or {}
        before = state.get("sysctls") or {}
        if before:
            self.host.write_sysctls(before)
        self.dir.remove("host.json")

    def _delete_link(self, name: str) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        with self._host_netlink() as ipr:
            try:
                ipr.link("del", ifname=name)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise _nl_error(exc, f"delete {name}") from exc

    # -- endpoints --------------------------------------------------------------------------
    def connect(self, network: str, netns: NetnsLike, *, owner: str,
                name: str | None = None, aliases: Sequence[str] = (), ip: str | None = None,
                ip6: str | None = None, ports: Sequence[str | PortMapping] = (),
                dns: Sequence[str] = (), ifname: str | None = None) -> Endpoint:
        """Attach the network namespace ``netns`` to ``network`` (``"bridge"``: the default
        network, created on first use).

        ``owner`` names who holds the endpoint (a container id), for :meth:`release` and for
        the liveness check of :meth:`prune`; ``name`` and ``aliases`` are what the network's
        resolver answers for it; ``ip``/``ip6`` request addresses (default: the next free
        ones); ``ports`` are ``-p`` specs or :class:`PortMapping` records; ``dns``: the
        container's own ``--dns`` servers (its queries are forwarded there); ``ifname``: the
        interface inside (default: the first free ``ethN``).

        Raises ConfigError (unknown network, bad name/alias/address, address taken, malformed
        port, host port in use, ports on an internal network), NetworkError (the kernel, nft
        or a helper failed: nothing of the endpoint is left).
        """
        if not owner or not isinstance(owner, str):
            raise ConfigError(f"an endpoint needs an owner, not {owner!r}")
        if name is not None:
            name = parse_network_alias(name)
        alias_list = tuple(parse_network_alias(a) for a in aliases)
        mappings = [parse_publish(p) if isinstance(p, str) else p for p in ports]
        servers = tuple(parse_dns(d) for d in dns)
        req4 = parse_ip(ip, 4) if ip is not None else None
        req6 = parse_ip(ip6, 6) if ip6 is not None else None
        if ifname is not None and (not ifname or len(ifname) > 15 or "/" in ifname):
            raise ConfigError(f"invalid interface name {ifname!r}")
        with self.dir.locked():
            self._recover()
            net = self._default() if network == DEFAULT_NETWORK else self._get(network)
            if mappings and net.internal:
                raise ConfigError(f"network {net.name!r} is internal: nothing can be published "
                                  "from it")
            if req6 and not net.subnet6:
                raise ConfigError(f"network {net.name!r} has no IPv6 subnet for ip6={req6}")
            with NetNamespace.of(netns) as inner:
                return self._connect(net, inner, owner=owner, name=name, aliases=alias_list,
                                     req4=req4, req6=req6, mappings=mappings, servers=servers,
                                     ifname=ifname)

    def _connect(self, net: Network, inner: NetNamespace, *, owner: str, name: str | None,
                 aliases: tuple[str, ...], req4: str | None, req6: str | None,
                 mappings: list[PortMapping], servers: tuple[str, ...],
                 ifname: str | None) -> Endpoint:
        if inner == self.host:
            raise ConfigError("cannot connect the host's own network namespace to a network")
        eid = secrets.token_hex(16)
        pool4, pool6 = self._pools(net)
        ipv4 = pool4.allocate(eid, req4)
        ipv6 = pool6.allocate(eid, req6) if pool6 is not None else None
        with inner.netlink() as cipr:
            return self._connect_with(net, inner, cipr, eid, owner, name, aliases, ipv4, ipv6,
                                      (pool4, pool6), mappings, servers, ifname)

    def _connect_with(self, net: Network, inner: NetNamespace, cipr: IPRoute, eid: str,
                      owner: str, name: str | None, aliases: tuple[str, ...], ipv4: str,
                      ipv6: str | None, pools: tuple[AddressPool, AddressPool | None],
                      mappings: list[PortMapping], servers: tuple[str, ...],
                      ifname: str | None) -> Endpoint:
        inside = ifname or self._free_ifname(cipr)
        bindings, held = self._resolve_ports(mappings, ipv6 is not None)
        n4 = ipaddress.ip_network(net.subnet)
        ep = Endpoint(
            id=eid, network=net.id, network_name=net.name, owner=owner, ifname=inside,
            host_ifname=VETH_PREFIX + eid[:11], ipv4=ipv4, prefixlen=n4.prefixlen,
            gateway=None if net.internal else net.gateway, ipv6=ipv6,
            prefixlen6=ipaddress.ip_network(net.subnet6).prefixlen if net.subnet6 else 64,
            gateway6=None if net.internal else net.gateway6, name=name, aliases=aliases,
            netns=inner.path, ports=tuple(bindings), dns=servers, state="creating")
        try:
            self._save_pools(net, *pools)
            self.dir.write(ep.to_json(), net.id, "endpoints", eid + ".json")
            self._make_veth(net, ep, inner, cipr)
            ep = self._forward(net, ep, held)
            ep = attrs.evolve(ep, state="ready")
            self.dir.write(ep.to_json(), net.id, "endpoints", eid + ".json")
            self._names_changed(net)
        except BaseException as exc:
            for s in held.values():
                s.close()
            try:
                self._teardown(net, ep)
            except Exception as undo:
                _note(exc, f"undoing the endpoint also failed: {undo}")
            raise
        return ep

    def publish(self, endpoint: Endpoint | str, ports: Sequence[str | PortMapping]
                ) -> Endpoint:
        """Publish more ports of an endpoint (``-p`` specs or records); returns the updated
        endpoint. Raises ConfigError (malformed, in use, internal network), NetworkError."""
        mappings = [parse_publish(p) if isinstance(p, str) else p for p in ports]
        with self.dir.locked():
            self._recover()
            net, ep = self._find(endpoint)
            if mappings and net.internal:
                raise ConfigError(f"network {net.name!r} is internal: nothing can be published "
                                  "from it")
            bindings, held = self._resolve_ports(mappings, ep.ipv6 is not None)
            old = ep
            try:
                if old.proxy is not None:
                    old.proxy.stop()
                ep = attrs.evolve(ep, ports=ep.ports + tuple(bindings), proxy=None)
                self.dir.write(ep.to_json(), net.id, "endpoints", ep.id + ".json")
                ep = self._forward(net, ep, held, only=tuple(bindings))
                self.dir.write(ep.to_json(), net.id, "endpoints", ep.id + ".json")
            except BaseException:
                for s in held.values():
                    s.close()
                raise
            return ep

    def disconnect(self, endpoint: Endpoint | str) -> None:
        """Detach an endpoint (by record or id): its veth, rules, proxy and address lease go;
        the network's resolver goes with its last endpoint. Raises ConfigError (unknown
        endpoint), NetworkError."""
        with self.dir.locked():
            self._recover()
            net, ep = self._find(endpoint)
            self._teardown(net, ep)

    def release(self, owner: str) -> list[Endpoint]:
        """Disconnect every endpoint of ``owner`` (a container that stopped), from the
        persisted state alone. Returns what was removed. Raises NetworkError."""
        with self.dir.locked():
            self._recover()
            gone = []
            for net in self._all_networks():
                for ep in self._endpoints(net.id):
                    if ep.owner == owner:
                        self._teardown(net, ep)
                        gone.append(ep)
            return gone

    def _find(self, endpoint: Endpoint | str) -> tuple[Network, Endpoint]:
        eid = endpoint.id if isinstance(endpoint, Endpoint) else endpoint
        for net in self._all_networks():
            data = self.dir.read(net.id, "endpoints", eid + ".json")
            if data is not None:
                return net, Endpoint.from_json(data)
        raise ConfigError(f"no such endpoint: {eid!r}")

    def _pools(self, net: Network) -> tuple[AddressPool, AddressPool | None]:
        """The network's address pools. The leases are the endpoint records themselves (one
        truth: a record written is an address taken, a record removed an address freed);
        ``ipam.json`` only remembers the last address given, for the round-robin."""
        data = self.dir.read(net.id, "ipam.json") or {}
        eps = self._endpoints(net.id)
        pool4 = AddressPool(ipaddress.ip_network(net.subnet), ipaddress.ip_address(net.gateway),
                            {e.ipv4: e.id for e in eps}, data.get("4"))
        pool6 = None
        if net.subnet6 and net.gateway6:
            pool6 = AddressPool(ipaddress.ip_network(net.subnet6),
                                ipaddress.ip_address(net.gateway6),
                                {e.ipv6: e.id for e in eps if e.ipv6}, data.get("6"))
        return pool4, pool6

    def _save_pools(self, net: Network, pool4: AddressPool, pool6: AddressPool | None) -> None:
        # Only a hint (which address was given last): losing it changes no lease.
        data: dict[str, Any] = {"4": pool4.last, "6": pool6.last if pool6 else None}
        self.dir.write(data, net.id, "ipam.json", durable=False)

    def _free_ifname(self, cipr: IPRoute) -> str:
        with _netlink("list the container's interfaces"):
            names = {link.get_attr("IFLA_IFNAME") for link in cipr.get_links()}
        for i in range(4096):
            if f"eth{i}" not in names:
                return f"eth{i}"
        raise ConfigError("no free ethN interface name in the namespace")  # pragma: no cover

    def _make_veth(self, net: Network, ep: Endpoint, inner: NetNamespace,
                   cipr: IPRoute) -> None:
        with self._host_netlink() as ipr:
            with _netlink(f"create veth {ep.host_ifname} for {ep.ifname}"):
                bridge = ipr.link_lookup(ifname=net.bridge)
                if not bridge:
                    raise NetworkError(errno.ENODEV, f"bridge {net.bridge} of network "
                                       f"{net.name!r} is missing (run prune)", step="netlink")
                ipr.link("add", ifname=ep.host_ifname, kind="veth", mtu=net.mtu,
                         peer={"ifname": ep.ifname, "net_ns_fd": inner.fileno(),
                               "mtu": net.mtu})
                host_idx = ipr.link_lookup(ifname=ep.host_ifname)[0]
                ipr.link("set", index=host_idx, master=bridge[0], state="up")
            # A container reaching a published port of its own network through the host is
            # routed back out of the bridge it came in by, so the host answers with an ICMP
            # redirect ("go straight to it") that would bypass the DNAT: ignore redirects.
            sysctls = {"net.ipv4.conf.all.accept_redirects": "0",
                       f"net.ipv4.conf.{ep.ifname}.accept_redirects": "0"}
            sysctls.update((k.replace("IFNAME", ep.ifname), v) for k, v in net.sysctls.items())
            if ep.ipv6:
                sysctls[f"net.ipv6.conf.{ep.ifname}.accept_ra"] = "0"
                sysctls[f"net.ipv6.conf.{ep.ifname}.disable_ipv6"] = "0"
            inner.write_sysctls(sysctls)
            with _netlink(f"configure {ep.ifname} in the container's namespace"):
                idx = cipr.link_lookup(ifname=ep.ifname)[0]
                cipr.addr("add", index=idx, address=ep.ipv4, prefixlen=ep.prefixlen)
                if ep.ipv6:
                    cipr.addr("add", index=idx, address=ep.ipv6, prefixlen=ep.prefixlen6,
                              flags=_IFA_F_NODAD)
                cipr.link("set", index=idx, state="up")
                lo = cipr.link_lookup(ifname="lo")
                if lo:
                    cipr.link("set", index=lo[0], state="up")
                for family, gw in ((socket.AF_INET, ep.gateway),
                                   (socket.AF_INET6, ep.gateway6)):
                    if gw is None:
                        continue
                    has_default = any(r["dst_len"] == 0 and r.get_attr("RTA_GATEWAY")
                                      for r in cipr.get_routes(family=family, table=254))
                    if not has_default:
                        cipr.route("add", dst="default", gateway=gw, oif=idx, family=family)

    # -- ports ------------------------------------------------------------------------------
    def _all_bindings(self) -> list[PortBinding]:
        return [b for n in self._all_networks() for e in self._endpoints(n.id) for b in e.ports]

    def _resolve_ports(self, mappings: Sequence[PortMapping], has_v6: bool
                       ) -> tuple[list[PortBinding], dict[PortBinding, socket.socket]]:
        """Host ports for ``mappings``, each checked free (our records and a bind in the host
        namespace). Sockets of bindings the proxy will serve are kept bound, by binding."""
        taken = self._all_bindings()
        out: list[PortBinding] = []
        held: dict[PortBinding, socket.socket] = {}
        try:
            for m in mappings:
                for i, cport in enumerate(m.container_ports):
                    if m.ephemeral:
                        cands: Iterable[int] = [0]
                    elif m.any_of_range:
                        cands = range(m.host_start, m.host_end + 1)
                    else:
                        cands = [m.host_start + i]
                    b, sock = self._bind_one(m, cport, cands, taken + out, has_v6)
                    out.append(b)
                    if sock is not None:
                        held[b] = sock
        except BaseException:
            for s in held.values():
                s.close()
            raise
        return out, held

    def _needs_proxy(self, b: PortBinding, has_v6: bool) -> bool:
        if self.firewall.name == "none" or self.userland_proxy == "always":
            return True
        if b.host_ip and ipaddress.ip_address(b.host_ip).is_loopback and b.family == 6:
            return True  # the kernel never routes ::1 out of lo: DNAT cannot serve it
        return b.family == 6 and not has_v6

    def _bind_one(self, m: PortMapping, cport: int, cands: Iterable[int],
                  taken: list[PortBinding], has_v6: bool
                  ) -> tuple[PortBinding, socket.socket | None]:
        family = socket.AF_INET6 if ":" in m.host_ip else socket.AF_INET
        kind = socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM
        addr = m.host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        last: OSError | None = None
        for attempt in range(32):
            for port in cands:
                if port and any(PortBinding(m.protocol, m.host_ip, port, cport).overlaps(t)
                                for t in taken):
                    continue
                sock = self.host.socket(family, kind)
                try:
                    if kind == socket.SOCK_STREAM:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((addr, port))
                except OSError as exc:
                    sock.close()
                    last = exc
                    if exc.errno == errno.EADDRNOTAVAIL:
                        raise ConfigError(f"host address {m.host_ip} of -p {m} is not an "
                                          "address of the host") from None
                    continue
                got = sock.getsockname()[1]
                b = PortBinding(m.protocol, m.host_ip, got, cport)
                if any(b.overlaps(t) for t in taken):
                    sock.close()
                    continue  # an ephemeral port one of our DNAT rules already serves
                if self._needs_proxy(b, has_v6):
                    if kind == socket.SOCK_STREAM:
                        sock.listen(128)
                    return b, sock
                sock.close()
                return b, None
            if list(cands) != [0] or attempt > 30:
                break
        port_text = f"{m.host_start}" if m.host_start == m.host_end else \
            f"{m.host_start}-{m.host_end}"
        where = f"{m.host_ip}:" if m.host_ip else ""
        reason = f" ({last.strerror})" if last is not None else " (published by another endpoint)"
        raise ConfigError(f"host port {where}{port_text}/{m.protocol} is already in use"
                          f"{reason}")

    def _forward(self, net: Network, ep: Endpoint, held: dict[PortBinding, socket.socket],
                 only: tuple[PortBinding, ...] | None = None) -> Endpoint:
        """Set up the DNAT rules for the endpoint's (new) bindings and start its proxy for the
        held sockets; returns the endpoint with its proxy recorded."""
        new = only if only is not None else ep.ports
        dnat = tuple(b for b in new if b not in held)
        if dnat:
            self.firewall.setup_port_forward(PortForward(net.rules, ep.ipv4, ep.ipv6, dnat))
        if only is not None:
            # A publish after connect restarts the proxy with every socket it serves: re-bind
            # the old ones (their ports are ours by record, so this cannot race).
            for b in ep.ports:
                if b not in only and self._needs_proxy(b, ep.ipv6 is not None):
                    held[b] = self._bind_again(b)
        if not held:
            return ep
        proxy = self._start_proxy(net, ep, held)
        return attrs.evolve(ep, proxy=proxy)

    def _bind_again(self, b: PortBinding) -> socket.socket:
        family = socket.AF_INET6 if b.family == 6 else socket.AF_INET
        kind = socket.SOCK_STREAM if b.protocol == "tcp" else socket.SOCK_DGRAM
        sock = self.host.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((b.host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"),
                       b.host_port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
        except OSError as exc:
            sock.close()
            raise NetworkError(exc.errno or errno.EIO, f"bind host port {b}",
                               step="bind") from exc
        return sock

    def _start_proxy(self, net: Network, ep: Endpoint,
                     held: dict[PortBinding, socket.socket]) -> HelperProcess:
        args: list[str] = []
        fds = self._std_fds(net, "proxy.log")
        try:
            for b, sock in held.items():
                target = ep.ipv6 if (b.family == 6 and ep.ipv6) else ep.ipv4
                if ":" in target:
                    target = f"[{target}]"
                args += [f"--{b.protocol}", f"{len(fds)}={target}:{b.container_port}"]
                fds.append(sock.fileno())
            record = self.dir.file(net.id, "endpoints", ep.id + ".json")
            child = self.host.spawn([sys.executable, "-m", "isolate.net._proxyd", "--for",
                                     record, *args],
                                    env=_python_env(), fds=fds, detach=True)
        finally:
            for fd in fds[:3]:
                os.close(fd)
            for sock in held.values():
                sock.close()
        pid = child.pid
        child.close()
        return HelperProcess.of(pid, f"port proxy of endpoint {ep.id[:12]}")

    def _std_fds(self, net: Network, log: str) -> list[int]:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        null2 = os.dup(null)
        path = self.dir.file(net.id, log)
        try:
            err = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            os.close(null)
            os.close(null2)
            raise NetworkError(exc.errno or errno.EIO, f"open {path}", path,
                               step="store") from exc
        return [null, null2, err]

    # -- names ------------------------------------------------------------------------------
    def _upstream_servers(self) -> list[str]:
        if self._upstream is not None:
            return list(self._upstream)
        return host_resolv_conf().nameservers

    def _names_changed(self, net: Network) -> None:
        """Rewrite the network's names file; start or stop its resolver to match."""
        if not net.dns:
            return
        eps = [e for e in self._endpoints(net.id) if e.state == "ready"]
        if not eps:
            self._stop_resolver(net)
            self.dir.remove(net.id, "names.json")
            return
        names: dict[str, list[str]] = {}
        reverse: dict[str, str] = {}
        clients: dict[str, list[str]] = {}
        for e in eps:
            for n in filter(None, (e.name, *e.aliases)):
                names.setdefault(n.lower(), []).extend(e.addresses)
            if e.name:
                for a in e.addresses:
                    reverse[a] = e.name
            if e.dns:
                for a in e.addresses:
                    clients[a] = list(e.dns)
        self.dir.write({"names": names, "reverse": reverse, "clients": clients,
                        "upstream": self._upstream_servers(), "forward": not net.internal,
                        "internal": net.internal}, net.id, "names.json", durable=False)
        resolver = HelperProcess.from_json(self.dir.read(net.id, "resolver.json"))
        if resolver is None or not resolver.alive():
            self._start_resolver(net)

    def _start_resolver(self, net: Network) -> None:
        socks: list[socket.socket] = []
        args: list[str] = []
        try:
            for addr, family in ((net.gateway, socket.AF_INET),
                                 (net.gateway6, socket.AF_INET6)):
                if addr is None:
                    continue
                for kind, flag in ((socket.SOCK_DGRAM, "--udp"), (socket.SOCK_STREAM, "--tcp")):
                    s = self.host.socket(family, kind)
                    socks.append(s)
                    if kind == socket.SOCK_STREAM:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        s.bind((addr, 53))
                    except OSError as exc:
                        raise NetworkError(exc.errno or errno.EIO, f"bind the resolver of "
                                           f"network {net.name!r} to {addr}:53",
                                           step="bind") from exc
                    if kind == socket.SOCK_STREAM:
                        s.listen(64)
                    args += [flag, str(3 + len(socks) - 1)]
            fds = self._std_fds(net, "dns.log")
            try:
                child = self.host.spawn(
                    [sys.executable, "-m", "isolate.net._dnsd", "--names",
                     self.dir.file(net.id, "names.json"), *args],
                    env=_python_env(), fds=fds + [s.fileno() for s in socks], detach=True)
            finally:
                for fd in fds:
                    os.close(fd)
        finally:
            for s in socks:
                s.close()
        helper = HelperProcess.of(child.pid, f"resolver of network {net.name}")
        child.close()
        self.dir.write(helper.to_json(), net.id, "resolver.json")

    def _stop_resolver(self, net: Network) -> None:
        resolver = HelperProcess.from_json(self.dir.read(net.id, "resolver.json"))
        if resolver is not None:
            resolver.stop()
            self.dir.remove(net.id, "resolver.json")

    # -- teardown and recovery --------------------------------------------------------------
    def _teardown(self, net: Network, ep: Endpoint) -> None:
        """Remove an endpoint from its record: proxy, rules, veth, lease, record, name.
        Keeps going after a failure and raises the first (the record then stays, so a later
        prune tries again)."""
        steps = _Steps(f"endpoint {ep.id[:12]}")
        if ep.proxy is not None:
            steps.run(ep.proxy.stop, "stopping the port proxy")
        dnat = tuple(b for b in ep.ports if not self._needs_proxy(b, ep.ipv6 is not None))
        if dnat:
            steps.run(lambda: self.firewall.teardown_port_forward(
                PortForward(net.rules, ep.ipv4, ep.ipv6, dnat)), "removing the port forwards")
        steps.run(lambda: self._delete_link(ep.host_ifname), "deleting the veth")
        steps.done()
        self.dir.remove(net.id, "endpoints", ep.id + ".json")  # frees its addresses
        self._names_changed(net)

    def _recover(self) -> list[str]:
        """Under the lock: roll back what a crashed operation left half-made, and remove the
        endpoints whose owner is gone. Returns descriptions of what was removed."""
        done = []
        nets = self._all_networks()
        for net in nets:
            if net.state != "ready":
                self._remove_network(net, [n for n in nets if n.id != net.id])
                done.append(f"half-made network {net.name}")
                continue
            for ep in self._endpoints(net.id):
                if ep.state != "ready":
                    self._teardown(net, ep)
                    done.append(f"half-made endpoint {ep.id[:12]} on {net.name}")
                elif not self._alive(ep.owner):
                    self._teardown(net, ep)
                    done.append(f"endpoint {ep.id[:12]} of {ep.owner} (gone) on {net.name}")
        return done

    def prune(self, *, networks: bool = False) -> list[str]:
        """Remove what crashes left: half-made networks and endpoints, endpoints whose owner
        is gone or whose namespace vanished (their veth is gone) with their leases, resolvers
        without endpoints, isolate's devices that no record names; with ``networks=True``
        also every unused network but the default one (Docker's ``network prune``). Returns
        descriptions of what was removed. Raises NetworkError."""
        with self.dir.locked():
            done = self._recover()
            nets = [n for n in self._all_networks() if n.state == "ready"]
            with self._host_netlink() as ipr, _netlink("list the host's links"):
                links = {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            for net in nets:
                eps = self._endpoints(net.id)
                for ep in eps:
                    if ep.host_ifname not in links:
                        self._teardown(net, ep)
                        done.append(f"endpoint {ep.id[:12]} on {net.name} (its namespace is "
                                    "gone)")
                eps = self._endpoints(net.id)
                if not eps:
                    resolver = HelperProcess.from_json(self.dir.read(net.id, "resolver.json"))
                    if resolver is not None:
                        self._stop_resolver(net)
                        done.append(f"resolver of {net.name}")
            if networks:
                for net in list(nets):
                    if not net.default and not self._endpoints(net.id):
                        nets.remove(net)
                        self._remove_network(net, nets)
                        done.append(f"network {net.name}")
            known = {n.bridge for n in nets} | {
                e.host_ifname for n in nets for e in self._endpoints(n.id)}
            for link in sorted(links):
                if link and (link.startswith((BRIDGE_PREFIX, VETH_PREFIX))
                             or link == DEFAULT_BRIDGE) and link not in known:
                    self._delete_link(link)
                    done.append(f"device {link}")
            if not nets and self.dir.read("host.json") is not None:
                self.firewall.teardown_network(NetworkRules("", "", ()), complete=True)
                self._restore_forwarding()
                done.append("the firewall table and forwarding sysctls")
            return done

    # -- files for the container -------------------------------------------------------------
    def container_files(self, owner: str, hostname: str, *,
                        extra_hosts: Sequence[ExtraHost] = (), dns: Sequence[str] = (),
                        dns_search: Sequence[str] | None = None,
                        dns_options: Sequence[str] | None = None,
                        host_resolv: ResolvConf | None = None) -> tuple[str, str]:
        """``(/etc/hosts, /etc/resolv.conf)`` contents for the container ``owner``, from its
        endpoints: its addresses under ``hostname`` (and its aliases), and as nameserver the
        resolver of its first network that has one (it forwards to ``dns`` when given)."""
        eps = self.endpoints(owner=owner)
        resolver = None
        gateway = None
        for ep in eps:
            gateway = gateway or ep.gateway
            net = self.get(ep.network)
            if net.dns and resolver is None:
                resolver = net.gateway
        aliases = [a for e in eps for a in e.aliases]
        hosts = hosts_file(hostname, [a for e in eps for a in e.addresses], extra=extra_hosts,
                           gateway=gateway, aliases=aliases)
        resolv = resolv_conf(resolver=resolver, dns=[parse_dns(d) for d in dns],
                             search=dns_search, options=dns_options, host=host_resolv)
        return hosts, resolv


def _python_env() -> dict[str, str]:
    """The environment of the helper programs: our PATH, and a PYTHONPATH that finds this
    isolate and dnspython even when they are not installed where the interpreter looks."""
    import dns

    import isolate

    env = _default_env()
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(m.__file__ or "")))
             for m in (isolate, dns)]
    env["PYTHONPATH"] = ":".join(dict.fromkeys(paths))
    return env
