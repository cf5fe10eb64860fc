"""Which cgroup hierarchies a sandboxed process joins (real cgroup files, as root)."""

from __future__ import annotations

import pytest

import isolate
from isolate.cgroups import CGroup, host_layout

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
