"""Behaviour of CGroup on this host's real cgroup files, driven as the host is (hybrid here),
as v1 only and as v2 only (core files of the real unified mount)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from isolate._units import MAX_SIZE
from isolate.cgroups import CGroup, IoDeviceLimit, Limits
from isolate.cgroups._backend import write_file
from isolate.cgroups.limits import MAX_CPU_QUOTA, MAX_PIDS
from isolate.errors import CgroupError, ConfigError, UnsupportedError

MakeCgroup = Callable[..., CGroup]
Spawn = Callable[..., "subprocess.Popen[bytes]"]


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll until ``predicate`` holds; the timeout only guards against a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


def _create_or_skip(make_cgroup: MakeCgroup, layout: str, limits: Limits) -> CGroup:
    try:
        return make_cgroup(layout, limits=limits)
    except UnsupportedError as e:
        pytest.skip(f"{layout}: {e}")


# ------------------------------------------------------------------ limits that bite


def test_memory_limit_oom_kills_the_process_and_events_report_it(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str
) -> None:
    cg = _create_or_skip(make_cgroup, layout_name,
                         Limits(memory_max="48M", memory_swap_max=0))
    assert cg.events().oom_kill == 0
    p = spawn(cg, "data = b'x' * (256 << 20)\nprint(len(data))", stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == -9, (p.returncode, out)
    assert cg.events().oom_kill >= 1


def test_pids_limit_stops_a_fork_bomb_and_delete_still_cleans_up(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str
) -> None:
    cg = _create_or_skip(make_cgroup, layout_name, Limits(pids_max=12))
    bomb = (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"  # parent and child both go on forking
        "    except BlockingIOError:\n"
        "        time.sleep(0.05)\n"
    )
    spawn(cg, bomb)
    _wait_for(lambda: cg.stats().pids_current == 12, "the bomb to reach pids.max")
    # Hold at the limit a moment: it must never get past it.
    time.sleep(0.2)
    assert len(cg.procs()) == 12
    assert cg.stats().pids_current == 12
    cg.delete()
    assert not cg.exists()
    assert not any(os.path.exists(d) for d in cg.dirs.values())


def test_cpu_quota_holds_a_busy_loop_near_its_share(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str
) -> None:
    cg = _create_or_skip(make_cgroup, layout_name, Limits(cpus=0.2))
    busy = (
        "import time\n"
        "w0, c0 = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - w0 < 1.0:\n"
        "    pass\n"
        "print(time.process_time() - c0, time.monotonic() - w0)\n"
    )
    p = spawn(cg, busy, stdout=subprocess.PIPE)
    out, _ = p.communicate(timeout=30)
    cpu, wall = map(float, out.split())
    ratio = cpu / wall
    # Unthrottled, a busy loop gets close to a whole cpu; the quota allows 0.2 (plus at most
    # one period of slack over a one-second window). The lower bound is loose because the
    # machine is shared.
    assert 0.02 < ratio < 0.4, ratio
    assert cg.stats().cpu_usage_usec is not None


# ------------------------------------------------------------------ freeze, kill, wait


def test_freeze_stops_a_counter_and_thaw_resumes_it(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str, tmp_path: Path
) -> None:
    cg = make_cgroup(layout_name)
    counter = tmp_path / "counter"
    counter.write_text("0")
    spawn(cg, (
        "import os, time\n"
        f"fd = os.open({str(counter)!r}, os.O_WRONLY)\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1\n"
        "    os.pwrite(fd, b'%12d' % i, 0)\n"
        "    time.sleep(0.002)\n"
    ))

    def value() -> int:
        return int(counter.read_text() or 0)

    _wait_for(lambda: value() > 0, "the counter to start")
    cg.freeze()
    assert cg.frozen and cg.events().frozen
    frozen_at = value()
    time.sleep(0.2)  # a running counter would move ~100 steps in this time
    assert value() == frozen_at
    cg.thaw()
    _wait_for(lambda: value() > frozen_at, "the counter to resume")
    assert not cg.events().frozen


def test_kill_ends_a_tree_that_keeps_forking(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str
) -> None:
    # pids_max keeps the tree bounded on a shared machine; not available on v2 here.
    cg = make_cgroup(layout_name, limits=Limits(pids_max=40), best_effort=True)
    p = spawn(cg, (
        "import os, time\n"
        "for _ in range(30):\n"
        "    try:\n"
        "        os.fork()\n"
        "    except BlockingIOError:\n"
        "        pass\n"
        "    time.sleep(0.02)\n"
        "while True:\n"
        "    time.sleep(0.02)\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            os._exit(0)\n"
        "    except BlockingIOError:\n"
        "        pass\n"
    ))
    _wait_for(lambda: len(cg.procs()) >= 8, "the tree to grow")
    cg.kill()
    assert cg.procs() == []
    assert not cg.events().populated
    assert p.wait(timeout=10) == -9


def test_wait_empty_returns_once_the_last_process_exits(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str
) -> None:
    cg = make_cgroup(layout_name)
    assert cg.wait_empty(timeout=0)
    p = spawn(cg, "import time\ntime.sleep(0.3)")
    assert cg.wait_empty(timeout=0.01) is False
    assert cg.wait_empty(timeout=20) is True
    assert p.wait(timeout=5) == 0
    assert not cg.events().populated


# ------------------------------------------------------------------ accounting


def test_stats_change_as_a_workload_runs(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(1 << 20))
    os.sync()
    dev = os.stat(data).st_dev
    # v1 blkio only counts io on devices that have a throttle rule: give it a generous one.
    generous = IoDeviceLimit((os.major(dev), os.minor(dev)), read_bps="10G")
    cg = make_cgroup(layout_name, limits=Limits(io_devices=[generous]), best_effort=True)
    before = cg.stats()
    p = spawn(cg, (
        "import mmap, os, sys, time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.2:\n"
        "    pass\n"
        "ballast = b'y' * (32 << 20)\n"
        "buf = mmap.mmap(-1, 1 << 20)\n"
        f"fd = os.open({str(data)!r}, os.O_RDONLY | os.O_DIRECT)\n"
        "os.readv(fd, [buf])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    ), stdout=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    after = cg.stats()
    assert after.cpu_usage_usec is not None and before.cpu_usage_usec is not None
    assert after.cpu_usage_usec - before.cpu_usage_usec >= 100_000
    if after.memory_current is not None:
        assert after.memory_current >= 32 << 20
        assert after.memory_peak is not None and after.memory_peak >= after.memory_current
    if after.pids_current is not None:
        assert after.pids_current == 1
    if after.io_read_bytes is not None:
        assert before.io_read_bytes is not None and after.io_read_ops is not None
        assert after.io_read_bytes - before.io_read_bytes >= 1 << 20
        assert after.io_read_ops >= 1
    if layout_name != "v2":  # v2 here has no memory, pids or io controller
        assert None not in (after.memory_current, after.pids_current, after.io_read_bytes)


# ------------------------------------------------------------------ lifecycle


def test_delete_kills_members_and_removes_nested_groups_everywhere(
    make_cgroup: MakeCgroup, spawn: Spawn, layout_name: str
) -> None:
    cg = make_cgroup(layout_name)
    child = CGroup.create("inner", parent=cg)
    grandchild = CGroup.create("deeper", parent=child)
    p = spawn(grandchild, "import time\ntime.sleep(60)")
    assert [c.name for c in cg.children()] == ["inner"]
    cg.delete()
    assert p.wait(timeout=10) == -9
    for group in (cg, child, grandchild):
        assert not group.exists()
        assert not any(os.path.exists(d) for d in group.dirs.values())
    cg.delete()  # idempotent


def test_context_manager_deletes_on_exit(parents: dict[str, CGroup]) -> None:
    with CGroup.create(parent=parents["host"]) as cg:
        assert cg.exists()
    assert not any(os.path.exists(d) for d in cg.dirs.values())


def test_open_by_name_path_and_pid_finds_the_same_group(
    make_cgroup: MakeCgroup, spawn: Spawn, parents: dict[str, CGroup], layout_name: str
) -> None:
    cg = make_cgroup(layout_name)
    parent = parents[layout_name]
    assert CGroup.open(cg.name, parent=parent) == cg
    assert CGroup.open(cg.path, layout=cg.layout) == cg
    p = spawn(cg, "import time\ntime.sleep(60)")
    assert CGroup.from_pid(p.pid, layout=cg.layout) == cg
    assert cg.procs() == [p.pid]
    with pytest.raises(CgroupError) as err:
        CGroup.open("no-such-group", parent=parent)
    assert err.value.errno == errno.ENOENT


def test_create_refuses_an_existing_name(make_cgroup: MakeCgroup, parents: dict[str, CGroup]
                                         ) -> None:
    cg = make_cgroup()
    with pytest.raises(CgroupError) as err:
        CGroup.create(cg.name, parent=parents["host"])
    assert err.value.errno == errno.EEXIST
    assert cg.exists()


@pytest.mark.parametrize("name", ["", "..", "a/../b", "cgroup.procs", "memory.max", "a b"])
def test_bad_names_are_config_errors(parents: dict[str, CGroup], name: str) -> None:
    with pytest.raises(ConfigError):
        CGroup.create(name, parent=parents["host"])


def _join_by_writing_zero(cg: CGroup, files: list[str]) -> None:
    """A fresh interpreter (one thread) writes "0" to each of ``files``: then it is the
    group's one member, in every hierarchy."""
    code = ("import sys, time\n"
            "for f in sys.argv[1:]:\n"
            "    open(f, 'w').write('0')\n"
            "print('in', flush=True)\n"
            "time.sleep(60)\n")
    with subprocess.Popen([sys.executable, "-S", "-c", code, *files],
                          stdout=subprocess.PIPE) as p:
        try:
            assert p.stdout is not None and p.stdout.readline() == b"in\n"
            assert cg.procs() == [p.pid]
            assert CGroup.from_pid(p.pid, layout=cg.layout) == cg
        finally:
            p.kill()
            p.wait()


