"""The container API as users see it: exported from ``isolate``, and every public method of
the handles documented (help() is documentation)."""

from __future__ import annotations

import inspect

import pytest

import isolate
from isolate.container import Container, ContainerStore, Exec, Volume, VolumeStore


def test_the_friendly_names_are_exported() -> None:
    assert isolate.Container is Container and isolate.Volume is Volume
    assert isolate.ContainerConfig.__name__ == "ContainerConfig"
    assert {"Container", "ContainerConfig", "Volume"} <= set(isolate.__all__)


@pytest.mark.parametrize("cls", [Container, ContainerStore, Exec, Volume, VolumeStore],
                         ids=lambda c: c.__name__)
def test_every_public_method_is_documented(cls: type) -> None:
    missing = []
    for name, value in vars(cls).items():
        func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if not inspect.isfunction(func) or (name.startswith("_") and name not in (
                "__enter__", "__exit__")):
            continue
        if not (func.__doc__ or "").strip():
            missing.append(name)
    assert not missing, f"{cls.__name__} lacks docstrings for {missing}"
