"""exec joins a running container: all its namespaces and its cgroup, its root, its user (or
another), its environment (plus more), its working dir, its capabilities and seccomp; and is
refused, with Docker's words, where Docker refuses it."""

from __future__ import annotations

import os

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore
from isolate.errors import SpawnError, StateError
from isolate.security import CapabilitySet

pytestmark = pytest.mark.root


@pytest.fixture
def running(containers: ContainerStore) -> Container:
    c = containers.create(ContainerConfig(
        "busybox", ["sh", "-c", "echo inside > /tmp/made-by-pid1; exec sleep 100000"],
        env={"FROM_CONFIG": "yes"}, workdir="/srv", hostname="box", name="exec-target"))
    c.start()
    return c


def test_exec_sees_what_the_first_process_sees(running: Container) -> None:
    for _ in range(500):  # wait until pid 1 wrote its file (a readiness poll)
        code, out, _ = running.exec_run(["cat", "/tmp/made-by-pid1"])
        if code == 0:
            break
    assert out == b"inside\n"
    code, out, err = running.exec_run(
        ["sh", "-c", "hostname; pwd; echo $FROM_CONFIG $EXTRA; cat /proc/1/cmdline | tr '\\0' ' '; "
         "echo; id -u; grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status; "
         "cat /proc/self/cgroup | head -1"], env={"EXTRA": "more"})
    assert code == 0, err
    lines = out.decode().splitlines()
    assert lines[0] == "box" and lines[1] == "/srv" and lines[2] == "yes more"
    assert lines[3].strip() == "sleep 100000" and lines[4] == "0"
    assert int(lines[5].split()[1], 16) == CapabilitySet.docker_default().mask
    assert lines[6].split()[1] == "0" and lines[7].split()[1] == "2"
    assert lines[8].endswith(":/")  # the root of its cgroup namespace: the container's cgroup
    cg = running.state.cgroup
    assert cg is not None
    with open(os.path.join(next(iter(cg.values())), "cgroup.procs")) as f:
        procs = f.read().split()
    assert str(running.state.pid) in procs


def test_exec_user_workdir_and_exit_code(running: Container) -> None:
    code, out, _ = running.exec_run(["sh", "-c", "id -u; id -g; echo $HOME; pwd; exit 9"],
                                    user="app", workdir="/tmp")
    assert code == 9
    assert out.decode().splitlines() == ["1000", "1000", "/home/app", "/tmp"]
    code, out, _ = running.exec_run(["id", "-u"], user="33:33")
    assert out == b"33\n"


def test_exec_of_a_missing_program_is_a_spawn_error(running: Container) -> None:
    with pytest.raises(SpawnError) as err:
        running.exec(["/no/such/binary"])
    assert err.value.step == "exec"


def test_exec_detached_and_input(running: Container) -> None:
    code, out, _ = running.exec_run(["cat"], input=b"through stdin")
    assert code == 0 and out == b"through stdin"
    with running.exec(["sh", "-c", "sleep 0.2; echo late > /tmp/detached"]) as proc:
        assert proc.wait(timeout=60) == 0
    assert running.exec_run(["cat", "/tmp/detached"])[1] == b"late\n"


def test_exec_into_a_stopped_container_is_refused(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", ["true"]))
    with pytest.raises(StateError, match=f"Container {c.id} is not running"):
        c.exec_run(["true"])
    c.start()
    c.wait(timeout=60)
    with pytest.raises(StateError, match="is not running") as err:
        c.exec_run(["true"])
    assert err.value.current == "exited"


def test_top_lists_the_containers_processes(running: Container) -> None:
    with running.exec(["sleep", "100001"]) as proc:
        titles, rows = running.top()
        assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        cmds = {r[7] for r in rows}
        assert "sleep 100000" in cmds and "sleep 100001" in cmds
        assert str(proc.pid) in {r[1] for r in rows}
        proc.kill()


def test_stats_come_from_the_cgroup(containers: ContainerStore) -> None:
    from isolate.cgroups import Limits

    c = containers.create(ContainerConfig(
        "busybox", ["sh", "-c", "while true; do :; done"], limits=Limits(memory_max="64M")))
    c.start()
    s = c.stats(interval=0.5)
    assert s.cpu_percent > 10 and s.pids >= 1
    assert s.memory_limit == 64 << 20 and 0 < s.memory_usage < s.memory_limit
    stream = c.stats_stream(interval=0.2)
    first = next(stream)
    assert first.cpu_percent > 10
    c.kill()
    assert list(stream) == [] or all(r.pids >= 0 for r in stream)
