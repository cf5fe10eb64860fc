"""``isolate version``: what this isolate is and what it finds on this host, as ``docker
version`` reports its client and server: the package, Python, the kernel, the cgroup layout,
user namespaces and the image store. Only reads; what it cannot find it says so.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from typing import Any

import isolate
from isolate import _json as json
from isolate.cli.images import add_store_option
from isolate.errors import IsolateError

__all__ = ["register", "report"]


def register(sub: Any) -> None:
    """Add the ``version`` command to the ``isolate`` parser."""
    p = sub.add_parser("version", help="show isolate's version and what it finds on this host",
                       description="Show the version of isolate and of what it runs on: "
                       "Python, the kernel, the cgroup layout, user namespaces and the image "
                       "store.")
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text (default) or json")
    add_store_option(p)
    p.set_defaults(handler=version_command)


def _cgroups() -> dict[str, Any]:
    from isolate.cgroups import host_layout

    try:
        layout = host_layout()
    except IsolateError as exc:
        return {"layout": "none", "error": str(exc)}
    out: dict[str, Any] = {"layout": layout.kind.value}
    if layout.v2 is not None:
        out["v2"] = {"mount": layout.v2.mount,
                     "controllers": sorted(layout.v2_controllers)}
    if layout.v1:
        out["v1"] = {h.key: h.mount for h in layout.v1}
    return out


def _userns() -> bool | str:
    from isolate import lowlevel

    try:
        return lowlevel.userns_available()
    except (IsolateError, OSError) as exc:
        return f"unknown ({exc})"


def _store(args: argparse.Namespace) -> dict[str, str]:
    if args.store:
        return {"path": os.path.abspath(args.store), "from": "--store"}
    if os.environ.get("ISOLATE_STORE"):
        return {"path": os.path.abspath(os.environ["ISOLATE_STORE"]), "from": "ISOLATE_STORE"}
    from isolate.image.store import default_root

    return {"path": default_root(), "from": "default"}


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Everything ``isolate version`` shows, as one dict (the ``--format json`` output)."""
    uname = os.uname()
    return {
        "isolate": {"version": isolate.__version__,
                    "package": os.path.dirname(os.path.abspath(isolate.__file__))},
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "kernel": {"os": uname.sysname, "release": uname.release, "arch": uname.machine},
        "user": {"uid": os.geteuid(), "rootless": os.geteuid() != 0},
        "cgroups": _cgroups(),
        "user_namespaces": _userns(),
        "store": _store(args),
    }


def version_command(args: argparse.Namespace) -> int:
    info = report(args)
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    cg = info["cgroups"]
    layout = cg["layout"]
    if "v2" in cg:
        controllers = ", ".join(cg["v2"]["controllers"]) or "none"
        layout += f"; v2 at {cg['v2']['mount']} (controllers: {controllers})"
    if "v1" in cg:
        layout += f"; v1: {', '.join(cg['v1'])}"
    if "error" in cg:
        layout += f" ({cg['error']})"
    userns = info["user_namespaces"]
    rows = [
        ("isolate", f"{info['isolate']['version']} ({info['isolate']['package']})"),
        ("Python", f"{info['python']['version']} ({info['python']['implementation']}, "
                   f"{info['python']['executable']})"),
        ("Kernel", f"{info['kernel']['os']} {info['kernel']['release']} "
                   f"{info['kernel']['arch']}"),
        ("User", f"uid {info['user']['uid']}" + (" (rootless)" if info["user"]["rootless"]
                                                  else " (root)")),
        ("Cgroups", layout),
        ("User namespaces", "available" if userns is True else
         "not available" if userns is False else userns),
        ("Store", f"{info['store']['path']} (from {info['store']['from']})"),
    ]
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    return 0