def test_a_child_joins_by_writing_zero_to_every_procs_file(
    make_cgroup: MakeCgroup, layout_name: str
) -> None:
    """The spawner's contract: a child places itself before exec via procs_files()."""
    cg = make_cgroup(layout_name)
    files = cg.procs_files()
    assert len(files) == len(cg.layout.hierarchies)
    _join_by_writing_zero(cg, files)


def test_create_with_a_refused_limit_leaves_nothing_behind(
    parents: dict[str, CGroup]
) -> None:
    parent = parents["host"]
    with pytest.raises(CgroupError) as err:
        CGroup.create("refused", parent=parent, limits=Limits(cpuset_cpus="1000"))
    assert err.value.errno in (errno.EINVAL, errno.ERANGE)  # ERANGE: no such cpu
    assert "cpuset.cpus" in str(err.value)
    assert [c.name for c in parent.children()] == []
    assert not any(os.path.exists(os.path.join(d, "refused")) for d in parent.dirs.values())


# ------------------------------------------------------------------ unsupported limits


def test_limit_without_its_controller_names_it_unless_best_effort(
    make_cgroup: MakeCgroup, parents: dict[str, CGroup]
) -> None:
    if "v2" not in parents or "memory" in parents["v2"].layout.v2_controllers:
        pytest.skip("needs a v2 hierarchy without the memory controller (as on this host)")
    with pytest.raises(UnsupportedError) as err:
        make_cgroup("v2", limits=Limits(memory_max="64M"))
    assert err.value.missing == "memory"
    assert "memory controller" in str(err.value) and "not delegated" in str(err.value)
    cg = make_cgroup("v2", limits=Limits(memory_max="64M", pids_max=5), best_effort=True)
    assert [s.split(":")[0] for s in cg.skipped_limits] == ["memory_max", "pids_max"]


