"""Which cgroup hierarchies a sandboxed process joins (real cgroup files, as root)."""

from __future__ import annotations

import errno
import os

import pytest

import isolate
from isolate import _plan, _sys, lowlevel
from isolate._plan import Mode, OpKind, Plan
from isolate.cgroups import CGroup, host_layout
from isolate.cgroups.detect import V2_KEY
from isolate.errors import SpawnError

pytestmark = pytest.mark.root


def test_procs_files_can_be_limited_to_some_controllers() -> None:
    with CGroup.create() as cg:
        everything = cg.procs_files()
        some = cg.procs_files(["memory"])
        assert set(some) <= set(everything)
        for h in host_layout().hierarchies:
            joined = any(path.startswith(cg.dirs[h.key] + "/") for path in some)
            assert joined == (h.version == 2 or "memory" in h.controllers), h.key


def test_a_sandbox_process_joins_its_cgroup_where_limits_and_accounting_live() -> None:
    limits = isolate.Limits(memory_max="256M", pids_max=100)
    with isolate.Sandbox(limits=limits, cgroupns=False) as sb:
        assert sb.cgroup is not None
        lines = sb.run(["cat", "/proc/self/cgroup"], capture_output=True,
                       text=True).stdout.splitlines()
        by_controllers = {line.split(":")[1]: line.split(":")[2] for line in lines}
        name = sb.cgroup.name
        for h in host_layout().hierarchies:
            if h.version == 2:
                assert by_controllers[""].endswith(name)
            elif h.controllers & {"memory", "pids"}:
                key = ",".join(sorted(h.controllers))
                assert by_controllers[key].endswith(name), key
            elif "devices" in h.controllers:  # where its device allow-list lives
                assert by_controllers["devices"].endswith(name)
            elif "blkio" in h.controllers:  # nothing to limit or count there: not joined
                assert not by_controllers["blkio"].endswith(name)


def _v2_dir(cg: CGroup) -> str:
    d = cg.dirs.get(V2_KEY)
    if d is None:
        pytest.skip("this host has no cgroup v2 hierarchy")
    if not _sys.vfork_into_cgroup_works():
        pytest.skip("this build or kernel cannot clone a VFORK child into a cgroup")
    return d


@pytest.mark.parametrize("flags", [0, _plan.CLONE_NEWPID | _plan.CLONE_NEWNS])
def test_a_vfork_plan_is_born_in_its_v2_cgroup(flags: int) -> None:
    """clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP) on the child's own stack: the child
    runs its plan in our memory and execs inside the group, without a cgroup.procs write."""
    with CGroup.create() as cg:
        fd = os.open(_v2_dir(cg), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            plan = Plan(flags, Mode.VFORK, cgroup_fd=fd)
            plan.add(_plan.fds([(w, 1, False), (2, 2, False)]))
            plan.add(_plan.exec_("/bin/cat", ["cat", "/proc/self/cgroup"], {}))
            with lowlevel.spawn(plan) as child:
                os.close(w)
                w = -1
                out = b""
                while chunk := os.read(r, 65536):
                    out += chunk
                assert child.wait() == 0
        finally:
            os.close(fd)
            os.close(r)
            if w >= 0:
                os.close(w)
        (v2,) = [line for line in out.decode().splitlines() if line.startswith("0::")]
        assert v2.endswith("/" + cg.name), out
        assert cg.procs() == []  # it has exited: the group is empty again


def test_a_vfork_plan_with_a_bad_cgroup_fd_fails_to_clone_cleanly() -> None:
    with CGroup.create() as cg:
        _v2_dir(cg)
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # not a cgroup
    try:
        plan = Plan(0, Mode.VFORK, cgroup_fd=fd)
        plan.add(_plan.exec_("/bin/true", ["true"], {}))
        with pytest.raises(SpawnError) as info:
            lowlevel.spawn(plan)
        assert info.value.errno in (errno.EBADF, errno.EINVAL, errno.ENODEV), info.value
    finally:
        os.close(fd)


def test_a_limited_sandbox_clones_into_the_v2_group_and_joins_v1_through_tasks() -> None:
    """What spares a fresh limited sandbox the kernel's cgroup lock: no process of it writes
    a cgroup.procs file (each is born in the v2 group, and joins v1 hierarchies by ``tasks``),
    and it is still in its group in every hierarchy it joins."""
    limits = isolate.Limits(memory_max="256M", pids_max=100)
    with isolate.Sandbox(limits=limits) as sb:
        assert sb.cgroup is not None
        v2 = _v2_dir(sb.cgroup)
        template = sb._compiled
        assert template is not None
        plan = template.plan(["true"], {}, "/", [])
        assert os.readlink(f"/proc/self/fd/{plan.cgroup_fd}") == v2
        joined = [os.readlink(f"/proc/self/fd/{op.a}") for op in plan.ops
                  if op.kind is OpKind.CGROUP_JOIN]
        assert joined and all(os.path.basename(p) == "tasks" for p in joined), joined
        proc = sb.popen(["sleep", "60"])
        try:
            assert proc.pid in sb.cgroup.procs()
            with open(f"/proc/{proc.pid}/cgroup") as f:
                lines = f.read().splitlines()
            assert all(line.endswith(sb.cgroup.name) for line in lines
                       if line.startswith("0::") or "memory" in line.split(":")[1]), lines
        finally:
            proc.kill()
            proc.wait()
        assert sb.run(["true"]).returncode == 0
