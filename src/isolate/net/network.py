"""Bridge networks and their endpoints: the interface the container layer calls.

Owns :class:`Networks` -- create/remove/list networks; connect a network namespace to one (a
veth pair: the host end on the network's bridge, the other end made in the namespace with its
address, MTU and default route) and disconnect it; publish ports; prune what a crash left --
and the records it persists for that (:class:`Network`, :class:`Endpoint`). Every operation acts
in the namespace that plays "the host" (default: the caller's) and works from the persisted
state alone, so any process can tear down what another made. Everything is validated, and every
address and host port chosen, before the first device or rule is made; a failure half-way
undoes what was made.

What an endpoint costs is mostly what the kernel makes the caller wait for, so the hot paths
ask little of it: one child makes the container's netlink socket and sets its sysctls, the veth
is made on the bridge and up in one request, port forwards are one nfnetlink batch, and a veth
whose container namespace is already going is left to the kernel (its namespace's end deletes
it; deleting it ourselves would wait for RCU grace periods). Records are written once per
change (temp, fsync, rename; see ``_store``), and an endpoint being made has a record of its
own name (``<id>.creating``) until it is complete: one rename then, no second write.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from isolate import _record
from isolate.errors import ConfigError, IsolateError, NetworkError
from isolate.net import _netlink as _netlink_batch
from isolate.net._helpers import HelperProcess, boot_id, start_time
from isolate.net._ns import NetNamespace, NetnsLike, _default_env
from isolate.net._store import Directory, Torn
from isolate.net.firewall import NetworkRules, PortForward, make_firewall
from isolate.net.ports import PortBinding, PortMapping, parse_publish

# Only what a release needs is imported here (it runs in a fresh interpreter, the container's
# exit command): what makes networks, endpoints and their files is imported where it is used.
if TYPE_CHECKING:
    import queue

    from pyroute2 import IPRoute

    from isolate.net.files import ResolvConf
    from isolate.net.ipam import AddressPool, IPNetwork
    from isolate.net.options import ExtraHost

__all__ = ["DEFAULT_LINK_MTU", "DEFAULT_NETWORK", "Endpoint", "Network", "NetworkRecords",
           "Networks", "process_owner"]

#: The default network's name (Docker's ``bridge``); it has no resolver, as in Docker.
DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "isolate0"
BRIDGE_PREFIX = "isob"
VETH_PREFIX = "isov"
#: The MTU of a network's bridge and veths unless asked otherwise: traffic between the host
#: and its containers, and between containers, never leaves the machine, so it may use frames
#: as large as loopback's; the network's ``mtu`` bounds what goes out (a route metric).
DEFAULT_LINK_MTU = 65520
_IFA_F_NODAD = 0x02
_READY = ".json"
_CREATING = ".creating"
_HELPERS = "helpers"  # DIR/helpers/<pid>.json: processes kept for an owner (keep_helper)
_HINT = "hint"  # DIR/<net>/hint: the last addresses given, "IPV4,IPV6" (see _pools)


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
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@_record.record
class Network:
    """A bridge network as persisted (``DIR/<id>/network.json``).

    ``mtu`` is the network's MTU as Docker means it (what its traffic to the outside may
    carry: the containers' default route says so); ``link_mtu`` the MTU of its bridge and veths
    (None in records of older versions: the same as ``mtu``)."""

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
    sysctls: Mapping[str, str] = _record.field(factory=dict, hash=False)
    labels: Mapping[str, str] = _record.field(factory=dict, hash=False)
    created: str = ""
    default: bool = False
    state: str = "ready"
    driver: str = "bridge"
    link_mtu: int | None = None

    @property
    def rules(self) -> NetworkRules:
        """What the firewall needs to know of this network."""
        subnets = tuple(s for s in (self.subnet, self.subnet6) if s)
        return NetworkRules(self.id, self.bridge, subnets, self.internal)

    @property
    def device_mtu(self) -> int:
        """The MTU its bridge and veths have."""
        return self.link_mtu or self.mtu

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data, for the state files."""
        return _record.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Network:
        """The record back from what :meth:`to_json` wrote."""
        names = {a.name for a in _record.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@_record.record
class Endpoint:
    """One namespace's attachment to one network (``DIR/<net>/endpoints/<id>.json``).

    ``netns_id`` identifies the namespace (``dev:inode``); ``boot`` is the boot the record was
    written in (a record of another boot describes nothing that still exists)."""

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
    netns_id: str | None = None
    boot: str | None = None

    @property
    def addresses(self) -> list[str]:
        """The endpoint's addresses (IPv4 first), as strings."""
        return [a for a in (self.ipv4, self.ipv6) if a]

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data, for the state files."""
        data = _record.asdict(self, recurse=False)
        data["aliases"] = list(self.aliases)
        data["dns"] = list(self.dns)
        data["ports"] = [p.to_json() for p in self.ports]
        data["proxy"] = self.proxy.to_json() if self.proxy else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Endpoint:
        """The record back from what :meth:`to_json` wrote."""
        names = {a.name for a in _record.fields(cls)}
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


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else getattr(exc, "errno", None)


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


class NetworkRecords:
    """The records of the networks kept in ``directory`` and their endpoints, read without the
    namespace they live in (``network ls``/``inspect``: for an ordinary user, reading them
    must not make the rootless netns). :class:`Networks` builds on it. Nothing to close
    (``close`` and ``with`` are there for symmetry)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Directory(directory)

    def close(self) -> None:
        """Nothing is held: a no-op."""

    def __enter__(self) -> NetworkRecords:
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
        """The network's endpoint records; one still being made (``<id>.creating``: under the
        lock, what a crashed connect left) has state ``creating``. A torn one, or one of
        another boot, describes nothing that still exists (see ``_store``): it is dropped
        here, touching nothing."""
        out = []
        for name in self.dir.list(net_id, "endpoints"):
            creating = name.endswith(_CREATING)
            if not creating and not name.endswith(_READY):
                continue
            try:
                data = self.dir.read(net_id, "endpoints", name)
            except Torn:
                data = {}
            if data is None:
                continue
            if not data or data.get("boot") not in (None, boot_id()):
                self.dir.remove(net_id, "endpoints", name)
                continue
            ep = Endpoint.from_json(data)
            out.append(_record.evolve(ep, state="creating") if creating else ep)
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


class Networks(NetworkRecords):
    """Bridge networks kept in ``directory``, built in the namespace ``host``.

    ``firewall``: ``"nftables"`` (default) or ``"none"`` (no rules: published ports go through
    the userland proxy, no outbound masquerade). ``alive(owner) -> bool`` tells whether an
    endpoint's owner (a container id, say) still exists; endpoints of dead owners are removed
    on the next change and by :meth:`prune` (default: :func:`default_alive`). ``upstream``:
    the resolvers' forwarders (``"ADDR"`` or ``"ADDR#PORT"``; default: the host's
    /etc/resolv.conf, read by each resolver). ``userland_proxy``: ``"auto"`` (only where DNAT
    cannot serve) or ``"always"``. ``on_close(nets)``: called by :meth:`close` while the
    handle still works (the rootless netns tears itself down there once it is idle).

    Open it (``with Networks(...) as nets``) and close it when done; it holds a handle on the
    host namespace and netlink sockets in it. Raises UnsupportedError (nft missing),
    NetworkError (cannot open ``host``).
    """

    def __init__(self, directory: str | os.PathLike[str], *, host: NetnsLike = None,
                 firewall: str = "nftables", alive: Callable[[str], bool] | None = None,
                 upstream: Sequence[str] | None = None, userland_proxy: str = "auto",
                 on_close: Callable[[Networks], object] | None = None) -> None:
        if userland_proxy not in ("auto", "always"):
            raise ConfigError(f"userland_proxy must be 'auto' or 'always', not "
                              f"{userland_proxy!r}")
        super().__init__(directory)
        if upstream is not None:
            from isolate.net.options import parse_dns

            self._upstream: list[str] | None = [parse_dns(u) for u in upstream]
        else:
            self._upstream = None
        self._alive = alive or default_alive
        self.userland_proxy = userland_proxy
        self._on_close = on_close
        self.host = NetNamespace.of(host)
        # A netlink socket in the host namespace, kept while this object is open (each costs
        # a child and a socket) -- for the thread that opened it only: pyroute2's sockets
        # keep per-thread state. Other threads open one per operation.
        self._ipr: IPRoute | None = None
        self._owner_thread = threading.get_ident()
        # A raw rtnetlink socket there for the batched requests of the hot paths (any thread,
        # one at a time).
        self._rtnl: socket.socket | None = None
        self._rtnl_lock = threading.Lock()
        try:
            self.firewall = make_firewall(firewall, self.host)
        except BaseException:
            self.host.close()
            raise

    def close(self) -> None:
        """Release what this handle holds (fds, netlink sockets); idempotent."""
        on_close, self._on_close = self._on_close, None
        try:
            if on_close is not None:
                on_close(self)
        finally:
            self._close()

    def _close(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()
        rtnl, self._rtnl = self._rtnl, None
        if rtnl is not None:
            rtnl.close()
        self.firewall.close()
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

    @contextlib.contextmanager
    def _host_rtnl(self) -> Iterator[socket.socket]:
        with self._rtnl_lock:
            if self._rtnl is None:
                self._rtnl = self.host.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                              socket.NETLINK_ROUTE)
            yield self._rtnl

    def __enter__(self) -> Networks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_record(self, ep: Endpoint) -> None:
        """Write an endpoint's record (under the name its state gives it)."""
        suffix = _READY if ep.state == "ready" else _CREATING
        self.dir.write(_record.evolve(ep, state="ready").to_json(), ep.network, "endpoints",
                       ep.id + suffix)

    # -- networks ---------------------------------------------------------------------------
    def create(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
               ipv6: bool = False, subnet6: str | None = None, gateway6: str | None = None,
               mtu: int = 1500, internal: bool = False, dns: bool = True,
               sysctls: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None,
               link_mtu: int | None = None) -> Network:
        """Create a bridge network (Docker's ``network create``).

        ``subnet`` (CIDR; default: a free one of Docker's pools) and ``gateway`` (default: its
        first address); ``ipv6`` adds an IPv6 subnet (``subnet6``, default a unique-local
        /64); ``mtu``: the network's MTU to the outside (the members' default route carries
        it); ``link_mtu``: the MTU of the bridge and the veths, which carry only traffic
        between the host and its containers (default :data:`DEFAULT_LINK_MTU`, or ``mtu`` when
        larger; ``link_mtu=mtu`` makes the interfaces show Docker's MTU exactly, at a cost in
        throughput); ``internal``: no traffic in or out of the network, only between its
        members; ``dns``: a resolver answering the members' names; ``sysctls``: ``net.*``
        settings applied inside each member's namespace (``IFNAME`` in a name becomes its
        interface).

        Raises ConfigError (bad or duplicate name, a subnet overlapping a route of the host or
        another network, a gateway outside its subnet, a bad MTU), NetworkError (the kernel or
        nft refused; nothing is left behind).
        """
        from isolate.net.options import check_name

        check_name(name)
        with self.dir.locked():
            self._recover()
            return self._create(name, subnet=subnet, gateway=gateway, ipv6=ipv6,
                                subnet6=subnet6, gateway6=gateway6, mtu=mtu,
                                internal=internal, dns=dns, sysctls=dict(sysctls or {}),
                                labels=dict(labels or {}), link_mtu=link_mtu)

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
                default: bool = False, link_mtu: int | None = None) -> Network:
        existing = self._all_networks()
        if any(n.name == name for n in existing):
            raise ConfigError(f"network {name!r} already exists")
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
            raise ConfigError(f"mtu must be 68-65535, not {mtu!r}")
        if link_mtu is None:
            link_mtu = max(mtu, DEFAULT_LINK_MTU)
        if not isinstance(link_mtu, int) or isinstance(link_mtu, bool) or \
                not mtu <= link_mtu <= 65535:
            raise ConfigError(f"link_mtu must be from the network's mtu ({mtu}) to 65535, "
                              f"not {link_mtu!r}")
        for key in sysctls or {}:
            if not key.startswith("net."):
                raise ConfigError(f"network sysctl {key!r} is not a net.* sysctl")
        import secrets

        from isolate.net.ipam import pick_subnet, pick_subnet6

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
            state="creating", link_mtu=link_mtu)
        self.dir.write(network.to_json(), nid, "network.json")
        try:
            self._build_network(network)
        except BaseException as exc:
            self._remove_network(network, existing, exc)
            raise
        network = _record.evolve(network, state="ready")
        self.dir.write(network.to_json(), nid, "network.json")
        return network

    def _build_network(self, n: Network) -> None:
        """The network's kernel state: bridge, forwarding, firewall rules (again after a
        reboot took them: each step takes what exists)."""
        self._make_bridge(n)
        guard = self._enable_forwarding(n)
        self.firewall.setup_network(n.rules, guard_forwarding=guard)

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
        from pyroute2.netlink.exceptions import NetlinkError

        with self._host_netlink() as ipr:
            with _netlink(f"create bridge {n.bridge}"):
                # A bridge without a MAC of its own takes its ports' lowest one, and changes
                # it when that port goes: every member's ARP entry for the gateway goes stale.
                mac = "02:" + ":".join(n.id[i:i + 2] for i in range(0, 10, 2))
                try:
                    ipr.link("add", ifname=n.bridge, kind="bridge", mtu=n.device_mtu,
                             address=mac)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
            idx = ipr.link_lookup(ifname=n.bridge)[0]
            # The host's loopback reaches published ports through this bridge (DNAT from
            # 127.0.0.1 needs route_localnet on the way out); and no router advertisements.
            sysctls = {f"net.ipv4.conf.{n.bridge}.route_localnet": "1"}
            if n.subnet6:
                sysctls[f"net.ipv6.conf.{n.bridge}.accept_ra"] = "0"
            self.host.write_sysctls(sysctls)
            with _netlink(f"address bridge {n.bridge}"):
                net4 = ipaddress.ip_network(n.subnet)
                addrs = [(n.gateway, net4.prefixlen, 0)]
                if n.subnet6 and n.gateway6:
                    addrs.append((n.gateway6, ipaddress.ip_network(n.subnet6).prefixlen,
                                  _IFA_F_NODAD))
                for address, prefixlen, flags in addrs:
                    try:
                        ipr.addr("add", index=idx, address=address, prefixlen=prefixlen,
                                 flags=flags)
                    except NetlinkError as exc:
                        if exc.code != errno.EEXIST:
                            raise
                ipr.link("set", index=idx, state="up")

    def _enable_forwarding(self, n: Network) -> bool:
        """Turn on forwarding in the host namespace; remember what it was (restored when the
        last network goes). Returns whether isolate turned IPv4 forwarding on."""
        state = self.dir.read("host.json") or {}
        if state.get("boot") not in (None, boot_id()):
            state = {}  # recorded before a reboot, which reset the sysctls
        before: dict[str, str] = dict(state.get("sysctls") or {})
        keys = ["net.ipv4.ip_forward"]
        if n.subnet6:
            keys.append("net.ipv6.conf.all.forwarding")
        changed = not state
        for key in keys:
            if key not in before:
                value = self.host.read_sysctl(key)
                before[key] = value
                changed = True
        if changed:
            self.dir.write({"sysctls": before, "boot": boot_id()}, "host.json")
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
        if before and state.get("boot") in (None, boot_id()):
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

    def _remove_veth(self, name: str) -> None:
        """Delete an endpoint's veth (host end ``name``) unless the kernel is doing it:
        deleting either end takes both, and a namespace that ends deletes its devices -- so a
        veth whose container namespace is going is left to it (deleting it here would wait for
        RCU grace periods, tens of milliseconds under load, for nothing)."""
        with self._host_rtnl() as sock:
            try:
                found = _netlink_batch.link_peer(sock, name)
                if found is None:
                    return  # gone with its namespace already
                index, peer, nsid = found
                # Through the host's id of the peer's namespace: one that is being destroyed
                # can no longer be reached by its id.
                if peer > 0 and nsid >= 0 and \
                        not _netlink_batch.peer_reachable(sock, peer, nsid):
                    return
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"look up {name}",
                                   step="netlink") from exc
        self._delete_unlisted(index, name)

    def _delete_unlisted(self, index: int, name: str) -> None:
        """Delete the veth with host-side ``index``, returning once the kernel has unlisted it
        (see :func:`isolate.net._netlink.delete_link`)."""
        sock, monitor = self.host.sockets(
            [(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)] * 2)
        try:
            _netlink_batch.delete_link(sock, monitor, name, index)
        except OSError as exc:
            raise NetworkError(exc.errno or errno.EIO, f"delete {name}", step="netlink") \
                from exc

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
        from isolate.net.options import parse_dns, parse_ip, parse_network_alias

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
        import secrets

        eid = secrets.token_hex(16)
        eps = self._endpoints(net.id)
        pool4, pool6 = self._pools(net, eps)
        ipv4 = pool4.allocate(eid, req4)
        ipv6 = pool6.allocate(eid, req6) if pool6 is not None else None
        netns_id = f"{inner.identity[0]}:{inner.identity[1]}"
        auto_name = ifname is None
        if ifname is None:
            used = {e.ifname for n in self._all_networks() for e in self._endpoints(n.id)
                    if e.netns_id == netns_id}
            ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        bindings, held = self._resolve_ports(mappings, ipv6 is not None)
        n4 = ipaddress.ip_network(net.subnet)
        ep = Endpoint(
            id=eid, network=net.id, network_name=net.name, owner=owner, ifname=ifname,
            host_ifname=VETH_PREFIX + eid[:11], ipv4=ipv4, prefixlen=n4.prefixlen,
            gateway=None if net.internal else net.gateway, ipv6=ipv6,
            prefixlen6=ipaddress.ip_network(net.subnet6).prefixlen if net.subnet6 else 64,
            gateway6=None if net.internal else net.gateway6, name=name, aliases=aliases,
            netns=inner.path, ports=tuple(bindings), dns=servers, netns_id=netns_id,
            state="creating", boot=boot_id())
        hint = f"{pool4.last or ''},{(pool6.last if pool6 else None) or ''}"
        try:
            ep = self._make_endpoint(net, ep, inner, held, auto_name, hint)
            self.dir.rename((net.id, "endpoints", eid + _CREATING),
                            (net.id, "endpoints", eid + _READY))
            ep = _record.evolve(ep, state="ready")
            self._resolver_sync(net)
        except BaseException as exc:
            for s in held.values():
                s.close()
            try:
                self._teardown(net, ep)
            except Exception as undo:
                _note(exc, f"undoing the endpoint also failed: {undo}")
            raise
        return ep

    def _make_endpoint(self, net: Network, ep: Endpoint, inner: NetNamespace,
                       held: dict[PortBinding, socket.socket], auto_name: bool,
                       hint: str) -> Endpoint:
        """The network's address hint and the record (``<id>.creating``), then the kernel's
        part: veth, addresses, routes, sysctls, port forwards, proxy. Returns the endpoint as
        it ends up (its interface name when the chosen one was taken, its proxy)."""
        # Set before the interface exists, so that it takes them from ``default``: the one
        # child that makes the container's netlink socket sets these.
        sysctls = {"net.ipv4.conf.all.accept_redirects": "0",
                   "net.ipv4.conf.default.accept_redirects": "0"}
        if ep.ipv6:
            sysctls["net.ipv6.conf.default.accept_ra"] = "0"
            sysctls["net.ipv6.conf.default.disable_ipv6"] = "0"
        # The hint and the record are written (the record fsync'ed) while that child runs:
        # nothing it does needs undoing (the sysctls are the container's namespace's own),
        # and nothing that does is made before the record exists -- a crash from then on is
        # rolled back from it.
        def write() -> None:
            self.dir.write_hint(hint, net.id, _HINT)
            self._write_record(ep)

        writer = _Background(write)
        try:
            (sock,) = inner.sockets([(socket.AF_NETLINK, socket.SOCK_RAW,
                                      socket.NETLINK_ROUTE)], sysctls=sysctls)
        except BaseException as exc:
            writer.join(exc)
            raise
        try:
            writer.join()
        except BaseException:
            sock.close()
            raise
        with sock:
            try:
                self._make_veth(net, ep, inner)
            except NetworkError as exc:
                if not (auto_name and exc.errno == errno.EEXIST):
                    raise
                # The namespace has an interface of that name that no record of ours names.
                with inner.netlink() as cipr:
                    ep = _record.evolve(ep, ifname=self._free_ifname(cipr))
                self._write_record(ep)
                self._make_veth(net, ep, inner)
            if net.sysctls:
                inner.write_sysctls({k.replace("IFNAME", ep.ifname): v
                                     for k, v in net.sysctls.items()})
            try:
                _netlink_batch.configure_interface(
                    sock, ep.ifname,
                    [(socket.AF_INET, ep.ipv4, ep.prefixlen),
                     (socket.AF_INET6, ep.ipv6, ep.prefixlen6)],
                    [(socket.AF_INET, ep.gateway), (socket.AF_INET6, ep.gateway6)],
                    net.mtu if net.mtu < net.device_mtu else None)
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"configure {ep.ifname} in the "
                                   "container's namespace", step="netlink") from exc
        return self._forward(net, ep, held)

    def _make_veth(self, net: Network, ep: Endpoint, inner: NetNamespace) -> None:
        """The veth pair, the host end up on the bridge (in hairpin mode when the endpoint
        publishes ports): one batch, after the bridge's lookup -- the bridge made again first
        if it is missing (after a reboot the record outlives it)."""
        with self._host_rtnl() as sock:
            try:
                try:
                    bridge = _netlink_batch.link_index(sock, net.bridge)
                except OSError as exc:
                    if exc.errno != errno.ENODEV:
                        raise
                    self._build_network(net)
                    bridge = _netlink_batch.link_index(sock, net.bridge)
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"look up bridge {net.bridge}",
                                   step="netlink") from exc
            try:
                # A container reaching its own published port through a host address: with
                # br_netfilter the DNAT'ed frame is bridged back out of the port it came in
                # by, which a bridge port does only in hairpin mode.
                _netlink_batch.make_veth(sock, ep.host_ifname, ep.ifname, inner.fileno(),
                                         net.device_mtu, bridge, hairpin=bool(ep.ports))
            except OSError as exc:
                raise NetworkError(exc.errno or errno.EIO, f"create veth {ep.host_ifname} for "
                                   f"{ep.ifname}", step="netlink") from exc

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
                ep = _record.evolve(ep, ports=ep.ports + tuple(bindings), proxy=None)
                self._write_record(ep)
                if bindings and not old.ports:
                    with self._host_rtnl() as sock, _netlink(f"set hairpin mode on "
                                                             f"{ep.host_ifname}"):
                        _netlink_batch.set_hairpin(sock, ep.host_ifname)
                ep = self._forward(net, ep, held, only=tuple(bindings))
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
        persisted state alone. Returns what was removed. Raises NetworkError.

        Called once the container's namespace has no holder left (its processes gone, the
        caller's handles closed), it waits for nothing: the kernel deletes the veths with
        the namespace."""
        with self.dir.locked():
            self._recover()
            gone = []
            for net in self._all_networks():
                for ep in self._endpoints(net.id):
                    if ep.owner == owner:
                        self._teardown(net, ep)
                        gone.append(ep)
            self._stop_helpers(owner)
            return gone

    # -- helpers of owners --------------------------------------------------------------------
    def keep_helper(self, owner: str, helper: HelperProcess) -> None:
        """Record ``helper``, a process the caller started for ``owner`` (a rootless
        container's port proxy on the host, say), as ``owner``'s: :meth:`release` of the owner
        stops it, and so do the next change and :meth:`prune` once the owner is gone -- also
        after a crash that left no one to release it. Raises NetworkError."""
        with self.dir.locked():
            self.dir.write({"owner": owner, "helper": helper.to_json(), "boot": boot_id()},
                           _HELPERS, f"{helper.pid}.json")

    def _stop_helpers(self, owner: str | None = None) -> list[str]:
        """Under the lock: stop the kept helpers of ``owner`` (None: of every owner that is
        gone) and drop their records (and those of another boot). Returns descriptions."""
        done = []
        for name in self.dir.list(_HELPERS):
            try:
                data = self.dir.read(_HELPERS, name)
            except Torn:
                data = {}
            if data is None:
                continue
            helper = HelperProcess.from_json(data.get("helper")) \
                if data.get("boot") == boot_id() else None
            who = str(data.get("owner") or "")
            if helper is not None and who and \
                    (who != owner if owner is not None else self._alive(who)):
                continue
            if helper is not None:
                helper.stop()
                done.append(f"{helper.what or 'helper'} {helper.pid} of {who} (gone)")
            self.dir.remove(_HELPERS, name)
        return done

    def _find(self, endpoint: Endpoint | str) -> tuple[Network, Endpoint]:
        eid = endpoint.id if isinstance(endpoint, Endpoint) else endpoint
        for net in self._all_networks():
            for ep in self._endpoints(net.id):
                if ep.id == eid:
                    return net, ep
        raise ConfigError(f"no such endpoint: {eid!r}")

    def _pools(self, net: Network, eps: Sequence[Endpoint] | None = None
               ) -> tuple[AddressPool, AddressPool | None]:
        """The network's address pools. The leases are the endpoint records themselves (one
        truth: a record written is an address taken, a record removed an address freed); the
        network's hint remembers the last address given, for the round-robin -- without it
        (lost, or not an address), it resumes after the highest address leased."""
        from isolate.net.ipam import AddressPool

        if eps is None:
            eps = self._endpoints(net.id)
        hint4, _, hint6 = (self.dir.read_hint(net.id, _HINT) or "").partition(",")
        hints = {"4": _address_in(hint4, net.subnet), "6": _address_in(hint6, net.subnet6)}
        leases4 = {e.ipv4: e.id for e in eps}
        pool4 = AddressPool(ipaddress.ip_network(net.subnet), ipaddress.ip_address(net.gateway),
                            leases4, hints.get("4") or _highest(leases4))
        pool6 = None
        if net.subnet6 and net.gateway6:
            leases6 = {e.ipv6: e.id for e in eps if e.ipv6}
            pool6 = AddressPool(ipaddress.ip_network(net.subnet6),
                                ipaddress.ip_address(net.gateway6), leases6,
                                hints.get("6") or _highest(leases6))
        return pool4, pool6

    def _free_ifname(self, cipr: IPRoute) -> str:
        with _netlink("list the container's interfaces"):
            names = {link.get_attr("IFLA_IFNAME") for link in cipr.get_links()}
        for i in range(4096):
            if f"eth{i}" not in names:
                return f"eth{i}"
        raise ConfigError("no free ethN interface name in the namespace")  # pragma: no cover

    # -- ports ------------------------------------------------------------------------------
    def _all_bindings(self) -> list[PortBinding]:
        return [b for n in self._all_networks() for e in self._endpoints(n.id) for b in e.ports]

    def _resolve_ports(self, mappings: Sequence[PortMapping], has_v6: bool
                       ) -> tuple[list[PortBinding], dict[PortBinding, socket.socket]]:
        """Host ports for ``mappings``, each checked free (our records and a bind in the host
        namespace). Sockets of bindings the proxy will serve are kept bound, by binding."""
        if not mappings:
            return [], {}
        taken = self._all_bindings()
        out: list[PortBinding] = []
        held: dict[PortBinding, socket.socket] = {}
        # One child makes a socket for each port's first candidate.
        specs = [(socket.AF_INET6 if ":" in m.host_ip else socket.AF_INET,
                  socket.SOCK_STREAM if m.protocol == "tcp" else socket.SOCK_DGRAM, 0)
                 for m in mappings for _ in m.container_ports]
        spare = self.host.sockets(specs)
        try:
            for m in mappings:
                for i, cport in enumerate(m.container_ports):
                    if m.ephemeral:
                        cands: Iterable[int] = [0]
                    elif m.any_of_range:
                        cands = range(m.host_start, m.host_end + 1)
                    else:
                        cands = [m.host_start + i]
                    b, sock = self._bind_one(m, cport, cands, taken + out, has_v6, spare)
                    out.append(b)
                    if sock is not None:
                        held[b] = sock
        except BaseException:
            for s in held.values():
                s.close()
            raise
        finally:
            for s in spare:
                s.close()
        return out, held

    def _needs_proxy(self, b: PortBinding, has_v6: bool) -> bool:
        if self.firewall.name == "none" or self.userland_proxy == "always":
            return True
        if b.host_ip and ipaddress.ip_address(b.host_ip).is_loopback and b.family == 6:
            return True  # the kernel never routes ::1 out of lo: DNAT cannot serve it
        return b.family == 6 and not has_v6

    def _bind_one(self, m: PortMapping, cport: int, cands: Iterable[int],
                  taken: list[PortBinding], has_v6: bool, spare: list[socket.socket]
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
                sock = _take(spare, family, kind) or self.host.socket(family, kind)
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
        held sockets; returns the endpoint with its proxy recorded (the record rewritten)."""
        new = only if only is not None else ep.ports
        dnat = tuple(b for b in new if b not in held)
        if dnat:
            pf = PortForward(net.rules, ep.ipv4, ep.ipv6, dnat)
            try:
                self.firewall.setup_port_forward(pf)
            except NetworkError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                # isolate's table is gone (a reboot, or someone flushed the ruleset): make
                # this network's rules again, then its forwards.
                self._build_network(net)
                self.firewall.setup_port_forward(pf)
        if only is not None:
            # A publish after connect restarts the proxy with every socket it serves: re-bind
            # the old ones (their ports are ours by record, so this cannot race).
            for b in ep.ports:
                if b not in only and self._needs_proxy(b, ep.ipv6 is not None):
                    held[b] = self._bind_again(b)
        if not held:
            return ep
        proxy = self._start_proxy(net, ep, held)
        ep = _record.evolve(ep, proxy=proxy)
        self._write_record(ep)
        return ep

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
    def _resolver(self, net: Network) -> HelperProcess | None:
        try:
            data = self.dir.read(net.id, "resolver.json")
        except Torn:
            return None
        if not data or data.get("boot") not in (None, boot_id()):
            return None
        return HelperProcess.from_json(data)

    def _resolver_sync(self, net: Network) -> None:
        """Start the network's resolver with its first endpoint, stop it with its last (and
        start it again if it was killed). It reads the names from the endpoint records
        itself, so a change writes nothing for it."""
        if not net.dns:
            return
        if not any(e.state == "ready" for e in self._endpoints(net.id)):
            self._stop_resolver(net)
            return
        resolver = self._resolver(net)
        if resolver is None or not resolver.alive():
            self._start_resolver(net)

    def _start_resolver(self, net: Network) -> None:
        specs = []
        args: list[str] = []
        for addr, family in ((net.gateway, socket.AF_INET), (net.gateway6, socket.AF_INET6)):
            if addr is not None:
                specs += [(family, socket.SOCK_DGRAM, 0), (family, socket.SOCK_STREAM, 0)]
        socks = self.host.sockets(specs)
        try:
            for i, s in enumerate(socks):
                addr = net.gateway if s.family == socket.AF_INET else net.gateway6
                if s.type == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, 53))
                except OSError as exc:
                    raise NetworkError(exc.errno or errno.EIO, f"bind the resolver of "
                                       f"network {net.name!r} to {addr}:53",
                                       step="bind") from exc
                if s.type == socket.SOCK_STREAM:
                    s.listen(64)
                args += ["--tcp" if s.type == socket.SOCK_STREAM else "--udp", str(3 + i)]
            if net.internal:
                args.append("--internal")
            for subnet in (net.subnet, net.subnet6):
                if subnet:  # it answers its own network's containers only
                    args += ["--subnet", subnet]
            for server in self._upstream if self._upstream is not None else ():
                args += ["--upstream", server]
            if self._upstream is None:
                args.append("--host-resolv")
            fds = self._std_fds(net, "dns.log")
            try:
                child = self.host.spawn(
                    [sys.executable, "-m", "isolate.net._dnsd", "--endpoints",
                     self.dir.file(net.id, "endpoints"), *args],
                    env=_python_env(), fds=fds + [s.fileno() for s in socks], detach=True)
            finally:
                for fd in fds:
                    os.close(fd)
        finally:
            for s in socks:
                s.close()
        helper = HelperProcess.of(child.pid, f"resolver of network {net.name}")
        child.close()
        self.dir.write({**helper.to_json(), "boot": boot_id()}, net.id, "resolver.json")

    def _stop_resolver(self, net: Network) -> None:
        resolver = self._resolver(net)
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
        steps.run(lambda: self._remove_veth(ep.host_ifname), "deleting the veth")
        steps.done()
        for suffix in (_CREATING, _READY):  # frees its addresses
            self.dir.remove(net.id, "endpoints", ep.id + suffix)
        self._resolver_sync(net)

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
                if ep.state != "ready":  # its connect crashed: the lock was held throughout
                    self._teardown(net, ep)
                    self.dir.remove_temps()
                    done.append(f"half-made endpoint {ep.id[:12]} on {net.name}")
                elif not self._alive(ep.owner):
                    self._teardown(net, ep)
                    done.append(f"endpoint {ep.id[:12]} of {ep.owner} (gone) on {net.name}")
        return done + self._stop_helpers()

    def prune(self, *, networks: bool = False) -> list[str]:
        """Remove what crashes left: half-made networks and endpoints, endpoints whose owner
        is gone or whose namespace vanished (their veth is gone) with their leases, records
        of another boot, resolvers without endpoints, isolate's devices and firewall rules
        (port forwards, a network's chains) that no record names;
        with ``networks=True`` also every unused network but the default one (Docker's
        ``network prune``). Returns descriptions of what was removed. Raises NetworkError."""
        with self.dir.locked():
            done = self._recover()
            self.dir.remove_temps()
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
                if not self._endpoints(net.id) and \
                        self.dir.read(net.id, "resolver.json") is not None:
                    self._stop_resolver(net)
                    done.append(f"resolver of {net.name}")
            if networks:
                for net in list(nets):
                    if not net.default and not self._endpoints(net.id):
                        nets.remove(net)
                        self._remove_network(net, nets)
                        done.append(f"network {net.name}")
            # Rules no record names (a record lost by hand or a disk, an older version's).
            forwarded = {a for n in nets for e in self._endpoints(n.id) for a in e.addresses}
            done += self.firewall.sweep([n.rules for n in nets], forwarded)
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
        from isolate.net.files import hosts_file, resolv_conf
        from isolate.net.options import parse_dns

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


