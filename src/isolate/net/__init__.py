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

from isolate import _lazy

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

# The names load on first use: a container's exit command needs only :class:`Networks`'
# release, not the option parsers, file builders and rootless helpers.
__getattr__, __dir__ = _lazy.exports(globals(), {
    "isolate.net._ns": ("NetNamespace", "NetnsLike"),
    "isolate.net.files": ("hosts_file", "resolv_conf"),
    "isolate.net.firewall": ("Firewall", "NftablesFirewall", "NoFirewall"),
    "isolate.net.ipam": ("AddressPool",),
    "isolate.net.network": ("DEFAULT_NETWORK", "Endpoint", "Network", "NetworkRecords",
                            "Networks", "default_alive", "process_owner"),
    "isolate.net.options": ("ExtraHost", "NetworkMode", "parse_add_host", "parse_dns",
                            "parse_dns_option", "parse_dns_search", "parse_ip",
                            "parse_network", "parse_network_alias"),
    "isolate.net.ports": ("PortBinding", "PortMapping", "format_bindings", "parse_publish"),
    "isolate.net.rootless": ("UserModeNetwork", "attach_user_mode", "loopback_up"),
})
