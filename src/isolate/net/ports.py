"""Published ports: Docker's ``-p`` grammar as records, and the bindings they resolve to.

Owns :class:`PortMapping` (what the user asked: ``[HOSTIP:][HOSTPORT:]CONTAINERPORT[/PROTO]``,
ranges, an omitted host port meaning an ephemeral one) and :class:`PortBinding` (one host port
to one container port, as ``docker port`` shows it). Pure: no system calls.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from isolate import _record

if TYPE_CHECKING:
    import attrs

from isolate.errors import ConfigError

__all__ = ["PROTOCOLS", "PortBinding", "PortMapping", "format_bindings", "parse_publish"]

PROTOCOLS = ("tcp", "udp")


def _check_port(inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(f"{attr.name} must be a port number 0-65535, not {value!r}")


def _check_proto(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    if value not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {value!r}")


def _check_host_ip(_inst: object, _attr: attrs.Attribute[str], value: str) -> None:
    if value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ConfigError(f"invalid host IP address {value!r}") from None


@_record.record
class PortMapping:
    """One ``-p`` option: container ports ``container_start..container_end`` published on
    ``host_ip`` (empty: every address) ports ``host_start..host_end`` (0: ephemeral ones).

    A host range with a single container port means "any one free port of that range", as in
    Docker; otherwise the two ranges have the same length and map one to one.
    """

    container_start: int = _record.field(validator=_check_port)
    container_end: int = _record.field(validator=_check_port)
    host_start: int = _record.field(default=0, validator=_check_port)
    host_end: int = _record.field(default=0, validator=_check_port)
    protocol: str = _record.field(default="tcp", validator=_check_proto)
    host_ip: str = _record.field(default="", validator=_check_host_ip)

    def __attrs_post_init__(self) -> None:
        if self.container_start == 0 or self.container_end < self.container_start:
            raise ConfigError(f"invalid container port range {self.container_start}-"
                              f"{self.container_end}")
        if (self.host_start == 0) != (self.host_end == 0) or self.host_end < self.host_start:
            raise ConfigError(f"invalid host port range {self.host_start}-{self.host_end}")
        n_host = self.host_end - self.host_start + 1
        n_cont = self.container_end - self.container_start + 1
        if self.host_start and n_cont > 1 and n_host != n_cont:
            raise ConfigError(f"host port range {self.host_start}-{self.host_end} and container "
                              f"port range {self.container_start}-{self.container_end} differ "
                              "in length")

    @property
    def container_ports(self) -> range:
        """The container ports of the mapping, as a range."""
        return range(self.container_start, self.container_end + 1)

    @property
    def ephemeral(self) -> bool:
        """No host port given: the kernel picks free ones."""
        return self.host_start == 0

    @property
    def any_of_range(self) -> bool:
        """A host range for one container port: one free port of it is taken."""
        return self.host_start != 0 and self.container_start == self.container_end \
            and self.host_end > self.host_start

    def __str__(self) -> str:
        def rng(a: int, b: int) -> str:
            return str(a) if a == b else f"{a}-{b}"
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        head = ""
        if self.host_ip:
            head = f"{ip}:{rng(self.host_start, self.host_end) if self.host_start else ''}:"
        elif self.host_start:
            head = f"{rng(self.host_start, self.host_end)}:"
        return f"{head}{rng(self.container_start, self.container_end)}/{self.protocol}"


@_record.record
class PortBinding:
    """One host port forwarded to one container port (what ``docker port`` lists)."""

    protocol: str = _record.field(validator=_check_proto)
    host_ip: str = _record.field(validator=_check_host_ip)
    host_port: int = _record.field(validator=_check_port)
    container_port: int = _record.field(validator=_check_port)

    @property
    def family(self) -> int:
        """4 or 6: the address family of ``host_ip`` (4 for "every address")."""
        return 6 if ":" in self.host_ip else 4

    def overlaps(self, other: PortBinding) -> bool:
        """Whether both cannot be bound at once (same protocol and port, and one of the
        addresses is the other or a wildcard of its family)."""
        if self.protocol != other.protocol or self.host_port != other.host_port:
            return False
        a, b = self.host_ip, other.host_ip
        wild = ("", "0.0.0.0", "::")
        return a == b or a in wild or b in wild

    def to_json(self) -> dict[str, object]:
        """The record as JSON-ready data, for the state files."""
        return {"protocol": self.protocol, "host_ip": self.host_ip,
                "host_port": self.host_port, "container_port": self.container_port}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> PortBinding:
        """The record back from what :meth:`to_json` wrote."""
        return cls(str(data["protocol"]), str(data["host_ip"]), int(str(data["host_port"])),
                   int(str(data["container_port"])))

    def __str__(self) -> str:
        ip = self.host_ip or "0.0.0.0"
        if ":" in ip:
            ip = f"[{ip}]"
        return f"{ip}:{self.host_port}->{self.container_port}/{self.protocol}"


def format_bindings(bindings: list[PortBinding]) -> str:
    """Ports as ``docker ps`` shows them: ``0.0.0.0:9090->80/tcp, 127.0.0.1:53->53/udp``."""
    return ", ".join(str(b) for b in bindings)


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        a = int(start, 10)
        b = int(end, 10) if sep else a
    except ValueError:
        raise ConfigError(f"invalid {what} {text!r} in port spec {spec!r}") from None
    if not start.isdigit() or (sep and not end.isdigit()):
        raise ConfigError(f"invalid {what} {text!r} in port spec {spec!r}")
    if not (0 < a <= 65535 and 0 < b <= 65535) or b < a:
        raise ConfigError(f"invalid {what} {text!r} in port spec {spec!r} (1-65535, "
                          "start <= end)")
    return a, b


def parse_publish(spec: str) -> PortMapping:
    """Parse one ``-p``/``--publish`` value as Docker does:
    ``[HOSTIP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp]``, each port a number or a range
    ``A-B``; an IPv6 host address in brackets (``[::1]:8080:80``); ``HOSTIP::PORT`` for an
    ephemeral host port on one address.

    Raises ConfigError naming what is wrong.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty port spec {spec!r}")
    text = spec.strip()
    body, slash, proto = text.rpartition("/")
    if not slash:
        body, proto = text, "tcp"
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise ConfigError(f"invalid protocol {proto!r} in port spec {spec!r} "
                          f"(one of {', '.join(PROTOCOLS)})")
    host_ip = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1:end + 2] != ":":
            raise ConfigError(f"invalid IPv6 host address in port spec {spec!r}")
        host_ip = body[1:end]
        rest = body[end + 2:].split(":")
        if len(rest) != 2:
            raise ConfigError(f"invalid port spec {spec!r}: expected [IP]:HOSTPORT:PORT")
        host_text, cont_text = rest
        has_ip = True
    else:
        parts = body.split(":")
        if len(parts) > 3:
            raise ConfigError(f"invalid port spec {spec!r}: too many ':' (an IPv6 host "
                              "address goes in brackets)")
        has_ip = len(parts) == 3
        if has_ip:
            host_ip, host_text, cont_text = parts
        elif len(parts) == 2:
            host_text, cont_text = parts
        else:
            host_text, cont_text = "", parts[0]
    if has_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise ConfigError(f"invalid host IP address {host_ip!r} in port spec "
                              f"{spec!r}") from None
        if host_ip in ("0.0.0.0",):
            host_ip = ""
    if not cont_text:
        raise ConfigError(f"no container port in port spec {spec!r}")
    c0, c1 = _port_range(cont_text, "container port", spec)
    h0 = h1 = 0
    if host_text:
        h0, h1 = _port_range(host_text, "host port", spec)
    return PortMapping(c0, c1, h0, h1, proto, host_ip)
