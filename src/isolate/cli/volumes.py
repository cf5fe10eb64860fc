"""``isolate volume create|ls|inspect|rm|prune``: Docker's volume commands over
:class:`isolate.container.VolumeStore`, with Docker's output."""

from __future__ import annotations

import sys

from isolate._typing import TYPE_CHECKING
from isolate.cli._common import (
    command_group,
    confirm,
    decimal_size,
    each,
    parse_filters,
    tree_size,
)
from isolate.cli.images import add_store_option, open_store
from isolate.errors import ConfigError, IsolateError, UnsupportedError

if TYPE_CHECKING:
    import argparse
    from typing import Any, Final

    from isolate.container import Volume, VolumeStore

__all__ = ["register"]

_HEADERS: Final = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT",
                   "Labels": "LABELS", "Scope": "SCOPE", "Links": "LINKS", "Size": "SIZE",
                   "CreatedAt": "CREATED"}
_TABLE: Final = "table {{.Driver}}\t{{.Name}}"


def _volumes(args: argparse.Namespace) -> VolumeStore:
    from isolate.container import VolumeStore

    return VolumeStore(open_store(args))


def cmd_create(args: argparse.Namespace) -> int:
    if args.driver not in ("local", None):
        raise UnsupportedError(f"volume driver {args.driver!r}: isolate has the local driver "
                               "only", missing=f"volume driver {args.driver}")
    if args.opt:
        raise UnsupportedError("volume create -o: the local driver of isolate takes no "
                               "options", missing="volume options")
    labels: dict[str, str] = {}
    for item in args.label:
        key, _, value = item.partition("=")
        if not key:
            raise ConfigError(f"invalid label: {item!r}")
        labels[key] = value
    name = args.name_flag or args.name
    if args.name_flag and args.name and args.name_flag != args.name:
        raise ConfigError("conflicting options: either specify --name or provide positional "
                          "arg, not both")
    vol = _volumes(args).create(name or None, labels=labels)
    print(vol.name)
    return 0


def _row(store: VolumeStore, vol: Volume) -> dict[str, str]:
    return {"Driver": "local", "Name": vol.name, "Mountpoint": vol.mountpoint,
            "Labels": ",".join(f"{k}={v}" for k, v in vol.labels), "Scope": "local",
            "Links": str(len(store.users(vol.name))), "Size": "N/A",
            "CreatedAt": vol.created_at}


def _keep(store: VolumeStore, vol: Volume, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "dangling":
            want = {v.lower() in ("true", "1") for v in values}
            if (not store.users(vol.name)) not in want:
                return False
        elif key == "name":
            if not any(v in vol.name for v in values):
                return False
        elif key == "label":
            labels = dict(vol.labels)
            for v in values:
                k, sep, val = v.partition("=")
                if k not in labels or (sep and labels[k] != val):
                    return False
        elif key == "driver":
            if "local" not in values:
                return False
        else:
            raise ConfigError(f"invalid filter '{key}'")
    return True


def cmd_ls(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_rows

    store = _volumes(args)
    filters = parse_filters(args.filter)
    unknown = set(filters) - {"dangling", "name", "label", "driver"}
    if unknown:
        raise ConfigError(f"invalid filter '{sorted(unknown)[0]}'")
    vols = [v for v in store.list() if _keep(store, v, filters)]
    if args.quiet and args.format is None:
        for v in vols:
            print(v.name)
        return 0
    print_rows([_row(store, v) for v in vols], args.format, _TABLE, _HEADERS)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from isolate.cli.formatting import print_inspect

    store = _volumes(args)
    docs: list[dict[str, Any]] = []
    failed = False
    for name in args.volumes:
        try:
            docs.append(store.get(name).inspect())
        except IsolateError as exc:
            print(f"isolate: {exc}", file=sys.stderr)
            failed = True
    print_inspect(docs, args.format)
    return 125 if failed else 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = _volumes(args)
    return each(args.volumes, lambda name: store.remove(name, force=args.force))


def cmd_prune(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    for key in filters:
        if key not in ("label", "all"):
            raise ConfigError(f"invalid filter '{key}'")
    everything = args.all or any(v.lower() in ("true", "1") for v in filters.get("all", []))
    warning = ("WARNING! This will remove all local volumes not used by at least one "
               "container." if everything else "WARNING! This will remove anonymous local "
               "volumes not used by at least one container.")
    if not args.force and not confirm(warning):
        return 0
    store = _volumes(args)
    labelled = {"label": filters["label"]} if "label" in filters else {}
    sizes = {v.name: tree_size(v.mountpoint) for v in store.list()
             if (v.anonymous or everything) and _keep(store, v, labelled)}
    # With a label filter, only the matching candidates; else the library's own prune.
    removed = store.remove_unused(sorted(sizes)) if labelled else store.prune(all=everything)
    if removed:
        print("Deleted Volumes:")
        for name in removed:
            print(name)
        print()
    print(f"Total reclaimed space: {decimal_size(sum(sizes.get(n, 0) for n in removed))}")
    return 0


def register(sub: Any) -> None:
    """Add ``isolate volume ...`` to the CLI's subparsers."""
    add = command_group(sub, "volume", "manage volumes", add_store_option)

    p = add("create", "create a volume", cmd_create)
    p.add_argument("-d", "--driver", default="local", help="volume driver (local)")
    p.add_argument("--label", metavar="K=V", action="append", default=[],
                   help="set metadata for a volume")
    p.add_argument("-o", "--opt", metavar="K=V", action="append", default=[],
                   help="driver specific options")
    p.add_argument("--name", dest="name_flag", default=None, help="the volume's name")
    p.add_argument("name", metavar="VOLUME", nargs="?", default=None)

    p = add("ls", "list volumes", cmd_ls, aliases=("list",))
    p.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
    p.add_argument("-f", "--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="dangling=true|false, name=, label=, driver=")
    p.add_argument("--format", metavar="FORMAT", default=None,
                   help="table, table TEMPLATE, json, or a Go template")

    p = add("inspect", "display detailed information on one or more volumes", cmd_inspect)
    p.add_argument("-f", "--format", metavar="TEMPLATE", default=None,
                   help="a Go template, or json")
    p.add_argument("volumes", metavar="VOLUME", nargs="+")

    p = add("rm", "remove one or more volumes", cmd_rm, aliases=("remove",))
    p.add_argument("-f", "--force", action="store_true",
                   help="remove even if a container uses it")
    p.add_argument("volumes", metavar="VOLUME", nargs="+")

    p = add("prune", "remove unused local volumes", cmd_prune)
    p.add_argument("-a", "--all", action="store_true",
                   help="remove all unused volumes, not just anonymous ones")
    p.add_argument("-f", "--force", action="store_true",
                   help="do not prompt for confirmation")
    p.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[],
                   help="label=...")
