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
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import Any, Protocol

import attrs

from isolate.errors import ConfigError, UnsupportedError
from isolate.net._ns import NetNamespace, _default_env
from isolate.net.ports import PortBinding

__all__ = ["TABLE", "Firewall", "NetworkRules", "NftablesFirewall", "NoFirewall", "PortForward",
           "make_firewall"]

#: The nftables table isolate owns (family inet).
TABLE = "isolate"
_T = {"family": "inet", "table": TABLE}


@attrs.frozen
class NetworkRules:
    """What the firewall needs of a network: its id, bridge, subnets and whether it is
    internal (no way out)."""

    id: str
    bridge: str
    subnets: tuple[str, ...]
    internal: bool = False


@attrs.frozen
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
    to: list[list[dict[str, Any]]] = [
        # Hairpin: a container reaching a published port of its own network through the host.
        [_match({"ct": {"key": "status"}}, "dnat", "in"), _match(_meta("iifname"), br), masq],
        # The host's own loopback reaching a published port (route_localnet on the bridge).
        [_match({"payload": {"protocol": "ip", "field": "saddr"}},
                {"prefix": {"addr": "127.0.0.0", "len": 8}}), masq],
    ]
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


def _forward_elems(pf: PortForward) -> list[tuple[str, list[Any]]]:
    out: list[tuple[str, list[Any]]] = []
    for b in pf.bindings:
        fam = "6" if b.family == 6 else "4"
        target = pf.ipv6 if fam == "6" else pf.ipv4
        if target is None:
            continue
        wildcard = b.host_ip in ("", "0.0.0.0", "::")
        key: dict[str, Any] = {"concat": [b.protocol, b.host_port]} if wildcard else \
            {"concat": [b.host_ip, b.protocol, b.host_port]}
        kind = "any" if wildcard else "at"
        out.append((f"pf{fam}{kind}_addr", [[key, target]]))
        out.append((f"pf{fam}{kind}_port", [[key, b.container_port]]))
        if wildcard and b.family == 4 and b.host_ip == "" and pf.ipv6 is not None:
            # Every address: the IPv6 ones too, when the endpoint has one.
            out.append(("pf6any_addr", [[key, pf.ipv6]]))
            out.append(("pf6any_port", [[key, b.container_port]]))
    return out


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
        """Install the DNAT rules of one published port; idempotent."""
        self.apply([_elem("add", name, elems) for name, elems in _forward_elems(pf)])

    def teardown_port_forward(self, pf: PortForward) -> None:
        """Remove the rules of one published port; absent ones are fine."""
        elems = _forward_elems(pf)
        if not elems:
            return
        cmds = _objects()
        for name, items in elems:
            cmds.append(_elem("add", name, items))
            cmds.append(_elem("delete", name, [e[0] for e in items]))
        self.apply(cmds)


def make_firewall(kind: str, host: NetNamespace) -> Firewall:
    """The backend named ``kind`` (``"nftables"`` or ``"none"``).

    Raises ConfigError (unknown kind), UnsupportedError (nft missing).
    """
    if kind == "nftables":
        return NftablesFirewall(host)
    if kind == "none":
        return NoFirewall()
    raise ConfigError(f"unknown firewall backend {kind!r} (nftables or none)")
