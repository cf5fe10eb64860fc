"""The contents of a container's ``/etc/hosts`` and ``/etc/resolv.conf``, as Docker writes them.

Pure functions returning strings: the container layer writes them into the container's state
dir and binds them in. A container on a network with a resolver gets that resolver (the
network's gateway) as its nameserver; otherwise the host's nameservers, less the loopback ones
(they do not exist inside the container's namespace).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from isolate.net.options import ExtraHost

__all__ = ["HostsEntry", "ResolvConf", "hosts_file", "parse_resolv_conf", "resolv_conf"]

HostsEntry = tuple[str, Sequence[str]]  # an address and its names

_BASE_HOSTS = (
    ("127.0.0.1", ("localhost",)),
    ("::1", ("localhost", "ip6-localhost", "ip6-loopback")),
    ("fe00::0", ("ip6-localnet",)),
    ("ff00::0", ("ip6-mcastprefix",)),
    ("ff02::1", ("ip6-allnodes",)),
    ("ff02::2", ("ip6-allrouters",)),
)


def hosts_file(hostname: str, addresses: Iterable[str] = (), *,
               extra: Iterable[ExtraHost] = (), gateway: str | None = None,
               aliases: Iterable[str] = ()) -> str:
    """``/etc/hosts``: localhost lines, ``--add-host`` lines (``host-gateway`` becomes
    ``gateway``), then the container's own ``addresses`` with ``hostname`` and ``aliases``.

    Raises ConfigError for ``host-gateway`` without a gateway.
    """
    lines = [f"{ip}\t{' '.join(names)}" for ip, names in _BASE_HOSTS]
    lines += [f"{h.resolve(gateway)}\t{h.name}" for h in extra]
    names = " ".join(dict.fromkeys([hostname, *aliases]))
    own = list(addresses)
    if not own:
        return "\n".join(lines) + "\n"
    lines += [f"{ip}\t{names}" for ip in own]
    return "\n".join(lines) + "\n"


class ResolvConf:
    """What a resolv.conf says: nameservers, search domains, options."""

    def __init__(self, nameservers: Sequence[str] = (), search: Sequence[str] = (),
                 options: Sequence[str] = ()) -> None:
        self.nameservers = list(nameservers)
        self.search = list(search)
        self.options = list(options)


def parse_resolv_conf(text: str) -> ResolvConf:
    """Read resolv.conf text (comments and unknown lines are skipped)."""
    out = ResolvConf()
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        key, rest = words[0], words[1:]
        if key == "nameserver" and rest:
            out.nameservers.append(rest[0])
        elif key in ("search", "domain"):
            out.search = list(rest)
        elif key == "options":
            out.options += rest
    return out


def host_resolv_conf(path: str = "/etc/resolv.conf") -> ResolvConf:
    """The host's resolv.conf (empty when missing)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_resolv_conf(f.read())
    except OSError:
        return ResolvConf()


def resolv_conf(*, resolver: str | None = None, dns: Sequence[str] = (),
                search: Sequence[str] | None = None, options: Sequence[str] | None = None,
                host: ResolvConf | None = None) -> str:
    """``/etc/resolv.conf`` for a container.

    ``resolver``: the network's own resolver (it forwards to ``dns`` or the host's servers,
    so it is the only nameserver). Without one: ``dns`` (``--dns``) or else the host's
    nameservers less loopback ones. ``search``/``options`` (``--dns-search``/``--dns-option``)
    replace the host's (``["."]`` means no search domains).
    """
    base = host if host is not None else host_resolv_conf()
    if resolver is not None:
        servers = [resolver]
    elif dns:
        servers = [d.partition("#")[0] for d in dns]
    else:
        servers = [s for s in base.nameservers if not _is_loopback(s)]
    domains = base.search if search is None else [s for s in search if s != "."]
    opts = base.options if options is None else list(options)
    lines = [f"nameserver {s}" for s in servers]
    if domains:
        lines.append("search " + " ".join(domains))
    if opts:
        lines.append("options " + " ".join(opts))
    return "\n".join(lines) + "\n"


def _is_loopback(text: str) -> bool:
    try:
        return ipaddress.ip_address(text.split("%")[0]).is_loopback
    except ValueError:
        return False
