"""Containers: :class:`Container` (Docker's lifecycle, no daemon), :class:`ContainerConfig`,
:class:`Volume`, and the state they keep on disk.

A container is made of an image and a config, lives in a state dir under the image store's
root (``containers/<id>/``), is run by a supervisor that outlives the process that started it,
and is managed by any process that opens the same store. See ``docs/containers.md``.
Importing this package is cheap: its modules load when a name is first used.
"""

from __future__ import annotations

from isolate import _lazy
from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from isolate.container.config import (
        BindMount,
        ContainerConfig,
        MountSpec,
        RestartPolicy,
        TmpfsMount,
        VolumeMount,
        parse_mount,
        parse_signal,
        parse_tmpfs,
        parse_volume,
    )
    from isolate.container.container import Container, ContainerStore, Exec, ExitStatus
    from isolate.container.files import Change
    from isolate.container.inspect import PsRow, matches, ps_row
    from isolate.container.logs import LogRecord
    from isolate.container.network import NetworkDriver, NetworkSetup, register_driver
    from isolate.container.state import State, Status
    from isolate.container.stats import ContainerStats
    from isolate.container.volumes import Volume, VolumeStore

__all__ = [
    "BindMount",
    "Change",
    "Container",
    "ContainerConfig",
    "ContainerStats",
    "ContainerStore",
    "Exec",
    "ExitStatus",
    "LogRecord",
    "MountSpec",
    "NetworkDriver",
    "NetworkSetup",
    "PsRow",
    "RestartPolicy",
    "State",
    "Status",
    "TmpfsMount",
    "Volume",
    "VolumeMount",
    "VolumeStore",
    "matches",
    "parse_mount",
    "parse_signal",
    "parse_tmpfs",
    "parse_volume",
    "ps_row",
    "register_driver",
]


__getattr__, __dir__ = _lazy.exports(globals(), {
    "isolate.container.config": ("BindMount", "ContainerConfig", "MountSpec", "RestartPolicy",
                                 "TmpfsMount", "VolumeMount", "parse_mount", "parse_signal",
                                 "parse_tmpfs", "parse_volume"),
    "isolate.container.container": ("Container", "ContainerStore", "Exec", "ExitStatus"),
    "isolate.container.files": ("Change",),
    "isolate.container.inspect": ("PsRow", "matches", "ps_row"),
    "isolate.container.logs": ("LogRecord",),
    "isolate.container.network": ("NetworkDriver", "NetworkSetup", "register_driver"),
    "isolate.container.state": ("State", "Status"),
    "isolate.container.stats": ("ContainerStats",),
    "isolate.container.volumes": ("Volume", "VolumeStore"),
})
