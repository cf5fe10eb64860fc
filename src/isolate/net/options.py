"""The container command line's network options, parsed as Docker parses them.

Owns :class:`NetworkMode` (``--network``: none, host, bridge, a network name with Docker's
``name=N,alias=A,ip=X`` form, ``container:ID``, ``ns:PATH``, ``pasta``, ``slirp4netns``) and the
checks of ``--network-alias``, ``--ip``/``--ip6``, ``--dns``, ``--dns-search``, ``--dns-option``
and ``--add-host``. Pure: no system calls; every bad value is a ConfigError naming it.
"""

from __future__ import annotations

import ipaddress
import re

from isolate import _record
from isolate.errors import ConfigError

__all__ = [
    "HOST_GATEWAY",
    "ExtraHost",
    "NetworkMode",
    "check_name",
    "parse_add_host",
    "parse_dns",
    "parse_dns_option",
    "parse_dns_search",
    "parse_ip",
    "parse_network",
    "parse_network_alias",
]

#: ``--add-host NAME:host-gateway`` maps NAME to the host's address on the network.
HOST_GATEWAY = "host-gateway"

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# A DNS name: labels of letters, digits, '-' and '_' (containers are often named with '_').
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DNS_NAME = re.compile(rf"^(?=.{{1,253}}\.?$){_LABEL}(?:\.{_LABEL})*\.?$")


def check_name(value: str, what: str = "network name") -> str:
    """A Docker object name: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*`` (at most 128 characters)."""
    if not isinstance(value, str) or not _NAME.match(value) or len(value) > 128:
        raise ConfigError(f"invalid {what} {value!r}: use letters, digits, '_', '.', '-', "
                          "starting with a letter or digit")
    return value


def parse_network_alias(value: str) -> str:
    """A ``--network-alias``: a DNS name other containers on the network may use."""
    if not isinstance(value, str) or not _DNS_NAME.match(value):
        raise ConfigError(f"invalid network alias {value!r}: it must be a DNS name")
    return value.rstrip(".")


