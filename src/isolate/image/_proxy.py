"""HTTP proxies for registry traffic, from HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY.

Owns reading those variables as Docker, podman and skopeo read them (Go's ``httpproxy``
rules: upper- or lower-case names, ``NO_PROXY`` entries by host, domain, IP or CIDR with an
optional port, ``*`` for all; ``localhost`` and loopback addresses never proxied; a proxy
without a scheme is ``http://``), plus ``ALL_PROXY`` as curl reads it (for a scheme without a
variable of its own). Knows no HTTP: :class:`isolate.image.registry.RegistryClient` tunnels
HTTPS through the proxy with CONNECT and sends plain HTTP to it in absolute form.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping

from isolate import _record
from isolate.errors import ConfigError, UnsupportedError

__all__ = ["Proxy", "ProxySettings", "is_loopback_host"]


@_record.record
class Proxy:
    """An HTTP proxy: where it listens and the ``Proxy-Authorization`` it wants, if any."""

    host: str
    port: int
    authorization: str | None = _record.field(default=None, repr=False)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """Headers for the proxy (on a CONNECT, or on a request sent to it)."""
        return {"Proxy-Authorization": self.authorization} if self.authorization else {}


def _parse_proxy(value: str, variable: str) -> Proxy:
    text = value if "://" in value else "http://" + value
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() != "http":
        raise UnsupportedError(
            f"{variable}={value!r}: only http:// proxies are supported (an HTTPS registry is "
            "still reached through them with CONNECT, end to end encrypted)",
            missing=f"{parts.scheme} proxy support")
    try:
        port = parts.port or 80
    except ValueError:
        raise ConfigError(f"{variable}={value!r}: the port is not 1 to 65535") from None
    if not parts.hostname:
        raise ConfigError(f"{variable}={value!r} names no proxy host")
    auth = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return Proxy(parts.hostname, port, auth)


def _split_host_port(host: str) -> tuple[str, int | None]:
    parts = urllib.parse.urlsplit("//" + host)
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or host).lower(), port


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """True if ``host`` (``name[:port]``, ``[v6]:port``) is ``localhost`` or a loopback IP."""
    return _is_loopback(_split_host_port(host)[0])


@_record.record
class ProxySettings:
    """Which proxy, if any, each registry is reached through.

    ``http``/``https`` are the proxy URLs for plain and TLS registries (None: direct), and
    ``no_proxy`` the ``NO_PROXY`` entries. Build it from the environment with
    :meth:`from_environ`.
    """

    http: str | None = None
    https: str | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ProxySettings:
        """Read ``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (each also in
        lower case; the upper-case name wins, as in Go). ``HTTP_PROXY`` is ignored when
        ``REQUEST_METHOD`` is set (a CGI program, where a client controls that variable)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or env.get(name.lower()) or None

        fallback = get("ALL_PROXY")
        http = None if env.get("REQUEST_METHOD") else get("HTTP_PROXY")
        no_proxy = tuple(e.strip().lower() for e in (get("NO_PROXY") or "").split(",")
                         if e.strip())
        return cls(http=http or fallback, https=get("HTTPS_PROXY") or fallback,
                   no_proxy=no_proxy)

    def bypassed(self, host: str) -> bool:
        """True if ``host`` (``name[:port]``) is reached directly: loopback, or NO_PROXY."""
        name, port = _split_host_port(host)
        if _is_loopback(name):
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            address = None
        for entry in self.no_proxy:
            if entry == "*":
                return True
            if "/" in entry:  # a CIDR block
                try:
                    if address is not None and address in ipaddress.ip_network(entry,
                                                                               strict=False):
                        return True
                except ValueError:
                    pass
                continue
            entry_name, entry_port = _split_host_port(entry)
            if entry_port is not None and entry_port != port:
                continue
            if entry_name.startswith("."):  # ".example.com": its subdomains
                if name.endswith(entry_name):
                    return True
            elif name == entry_name or name.endswith("." + entry_name):
                return True
        return False

    def proxy_for(self, scheme: str, host: str) -> Proxy | None:
        """The proxy to reach ``scheme://host`` through, or None for a direct connection.

        Raises:
            UnsupportedError: the proxy URL's scheme is not ``http``.
            ConfigError: the proxy URL is malformed.
        """
        value = self.https if scheme == "https" else self.http
        if not value or self.bypassed(host):
            return None
        return _parse_proxy(value, "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY")