def test_io_weight_lands_in_the_v1_blkio_weight_file(make_cgroup: MakeCgroup,
                                                     parents: dict[str, CGroup]) -> None:
    if "v1" not in parents:
        pytest.skip("no v1 hierarchies here")
    cg = make_cgroup("v1")
    files = [f for f in ("blkio.weight", "blkio.bfq.weight")
             if cg.read_control("io", f) is not None]
    if not files:
        with pytest.raises(UnsupportedError, match=r"blkio\.weight"):
            cg.set_limits(Limits(io_weight=10_000))
        return
    cg.set_limits(Limits(io_weight=10_000))
    assert cg.read_control("io", files[0]) == "1000\n"


def test_limits_land_in_the_v1_files(make_cgroup: MakeCgroup, parents: dict[str, CGroup]
                                     ) -> None:
    if "v1" not in parents:
        pytest.skip("no v1 hierarchies here")
    cg = make_cgroup("v1", limits=Limits(
        memory_max="64M", memory_high="32M", memory_swap_max="16M", cpus=1.5, cpu_weight=10000,
        cpuset_cpus="0", cpuset_mems="0", pids_max=99))
    read = cg.read_control
    assert read("memory", "memory.limit_in_bytes") == f"{64 << 20}\n"
    assert read("memory", "memory.soft_limit_in_bytes") == f"{32 << 20}\n"
    assert read("memory", "memory.memsw.limit_in_bytes") == f"{80 << 20}\n"
    assert read("cpu", "cpu.cfs_quota_us") == "150000\n"
    assert read("cpu", "cpu.cfs_period_us") == "100000\n"
    assert read("cpu", "cpu.shares") == "262144\n"
    assert read("cpuset", "cpuset.cpus") == "0\n"
    assert read("pids", "pids.max") == "99\n"
    # Lowering memory below the memsw value and raising it above it both work (order swaps).
    cg.set_limits(Limits(memory_max="200M", memory_swap_max="0"))
    assert read("memory", "memory.memsw.limit_in_bytes") == f"{200 << 20}\n"
    cg.set_limits(Limits(memory_max="32M", memory_swap_max="0"))
    assert read("memory", "memory.limit_in_bytes") == f"{32 << 20}\n"


