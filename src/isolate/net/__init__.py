"""Container networking: bridge networks, endpoints, published ports, names, rootless modes.

The building blocks a container runtime composes (see docs/networking.md):

- :class:`Networks` -- networks and endpoints persisted in a directory, built in the namespace
  that plays "the host": ``create``/``remove``/``list``, ``connect`` a network namespace
  (veth, address, routes, sysctls), ``publish`` ports, ``disconnect``/``release``, ``prune``.
- :class:`NetworkRecords` -- the same records, read only (no namespace opened).
- :class:`NetNamespace` -- a handle to act in a network namespace without entering it.
- :mod:`isolate.net.firewall` -- the four-verb firewall (nftables or none).
- :mod:`isolate.net.ports`, :mod:`isolate.net.options` -- ``-p``, ``--network``,
  ``--network-alias``, ``--ip``, ``--dns``, ``--add-host`` parsed as Docker does.
- :mod:`isolate.net.files` -- ``/etc/hosts`` and ``/etc/resolv.conf`` contents.
- :mod:`isolate.net.rootless` -- pasta / slirp4netns for unprivileged users.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The names below are loaded on first use (PEP 562): a container's exit command needs only
# :class:`Networks`' release, not the option parsers, file builders and rootless helpers.
_HOMES = {
    "NetNamespace": "_ns", "NetnsLike": "_ns",
    "hosts_file": "files", "resolv_conf": "files",
    "Firewall": "firewall", "NftablesFirewall": "firewall", "NoFirewall": "firewall",
    "AddressPool": "ipam",
    "DEFAULT_NETWORK": "network", "Endpoint": "network", "Network": "network",
    "NetworkRecords": "network", "Networks": "network", "default_alive": "network",
    "process_owner": "network",
    "ExtraHost": "options", "NetworkMode": "options", "parse_add_host": "options",
    "parse_dns": "options", "parse_dns_option": "options", "parse_dns_search": "options",
    "parse_ip": "options", "parse_network": "options", "parse_network_alias": "options",
    "PortBinding": "ports", "PortMapping": "ports", "format_bindings": "ports",
    "parse_publish": "ports",
    "UserModeNetwork": "rootless", "attach_user_mode": "rootless", "loopback_up": "rootless",
}

if TYPE_CHECKING:
    from isolate.net._ns import NetNamespace, NetnsLike
    from isolate.net.files import hosts_file, resolv_conf
    from isolate.net.firewall import Firewall, NftablesFirewall, NoFirewall
    from isolate.net.ipam import AddressPool
    from isolate.net.network import (
        DEFAULT_NETWORK,
        Endpoint,
        Network,
        NetworkRecords,
        Networks,
        default_alive,
        process_owner,
    )
    from isolate.net.options import (
        ExtraHost,
        NetworkMode,
        parse_add_host,
        parse_dns,
        parse_dns_option,
        parse_dns_search,
        parse_ip,
        parse_network,
        parse_network_alias,
    )
    from isolate.net.ports import PortBinding, PortMapping, format_bindings, parse_publish
    from isolate.net.rootless import UserModeNetwork, attach_user_mode, loopback_up


def __getattr__(name: str) -> object:
    """Load an exported name from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_NETWORK",
    "AddressPool",
    "Endpoint",
    "ExtraHost",
    "Firewall",
    "NetNamespace",
    "NetnsLike",
    "Network",
    "NetworkMode",
    "NetworkRecords",
    "Networks",
    "NftablesFirewall",
    "NoFirewall",
    "PortBinding",
    "PortMapping",
    "UserModeNetwork",
    "attach_user_mode",
    "default_alive",
    "format_bindings",
    "hosts_file",
    "loopback_up",
    "parse_add_host",
    "parse_dns",
    "parse_dns_option",
    "parse_dns_search",
    "parse_ip",
    "parse_network",
    "parse_network_alias",
    "parse_publish",
    "process_owner",
    "resolv_conf",
]