def parse_ip(value: str, version: int | None = None) -> str:
    """``--ip`` (``version=4``), ``--ip6`` (``version=6``) or either: the normalized text."""
    try:
        addr = ipaddress.ip_address(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise ConfigError(f"invalid IP address {value!r}") from None
    if version is not None and addr.version != version:
        raise ConfigError(f"{value!r} is not an IPv{version} address")
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback:
        raise ConfigError(f"{value!r} cannot be a container's address")
    return str(addr)


def parse_dns(value: str) -> str:
    """A ``--dns`` server: an IPv4 or IPv6 address, optionally ``ADDR#PORT`` for tests and
    local resolvers on another port."""
    addr, _, port = value.strip().partition("#") if isinstance(value, str) else ("", "", "")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise ConfigError(f"invalid DNS server address {value!r}") from None
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ConfigError(f"invalid DNS server port in {value!r}")
    return f"{ip}#{int(port)}" if port else str(ip)


def parse_dns_search(value: str) -> str:
    """A ``--dns-search`` domain (``.`` alone means "no search domains", as in Docker)."""
    if value == ".":
        return value
    if not isinstance(value, str) or not _DNS_NAME.match(value):
        raise ConfigError(f"invalid DNS search domain {value!r}")
    return value.rstrip(".")


def parse_dns_option(value: str) -> str:
    """A ``--dns-option`` for resolv.conf's ``options`` line (``ndots:2``, ``edns0``...)."""
    if not isinstance(value, str) or not re.match(r"^[a-z0-9_-]+(:[0-9]+)?$", value):
        raise ConfigError(f"invalid DNS option {value!r}")
    return value


@_record.record
class ExtraHost:
    """One ``--add-host NAME:IP`` line for /etc/hosts (IP may be :data:`HOST_GATEWAY`)."""

    name: str
    ip: str

    def resolve(self, gateway: str | None) -> str:
        """The address, with ``host-gateway`` replaced by ``gateway``.

        Raises ConfigError when it is ``host-gateway`` and no gateway is known.
        """
        if self.ip != HOST_GATEWAY:
            return self.ip
        if not gateway:
            raise ConfigError(f"--add-host {self.name}:host-gateway needs a network with a "
                              "gateway")
        return gateway


def parse_add_host(value: str) -> ExtraHost:
    """``--add-host NAME:IP`` (or ``NAME=IP``; an IPv6 address may be in brackets)."""
    if not isinstance(value, str):
        raise ConfigError(f"invalid --add-host {value!r}")
    sep = "=" if "=" in value else ":"
    name, found, ip = value.partition(sep)
    if not found or not name:
        raise ConfigError(f"invalid --add-host {value!r}: expected NAME:IP")
    if not _DNS_NAME.match(name):
        raise ConfigError(f"invalid host name {name!r} in --add-host {value!r}")
    ip = ip.strip()
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip == HOST_GATEWAY:
        return ExtraHost(name, ip)
    try:
        return ExtraHost(name, str(ipaddress.ip_address(ip)))
    except ValueError:
        raise ConfigError(f"invalid IP address {ip!r} in --add-host {value!r}") from None


_KINDS = ("none", "host", "bridge", "container", "ns", "pasta", "slirp4netns", "network")


@_record.record
class NetworkMode:
    """A parsed ``--network`` value.

    ``kind`` is ``none`` (loopback only), ``host`` (the host's namespace), ``bridge`` (the
    default network), ``network`` (a user-defined network: ``name``), ``container`` (join the
    namespace of container ``name``), ``ns`` (join the namespace file ``name``), ``pasta`` or
    ``slirp4netns`` (rootless user-mode networking; ``options`` are the program's extra
    arguments). ``aliases``, ``ip`` and ``ip6`` come from Docker's long form
    ``--network name=N,alias=A,ip=X,ip6=Y``.
    """

    kind: str = _record.field(validator=_record.in_(_KINDS))
    name: str = ""
    aliases: tuple[str, ...] = ()
    ip: str | None = None
    ip6: str | None = None
    options: tuple[str, ...] = ()

    @property
    def joins_network(self) -> bool:
        """Whether this mode connects to an isolate network (``bridge`` or a named one)."""
        return self.kind in ("bridge", "network")

    @property
    def network(self) -> str:
        """The network to connect to: ``bridge`` for the default one."""
        return "bridge" if self.kind == "bridge" else self.name


def parse_network(value: str) -> NetworkMode:
    """Parse one ``--network``/``--net`` value (see :class:`NetworkMode`)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"invalid --network {value!r}")
    text = value.strip()
    if text in ("none", "host", "bridge", "default"):
        return NetworkMode("bridge" if text == "default" else text)
    head, colon, rest = text.partition(":")
    if colon and head == "container":
        if not rest:
            raise ConfigError("--network container: needs a container name or id")
        return NetworkMode("container", check_name(rest, "container name or id"))
    if colon and head == "ns":
        if not rest.startswith("/"):
            raise ConfigError(f"--network ns:PATH needs an absolute path, not {rest!r}")
        return NetworkMode("ns", rest)
    if head in ("pasta", "slirp4netns"):
        opts = tuple(o for o in rest.split(",") if o) if colon else ()
        return NetworkMode(head, options=opts)
    if "=" in text:
        fields: dict[str, list[str]] = {}
        for item in text.split(","):
            key, eq, val = item.partition("=")
            if not eq or not val:
                raise ConfigError(f"invalid --network {value!r}: expected key=value pairs")
            fields.setdefault(key.strip(), []).append(val.strip())
        unknown = set(fields) - {"name", "alias", "ip", "ip6", "mac-address", "driver-opt"}
        if unknown:
            raise ConfigError(f"unknown --network field(s) {', '.join(sorted(unknown))} in "
                              f"{value!r}")
        names = fields.get("name", [])
        if len(names) != 1:
            raise ConfigError(f"--network {value!r} needs exactly one name=")
        base = parse_network(names[0])
        if not base.joins_network:
            raise ConfigError(f"--network {value!r}: aliases and addresses need a network")
        ips = fields.get("ip", [])
        ip6s = fields.get("ip6", [])
        if len(ips) > 1 or len(ip6s) > 1:
            raise ConfigError(f"--network {value!r}: ip= and ip6= may be given once each")
        return _record.evolve(
            base, aliases=tuple(parse_network_alias(a) for a in fields.get("alias", [])),
            ip=parse_ip(ips[0], 4) if ips else None,
            ip6=parse_ip(ip6s[0], 6) if ip6s else None)
    return NetworkMode("network", check_name(text))
