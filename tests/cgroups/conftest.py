"""Fixtures for cgroup tests: a private parent cgroup per layout, cgroups and processes that are
always removed, and the host layout seen three ways (as it is, v1 only, v2 core only)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from isolate.cgroups import BASE_NAME, BackendKind, CGroup, Layout, host_layout

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.root)


def _layouts() -> dict[str, Layout]:
    """The host layout, plus views that drive it as v1-only or v2-only (core files only)."""
    host = host_layout()
    out = {"host": host}
    if host.v1:
        out["v1"] = attrs.evolve(host, kind=BackendKind.V1, v2=None,
                                 v2_controllers=frozenset())
    if host.v2 is not None:
        out["v2"] = attrs.evolve(host, kind=BackendKind.V2, v1=())
    return out


@pytest.fixture(scope="session")
def parents() -> Iterator[dict[str, CGroup]]:
    """One private parent cgroup per layout; removed (and the base, if we made it) at the end."""
    if os.geteuid() != 0:
        pytest.skip("cgroup tests create cgroups and need root")
    layouts = _layouts()
    base_dirs = {h.dir_of(f"{h.self_path.rstrip('/')}/{BASE_NAME}")
                 for layout in layouts.values() for h in layout.hierarchies}
    preexisting = {d for d in base_dirs if os.path.isdir(d)}
    made: dict[str, CGroup] = {}
    try:
        for name, layout in layouts.items():
            # A generated name: this process holds it (a flock), so if the session is killed
            # before the teardown below, the next create by any process sweeps it and all
            # below it -- in every hierarchy, the nested memory one too. A name of our own
            # ("pytest-<pid>-...", pid 1 in a pid namespace) was never swept and leaked.
            made[name] = CGroup.create(layout=layout)
        yield made
    finally:
        for cg in made.values():
            cg.delete()
        for d in base_dirs - preexisting:
            try:
                os.rmdir(d)  # only if empty: another user of the base keeps it alive
            except OSError:
                pass


@pytest.fixture(params=["host", "v1", "v2"])
def layout_name(request: pytest.FixtureRequest, parents: dict[str, CGroup]) -> str:
    if request.param not in parents:
        pytest.skip(f"this host has no {request.param} hierarchy to test")
    return str(request.param)


@pytest.fixture
def private(parents: dict[str, CGroup]) -> Iterator[CGroup]:
    """A cgroup whose ``isolate`` base only this test uses (for processes placed in it, see
    ``cgroup_helpers``); it and everything below it are removed at the end."""
    cg = CGroup.create(f"private-{os.getpid()}-{secrets.token_hex(3)}", parent=parents["host"])
    try:
        yield cg
    finally:
        cg.delete(timeout=30)


@pytest.fixture
def make_cgroup(parents: dict[str, CGroup]) -> Iterator[Callable[..., CGroup]]:
    """Factory: CGroup.create below the private parent of a layout; deleted after the test."""
    made: list[CGroup] = []

    def make(layout: str = "host", **kwargs: object) -> CGroup:
        cg = CGroup.create(parent=parents[layout], **kwargs)  # type: ignore[arg-type]
        made.append(cg)
        return cg

    try:
        yield make
    finally:
        for cg in reversed(made):
            cg.delete()
            assert not any(os.path.exists(d) for d in cg.dirs.values()), cg.dirs


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: start ``python -c CODE`` in a cgroup; the code runs only once the process is
    in the group. Every process is killed and reaped after the test."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(cg: CGroup, code: str, **kwargs: object) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-S", "-c", "import sys\nsys.stdin.readline()\n" + code],
            stdin=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
        procs.append(p)
        cg.add(p.pid)
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.close()
        p.stdin = None  # so communicate() does not flush a closed pipe
        return p

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()
