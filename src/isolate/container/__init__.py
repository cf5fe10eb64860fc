"""Containers: :class:`Container` (Docker's lifecycle, no daemon), :class:`ContainerConfig`,
:class:`Volume`, and the state they keep on disk.

A container is made of an image and a config, lives in a state dir under the image store's
root (``containers/<id>/``), is run by a supervisor that outlives the process that started it,
and is managed by any process that opens the same store. See ``docs/containers.md``.
Importing this package is cheap: its modules load when a name is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

_LAZY = {
    "BindMount": "config", "ContainerConfig": "config", "MountSpec": "config",
    "RestartPolicy": "config", "TmpfsMount": "config", "VolumeMount": "config",
    "parse_mount": "config", "parse_signal": "config", "parse_tmpfs": "config",
    "parse_volume": "config",
    "Container": "container", "ContainerStore": "container", "Exec": "container",
    "ExitStatus": "container",
    "Change": "files",
    "PsRow": "inspect", "matches": "inspect", "ps_row": "inspect",
    "LogRecord": "logs",
    "NetworkDriver": "network", "NetworkSetup": "network", "register_driver": "network",
    "State": "state", "Status": "state",
    "ContainerStats": "stats",
    "Volume": "volumes", "VolumeStore": "volumes",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'isolate.container' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"isolate.container.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
