"""Cgroups: one interface over v2, v1 and hybrid hosts.

Building blocks for resource limits, accounting, freezing and killing a group of processes.
Knows nothing of containers; depends on :mod:`isolate.errors` (and, to attach a v2 device
program, on :mod:`isolate._sys` for bpf(2)).
"""

from __future__ import annotations

from isolate.cgroups._backend import Events, Stats
from isolate.cgroups.cgroup import BASE_NAME, CGroup, host_layout
from isolate.cgroups.detect import BackendKind, Hierarchy, Layout, detect
from isolate.cgroups.devices import DEFAULT_RULES, DeviceRule
from isolate.cgroups.limits import (
    MAX_CPU_QUOTA,
    MAX_PIDS,
    MAX_SIZE,
    MIN_MEMORY,
    IoDeviceLimit,
    Limits,
    parse_size,
)

__all__ = [
    "BASE_NAME",
    "DEFAULT_RULES",
    "MAX_CPU_QUOTA",
    "MAX_PIDS",
    "MAX_SIZE",
    "MIN_MEMORY",
    "BackendKind",
    "CGroup",
    "DeviceRule",
    "Events",
    "Hierarchy",
    "IoDeviceLimit",
    "Layout",
    "Limits",
    "Stats",
    "detect",
    "host_layout",
    "parse_size",
]
