"""Faults: a supervisor killed with SIGKILL, processes racing on one container, crash
leftovers, and many cycles that must leave nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore, Status
from isolate.errors import NotFoundError, StateError
from isolate.image import ImageConfig, Store
from sandbox_helpers import marker, pids_with_argv
from traces import snapshot

pytestmark = pytest.mark.root


def _cgroup_dirs(cid: str) -> list[str]:
    found = []
    for top in os.listdir("/sys/fs/cgroup"):
        for dirpath, dirnames, _ in os.walk(os.path.join("/sys/fs/cgroup", top)):
            if cid in dirnames:
                found.append(os.path.join(dirpath, cid))
            if dirpath.count("/") > 8:
                dirnames[:] = []
    return found


def _mounts_of(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if path in line]


def _start_in_subprocess(store: Store, name: str, supervisor: str) -> subprocess.Popen[str]:
    code = f"""
import sys, time
from isolate.image import Store
from isolate.container import ContainerStore
c = ContainerStore(Store({store.root!r}), supervisor={supervisor!r}).get({name!r})
c.start()
print("started", c.state.pid, flush=True)
time.sleep(100000)
"""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _started_elsewhere(store: Store, name: str, supervisor: str) -> Iterator[int]:
    """Container ``name`` started by another process (killed when the block ends); its
    pid."""
    starter = _start_in_subprocess(store, name, supervisor)
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline()
        assert line.startswith("started"), line
        yield int(line.split()[1])
    finally:
        starter.kill()
        starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()


def _wait_gone(mark: str) -> None:
    deadline = time.monotonic() + 60
    while pids_with_argv("sleep", mark) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pids_with_argv("sleep", mark)


@pytest.mark.parametrize("supervisor", ["shim", "inprocess"])
def test_a_killed_supervisor_is_reported_and_reclaimed(containers: ContainerStore,
                                                       image_store: Store,
                                                       supervisor: str) -> None:
    mark = marker()
    c = containers.create(ContainerConfig("busybox", ["sleep", mark], name="orphaned"))
    with _started_elsewhere(image_store, "orphaned", supervisor) as pid:
        st = c.state
        assert st.status is Status.RUNNING and st.pid == pid and st.supervisor == supervisor
        cgroups = _cgroup_dirs(c.id)
        assert cgroups
        # The supervisor (the shim, or the process that supervises in-process) SIGKILLed.
        os.kill(st.supervisor_pid, signal.SIGKILL)
    # The container dies with its supervisor; a reader says so, with the reason.
    _wait_gone(mark)
    st = c.state
    assert st.status is Status.DEAD and "supervisor" in st.error and "died" in st.error
    assert c.inspect()["State"]["Dead"] is True
    with pytest.raises(StateError, match="marked for removal"):
        c.start()
    assert not _mounts_of(c.id)
    c.remove()
    assert not _cgroup_dirs(c.id)
    assert not os.path.exists(c.dir)


def _procs_in(dirs: Iterable[str]) -> list[str]:
    found = []
    for d in dirs:
        with contextlib.suppress(FileNotFoundError), open(os.path.join(d, "cgroup.procs")) as f:
            found += f.read().split()
    return found


@pytest.mark.parametrize("supervisor", ["shim", "inprocess"])
def test_a_dead_supervisors_group_is_swept_once_its_store_is_gone(
        tmp_path: Path, supervisor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container's group is named by its id, and its supervisor holds it (the flock the
    orphan sweep checks) for its whole life: a sweep never takes a running container's group,
    also once the process that started it is gone; killed with its supervisor, and its store
    deleted (so that no reader reclaims the group from the state), the group is an orphan
    that the next create sweeps away in every hierarchy."""
    from isolate import _shim
    from isolate.cgroups import CGroup, host_layout
    from isolate.cgroups import cgroup as cgroup_module

    monkeypatch.setattr(cgroup_module, "SWEEP_INTERVAL", 0.0)  # every create sweeps
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", tree / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        (tree / "bin" / applet).symlink_to("busybox")
    store = Store(tmp_path / "store")
    store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))
    mark = marker()
    c = ContainerStore(store, supervisor=supervisor).create(
        ContainerConfig("busybox", ["sleep", mark]))
    dirs: list[str] = []
    shim_pid = 0
    try:
        with _started_elsewhere(store, c.id, supervisor):
            st = c.state
            assert st.status is Status.RUNNING and st.cgroup is not None
            if supervisor == "shim":
                shim_pid = st.supervisor_pid
            dirs = sorted(set(st.cgroup.values()))
            # (In the hierarchies its processes join: cpuset only with a cpuset limit.)
            joined = [h for h in host_layout().hierarchies if h.version == 2 or h.controllers
                      & {"memory", "pids", "cpu", "cpuacct", "blkio", "freezer", "devices"}]
            assert len(dirs) == len(joined) and set(dirs) <= set(_cgroup_dirs(c.id))
            CGroup.create().delete()
            assert all(os.path.isdir(d) for d in dirs), "a running container's group was swept"
        # Its creator is killed now; the in-process supervisor was the creator itself.
        if shim_pid:
            CGroup.create().delete()
            assert all(os.path.isdir(d) for d in dirs), \
                "a running container's group was swept once its creator was gone"
            os.kill(shim_pid, signal.SIGKILL)
        _wait_gone(mark)
        deadline = time.monotonic() + 30
        while _procs_in(dirs) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not _procs_in(dirs)
        shutil.rmtree(tmp_path / "store")  # no reader is left to reclaim the group
        CGroup.create().delete()
        left = [d for d in dirs if os.path.exists(d)]
        assert not left, f"the orphaned container group is left in {left}"
        assert not _cgroup_dirs(c.id)
    finally:
        if shim_pid and shim_pid in pids_with_argv(_shim.binary()):
            os.kill(shim_pid, signal.SIGKILL)
        for pid in pids_with_argv("sleep", mark):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(mark)
        for d in dirs:
            deadline = time.monotonic() + 10
            while os.path.isdir(d):
                try:
                    os.rmdir(d)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(d))  # the shared base, once empty
        shutil.rmtree(tmp_path / "store", ignore_errors=True)


