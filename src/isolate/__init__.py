"""isolate: Linux process isolation as a Python library.

The friendly API lives here (:class:`Sandbox`, :class:`Namespace`, :class:`CGroup`,
:class:`Store` ...); hazardous parts are in :mod:`isolate.lowlevel` (plans run between clone
and exec, and their builders in ``isolate.lowlevel.plan``); the building blocks for custom
runtimes in the subpackages (:mod:`isolate.cgroups`, :mod:`isolate.fs`, :mod:`isolate.image`)
and modules (:mod:`isolate.namespaces`, :mod:`isolate.security`, :mod:`isolate.errors`).

Importing isolate is cheap: the names and the subpackages load when first used, so after
``import isolate``, ``isolate.fs.layers.extract`` or ``isolate.lowlevel.spawn`` just work.
"""

from __future__ import annotations

import importlib

from isolate import errors

# Not typing's: importing isolate loads neither typing nor the re it imports (type checkers
# take any TYPE_CHECKING).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    # The submodules, for type checkers (at run time __getattr__ loads them).
    from isolate import cgroups as cgroups
    from isolate import fs as fs
    from isolate import image as image
    from isolate import lowlevel as lowlevel
    from isolate import namespaces as namespaces
    from isolate import process as process
    from isolate import sandbox as sandbox
    from isolate import security as security
    from isolate._container_runner import ContainerStepRunner, build
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
    "ContainerStepRunner",
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
    "build",
    "errors",
]
__version__ = "0.1.0"

#: Submodules that load on first use as attributes of the package (``isolate.fs``).
_SUBMODULES = frozenset({"cgroups", "errors", "fs", "image", "lowlevel", "namespaces",
                         "process", "sandbox", "security"})

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
    "build": "isolate._container_runner",
    "ContainerStepRunner": "isolate._container_runner",
}


def __getattr__(name: str) -> Any:
    """Load a re-exported name, or a submodule, when it is first used.

    Raises AttributeError for a name the package does not have.
    """
    if name in _SUBMODULES:
        # The import binds the submodule as an attribute of the package.
        return importlib.import_module(f"isolate.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names, the lazy submodules among them (what ``help(isolate)`` lists)."""
    return sorted({*__all__, *_SUBMODULES, "__version__"})
