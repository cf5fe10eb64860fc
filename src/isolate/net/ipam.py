"""IP address management: subnets for new networks, addresses for endpoints.

Owns the choice of a free subnet (Docker's default pools, skipping what overlaps the host's
routes and the other networks) and :class:`AddressPool`, one subnet's leases: the gateway and the
network/broadcast addresses are never handed out, a requested address must be free, and new
ones are taken round-robin after the last one given, so an address just released is not reused
at once (a peer's ARP cache may still hold the old owner). Pure: the caller persists
:meth:`AddressPool.to_json` under the networks directory's lock.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from isolate.errors import ConfigError

__all__ = ["DEFAULT_POOLS", "AddressPool", "IPNetwork", "pick_subnet", "pick_subnet6"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Where new IPv4 networks come from, as Docker's default address pools: 172.17-31.0.0/16,
#: then 192.168.0.0/16 cut in /20s.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (("172.17.0.0/16", 16), ("172.18.0.0/15", 16),
                                              ("172.20.0.0/14", 16), ("172.24.0.0/13", 16),
                                              ("192.168.0.0/16", 20))


def pick_subnet(taken: Iterable[IPNetwork],
                pools: Iterable[tuple[str, int]] = DEFAULT_POOLS) -> ipaddress.IPv4Network:
    """The first subnet of ``pools`` (``(base, prefixlen)``) that overlaps nothing ``taken``.

    Raises ConfigError when every one is taken.
    """
    used = [t for t in taken if t.version == 4]
    for base, prefix in pools:
        for candidate in ipaddress.IPv4Network(base).subnets(new_prefix=prefix):
            if not any(candidate.overlaps(t) for t in used):  # type: ignore[arg-type]
                return candidate
    raise ConfigError("no free subnet is left in the default pools; give one (subnet=...)")


def pick_subnet6(seed: str, taken: Iterable[IPNetwork]) -> ipaddress.IPv6Network:
    """A unique-local /64 (``fdXX:XXXX:XXXX:YYYY::/64``, RFC 4193) derived from ``seed`` (the
    network id), avoiding what is ``taken``."""
    used = [t for t in taken if t.version == 6]
    digest = hashlib.sha256(seed.encode()).digest()
    for i in range(1 << 16):
        prefix = b"\xfd" + digest[:5] + i.to_bytes(2, "big")
        candidate = ipaddress.IPv6Network((int.from_bytes(prefix + bytes(8), "big"), 64))
        if not any(candidate.overlaps(t) for t in used):  # type: ignore[arg-type]
            return candidate
    raise ConfigError("no free IPv6 subnet found")  # pragma: no cover - 65536 collisions


class AddressPool:
    """The leases of one subnet: address -> the endpoint id holding it."""

    def __init__(self, subnet: IPNetwork, gateway: IPAddress,
                 leases: Mapping[str, str] | None = None, last: str | None = None) -> None:
        self.subnet = subnet
        self.gateway = gateway
        self.leases: dict[str, str] = dict(leases or {})
        self.last = last

    @classmethod
    def from_json(cls, subnet: IPNetwork, gateway: IPAddress,
                  data: Mapping[str, object] | None) -> AddressPool:
        """The record back from what :meth:`to_json` wrote."""
        data = data or {}
        leases = data.get("leases") or {}
        last = data.get("last")
        return cls(subnet, gateway, {str(k): str(v) for k, v in dict(leases).items()},  # type: ignore[call-overload]
                   str(last) if last else None)

    def to_json(self) -> dict[str, object]:
        """The record as JSON-ready data, for the state files."""
        return {"leases": dict(sorted(self.leases.items())), "last": self.last}

    def _usable(self, addr: IPAddress) -> bool:
        if addr not in self.subnet or addr == self.gateway:
            return False
        if addr == self.subnet.network_address:
            return False
        return not (self.subnet.version == 4 and self.subnet.prefixlen < 31
                    and addr == self.subnet.broadcast_address)

    def allocate(self, holder: str, requested: str | None = None) -> str:
        """Lease an address to ``holder``: ``requested`` if given (it must be in the subnet,
        not reserved, free), else the next free one after the last handed out.

        Raises ConfigError (requested address bad or taken, subnet full).
        """
        if requested is not None:
            try:
                addr = ipaddress.ip_address(requested)
            except ValueError:
                raise ConfigError(f"invalid IP address {requested!r}") from None
            if addr not in self.subnet:
                raise ConfigError(f"address {addr} is not in subnet {self.subnet}")
            if not self._usable(addr):
                raise ConfigError(f"address {addr} is reserved in subnet {self.subnet} "
                                  "(network, gateway or broadcast)")
            if str(addr) in self.leases and self.leases[str(addr)] != holder:
                raise ConfigError(f"address {addr} is already in use on this network")
            self.leases[str(addr)] = holder
            return str(addr)
        first = int(self.subnet.network_address) + 1
        end = int(self.subnet.broadcast_address) + (1 if self.subnet.prefixlen >= 31 else 0)
        if self.subnet.version == 6:
            end = min(end, first + (1 << 24))  # a /64 has more than anyone will lease
        span = end - first
        start = first
        if self.last is not None:
            start = int(ipaddress.ip_address(self.last)) + 1
        taken = self.leases
        for i in range(span):
            value = first + (start - first + i) % span
            addr = ipaddress.ip_address(value)
            if str(addr) in taken or not self._usable(addr):
                continue
            self.leases[str(addr)] = holder
            self.last = str(addr)
            return str(addr)
        raise ConfigError(f"no free address is left in subnet {self.subnet}")

    def release(self, holder: str) -> None:
        """Give back every address ``holder`` leased (nothing if it has none)."""
        for addr in [a for a, h in self.leases.items() if h == holder]:
            del self.leases[addr]