def test_run_records_a_machine_crash_can_leave_empty_are_read_as_none(
        containers: ContainerStore, image_store: Store) -> None:
    """The in-process supervisor does not sync a run's records (start.json, exit.json): a
    crash of the machine may leave them empty (or gone), never the supervisor alive. What
    such a crash leaves -- state.json saying running, the run's records empty, no supervisor
    -- is reported dead, and removed."""
    mark = marker()
    c = containers.create(ContainerConfig("busybox", ["sleep", mark], name="crashed"))
    with _started_elsewhere(image_store, "crashed", "inprocess") as pid:
        pass  # the machine "goes down": the supervising process is killed, and its run
    _wait_gone(mark)
    for name in ("start.json", "exit.json"):
        with open(os.path.join(c.dir, name), "w"):
            pass  # what an unsynced write can be after a crash
    st = c.state
    assert st.status is Status.DEAD and st.pid == pid and "died" in st.error
    c.remove()
    assert not _cgroup_dirs(c.id) and not os.path.exists(c.dir)


def test_shim_records_a_machine_crash_can_leave_empty_are_read_as_none(
        containers: ContainerStore, image_store: Store) -> None:
    """isolate-shim does not sync its records either (shim.pid, container.pid, start.json,
    exit.json): after a crash of the machine (the shim and its run gone, the records empty)
    the container is reported dead, inspected, and removed, leaving nothing."""
    mark = marker()
    c = containers.create(ContainerConfig("busybox", ["sleep", mark], name="crashed-shim"))
    with _started_elsewhere(image_store, "crashed-shim", "shim") as pid:
        st = c.state
        assert st.status is Status.RUNNING and st.supervisor == "shim"
        os.kill(st.supervisor_pid, signal.SIGKILL)  # the machine "goes down"
    _wait_gone(mark)
    for name in ("shim.pid", "container.pid", "start.json", "exit.json"):
        with open(os.path.join(c.dir, name), "w"):
            pass  # what an unsynced write can be after a crash
    st = c.state
    assert st.status is Status.DEAD and st.pid == pid and "died" in st.error
    assert c.inspect()["State"]["Dead"] is True
    c.remove()
    assert not _cgroup_dirs(c.id) and not _mounts_of(c.id) and not os.path.exists(c.dir)


