"""``isolate network create|ls|inspect|rm|prune|connect|disconnect``: Docker's network
commands over the store's bridge networks (:mod:`isolate.container.netdriver`, built on
:mod:`isolate.net`), with Docker's flags and output. Which network namespace plays the host is
the library's choice (``$ISOLATE_NETWORK_NS``, else the caller's own)."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from isolate.cli._common import command_group, confirm, each, parse_filters
from isolate.cli.images import add_store_option, open_store
from isolate.errors import ConfigError, IsolateError, UnsupportedError

if TYPE_CHECKING:
    from isolate.container import ContainerStore
    from isolate.net import Network, NetworkRecords, Networks

__all__ = ["register"]

_HEADERS: Final = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                   "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS",
                   "CreatedAt": "CREATED AT"}
_TABLE: Final = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
#: ``-o`` options of ``network create`` that isolate honours (the others are refused).
_MTU_OPTION: Final = "com.docker.network.driver.mtu"


def _records(args: argparse.Namespace) -> NetworkRecords:
    """The networks' records, read only (an ordinary user's ``ls``/``inspect`` must not make
    the rootless netns)."""
    from isolate.container.netdriver import open_records

    return open_records(open_store(args).root)


@contextmanager
def _networks(args: argparse.Namespace) -> Iterator[Networks]:
    from isolate.container.netdriver import open_networks

    with open_networks(open_store(args).root) as nets:
        yield nets


def _containers(args: argparse.Namespace) -> ContainerStore:
    from isolate.container import ContainerStore

    return ContainerStore(open_store(args))


def _labels(items: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise ConfigError(f"invalid label: {item!r}")
        labels[key] = value
    return labels


def _by_family(values: Sequence[str], flag: str, parse: Any) -> dict[int, str]:
    """``--subnet``/``--gateway`` values, at most one per address family."""
    out: dict[int, str] = {}
    for value in values:
        try:
            version = parse(value).version
        except ValueError:
            raise ConfigError(f"invalid {flag} {value!r}: not an IPv4 or IPv6 "
                              f"{'subnet' if flag == '--subnet' else 'address'}") from None
        if version in out:
            raise ConfigError(f"{flag}: isolate takes one IPv{version} {flag[2:]} per network")
        out[version] = value
    return out


def cmd_create(args: argparse.Namespace) -> int:
    if args.driver != "bridge":
        raise UnsupportedError(f"network driver {args.driver!r}: isolate has the bridge "
                               "driver only", missing=f"network driver {args.driver}")
    for flag, used in (("--ip-range", args.ip_range), ("--aux-address", args.aux_address),
                       ("--ipam-driver", args.ipam_driver not in (None, "default"))):
        if used:
            raise UnsupportedError(f"network create {flag}: not supported by isolate's IPAM "
                                   "(one subnet per family, addresses from its start)",
                                   missing=f"network create {flag}")
    mtu = 1500
    for item in args.opt:
        key, _, value = item.partition("=")
        if key != _MTU_OPTION:
            raise UnsupportedError(f"network create -o {key}: isolate's bridge driver takes "
                                   f"only {_MTU_OPTION}", missing=f"network option {key}")
        try:
            mtu = int(value)
        except ValueError:
            raise ConfigError(f"invalid MTU {value!r}") from None
    subnets = _by_family(args.subnet, "--subnet",
                         lambda v: ipaddress.ip_network(v, strict=False))
    gateways = _by_family(args.gateway, "--gateway", ipaddress.ip_address)
    for version in gateways:
        if version not in subnets:
            raise ConfigError(f"--gateway {gateways[version]}: give the IPv{version} subnet "
                              "it belongs to (--subnet)")
    ipv6 = args.ipv6 or 6 in subnets
    if subnets.keys() == {6}:
        raise UnsupportedError("an IPv6-only network: isolate's networks have an IPv4 "
                               "subnet (give one with --subnet, or let it choose one)",
                               missing="IPv6-only networks")
    with _networks(args) as nets:
        net = nets.create(args.name, subnet=subnets.get(4), gateway=gateways.get(4),
                          ipv6=ipv6, subnet6=subnets.get(6), gateway6=gateways.get(6),
                          mtu=mtu, internal=args.internal, labels=_labels(args.label))
    print(net.id)
    return 0


def _keep(net: Network, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name":
            ok = any(v in net.name for v in values)
        elif key == "id":
            ok = any(net.id.startswith(v) for v in values)
        elif key == "driver":
            ok = net.driver in values
        elif key == "type":
            ok = ("builtin" if net.default else "custom") in values
        elif key == "label":
            ok = all(k in net.labels and (not sep or net.labels[k] == val)
                     for k, sep, val in (v.partition("=") for v in values))
        else:
            raise ConfigError(f"invalid filter '{key}'")
        if not ok:
            return False
    return True


def cmd_ls(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_rows
    from isolate.container.netdriver import network_row

    filters = parse_filters(args.filter)
    unknown = set(filters) - {"name", "id", "driver", "type", "label"}
    if unknown:
        raise ConfigError(f"invalid filter '{sorted(unknown)[0]}'")
    with _records(args) as nets:
        found = [n for n in nets.networks() if _keep(n, filters)]
    rows = [network_row(n, no_trunc=args.no_trunc) for n in found]
    if args.quiet and args.format is None:
        for row in rows:
            print(row["ID"])
        return 0
    print_rows(rows, args.format, _TABLE, _HEADERS)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_inspect
    from isolate.container.netdriver import network_doc

    containers = _containers(args)

    def name_of(cid: str) -> str | None:
        try:
            return containers.get(cid).name
        except (IsolateError, LookupError):
            return None

    docs: list[dict[str, Any]] = []
    failed = False
    with _records(args) as nets:
        for ref in args.networks:
            try:
                net = nets.get(ref)
                docs.append(network_doc(net, nets.endpoints(network=net.id), name_of))
            except IsolateError as exc:
                print(f"isolate: {exc}", file=sys.stderr)
                failed = True
    print_inspect(docs, args.format)
    return 125 if failed else 0


def cmd_rm(args: argparse.Namespace) -> int:
    with _networks(args) as nets:
        return each(args.networks, nets.remove)


def cmd_prune(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    for key in filters:
        if key != "label":
            raise ConfigError(f"invalid filter '{key}'")
    if not args.force and not confirm("WARNING! This will remove all custom networks not "
                                      "used by at least one container."):
        return 0
    removed: list[str] = []
    with _networks(args) as nets:
        if filters:
            # Only the unused custom networks with the labels; then prune's crash leftovers.
            for net in nets.networks():
                if not net.default and _keep(net, filters) and \
                        not nets.endpoints(network=net.id):
                    nets.remove(net.id)
                    removed.append(net.name)
            nets.prune()
        else:
            removed = [d.partition(" ")[2] for d in nets.prune(networks=True)
                       if d.startswith("network ")]
    if removed:
        print("Deleted Networks:")
        for name in removed:
            print(name)
    return 0


def cmd_connect(args: argparse.Namespace) -> int:
    c = _containers(args).get(args.container)
    c.connect(args.network, aliases=args.alias, ip=args.ip, ip6=args.ip6)
    return 0


def cmd_disconnect(args: argparse.Namespace) -> int:
    c = _containers(args).get(args.container)
    c.disconnect(args.network, force=args.force)
    return 0


def register(sub: Any) -> None:
    """Add ``isolate network ...`` to the CLI's subparsers."""
    add = command_group(sub, "network", "manage networks", add_store_option)

    p = add("create", "create a network", cmd_create)
    p.add_argument("-d", "--driver", default="bridge", help="network driver (bridge)")
    p.add_argument("--subnet", metavar="CIDR", action="append", default=[],
                   help="a subnet (one IPv4, one IPv6; default: a free one)")
    p.add_argument("--gateway", metavar="IP", action="append", default=[],
                   help="the gateway of a subnet (default: its first address)")
    p.add_argument("--internal", action="store_true",
                   help="no traffic in or out of the network, only between its members")
    p.add_argument("--ipv6", action="store_true", help="enable IPv6 networking")
    p.add_argument("--label", metavar="K=V", action="append", default=[],
                   help="set metadata on a network")
    p.add_argument("-o", "--opt", metavar="K=V", action="append", default=[],
                   help=f"driver options ({_MTU_OPTION}=N)")
    p.add_argument("--ip-range", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--aux-address", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--ipam-driver", default=None, help=argparse.SUPPRESS)
    p.add_argument("name", metavar="NETWORK")

    p = add("ls", "list networks", cmd_ls, aliases=("list",))
    p.add_argument("-q", "--quiet", action="store_true", help="only display network ids")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate the ids")
    p.add_argument("-f", "--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="name=, id=, driver=, type=custom|builtin, label=")
    p.add_argument("--format", metavar="FORMAT", default=None,
                   help="table, table TEMPLATE, json, or a Go template")

    p = add("inspect", "display detailed information on one or more networks", cmd_inspect)
    p.add_argument("-f", "--format", metavar="TEMPLATE", default=None,
                   help="a Go template, or json")
    p.add_argument("networks", metavar="NETWORK", nargs="+")

    p = add("rm", "remove one or more networks", cmd_rm, aliases=("remove",))
    p.add_argument("networks", metavar="NETWORK", nargs="+")

    p = add("prune", "remove all unused networks", cmd_prune)
    p.add_argument("-f", "--force", action="store_true",
                   help="do not prompt for confirmation")
    p.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="label=...")

    p = add("connect", "connect a container to a network", cmd_connect)
    p.add_argument("--alias", metavar="NAME", action="append", default=[],
                   help="a network-scoped alias of the container")
    p.add_argument("--ip", metavar="IP", default=None, help="its IPv4 address")
    p.add_argument("--ip6", metavar="IP", default=None, help="its IPv6 address")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")

    p = add("disconnect", "disconnect a container from a network", cmd_disconnect)
    p.add_argument("-f", "--force", action="store_true",
                   help="no error when it is not connected")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
