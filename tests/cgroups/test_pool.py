"""The pool of emptied groups: a group given back empty is handed to the next taker with the
same hierarchies, other-than-memory limits and device rules -- with nothing of the last
holder's limits or counters -- and no group outlives its pool, its process, or a SIGKILL of
its process (the next process's sweep removes it in every hierarchy)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from cgroup_helpers import in_threads, layout_below, python_in

import isolate
from isolate.cgroups import CGroup, Limits
from isolate.cgroups import cgroup as cgroup_module
from isolate.cgroups.detect import BackendKind
from isolate.cgroups.pool import CGroupPool, default_pool

pytestmark = pytest.mark.root

SRC = os.path.dirname(os.path.dirname(isolate.__file__))
ENV = dict(os.environ, PYTHONPATH=SRC)
LIMITS = Limits(memory_max="64M", pids_max=16)


def _need_pooling(cg: CGroup) -> None:
    if cg.layout.kind is BackendKind.V2 or cg.layout.v1_for("cpuacct") is None:
        pytest.skip("groups are not pooled here (pure v2, or no v1 cpuacct to reset)")


@pytest.fixture
def pool(private: CGroup) -> Iterator[CGroupPool]:
    """A pool of the test's own, closed before the test's private cgroup goes."""
    made = CGroupPool()
    try:
        yield made
    finally:
        made.close()


def _sandbox_layout(limits: Limits) -> isolate.cgroups.Layout:
    from isolate.sandbox import _sandbox_layout as cut

    return cut(limits, devices=True)[0]


def _wait_ready(pool: CGroupPool, dirs: dict[str, str]) -> None:
    """Until the refresher has made the spare with ``dirs`` ready (generous, not timed)."""
    deadline = time.monotonic() + 60
    while True:
        with pool._lock:
            if any(lease.cg.dirs == dirs and lease.state == "ready" for lease in pool._spares):
                return
        assert time.monotonic() < deadline, "the spare was not made ready"
        time.sleep(0.005)


def test_a_second_limited_sandbox_gets_the_group_the_first_gave_back() -> None:
    with isolate.Sandbox(limits=LIMITS) as first:
        assert first.cgroup is not None
        _need_pooling(first.cgroup)
        dirs = first.cgroup.dirs
        first.run(["true"], check=True)
    assert any(cg.dirs == dirs for cg in default_pool().spares)
    _wait_ready(default_pool(), dirs)
    with isolate.Sandbox(limits=LIMITS) as second:
        assert second.cgroup is not None
        assert second.cgroup.dirs == dirs
        assert second.cgroup not in default_pool().spares
        assert second.run(["true"]).returncode == 0
        with open("/proc/self/cgroup") as f:
            assert second.cgroup.name not in f.read()


def test_limited_sandboxes_one_after_another_take_spares_made_ready_off_their_path(
        pool: CGroupPool, private: CGroup, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_pooling(private)
    layout = layout_below(private)
    refreshed_by: list[str] = []
    real = CGroupPool._refresh

    def refresh(lease: object, limits: Limits | None, best_effort: bool) -> None:
        refreshed_by.append(threading.current_thread().name)
        real(lease, limits, best_effort)  # type: ignore[arg-type]

    monkeypatch.setattr(CGroupPool, "_refresh", staticmethod(refresh))
    used = []
    for _ in range(6):
        cg = pool.take(layout, limits=LIMITS)
        used.append(tuple(sorted(cg.dirs.values())))
        assert cg.stats().pids_current == 0
        time.sleep(0.05)  # a sandbox's life, in which the refresher readies the other one
        pool.give_back(cg)
    # A second group is made when the first comes back not yet ready; from then on each
    # taker gets the one readied while the other was in use, and never readies one itself.
    assert len(set(used)) == 2
    assert all(a != b for a, b in itertools.pairwise(used[2:]))
    assert refreshed_by and set(refreshed_by) == {"isolate-cgroup-pool"}


def test_the_next_holder_sees_none_of_the_last_holders_limits_or_counters() -> None:
    burn = ("import os\n"
            "x = bytearray(48 << 20)\n"         # memory peak ~48M, below the 64M limit
            "for _ in range(3): os.fork() or os._exit(0)\n"
            "n = 0\n"
            "for i in range(3_000_000): n += i\n")  # some cpu time
    with isolate.Sandbox(limits=LIMITS) as first:
        assert first.cgroup is not None
        _need_pooling(first.cgroup)
        dirs = first.cgroup.dirs
        first.run([sys.executable, "-S", "-c", burn], check=True)
        bomb = first.run([sys.executable, "-S", "-c", "b = bytearray(256 << 20)"])
        assert bomb.oom_killed
        used = first.cgroup.stats()
        assert used.memory_peak is not None and used.memory_peak > 32 << 20
        assert used.cpu_usage_usec
        assert first.cgroup.events().oom_kill >= 1
        assert first.cgroup.read_control("memory", "memory.failcnt") != "0\n"
    # Same pids limit, no memory limit: the same group, with memory back at the defaults.
    with isolate.Sandbox(limits=Limits(pids_max=16)) as second:
        cg = second.cgroup
        assert cg is not None and cg.dirs == dirs
        fresh = cg.stats()
        assert fresh.memory_current == 0 and fresh.memory_peak == 0
        assert fresh.cpu_usage_usec == 0 and fresh.cpu_user_usec == 0
        assert fresh.cpu_system_usec == 0
        assert fresh.pids_current == 0
        assert cg.events().oom_kill == 0 and cg.events().oom == 0 and second.oom_kills() == 0
        assert cg.read_control("memory", "memory.failcnt") == "0\n"
        assert int(cg.read_control("memory", "memory.limit_in_bytes") or 0) > 1 << 40
        assert cg.read_control("pids", "pids.max") == "16\n"
        # Its own use is counted from zero.
        second.run([sys.executable, "-S", "-c", "x = bytearray(8 << 20)"], check=True)
        mine = cg.stats()
        assert mine.memory_peak is not None and 8 << 20 < mine.memory_peak < 32 << 20
        assert mine.cpu_usage_usec and used.cpu_usage_usec
        assert mine.cpu_usage_usec < used.cpu_usage_usec


def test_other_limits_get_another_group(pool: CGroupPool, private: CGroup) -> None:
    _need_pooling(private)
    layout = layout_below(private)
    first = pool.take(layout, limits=LIMITS)
    pool.give_back(first)
    other = pool.take(layout, limits=Limits(memory_max="64M"))  # pids not limited: not it
    try:
        assert other.dirs != first.dirs
        assert other.read_control("pids", "pids.max") == "max\n"
        assert [cg.dirs for cg in pool.spares] == [first.dirs]
    finally:
        pool.give_back(other)
    again = pool.take(layout, limits=Limits(pids_max=16, memory_max="32M"))
    try:
        assert again.dirs == first.dirs
        assert again.read_control("memory", "memory.limit_in_bytes") == f"{32 << 20}\n"
    finally:
        pool.give_back(again)


def test_a_group_keeps_its_device_policy_and_is_not_given_it_twice(
    pool: CGroupPool, private: CGroup, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _need_pooling(private)
    from isolate.cgroups import DEFAULT_RULES

    layout = _below(private, _sandbox_layout(LIMITS))
    cg = pool.take(layout, limits=LIMITS, devices=DEFAULT_RULES)
    pool.set_devices(cg, DEFAULT_RULES)
    pool.give_back(cg)
    _wait_ready(pool, cg.dirs)  # (before that, the next take makes a second group)
    calls: list[object] = []
    monkeypatch.setattr(CGroup, "set_devices", lambda self, rules: calls.append(rules))
    again = pool.take(layout, limits=LIMITS, devices=DEFAULT_RULES)
    try:
        assert again.dirs == cg.dirs
        pool.set_devices(again, DEFAULT_RULES)
        assert calls == []
        allowed = again.read_control("devices", "devices.list")
        if allowed is not None:
            assert "a *:* rwm" not in allowed and "c 1:3 rwm" in allowed
    finally:
        pool.give_back(again)
    # Without a policy (a privileged sandbox), not that group.
    bare = pool.take(layout, limits=LIMITS)
    try:
        assert bare.dirs != cg.dirs
    finally:
        pool.give_back(bare)


def _below(private: CGroup, cut: isolate.cgroups.Layout) -> isolate.cgroups.Layout:
    """``cut`` (some hierarchies of the host's) as a process in ``private`` sees it."""
    import attrs

    full = layout_below(private)
    keys = {h.key for h in cut.hierarchies}
    return attrs.evolve(full, v1=tuple(h for h in full.v1 if h.key in keys))


def test_a_spare_gets_its_new_memory_directory_before_the_next_take(
    pool: CGroupPool, private: CGroup,
) -> None:
    _need_pooling(private)
    memory = private.layout.v1_for("memory")
    if memory is None:
        pytest.skip("no v1 memory hierarchy: nothing to make anew")
    layout = layout_below(private)
    cg = pool.take(layout, limits=LIMITS)
    d = cg.dirs[memory.key]
    used = os.stat(d).st_ino
    pool.give_back(cg)
    # The pool's thread replaces it (off the next take's path); generous, not timed.
    def inode() -> int | None:
        try:
            return os.stat(d).st_ino
        except FileNotFoundError:  # (between the old one's removal and the new one)
            return None

    deadline = time.monotonic() + 60
    while inode() in (None, used):
        assert time.monotonic() < deadline, "the spare's memory directory was not made anew"
        time.sleep(0.01)
    # (The new directory shows before the refresher has written its limits: a take in
    # between would find the spare not ready and make a second group, as it should.)
    _wait_ready(pool, cg.dirs)
    made = inode()
    again = pool.take(layout, limits=LIMITS)
    try:
        assert again.dirs == cg.dirs
        assert os.stat(d).st_ino == made  # the taker did not make it a second time
        assert again.read_control("memory", "memory.max_usage_in_bytes") == "0\n"
    finally:
        pool.give_back(again)


def test_a_group_with_processes_left_is_deleted_not_kept(pool: CGroupPool,
                                                         private: CGroup) -> None:
    _need_pooling(private)
    cg = pool.take(layout_below(private), limits=LIMITS)
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        cg.add(sleeper.pid)
        pool.give_back(cg)
        assert sleeper.wait(timeout=60) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert pool.spares == []
    assert not any(os.path.exists(d) for d in cg.dirs.values())


def test_a_group_with_a_child_group_or_frozen_is_deleted_not_kept(pool: CGroupPool,
                                                                   private: CGroup) -> None:
    _need_pooling(private)
    layout = layout_below(private)
    parent = pool.take(layout, limits=LIMITS)
    CGroup.create("left-behind", parent=parent)
    pool.give_back(parent)  # (delete removes the child with it)
    groups = [parent]
    if parent.kind is not BackendKind.V1:  # (the v2 core's cgroup.freeze)
        frozen = pool.take(layout, limits=LIMITS)
        frozen.freeze()
        pool.give_back(frozen)
        groups.append(frozen)
    assert pool.spares == []
    assert not any(os.path.exists(d) for cg in groups for d in cg.dirs.values())


def test_close_removes_every_spare_and_keeps_none_after(pool: CGroupPool,
                                                        private: CGroup) -> None:
    _need_pooling(private)
    layout = layout_below(private)
    groups = [pool.take(layout, limits=LIMITS) for _ in range(3)]
    for cg in groups:
        pool.give_back(cg)
    assert len(pool.spares) == 3
    pool.close()
    assert pool.spares == []
    assert not any(os.path.exists(d) for cg in groups for d in cg.dirs.values())
    late = pool.take(layout, limits=LIMITS)
    pool.give_back(late)
    assert pool.spares == [] and not any(os.path.exists(d) for d in late.dirs.values())


def test_the_refresher_thread_takes_no_signal_meant_for_the_process(pool: CGroupPool,
                                                                    private: CGroup) -> None:
    # A caller that blocks SIGTERM in its own thread to sigwait for it must get it: a thread
    # of ours with it unblocked would take it, and its default action end the process.
    _need_pooling(private)
    pool.give_back(pool.take(layout_below(private), limits=LIMITS))
    (thread,) = [t for t in threading.enumerate() if t.name == "isolate-cgroup-pool"
                 and t.is_alive()][-1:]
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        blocked = next(int(line.split()[1], 16) for line in f if line.startswith("SigBlk:"))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        assert blocked & (1 << (sig - 1)), sig


def test_at_most_max_spares_are_kept(private: CGroup) -> None:
    _need_pooling(private)
    pool = CGroupPool(max_spares=2)
    try:
        layout = layout_below(private)
        groups = [pool.take(layout, limits=LIMITS) for _ in range(4)]
        for cg in groups:
            pool.give_back(cg)
        assert [cg.dirs for cg in pool.spares] == [groups[2].dirs, groups[3].dirs]
        assert not any(os.path.exists(d) for cg in groups[:2] for d in cg.dirs.values())
    finally:
        pool.close()


def test_threads_taking_and_giving_back_share_the_pool_safely(pool: CGroupPool,
                                                              private: CGroup) -> None:
    layout = layout_below(private)
    seen: set[tuple[str, ...]] = set()
    lock = threading.Lock()

    def step() -> None:
        cg = pool.take(layout, limits=LIMITS, best_effort=True)
        with lock:
            key = tuple(sorted(cg.dirs.values()))
            assert key not in seen, "a group handed out to two takers at once"
            seen.add(key)
        assert cg.stats().pids_current == 0
        with lock:
            seen.discard(key)
        pool.give_back(cg)

    errors = in_threads(step, 60)
    assert not errors, errors[:3]
    spares = pool.spares
    pool.close()
    assert not any(os.path.exists(d) for cg in spares for d in cg.dirs.values())


def test_pure_v2_groups_are_not_pooled(pool: CGroupPool, parents: dict[str, CGroup]) -> None:
    if "v2" not in parents:
        pytest.skip("this host has no cgroup v2 hierarchy")
    layout = layout_below(parents["v2"])
    cg = pool.take(layout)
    pool.give_back(cg)
    assert pool.spares == []
    assert not any(os.path.exists(d) for d in cg.dirs.values())


def test_a_forked_child_starts_with_no_spares(pool: CGroupPool, private: CGroup) -> None:
    _need_pooling(private)
    cg = pool.take(layout_below(private), limits=LIMITS)
    pool.give_back(cg)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(r)
        os.write(w, json.dumps([s.dirs for s in pool.spares]).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        seen = json.loads(f.read())
    assert os.waitpid(pid, 0)[1] == 0
    assert seen == []
    assert [s.dirs for s in pool.spares] == [cg.dirs]
    assert all(os.path.isdir(d) for k, d in cg.dirs.items() if k != "memory")


# -- nothing outlives the process ---------------------------------------------------------------

_HOLD_AND_DIE = textwrap.dedent("""
    import json, os, signal, sys
    from isolate import Limits, Sandbox
    from isolate.cgroups.pool import default_pool
    limits = Limits(memory_max="64M", pids_max=16)
    with Sandbox(limits=limits) as sb:         # given back: a spare
        sb.run(["true"], check=True)
    held = Sandbox(limits=Limits(pids_max=8)).__enter__()   # still in use
    dirs = [cg.dirs for cg in default_pool().spares] + [held.cgroup.dirs]
    print(json.dumps(dirs), flush=True)
    if sys.argv[1:] == ["kill"]:
        os.kill(os.getpid(), signal.SIGKILL)
    held.close()
""")


def _dirs_of_a_pool_that(private: CGroup, ending: str) -> list[str]:
    proc = subprocess.run([*python_in(private, _HOLD_AND_DIE), ending], env=ENV,
                          capture_output=True, text=True)
    groups = json.loads(proc.stdout)
    assert len(groups) == 2, proc.stdout
    if ending == "kill":
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    return [d for dirs in groups for d in dirs.values()]


def test_a_pool_is_emptied_at_interpreter_exit(private: CGroup) -> None:
    _need_pooling(private)
    dirs = _dirs_of_a_pool_that(private, "exit")
    assert not any(os.path.exists(d) for d in dirs)


def test_the_groups_of_a_killed_pool_are_swept_in_every_hierarchy_by_the_next_process(
    private: CGroup,
) -> None:
    _need_pooling(private)
    dirs = _dirs_of_a_pool_that(private, "kill")
    left = [d for d in dirs if os.path.exists(d)]
    # The group in use in every hierarchy, the spare too (its memory directory unless the
    # process died between removing the old one and making the new one).
    assert len(left) >= len(dirs) - 1, left
    # The first create of the next process (placed as the dead one was) sweeps them all.
    code = "from isolate.cgroups import CGroup\nCGroup.create().delete()\n"
    subprocess.run(python_in(private, code), env=ENV, check=True)
    left = [d for d in dirs if os.path.exists(d)]
    assert not left, f"left after the next process's sweep: {left}"


# -- when the orphan sweep runs -----------------------------------------------------------------

def test_a_process_sweeps_a_base_at_most_once_per_interval(
    private: CGroup, monkeypatch: pytest.MonkeyPatch,
) -> None:
    swept: list[tuple[str, ...]] = []
    real = CGroup._sweep_orphans

    def counting(self: CGroup) -> None:
        swept.append(tuple(self.dirs.values()))
        real(self)

    monkeypatch.setattr(CGroup, "_sweep_orphans", counting)
    monkeypatch.setattr(cgroup_module, "SWEEP_INTERVAL", 3600.0)
    layout = layout_below(private)
    for _ in range(3):
        CGroup.create(layout=layout).delete()
    assert len(swept) == 1  # the first create on a base sweeps it; the next ones do not
    away = CGroup.create("elsewhere", parent=private)
    try:
        CGroup.create(layout=layout_below(away)).delete()  # another base: swept on its own
        assert len(swept) == 2 and swept[0] != swept[1]
    finally:
        away.delete()
    monkeypatch.setattr(cgroup_module, "SWEEP_INTERVAL", 0.0)
    CGroup.create(layout=layout).delete()
    assert len(swept) == 3 and swept[2] == swept[0]


def test_opened_gives_copies_of_one_file_kept_open_and_closed_with_the_group(
        pool: CGroupPool, private: CGroup) -> None:
    _need_pooling(private)
    layout = layout_below(private)

    def held(cg: CGroup) -> list[str]:
        out = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if any(target.startswith(d + "/") for d in cg.dirs.values()):
                out.append(target)
        return out

    cg = pool.take(layout, limits=LIMITS)
    path = cg.join_files(["pids"])[0]
    first = pool.opened(cg, path, os.O_WRONLY)
    second = pool.opened(cg, path, os.O_WRONLY)
    try:
        assert first != second
        assert os.fstat(first).st_ino == os.fstat(second).st_ino == os.stat(path).st_ino
        assert os.get_inheritable(first) is False
        # A copy works as the file does: a process written there joins the group.
        child = subprocess.Popen(["sleep", "30"])
        try:
            os.write(second, str(child.pid).encode())
            assert child.pid in cg.procs()
        finally:
            child.kill()
            child.wait()
    finally:
        os.close(first)
        os.close(second)
    assert held(cg) == [path]  # the pool's own, kept for the next holder
    pool.give_back(cg)
    pool.drain()
    assert held(cg) == []
