"""The firewall: netavark's four verbs over nftables, or over nothing.

Owns :class:`Firewall` (set up / tear down a network, set up / tear down a port forward) and its
two backends. :class:`NftablesFirewall` keeps everything in one table of its own, ``inet
isolate``, which nothing else writes and which goes when the last network does; it runs
``nft -j -f -`` in the host's namespace (a child that joined it: libnftables would act in the
*caller's* namespace, and this process never enters another). :class:`NoFirewall` makes no rule
(published ports then go through the userland proxy; no masquerade, no isolation).

The table's shape: per-network chains reached through verdict maps keyed by bridge name, and
port forwards as elements of DNAT maps, so no verb needs a rule handle and every verb is one
atomic, idempotent transaction (an element or chain to remove is first added, then deleted).

The network verbs are rare and go through ``nft -j``. The port-forward verbs run at every
container start and stop, so they skip the program (a child, an exec, nft reading the whole
ruleset): their map elements go to the kernel as one nfnetlink batch over a netlink socket made
in the host's namespace (:class:`_ElementBatch`), removals as ``DESTROYSETELEM`` (Linux 6.3:
absent is no error) or, on older kernels, an add then a delete in one batch.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import struct
import threading
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from isolate import _json as json
from isolate import _record
from isolate.errors import ConfigError, NetworkError, UnsupportedError
from isolate.net._netlink import transact
from isolate.net._ns import NetNamespace, _default_env
from isolate.net.ports import PortBinding

__all__ = ["TABLE", "Firewall", "NetworkRules", "NftablesFirewall", "NoFirewall", "PortForward",
           "make_firewall"]

#: The nftables table isolate owns (family inet).
TABLE = "isolate"
_T = {"family": "inet", "table": TABLE}


@_record.record
class NetworkRules:
    """What the firewall needs of a network: its id, bridge, subnets and whether it is
    internal (no way out)."""

    id: str
    bridge: str
    subnets: tuple[str, ...]
    internal: bool = False


@_record.record
class PortForward:
    """Host ports of one endpoint forwarded to its addresses on a network."""

    network: NetworkRules
    ipv4: str | None
    ipv6: str | None
    bindings: tuple[PortBinding, ...]


class Firewall(Protocol):
    """The four verbs (netavark's ``FirewallDriver``)."""

    name: str

    def setup_network(self, net: NetworkRules, *, guard_forwarding: bool = False) -> None:
        """Masquerade the network's outbound traffic (unless internal), keep it apart from the
        other networks, and with ``guard_forwarding`` forward nothing that is not isolate's."""

    def teardown_network(self, net: NetworkRules, *, complete: bool) -> None:
        """Remove the network's rules; ``complete``: it was the last, remove everything."""

    def setup_port_forward(self, pf: PortForward) -> None:
        """DNAT the bindings' host ports to the endpoint (from outside, from the host itself
        and from containers: hairpin)."""

    def teardown_port_forward(self, pf: PortForward) -> None:
        """Remove what :meth:`setup_port_forward` added (also if it was only partly there)."""

    def sweep(self, networks: Sequence[NetworkRules], addresses: Collection[str]) -> list[str]:
        """For prune: remove what no record names -- the rules of networks not in
        ``networks``, port forwards to addresses not in ``addresses``. Returns descriptions."""

    def close(self) -> None:
        """Release what the backend holds (a netlink socket); idempotent."""


class NoFirewall:
    """The "none" backend: no rules at all."""

    name = "none"

    def setup_network(self, net: NetworkRules, *, guard_forwarding: bool = False) -> None:
        """Install the network's rules (NAT, forwarding, isolation) in the host namespace;
        idempotent."""
        pass

    def teardown_network(self, net: NetworkRules, *, complete: bool) -> None:
        """Remove the network's rules (``complete``: the whole table once no network is left)."""
        pass

    def setup_port_forward(self, pf: PortForward) -> None:
        """Install the DNAT rules of one published port; idempotent."""
        pass

    def teardown_port_forward(self, pf: PortForward) -> None:
        """Remove the rules of one published port; absent ones are fine."""
        pass

    def sweep(self, networks: Sequence[NetworkRules], addresses: Collection[str]) -> list[str]:
        """There is nothing to sweep: []."""
        return []

    def close(self) -> None:
        """Nothing to release."""
        pass


def _chain(net: NetworkRules, what: str) -> str:
    return f"n-{net.id[:12]}-{what}"


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _match(left: dict[str, Any], right: object, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _rule(chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"add": {"rule": {**_T, "chain": chain, "expr": list(expr)}}}


def _elem(verb: str, name: str, elems: list[Any]) -> dict[str, Any]:
    return {verb: {"element": {**_T, "name": name, "elem": elems}}}


_L4 = {"concat": [_meta("l4proto"), {"payload": {"protocol": "th", "field": "dport"}}]}


def _l4_addr(proto: str) -> dict[str, Any]:
    return {"concat": [{"payload": {"protocol": proto, "field": "daddr"}}, _meta("l4proto"),
                       {"payload": {"protocol": "th", "field": "dport"}}]}


def _objects() -> list[dict[str, Any]]:
    """The table, its set and maps (adding what exists changes nothing)."""
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": "inet", "name": TABLE}}}]
    cmds.append({"add": {"set": {**_T, "name": "bridges", "type": "ifname"}}})
    for name in ("fwd_from", "fwd_to", "nat_from", "nat_to"):
        cmds.append({"add": {"map": {**_T, "name": name, "type": "ifname", "map": "verdict"}}})
    # DNAT maps: (proto, port) or (daddr, proto, port) -> address, and the same key -> port
    # (nft 1.0's JSON cannot take a map whose data is a concatenation).
    for fam, addr in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
        for key, ktype in (("any", ["inet_proto", "inet_service"]),
                           ("at", [addr, "inet_proto", "inet_service"])):
            cmds.append({"add": {"map": {**_T, "name": f"pf{fam}{key}_addr", "type": ktype,
                                         "map": addr}}})
            cmds.append({"add": {"map": {**_T, "name": f"pf{fam}{key}_port", "type": ktype,
                                         "map": "inet_service"}}})
    return cmds


def _base() -> list[dict[str, Any]]:
    """:func:`_objects` and the base chains with their fixed rules (flushed and re-added, so
    running this again changes nothing)."""
    cmds = _objects()
    chains = {
        "forward": ("filter", "forward", 0),
        "prerouting": ("nat", "prerouting", -100),
        "output": ("nat", "output", -100),
        "postrouting": ("nat", "postrouting", 100),
    }
    for name, (type_, hook, prio) in chains.items():
        cmds.append({"add": {"chain": {**_T, "name": name, "type": type_, "hook": hook,
                                       "prio": prio, "policy": "accept"}}})
        cmds.append({"flush": {"chain": {**_T, "name": name}}})
    cmds.append({"add": {"chain": {**_T, "name": "hostports"}}})
    cmds.append({"flush": {"chain": {**_T, "name": "hostports"}}})
    bridges = _match(_meta("oifname"), "@bridges")
    cmds += [
        _rule("forward", bridges, _match({"ct": {"key": "state"}}, ["established", "related"],
                                         "in"), {"accept": None}),
        # Published ports are public: reachable from any network's containers too.
        _rule("forward", bridges, _match({"ct": {"key": "status"}}, "dnat", "in"),
              {"accept": None}),
        _rule("forward", {"vmap": {"key": _meta("iifname"), "data": "@fwd_from"}}),
        _rule("forward", {"vmap": {"key": _meta("oifname"), "data": "@fwd_to"}}),
    ]
    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    for chain in ("prerouting", "output"):
        cmds.append(_rule(chain, local, {"jump": {"target": "hostports"}}))
    for fam, proto, nfproto in (("4", "ip", "ipv4"), ("6", "ip6", "ipv6")):
        for key, k in (("at", _l4_addr(proto)), ("any", _L4)):
            cmds.append(_rule(
                "hostports", _match(_meta("nfproto"), nfproto),
                {"dnat": {"family": proto,
                          "addr": {"map": {"key": k, "data": f"@pf{fam}{key}_addr"}},
                          "port": {"map": {"key": k, "data": f"@pf{fam}{key}_port"}}}}))
    cmds += [
        _rule("postrouting", {"vmap": {"key": _meta("iifname"), "data": "@nat_from"}}),
        _rule("postrouting", {"vmap": {"key": _meta("oifname"), "data": "@nat_to"}}),
    ]
    return cmds


def _network_chains(net: NetworkRules) -> dict[str, list[list[dict[str, Any]]]]:
    br = net.bridge
    masq = {"masquerade": None}
    fwd: list[list[dict[str, Any]]] = [[_match(_meta("oifname"), br), {"accept": None}]]
    if net.internal:
        fwd.append([{"drop": None}])
    else:
        fwd += [[_match(_meta("oifname"), "@bridges"), {"drop": None}], [{"accept": None}]]
    frm: list[list[dict[str, Any]]] = []
    if not net.internal:
        frm.append([_match(_meta("oifname"), br, "!="), masq])
    dnat = _match({"ct": {"key": "status"}}, "dnat", "in")
    to: list[list[dict[str, Any]]] = [
        # The host's own traffic to a published port (its loopback too: route_localnet on the
        # bridge) reaches the container from the gateway, as through Docker's userland proxy:
        # the container answers through its network's route (the link MTU), not its default
        # route to the outside (the network MTU).
        [dnat, _match({"fib": {"result": "type", "flags": ["saddr"]}}, "local"), masq],
    ]
    for subnet in net.subnets:
        # Hairpin: a member of this network reaching a published port through a host address
        # (its own too) -- also when br_netfilter bridges the DNAT'ed frame back to the bridge
        # instead of routing it, where no input interface is known.
        n = ipaddress.ip_network(subnet)
        proto = "ip6" if n.version == 6 else "ip"
        to.append([dnat, _match({"payload": {"protocol": proto, "field": "saddr"}},
                                {"prefix": {"addr": str(n.network_address),
                                            "len": n.prefixlen}}), masq])
    return {_chain(net, "fwd"): fwd, _chain(net, "from"): frm, _chain(net, "to"): to}


def _network_elems(net: NetworkRules) -> list[tuple[str, list[Any]]]:
    br = net.bridge
    return [
        ("fwd_from", [[br, {"jump": {"target": _chain(net, "fwd")}}]]),
        ("fwd_to", [[br, {"drop": None}]]),
        ("nat_from", [[br, {"jump": {"target": _chain(net, "from")}}]]),
        ("nat_to", [[br, {"jump": {"target": _chain(net, "to")}}]]),
        ("bridges", [br]),
    ]


_PROTO_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def _forward_elems(pf: PortForward) -> list[tuple[str, bytes, bytes]]:
    """The DNAT map elements of a port forward: ``(map, key, data)`` in the kernel's encoding
    (every part of a concatenated key padded to 32 bits; ports and addresses in network
    order)."""
    out: list[tuple[str, bytes, bytes]] = []
    for b in pf.bindings:
        fam = "6" if b.family == 6 else "4"
        target = pf.ipv6 if fam == "6" else pf.ipv4
        if target is None:
            continue
        wildcard = b.host_ip in ("", "0.0.0.0", "::")
        tail = struct.pack("!B3xH2x", _PROTO_NUMBERS[b.protocol], b.host_port)
        port = struct.pack("!H", b.container_port)
        key = tail if wildcard else ipaddress.ip_address(b.host_ip).packed + tail
        kind = "any" if wildcard else "at"
        out.append((f"pf{fam}{kind}_addr", key, ipaddress.ip_address(target).packed))
        out.append((f"pf{fam}{kind}_port", key, port))
        if wildcard and b.family == 4 and b.host_ip == "" and pf.ipv6 is not None:
            # Every address: the IPv6 ones too, when the endpoint has one.
            out.append(("pf6any_addr", tail, ipaddress.ip_address(pf.ipv6).packed))
            out.append(("pf6any_port", tail, port))
    return out


# nfnetlink, as linux/netfilter/nfnetlink.h and nf_tables.h number it.
_NETLINK_NETFILTER = 12
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_CREATE = 0x1, 0x4, 0x400
_NFNL_MSG_BATCH_BEGIN, _NFNL_MSG_BATCH_END = 0x10, 0x11
_NFNL_SUBSYS_NFTABLES = 10
_NFT_MSG_NEWSETELEM, _NFT_MSG_DELSETELEM, _NFT_MSG_DESTROYSETELEM = 12, 14, 30
_NFPROTO_INET = 1
_NLA_F_NESTED = 0x8000
_NFTA_SET_ELEM_LIST_TABLE, _NFTA_SET_ELEM_LIST_SET, _NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
_NFTA_LIST_ELEM = 1
_NFTA_SET_ELEM_KEY, _NFTA_SET_ELEM_DATA = 1, 2
_NFTA_DATA_VALUE = 1


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind | (_NLA_F_NESTED if nested else 0))
    return head + payload + bytes(-len(payload) % 4)


def _elements_payload(name: str, elems: Sequence[tuple[bytes, bytes | None]]) -> bytes:
    items = b""
    for key, data in elems:
        body = _attr(_NFTA_SET_ELEM_KEY, _attr(_NFTA_DATA_VALUE, key), nested=True)
        if data is not None:
            body += _attr(_NFTA_SET_ELEM_DATA, _attr(_NFTA_DATA_VALUE, data), nested=True)
        items += _attr(_NFTA_LIST_ELEM, body, nested=True)
    return (_attr(_NFTA_SET_ELEM_LIST_TABLE, TABLE.encode() + b"\0")
            + _attr(_NFTA_SET_ELEM_LIST_SET, name.encode() + b"\0")
            + _attr(_NFTA_SET_ELEM_LIST_ELEMENTS, items, nested=True))


class _ElementBatch:
    """One nfnetlink transaction of set-element messages on a netlink socket of the host's
    namespace. The kernel runs a batch inside the ``sendmsg``, all or nothing, so every ACK is
    queued when it returns: they are read without waiting."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0
        self.msgs: list[bytes] = []

    def _msg(self, kind: int, flags: int, payload: bytes, family: int = _NFPROTO_INET,
             res_id: int = 0) -> bytes:
        self.seq += 1
        body = struct.pack("=BB", family, 0) + struct.pack("!H", res_id) + payload
        return struct.pack("=IHHII", 16 + len(body), kind, flags, self.seq, 0) + body

    def add(self, verb: int, name: str, elems: Sequence[tuple[bytes, bytes | None]]) -> None:
        flags = _NLM_F_REQUEST | _NLM_F_ACK | (_NLM_F_CREATE if verb == _NFT_MSG_NEWSETELEM
                                                else 0)
        self.msgs.append(self._msg(_NFNL_SUBSYS_NFTABLES << 8 | verb, flags,
                                   _elements_payload(name, elems)))

    def run(self) -> None:
        """Send the batch; raises OSError with the first error the kernel reported."""
        if not self.msgs:
            return
        seqs = list(range(1, len(self.msgs) + 1))
        begin = self._msg(_NFNL_MSG_BATCH_BEGIN, _NLM_F_REQUEST, b"", 0, _NFNL_SUBSYS_NFTABLES)
        end = self._msg(_NFNL_MSG_BATCH_END, _NLM_F_REQUEST, b"", 0, _NFNL_SUBSYS_NFTABLES)
        results = transact(self.sock, [begin, *self.msgs, end], seqs)
        self.msgs = []
        # The batch is all or nothing: the first error is the one to tell; a message after
        # it got no answer at all.
        error = next((results[s] for s in seqs if results.get(s)), 0)
        if not error and len(results) < len(seqs):
            error = errno.EIO
        if error:
            raise OSError(error, os.strerror(error))


class NftablesFirewall:
    """The nftables backend, acting in the namespace ``host`` (see module docs)."""

    name = "nftables"

    def __init__(self, host: NetNamespace, nft: str | None = None) -> None:
        found = nft or shutil.which("nft", path=_default_env()["PATH"])
        if not found:
            raise UnsupportedError("the nftables firewall needs the nft program (Debian "
                                   "package nftables); or use firewall='none'", missing="nft")
        self.host = host
        self.nft = found
        self._nl: socket.socket | None = None
        self._nl_lock = threading.Lock()
        self._destroy = True  # DESTROYSETELEM (Linux 6.3) until the kernel says otherwise

    def close(self) -> None:
        """Close the netlink socket this backend keeps (idempotent)."""
        nl, self._nl = self._nl, None
        if nl is not None:
            nl.close()

    def _elements(self, build: Any) -> None:
        """Run one element batch made by ``build(batch)``, on the kept netlink socket."""
        with self._nl_lock:
            if self._nl is None:
                self._nl = self.host.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                            _NETLINK_NETFILTER)
            batch = _ElementBatch(self._nl)
            build(batch)
            batch.run()

    def apply(self, cmds: Sequence[dict[str, Any]]) -> None:
        """Run one transaction. Raises NetworkError with nft's message."""
        if cmds:
            data = json.dumps({"nftables": list(cmds)}).encode()
            self.host.run([self.nft, "-j", "-f", "-"], data)

    def ruleset(self) -> list[dict[str, Any]]:
        """isolate's table as nft lists it (JSON objects), [] when there is none."""
        res = self.host.run([self.nft, "-j", "list", "table", "inet", TABLE], check=False)
        if res.returncode != 0:
            return []
        items: list[dict[str, Any]] = json.loads(res.stdout or b"{}").get("nftables", [])
        return items

    def setup_network(self, net: NetworkRules, *, guard_forwarding: bool = False) -> None:
        """Install the network's rules (NAT, forwarding, isolation) in the host namespace;
        idempotent."""
        cmds = _base()
        if guard_forwarding:
            # ip_forward was off before isolate: forward nothing but its bridges' traffic.
            cmds.append(_rule("forward", {"drop": None}))
        for chain, rules in _network_chains(net).items():
            cmds.append({"add": {"chain": {**_T, "name": chain}}})
            cmds.append({"flush": {"chain": {**_T, "name": chain}}})
            cmds += [_rule(chain, *r) for r in rules]
        cmds += [_elem("add", name, elems) for name, elems in _network_elems(net)]
        self.apply(cmds)

    def teardown_network(self, net: NetworkRules, *, complete: bool) -> None:
        """Remove the network's rules (``complete``: the whole table once no network is left)."""
        if complete:
            self.apply([{"add": {"table": {"family": "inet", "name": TABLE}}},
                        {"delete": {"table": {"family": "inet", "name": TABLE}}}])
            return
        # Everything to remove is added first (the maps, the chains their elements jump to,
        # the elements), so that removing what is already gone is no error.
        cmds = _objects()
        chains = list(_network_chains(net))
        cmds += [{"add": {"chain": {**_T, "name": chain}}} for chain in chains]
        for name, elems in _network_elems(net):
            cmds.append(_elem("add", name, elems))
            cmds.append(_elem("delete", name, [e[0] if isinstance(e, list) else e
                                               for e in elems]))
        for chain in chains:
            cmds.append({"flush": {"chain": {**_T, "name": chain}}})
            cmds.append({"delete": {"chain": {**_T, "name": chain}}})
        self.apply(cmds)

    def setup_port_forward(self, pf: PortForward) -> None:
        """Install the DNAT rules of one endpoint's published ports (one nfnetlink batch);
        idempotent. Raises NetworkError (ENOENT: isolate's table or maps are missing -- set the
        network up again -- or the kernel's refusal)."""
        elems = _forward_elems(pf)
        if not elems:
            return

        def build(batch: _ElementBatch) -> None:
            for name, key, data in elems:
                batch.add(_NFT_MSG_NEWSETELEM, name, [(key, data)])

        try:
            self._elements(build)
        except OSError as exc:
            if isinstance(exc, NetworkError):
                raise
            raise NetworkError(exc.errno or errno.EIO, f"add the port forwards of "
                               f"{pf.ipv4 or pf.ipv6} to table inet {TABLE}",
                               step="nftables") from exc

    def teardown_port_forward(self, pf: PortForward) -> None:
        """Remove the rules of one endpoint's published ports; absent ones (or no table at
        all) are fine. Raises NetworkError."""
        elems = _forward_elems(pf)
        if not elems:
            return

        def build(batch: _ElementBatch) -> None:
            for name, key, data in elems:
                if self._destroy:
                    batch.add(_NFT_MSG_DESTROYSETELEM, name, [(key, None)])
                else:
                    batch.add(_NFT_MSG_NEWSETELEM, name, [(key, data)])
                    batch.add(_NFT_MSG_DELSETELEM, name, [(key, None)])

        for _attempt in (0, 1):
            try:
                self._elements(build)
                return
            except OSError as exc:
                if isinstance(exc, NetworkError):
                    raise
                if exc.errno == errno.ENOENT:
                    return  # no table or map: nothing of ours to remove
                if exc.errno == errno.EINVAL and self._destroy:
                    self._destroy = False  # a kernel before 6.3: add, then delete
                    continue
                raise NetworkError(exc.errno or errno.EIO, f"remove the port forwards of "
                                   f"{pf.ipv4 or pf.ipv6} from table inet {TABLE}",
                                   step="nftables") from exc

    def sweep(self, networks: Sequence[NetworkRules], addresses: Collection[str]) -> list[str]:
        """Remove from isolate's table what no record names: port forwards (DNAT map
        elements) to an address in ``addresses`` none, and the chains and map elements of
        bridges of no network in ``networks``; one transaction. Returns descriptions of what
        went ([] when there is no table). Raises NetworkError."""
        items = self.ruleset()
        keep = {_canonical(a) for a in addresses}
        bridges = {n.bridge for n in networks}
        chains = {c for n in networks for c in _network_chains(n)}
        maps = {i["map"]["name"]: i["map"] for i in items if "map" in i}
        cmds: list[dict[str, Any]] = []
        done: list[str] = []

        def drop(name: str, key: object) -> None:
            cmds.append({"delete": {"element": {**_T, "name": name, "elem": [key]}}})

        for name, m in maps.items():
            for elem in m.get("elem", []):
                if not isinstance(elem, list) or len(elem) != 2:
                    continue
                key, value = elem
                if name.startswith("pf") and name.endswith("_addr"):
                    if _canonical(value) not in keep:
                        drop(name, key)
                        if any(e[0] == key for e in maps.get(name[:-5] + "_port", {})
                               .get("elem", []) if isinstance(e, list)):
                            drop(name[:-5] + "_port", key)
                        done.append(f"port forward {_describe(key)} to {value}")
                elif name in ("fwd_from", "fwd_to", "nat_from", "nat_to") and \
                        key not in bridges:
                    drop(name, key)
        for item in items:
            if "set" in item and item["set"]["name"] == "bridges":
                for br in item["set"].get("elem", []):
                    if br not in bridges:
                        drop("bridges", br)
                        done.append(f"the rules of bridge {br}")
        for item in items:
            name = item.get("chain", {}).get("name", "")
            if name.startswith("n-") and name not in chains:
                cmds.append({"flush": {"chain": {**_T, "name": name}}})
                cmds.append({"delete": {"chain": {**_T, "name": name}}})
                done.append(f"firewall chain {name}")
        self.apply(cmds)
        return done


def _canonical(address: object) -> str:
    try:
        return str(ipaddress.ip_address(str(address)))
    except ValueError:
        return str(address)


def _describe(key: object) -> str:
    """A DNAT map key as nft lists it (``{"concat": [addr?, proto, port]}``), as text."""
    parts = key.get("concat", [key]) if isinstance(key, dict) else [key]
    return " ".join(str(p) for p in parts)


def make_firewall(kind: str, host: NetNamespace) -> Firewall:
    """The backend named ``kind`` (``"nftables"`` or ``"none"``).

    Raises ConfigError (unknown kind), UnsupportedError (nft missing).
    """
    if kind == "nftables":
        return NftablesFirewall(host)
    if kind == "none":
        return NoFirewall()
    raise ConfigError(f"unknown firewall backend {kind!r} (nftables or none)")