@pytest.mark.parametrize("supervisor", ["shim", "inprocess"])
def test_a_start_whose_state_a_crash_lost_is_created_again(
        containers: ContainerStore, image_store: Store, supervisor: str) -> None:
    """A start syncs state.json but not its directory: a crash of the machine may keep the
    state from before it (created) beside the records of the run it started. A reader then
    shows the container created; it starts again, ends, and is removed, leaving nothing."""
    cs = ContainerStore(image_store, supervisor=supervisor)
    c = cs.create(ContainerConfig("busybox", ["true"]))
    path = os.path.join(c.dir, "state.json")
    with open(path, "rb") as f:
        created = f.read()
    c.start()
    assert c.wait(timeout=60).exit_code == 0
    with c._locked() as st:  # the run's end settled (as every verb does under the lock)
        assert st.status is Status.EXITED and st.run == 1
        with open(path, "wb") as f:
            f.write(created)  # the rename the crash lost
    assert c.status is Status.CREATED
    c.start()
    assert c.wait(timeout=60).exit_code == 0
    assert c.state.run == 1
    c.remove()
    assert not _cgroup_dirs(c.id) and not os.path.exists(c.dir)


def _machine_crash(c: Container, mark: str, *emptied: str) -> None:
    """What a crash of the machine leaves of ``c``, whose supervising process was killed:
    its processes gone, its cgroup too (a boot mounts cgroupfs afresh), and the files
    ``emptied`` of its directory empty, as an unsynced write can be."""
    from isolate.cgroups import CGroup
    from isolate.cgroups.cgroup import host_layout

    _wait_gone(mark)
    with open(os.path.join(c.dir, "state.json"), "rb") as f:
        dirs = json.loads(f.read()).get("cgroup")
    if dirs:
        CGroup(host_layout(), dirs).delete()
    for name in emptied:
        with open(os.path.join(c.dir, name), "w"):
            pass


def _left_of(containers: ContainerStore, c: Container, name: str) -> list[str]:
    """What is left of container ``c`` (named ``name``) in the store and the system."""
    left = [p for p in (c.dir, os.path.join(containers.root, f".removing-{c.id}"),
                        os.path.join(containers.names, name)) if os.path.lexists(p)]
    left += containers.images.holders(f"container-{c.id}")
    return left + _cgroup_dirs(c.id) + _mounts_of(c.id)


@pytest.mark.parametrize("emptied", [("config.json",), ("state.json",),
                                     ("config.json", "state.json")])
def test_what_a_crash_leaves_of_an_unsynced_container_is_disposed_of(
        containers: ContainerStore, image_store: Store, emptied: tuple[str, ...]) -> None:
    """An ``auto_remove`` container's records are never synced (it ends with its run, and
    so with the machine): a crash of the machine may leave its config.json, its state.json
    or both empty. The next reader disposes of it: directory, name, image hold."""
    mark = marker()
    name = f"crash-rm-{len(emptied)}-{emptied[0][:3]}"
    c = containers.create(ContainerConfig("busybox", ["sleep", mark], name=name,
                                          auto_remove=True))
    assert os.path.exists(os.path.join(c.dir, "ephemeral"))
    with _started_elsewhere(image_store, name, "inprocess"):
        pass  # the machine "goes down"
    _machine_crash(c, mark, *emptied)
    assert c.id not in [x.id for x in containers.list(all=True)]
    assert _left_of(containers, c, name) == []
    with pytest.raises(NotFoundError):
        containers.get(name)


