"""Containers under isolate-shim: they outlive the process that started them, restart by their
policy with Docker's back-off, get a real pseudo-terminal (size, ^C, detach and attach), and
exec gets one too."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore, Status
from isolate.image import Store

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _shim_built(containers: ContainerStore) -> None:
    if containers.supervisor_for_start() != "shim":
        pytest.skip("isolate-shim is not built")


def make(cs: ContainerStore, command: list[str], **options: object) -> Container:
    return cs.create(ContainerConfig("busybox", command, **options))  # type: ignore[arg-type]


def output(c: Container) -> str:
    return "".join(r.text for r in c.logs())


def _read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    """Read raw output from ``fd`` until ``needle`` shows (a readiness wait, not a timing
    assertion: the deadline only bounds a broken run)."""
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data


def test_a_container_outlives_the_process_that_started_it(containers: ContainerStore,
                                                          image_store: Store) -> None:
    c = make(containers, ["sh", "-c", "echo started; exec sleep 100000"], name="survivor")
    code = f"""
from isolate.image import Store
from isolate.container import ContainerStore
c = ContainerStore(Store({image_store.root!r})).get("survivor")
c.start()
print(c.state.supervisor, c.state.supervisor_pid)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out[0] == "shim"
    st = c.state
    assert st.status is Status.RUNNING and st.supervisor_pid == int(out[1])
    deadline = time.monotonic() + 60
    while "started" not in output(c) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert output(c) == "started\n"
    assert c.exec_run(["true"])[0] == 0
    c.stop(timeout=5)
    assert c.status is Status.EXITED and c.state.exit_code == 137


def test_on_failure_restarts_n_times_then_stops(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "echo run; exit 3"], restart="on-failure:2")
    c.start()
    result = c.wait(timeout=120)
    assert result.exit_code == 3
    st = c.state
    assert st.status is Status.EXITED and st.restart_count == 2
    assert output(c) == "run\nrun\nrun\n"
    assert c.inspect()["RestartCount"] == 2


def test_always_restarts_until_stopped(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "echo run; sleep 0.05; exit 0"], restart="always")
    c.start()
    deadline = time.monotonic() + 120
    while output(c).count("run") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert output(c).count("run") >= 3  # exit 0 restarts too, with "always"
    c.stop(timeout=1)
    st = c.state
    assert st.status is Status.EXITED
    runs = output(c).count("run")
    time.sleep(0.5)  # nothing restarts it after a stop (this sleep can only fail the test)
    assert output(c).count("run") == runs and c.status is Status.EXITED


def test_kill_of_a_restarting_container_ends_it(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "exit 1"], restart="on-failure")
    c.start()
    deadline = time.monotonic() + 120
    while c.state.restart_count < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    c.stop(timeout=1)
    assert c.status is Status.EXITED


def test_a_tty_container_sizes_interrupts_detaches_and_reattaches(
        containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "trap 'echo got-INT; exit 5' INT; read line; "
                          "tty; stty size; echo read:$line; "
                          "while true; do sleep 0.1; done"], tty=True, open_stdin=True)
    c.start()
    with c.attach() as client:
        client.attach()
        client.resize(30, 100)
        client.write_stdin(b"hello\n")
        data = _read_until(client.fileno(), b"read:hello")
    text = data.decode(errors="replace")
    assert "/dev/pts/0" in text and "30 100" in text and "read:hello" in text
    # Detached: it still runs; attach again and interrupt it with ^C, through the terminal.
    assert c.status is Status.RUNNING
    with c.attach() as client:
        client.attach()
        client.write_stdin(b"\x03")
        data = _read_until(client.fileno(), b"got-INT")
    assert b"got-INT" in data
    assert c.wait(timeout=60).exit_code == 5
    # A tty is one stream: the log has it all as stdout.
    assert {r.stream for r in c.logs()} == {"stdout"}


def test_exec_gets_a_terminal_of_its_own(containers: ContainerStore) -> None:
    c = make(containers, ["sleep", "100000"])
    c.start()
    with c.exec(["sh", "-c", "tty; stty size"], tty=True, rows=20, cols=60) as proc:
        data = _read_until(proc.pty, b"20 60")
        assert proc.wait(timeout=60) == 0
    text = data.decode()
    assert "/dev/pts/" in text and "20 60" in text
    c.stop(timeout=0)


