"""What a container's start spares itself without changing what it gets: its first process
is born in the v2 group (CLONE_INTO_CGROUP) and joins v1 hierarchies through ``tasks``, and
one loaded device program serves every container with the same rules."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from isolate import _sys
from isolate.cgroups import host_layout
from isolate.cgroups.detect import V2_KEY
from isolate.cgroups.devices import forget_programs, kept_program_fds
from isolate.container import Container, ContainerConfig, ContainerStore

pytestmark = pytest.mark.root


@pytest.fixture
def sleepers(containers: ContainerStore) -> Iterator[list[Container]]:
    forget_programs()
    made: list[Container] = []
    try:
        for _ in range(2):
            c = containers.create(ContainerConfig("busybox", ["sleep", "60"]))
            c.start()
            made.append(c)
        yield made
    finally:
        for c in made:
            c.remove(force=True)
        forget_programs()


def _groups(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":")[1]: line.split(":", 2)[2] for line in f.read().splitlines()}


def test_containers_are_born_in_their_v2_group_and_share_one_device_program(
        sleepers: list[Container]) -> None:
    layout = host_layout()
    if layout.v2 is None or not _sys.vfork_into_cgroup_works():
        pytest.skip("no cgroup v2 hierarchy here, or no clone into a cgroup")
    for c in sleepers:
        st = c.state
        assert st.cgroup is not None and st.pid
        groups = _groups(st.pid)
        v2 = st.cgroup[V2_KEY]
        assert v2.endswith(groups[""].rstrip("/")), (groups, v2)
        mem = st.cgroup.get("memory")
        if mem is not None:  # a v1 hierarchy, joined through its tasks file
            assert mem.endswith(groups["memory"]), (groups, mem)
        code, out, err = c.exec_run(["sh", "-c", "head -c1 /dev/zero | wc -c"])
        assert (code, out.strip()) == (0, b"1"), err
    # The device program (root, a v2 hierarchy) was loaded for the first container and
    # reused for the second: one kept.
    (fd,) = kept_program_fds()
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog"
