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

from isolate import _lazy, errors

# Not typing's: importing isolate loads neither typing nor the re it imports (type checkers
# take any TYPE_CHECKING).
TYPE_CHECKING = False
if TYPE_CHECKING:
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

__getattr__, __dir__ = _lazy.exports(globals(), {
    "isolate.sandbox": ("Sandbox", "SandboxConfig", "SandboxResult"),
    "isolate.fs.mounts": ("Bind", "Tmpfs"),
    "isolate.cgroups": ("CGroup", "Limits"),
    "isolate.namespaces": ("Namespace", "NamespaceKind", "IdMap"),
    "isolate.image": ("Image", "Reference", "Store"),
    "isolate.container": ("Container", "ContainerConfig", "Volume"),
    "isolate._container_runner": ("build", "ContainerStepRunner"),
}, submodules=("cgroups", "errors", "fs", "image", "lowlevel", "namespaces", "process",
               "sandbox", "security"))
