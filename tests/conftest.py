"""Shared fixtures: the leave-no-trace check, markers that skip with a reason.

Every test session records what the machine looks like before it starts -- mounts visible to
us, cgroups named like isolate, network namespaces under /run/netns, our child processes, our
open fds, temporary files and directories in /tmp, /var/tmp and /dev/shm -- and fails at the
end if a test left any of it behind. Tests that want the check around a single block use
:func:`no_trace`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from traces import Snapshot, snapshot

if TYPE_CHECKING:
    from isolate import Sandbox

# The suite runs on a shared 2-core machine and in CI beside other work: a slow example is load,
# not a defect, so no per-example deadline and no "too slow" health check for any test.
settings.register_profile("isolate", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("isolate")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, with the reason, tests marked ``root`` when not running as root."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, mounts and cgroups of the host)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def session_leaves_no_trace() -> Iterator[None]:
    """Fail the session if the whole test run left mounts, cgroups, netns, processes or
    temporary directories."""
    before = snapshot()
    yield
    after = snapshot()
    leftovers = after.left_since(before)
    if leftovers:
        pytest.fail("the test session left traces on the machine:\n" + "\n".join(leftovers),
                    pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def network_sink(session_leaves_no_trace: None) -> Iterator[None]:
    """As root: point ``$ISOLATE_NETWORK_NS`` (the namespace that plays the host for bridge
    networks) at a namespace of the session's own, so that a test that forgets to give one
    -- a CLI run with ``-p`` -- builds its bridge and rules there, never in the machine's own
    network namespace. Tests that check networks give a host namespace of their own."""
    from isolate.container.netdriver import HOST_ENV

    if os.geteuid() != 0 or HOST_ENV in os.environ:
        yield
        return
    from isolate.net import NetNamespace

    sink = NetNamespace.create()
    os.environ[HOST_ENV] = f"/proc/{os.getpid()}/fd/{sink.fileno()}"
    try:
        yield
    finally:
        del os.environ[HOST_ENV]
        sink.close()


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    """A default Sandbox, open for the test (modules may override it, e.g. with an init)."""
    from isolate import Sandbox

    with Sandbox() as box:
        yield box


@contextlib.contextmanager
def no_trace() -> Iterator[Snapshot]:
    """Assert that the block leaves no mount, cgroup, netns, child process or fd behind."""
    before = snapshot()
    yield before
    leftovers = snapshot().left_since(before)
    assert not leftovers, "left behind:\n" + "\n".join(leftovers)