def test_an_init_reaps_orphans(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "sh -c 'sleep 0.1 &'; sleep 0.6; "
                          "ps -o stat,comm | grep -c '^Z' || true; cat /proc/1/comm"],
             init=True)
    c.start()
    assert c.wait(timeout=60).exit_code == 0
    assert output(c).split() == ["0", "isolate-init"]


def test_stop_of_a_paused_container(containers: ContainerStore) -> None:
    c = make(containers, ["sleep", "100000"])
    c.start()
    c.pause()
    assert c.stop(timeout=1) is True
    assert c.status is Status.EXITED


def test_the_shim_is_small(containers: ContainerStore) -> None:
    c = make(containers, ["sleep", "100000"])
    c.start()
    pid = c.state.supervisor_pid
    with open(f"/proc/{pid}/comm") as f:
        assert f.read().strip() == "isolate-shim"
    c.remove(force=True)
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True




def test_the_supervisor_reclaims_the_cgroup_when_the_container_ends(
        containers: ContainerStore) -> None:
    from isolate import _shim

    from .test_faults import _cgroup_dirs

    c = make(containers, ["sh", "-c", "sleep 100 & while [ ! -e /go ]; do sleep 0.01; done; "
                                      "exit 2"])
    c.start()
    assert _cgroup_dirs(c.id)
    c.exec_run(["touch", "/go"])
    assert _shim.wait_exit(c.dir, timeout=60)
    # Nobody has looked since it ended: its supervisor removed the cgroup before it went.
    assert not _cgroup_dirs(c.id)
    st = c.state
    assert (st.status, st.exit_code) == (Status.EXITED, 2)


def _gone(c: Container, timeout: float = 60) -> bool:
    """Whether the container's removal ran to its end: its directory gone, and the trash it
    was renamed to (the remover releases the name and the image hold before that goes)."""
    trash = os.path.join(os.path.dirname(c.dir), f".removing-{c.id}")
    deadline = time.monotonic() + timeout
    while ((os.path.exists(c.dir) or os.path.lexists(trash))
           and time.monotonic() < deadline):
        time.sleep(0.02)
    return not os.path.exists(c.dir) and not os.path.lexists(trash)


def test_a_detached_auto_remove_container_is_removed_when_it_ends(
        containers: ContainerStore) -> None:
    from .test_faults import _cgroup_dirs

    names = set(os.listdir(containers.names))
    c = make(containers, ["sh", "-c", "exit 3"], auto_remove=True, name="gone-by-itself")
    c.start()
    # No verb, no listing: the supervisor's exit command removes it.
    assert _gone(c)
    assert not _cgroup_dirs(c.id)
    assert set(os.listdir(containers.names)) == names
    assert not os.path.exists(os.path.join(containers.images.root, "holds",
                                           f"container-{c.id}"))


def test_a_waiter_reads_the_end_of_an_auto_remove_container_before_it_goes(
        containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "exit 7"], auto_remove=True)
    with c.awaiting():
        c.start()
        from isolate import _shim

        assert _shim.wait_exit(c.dir, timeout=60)
        time.sleep(0.5)  # the exit command has had its chance: it waits for us
        assert os.path.exists(c.dir)
        assert c.wait().exit_code == 7
    assert _gone(c)


def test_wait_conditions(containers: ContainerStore) -> None:
    from isolate.errors import ConfigError

    c = make(containers, ["sh", "-c", "exit 4"])
    with pytest.raises(ConfigError, match="invalid condition"):
        c.wait(condition="stopped")
    # not-running: a created container is not running.
    assert c.wait(condition="not-running").exit_code == 0
    with pytest.raises(TimeoutError):
        c.wait(timeout=0.3, condition="next-exit")  # nobody starts it
    result: list[int] = []

    def waiter() -> None:
        result.append(c.wait(condition="next-exit").exit_code)

    import threading

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    c.start()
    t.join(timeout=60)
    assert result == [4]
    # next-exit on an exited container waits for the next run, not the last one.
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert t.is_alive() and result == [4]
    c.start()
    t.join(timeout=60)
    assert result == [4, 4]
    # removed: until someone removes it; how it ended.
    removed: list[int] = []
    t = threading.Thread(target=lambda: removed.append(c.wait(condition="removed").exit_code))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    c.remove()
    t.join(timeout=60)
    assert removed == [4]