def test_the_largest_limits_limits_takes_are_the_largest_the_kernel_keeps(
    make_cgroup: MakeCgroup, parents: dict[str, CGroup],
) -> None:
    # Beyond these the kernel does not refuse, it silently caps (quota), wraps to 0 (memory
    # from 2**64 on) or, for pids, refuses with EINVAL: so Limits stops at them.
    if "v1" not in parents:
        pytest.skip("no v1 hierarchies here (v2 has no controllers on this host)")
    cg = make_cgroup("v1", limits=Limits(memory_max=MAX_SIZE, cpu_quota=MAX_CPU_QUOTA,
                                         pids_max=MAX_PIDS))
    page = os.sysconf("SC_PAGE_SIZE")
    assert cg.read_control("memory", "memory.limit_in_bytes") == f"{MAX_SIZE // page * page}\n"
    assert cg.read_control("cpu", "cpu.cfs_quota_us") == f"{MAX_CPU_QUOTA}\n"
    assert cg.read_control("pids", "pids.max") == f"{MAX_PIDS}\n"
    pids_dir = cg.dirs[next(h.key for h in cg.layout.v1 if "pids" in h.controllers)]
    with pytest.raises(CgroupError) as err:
        write_file(os.path.join(pids_dir, "pids.max"), str(MAX_PIDS + 1))
    assert err.value.errno == errno.EINVAL
    for too_much in (dict(memory_max=MAX_SIZE + 1), dict(cpu_quota=MAX_CPU_QUOTA + 1),
                     dict(pids_max=MAX_PIDS + 1)):
        with pytest.raises(ConfigError):
            Limits(**too_much)  # type: ignore[arg-type]


def test_a_group_refuses_to_kill_or_delete_the_process_that_asks(
    make_cgroup: MakeCgroup, layout_name: str
) -> None:
    cg = make_cgroup(layout_name)
    # The asking process is itself in the group; were the guard missing, only it would die.
    code = (
        "import os, sys, attrs\n"
        "from isolate.cgroups import BackendKind, CGroup, host_layout\n"
        "from isolate.errors import CgroupError\n"
        "h = host_layout()\n"
        f"layout = {{'host': h, 'v1': attrs.evolve(h, kind=BackendKind.V1, v2=None),\n"
        f"          'v2': attrs.evolve(h, kind=BackendKind.V2, v1=())}}[{layout_name!r}]\n"
        "me = CGroup.from_pid(os.getpid(), layout=layout)\n"
        "for action in (me.kill, me.delete):\n"
        "    try:\n"
        "        action()\n"
        "    except CgroupError as e:\n"
        "        print(e.errno, flush=True)\n"
    )
    files = " ".join(cg.procs_files())
    src = str(Path(__file__).parents[2] / "src")
    p = subprocess.run(
        ["sh", "-c", f'for f in {files}; do echo 0 > "$f"; done; exec "$0" -c "$1"',
         sys.executable, code],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src}, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [str(errno.EDEADLK)] * 2
    assert cg.exists()


def test_a_single_threaded_child_joins_through_the_join_files(
    make_cgroup: MakeCgroup, layout_name: str
) -> None:
    """join_files(): v1 ``tasks`` (the writer's only thread is the whole process, and the
    kernel takes no global lock for it), the v2 ``cgroup.procs``; the child is then a member
    in every hierarchy, as through procs_files()."""
    cg = make_cgroup(layout_name)
    files = cg.join_files()
    assert len(files) == len(cg.layout.hierarchies)
    for h, f in zip(cg.layout.hierarchies, files, strict=True):
        assert os.path.basename(f) == ("cgroup.procs" if h.version == 2 else "tasks"), f
    assert [os.path.dirname(f) for f in files] == \
        [os.path.dirname(f) for f in cg.procs_files()]
    v1 = [h for h in cg.layout.hierarchies if h.version == 1]
    if v1:
        some = cg.join_files(sorted(v1[0].controllers))
        assert len(some) == len(cg.layout.hierarchies) - len(v1) + 1
    _join_by_writing_zero(cg, files)