def test_a_hold_without_its_container_is_released(containers: ContainerStore,
                                                  image_store: Store) -> None:
    """Unsynced, an ``auto_remove`` container's image hold may outlive a crash that lost
    the container itself (the order of unsynced writes is not kept): the next reader
    releases it, so that the image can be removed."""
    holder = "container-" + os.urandom(32).hex()
    image_store.hold("busybox", holder, durable=False)
    image_store.hold("busybox", "not-a-container")  # (others' holds are not ours)
    try:
        assert holder in image_store.holders("container-")
        containers.list()
        assert holder not in image_store.holders("container-")
        assert "not-a-container" in image_store.holders()
    finally:
        image_store.release("not-a-container")
        image_store.release(holder)


def test_a_durable_containers_damaged_records_lose_nothing(containers: ContainerStore) -> None:
    """A container not made ``auto_remove`` syncs its records, so no crash leaves them
    empty; a hand can. Its state damaged: it is dead, saying why, and ``rm`` removes it.
    Its config.json damaged: it is no container to ``get``, said so, and left on disk (as
    Docker's daemon leaves one it cannot load), its files kept for its owner."""
    c = containers.create(ContainerConfig("busybox", ["true"], name="hand-state"))
    assert not os.path.exists(os.path.join(c.dir, "ephemeral"))
    with open(os.path.join(c.dir, "state.json"), "w") as f:
        f.write('{"status": "run')
    st = c.state
    assert st.status is Status.DEAD and "state.json" in st.error
    assert [x.id for x in containers.list(all=True) if x.id == c.id] == [c.id]
    c.remove()
    assert _left_of(containers, c, "hand-state") == []

    d = containers.create(ContainerConfig("busybox", ["true"], name="hand-config"))
    try:
        with open(os.path.join(d.dir, "config.json"), "w"):
            pass
        assert d.id not in [x.id for x in containers.list(all=True)]
        with pytest.raises(NotFoundError, match=r"config\.json"):
            containers.get("hand-config")
        assert os.path.exists(os.path.join(d.dir, "upper"))  # nothing of it removed
    finally:
        shutil.rmtree(d.dir)
        os.unlink(os.path.join(containers.names, "hand-config"))
        containers.images.release(f"container-{d.id}")