class _Background:
    """``fn`` run from now on the process's one worker thread (started on first use, again
    in a forked child); :meth:`join` waits for it and raises its error."""

    _queue: queue.SimpleQueue[_Background] | None = None
    _pid = 0
    _start_lock = threading.Lock()

    def __init__(self, fn: Callable[[], object]) -> None:
        self._fn = fn
        self._error: BaseException | None = None
        self._done = threading.Event()
        with _Background._start_lock:
            if _Background._queue is None or _Background._pid != os.getpid():
                import queue

                _Background._queue = queue.SimpleQueue()
                _Background._pid = os.getpid()
                threading.Thread(target=_Background._serve, args=(_Background._queue,),
                                 name="isolate.net writer", daemon=True).start()
            _Background._queue.put(self)

    @staticmethod
    def _serve(jobs: queue.SimpleQueue[_Background]) -> None:
        while True:
            job = jobs.get()
            try:
                job._fn()
            except BaseException as exc:  # handed to join's caller
                job._error = exc
            job._done.set()

    def join(self, pending: BaseException | None = None) -> None:
        """Wait for ``fn``; raise its error (or, with ``pending``, note it there)."""
        self._done.wait()
        if self._error is not None:
            if pending is not None:
                _note(pending, f"also failed: {self._error}")
                return
            raise self._error


def _address_in(text: str, subnet: str | None) -> str | None:
    """``text`` if it is an address of ``subnet``, else None (a hint is only a hint)."""
    if not text or subnet is None:
        return None
    try:
        return text if ipaddress.ip_address(text) in ipaddress.ip_network(subnet) else None
    except ValueError:
        return None


def _highest(leases: Mapping[str, str]) -> str | None:
    """The highest address leased (where the round-robin resumes without a hint)."""
    if not leases:
        return None
    return str(max(ipaddress.ip_address(a) for a in leases))


def _take(spare: list[socket.socket], family: int, kind: int) -> socket.socket | None:
    """A premade socket of that family and type, or None."""
    for i, s in enumerate(spare):
        if s.family == family and s.type == kind:
            return spare.pop(i)
    return None


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
