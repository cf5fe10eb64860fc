"""isolate: Linux process isolation as a Python library.

The friendly API lives here; hazardous parts are in :mod:`isolate.lowlevel`; the building blocks
for custom runtimes in the subpackages (:mod:`isolate.cgroups`, :mod:`isolate.fs`,
:mod:`isolate.image`) and modules (:mod:`isolate.namespaces`, :mod:`isolate.security`).
Importing isolate is cheap: the subpackages load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from isolate import errors

if TYPE_CHECKING:
    from isolate.cgroups import CGroup, Limits
    from isolate.container import Container, ContainerConfig, Volume
    from isolate.fs.mounts import Bind, Tmpfs
    from isolate.image import Image, Reference, Store
    from isolate.namespaces import IdMap, Namespace, NamespaceKind
    from isolate.sandbox import Sandbox, SandboxConfig, SandboxResult

__all__ = [
    "Bind",
    "CGroup",
    "Container",
    "ContainerConfig",
    "IdMap",
    "Image",
    "Limits",
    "Namespace",
    "NamespaceKind",
    "Reference",
    "Sandbox",
    "SandboxConfig",
    "SandboxResult",
    "Store",
    "Tmpfs",
    "Volume",
    "errors",
]
__version__ = "0.1.0"

_LAZY = {
    "Sandbox": "isolate.sandbox",
    "SandboxConfig": "isolate.sandbox",
    "SandboxResult": "isolate.sandbox",
    "Bind": "isolate.fs.mounts",
    "Tmpfs": "isolate.fs.mounts",
    "CGroup": "isolate.cgroups",
    "Limits": "isolate.cgroups",
    "Namespace": "isolate.namespaces",
    "NamespaceKind": "isolate.namespaces",
    "IdMap": "isolate.namespaces",
    "Image": "isolate.image",
    "Reference": "isolate.image",
    "Store": "isolate.image",
    "Container": "isolate.container",
    "ContainerConfig": "isolate.container",
    "Volume": "isolate.container",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