def test_racing_verbs_on_one_container_lose_nothing(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", ["sleep", "100000"]))
    errors: list[BaseException] = []
    done = threading.Event()
    rng = random.Random(7)

    def worker(seed: int) -> None:
        r = random.Random(seed)
        try:
            while not done.is_set():
                verb = r.choice(["start", "stop", "kill", "restart", "status"])
                try:
                    if verb == "start":
                        c.start()
                    elif verb == "stop":
                        c.stop(timeout=0.2)
                    elif verb == "kill":
                        c.kill()
                    elif verb == "restart":
                        c.restart(timeout=0.2)
                    else:
                        c.status  # noqa: B018 - a read racing the writers
                except StateError:
                    pass  # an illegal move at that moment: refused, as it must be
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(rng.random(),)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    done.set()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    # A run the last kill ended is settled by the next look that may (a listing, any verb).
    containers.list(all=True)
    st = c.state
    assert st.status in (Status.RUNNING, Status.EXITED, Status.CREATED), st
    # Exactly the cgroup of the current run exists, or none.
    dirs = _cgroup_dirs(c.id)
    assert bool(dirs) == (st.status is Status.RUNNING)
    c.remove(force=True)
    assert not _cgroup_dirs(c.id) and not _mounts_of(c.id)


def test_two_processes_remove_one_container(containers: ContainerStore,
                                            image_store: Store) -> None:
    c = containers.create(ContainerConfig("busybox", ["sleep", "100000"], name="contested"))
    c.start()
    code = f"""
from isolate.image import Store
from isolate.container import ContainerStore
from isolate.errors import NotFoundError
try:
    ContainerStore(Store({image_store.root!r})).get("contested").remove(force=True)
    print("removed")
except NotFoundError:
    print("gone")
"""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outs.count("removed") == 1 and outs.count("gone") == 2, outs
    assert not os.path.exists(c.dir) and not _cgroup_dirs(c.id)
    with pytest.raises(NotFoundError):
        containers.get("contested")


def test_a_crashed_removal_is_finished_by_the_next_reader(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", ["true"], name="half-removed"))
    path = os.path.join(c.dir, "state.json")
    with open(path) as f:
        state = json.load(f)
    state["status"] = "removing"
    with open(path, "w") as f:
        json.dump(state, f)
    assert c not in containers.list(all=True)
    assert not os.path.exists(c.dir)
    with pytest.raises(NotFoundError):
        containers.get("half-removed")


@pytest.mark.slow
def test_two_hundred_cycles_leave_nothing_behind(containers: ContainerStore) -> None:
    before = snapshot()
    store_before = sorted(set(os.listdir(containers.root)) - {"names.lock"})
    ids = []
    shim = containers.supervisor_for_start() == "shim"
    mark = marker()  # ours alone: other sessions on the machine run sleep too
    for i in range(200):
        if shim and i % 4 == 3:
            # run -d --rm of a command that ends: its supervisor removes it.
            c = containers.create(ContainerConfig("busybox", ["true"], name=f"cycle-{i}",
                                                  auto_remove=True))
            ids.append(c.id)
            c.start()
            deadline = time.monotonic() + 60
            while os.path.exists(c.dir) and time.monotonic() < deadline:
                time.sleep(0.01)
            continue
        c = containers.create(ContainerConfig("busybox", ["sleep", mark],
                                              name=f"cycle-{i}"))
        ids.append(c.id)
        c.start()
        if i % 2:
            c.stop(timeout=0)
            c.remove()
        else:
            c.remove(force=True)
    # The last exit command may still be on its way out.
    from isolate.container.container import _CLEANUP

    cleanup = (sys.executable, "-S", "-c", _CLEANUP, containers.images.root)
    deadline = time.monotonic() + 60
    while pids_with_argv(*cleanup) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pids_with_argv(*cleanup)
    after = snapshot()
    assert sorted(set(os.listdir(containers.root)) - {"names.lock"}) == store_before
    assert os.listdir(containers.names) == []
    assert after.children == before.children and after.fds == before.fds
    # Mounts of this store's (other work on the machine mounts and unmounts meanwhile).
    ours = [m for m in after.mounts - before.mounts
            if containers.images.root in m or any(cid in m for cid in ids)]
    assert not ours
    leaked = [d for cid in ids for d in _cgroup_dirs(cid)]
    assert not leaked
    assert not pids_with_argv("sleep", mark)


def test_rm_of_running_auto_remove_and_a_starter_that_exits(
        containers: ContainerStore, image_store: Store) -> None:
    # A container whose starting process has ended: with the in-process supervisor it ended
    # with it (dead); with isolate-shim it outlives it. Either way it is reported as it is
    # and removable.
    c = containers.create(ContainerConfig("busybox", ["sh", "-c", "echo from-run; "
                                                      "exec sleep 100000"], name="outlived"))
    code = f"""
from isolate.image import Store
from isolate.container import ContainerStore
ContainerStore(Store({image_store.root!r})).get("outlived").start()
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    st = c.state
    if st.supervisor == "shim":
        assert st.status is Status.RUNNING
        # The log outlives the process that started the container.
        deadline = time.monotonic() + 60
        while not list(c.logs()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [r.text for r in c.logs()] == ["from-run\n"]
    else:
        deadline = time.monotonic() + 60
        while c.state.status is Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.02)
        assert c.state.status is Status.DEAD
    c.remove(force=True)
    assert not _cgroup_dirs(c.id)


