"""One runtime config, three front-ends: the OCI-shaped config and its compiler into plans.

:class:`RuntimeConfig` says what an isolated process tree is (process, root, mounts,
namespaces, id maps, devices, masks, seccomp); :mod:`isolate.runtime.compiler` turns it into the
plans :mod:`isolate.lowlevel` spawns. :class:`isolate.Sandbox` fills it with strict defaults,
containers with Docker's, and an OCI bundle's ``config.json`` maps onto it. No mount, identity or
security logic lives anywhere else.
"""

from __future__ import annotations

from isolate.runtime.compiler import (
    ContainerPlan,
    ProcessTemplate,
    RootOps,
    SharedNamespaces,
    container_plan,
    exec_plan,
    identity_ops,
    mountpoints,
    root_ops,
    shared_plan,
    standard_mounts,
    takes_netns,
    view_plan,
)
from isolate.runtime.config import (
    DEFAULT_DEVICES,
    DEFAULT_PATH,
    Capabilities,
    Device,
    Mount,
    NamespaceSpec,
    Process,
    Rlimit,
    Root,
    RuntimeConfig,
    User,
    host_devices,
)

__all__ = [
    "DEFAULT_DEVICES",
    "DEFAULT_PATH",
    "Capabilities",
    "ContainerPlan",
    "Device",
    "Mount",
    "NamespaceSpec",
    "Process",
    "ProcessTemplate",
    "Rlimit",
    "Root",
    "RootOps",
    "RuntimeConfig",
    "SharedNamespaces",
    "User",
    "container_plan",
    "exec_plan",
    "host_devices",
    "identity_ops",
    "mountpoints",
    "root_ops",
    "shared_plan",
    "standard_mounts",
    "takes_netns",
    "view_plan",
]
