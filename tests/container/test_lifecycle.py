"""The lifecycle of a container: every legal move, every illegal one refused with a
StateError naming both ends, and state that another process sees and changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore, Status
from isolate.errors import AmbiguousError, ConflictError, NotFoundError, StateError
from isolate.image import Store
from sandbox_helpers import marker, pids_with_argv

pytestmark = pytest.mark.root


def make(cs: ContainerStore, command: list[str], **options: object) -> Container:
    return cs.create(ContainerConfig("busybox", command, **options))  # type: ignore[arg-type]


def output(c: Container) -> str:
    return "".join(r.text for r in c.logs())


def test_create_prepares_the_root_and_runs_nothing(containers: ContainerStore) -> None:
    mark = marker()
    c = make(containers, ["sleep", mark], name="created-only")
    assert c.status is Status.CREATED
    assert c.name == "created-only" and len(c.id) == 64
    assert os.path.isdir(c.upper_dir) and not os.listdir(c.upper_dir)
    with open(os.path.join(c.dir, "state.json")) as f:
        state = json.loads(f.read())
    assert state["status"] == "created" and state["pid"] == 0
    assert not pids_with_argv("sleep", mark)


def test_start_wait_and_the_exit_code(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    c.start()
    result = c.wait(timeout=60)
    assert result.exit_code == 3 and not result.oom_killed and result.finished_at
    assert c.status is Status.EXITED
    records = list(c.logs())
    assert [(r.stream, r.text) for r in records] == [("stdout", "out\n"), ("stderr", "err\n")]


def test_a_container_is_pid_1_with_its_hostname_and_its_own_root(
        containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "echo $$ $(hostname); cat /etc/marker; "
                          "cat /etc/hostname"])
    c.start()
    assert c.wait(timeout=60).exit_code == 0
    lines = output(c).splitlines()
    assert lines[0] == f"1 {c.short_id}"
    assert lines[1] == "isolate test image" and lines[2] == c.short_id


def test_stop_sends_the_stop_signal_then_sigkill_after_the_timeout(
        containers: ContainerStore) -> None:
    # The shell ignores TERM: stop has to escalate.
    c = make(containers, ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 1; "
                          "done"])
    c.start()
    _wait_for_output(c, "ready")
    assert c.stop(timeout=0.5) is True
    st = c.state
    assert st.status is Status.EXITED and st.exit_code == 128 + signal.SIGKILL
    assert c.stop() is False  # not running: nothing to do, as Docker


def test_stop_honours_the_images_stop_signal(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig(
        "busybox-vol", ["sh", "-c", "trap 'echo got USR1; exit 7' USR1; echo ready; "
                        "while true; do sleep 0.1; done"]))
    c.start()
    _wait_for_output(c, "ready")
    c.stop(timeout=30)
    assert c.state.exit_code == 7
    assert "got USR1" in output(c)


def test_kill_with_a_signal_and_restart(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "trap 'exit 42' HUP; echo ready; "
                          "while true; do sleep 0.1; done"])
    c.start()
    _wait_for_output(c, "ready")
    first_pid = c.state.pid
    c.kill("HUP")
    assert c.wait(timeout=60).exit_code == 42
    c.restart(timeout=1)
    st = c.state
    assert st.status is Status.RUNNING and st.pid != first_pid and st.run == 2
    c.restart(timeout=1)
    assert c.state.status is Status.RUNNING
    c.kill()
    assert c.wait(timeout=60).exit_code == 137


def test_pause_freezes_and_unpause_thaws(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; "
                          "sleep 0.01; done"])
    c.start()
    c.pause()
    assert c.status is Status.PAUSED
    code, _out1, _ = _exec_fails_paused(c)
    assert code
    with pytest.raises(StateError) as err:
        c.pause()
    assert err.value.current == "paused" and err.value.requested == "pause"
    c.unpause()
    assert c.status is Status.RUNNING
    with pytest.raises(StateError):
        c.unpause()
    c.stop(timeout=5)


def _exec_fails_paused(c: Container) -> tuple[int, bytes, bytes]:
    with pytest.raises(StateError) as err:
        c.exec_run(["true"])
    assert "paused" in str(err.value)
    return 1, b"", b""


@pytest.mark.parametrize("verb, status", [
    ("start", "running"), ("pause", "created"), ("unpause", "running"),
    ("kill", "created"), ("exec", "created"), ("remove", "running")])
def test_illegal_moves_are_state_errors(containers: ContainerStore, verb: str,
                                        status: str) -> None:
    c = make(containers, ["sleep", "1000"])
    if status == "running":
        c.start()
    calls = {"start": c.start, "pause": c.pause, "unpause": c.unpause,
             "kill": lambda: c.kill("TERM"), "exec": lambda: c.exec_run(["true"]),
             "remove": c.remove}
    with pytest.raises(StateError) as err:
        calls[verb]()
    assert err.value.current == status and err.value.requested == verb
    assert c.status.value == status
    if status == "running":
        assert c.state.pid  # still running, untouched


def test_remove_running_needs_force_and_force_kills(containers: ContainerStore) -> None:
    c = make(containers, ["sleep", "1000"], name="to-remove")
    c.start()
    pid = c.state.pid
    with pytest.raises(StateError, match="Stop the container before attempting removal"):
        c.remove()
    c.remove(force=True)
    assert not os.path.exists(c.dir)
    assert not os.path.exists(f"/proc/{pid}") or _zombie_or_gone(pid)
    with pytest.raises(NotFoundError, match="No such container: to-remove"):
        containers.get("to-remove")
    with pytest.raises(NotFoundError):
        c.start()


def _zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_names_are_unique_and_ids_resolve_by_prefix(containers: ContainerStore) -> None:
    a = make(containers, ["true"], name="unique-name")
    with pytest.raises(ConflictError, match='"/unique-name" is already in use'):
        make(containers, ["true"], name="unique-name")
    assert containers.get("unique-name") == a
    assert containers.get("/unique-name") == a
    assert containers.get(a.id[:5]) == a
    assert containers.get(a.id) == a
    b = make(containers, ["true"])
    assert b.name and b.name != a.name  # a generated name, Docker's adjective_noun
    from isolate.container.container import _ADJECTIVES, _NOUNS, _random_name
    adjective, _, noun = b.name.partition("_")
    assert adjective in _ADJECTIVES and noun in _NOUNS
    assert len({_random_name() for _ in range(200)}) > 50  # drawn, not fixed (288 possible)
    common = ""
    for x, y in zip(a.id, b.id, strict=True):
        if x != y:
            break
        common += x
    if common:
        with pytest.raises(AmbiguousError, match="Multiple IDs"):
            containers.get(common)
    with pytest.raises(NotFoundError):
        containers.get("no-such-container")


def test_rename_moves_the_name(containers: ContainerStore) -> None:
    a = make(containers, ["sleep", "1000"], name="old-name")
    make(containers, ["true"], name="taken-name")
    a.start()
    a.rename("new-name")
    assert a.name == "new-name" and containers.get("new-name") == a
    with pytest.raises(NotFoundError):
        containers.get("old-name")
    with pytest.raises(ConflictError):
        a.rename("taken-name")
    code, out, _ = a.exec_run(["cat", "/etc/hosts"])
    assert code == 0 and b" new-name\n" in out
    a.stop(timeout=0)


def test_list_shows_running_by_default_and_all_with_all(containers: ContainerStore) -> None:
    running = make(containers, ["sleep", "1000"])
    stopped = make(containers, ["true"])
    running.start()
    assert running in containers.list() and stopped not in containers.list()
    everything = containers.list(all=True)
    assert running in everything and stopped in everything
    running.stop(timeout=0)


def test_auto_remove_removes_it_once_it_ended(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "exit 5"], auto_remove=True)
    with c.awaiting():  # waiting from before the start, as docker run does
        c.start()
        assert c.wait(timeout=60).exit_code == 5
    assert not os.path.exists(c.dir)
    with pytest.raises(NotFoundError):
        containers.get(c.id)


def test_a_failed_start_keeps_the_error_and_leaves_nothing(containers: ContainerStore) -> None:
    c = make(containers, ["/no/such/program"])
    with pytest.raises(OSError) as err:
        c.start()
    assert "/no/such/program" in str(err.value)
    st = c.state
    assert st.status is Status.CREATED and st.exit_code == 127
    assert "/no/such/program" in st.error
    assert not st.cgroup


def test_another_process_sees_and_manages_the_container(containers: ContainerStore,
                                                        image_store: Store) -> None:
    c = make(containers, ["sh", "-c", "echo hello from inside; sleep 1000"], name="shared")
    c.start()
    _wait_for_output(c, "hello from inside")
    code = f"""
import sys
from isolate.image import Store
from isolate.container import ContainerStore
cs = ContainerStore(Store({image_store.root!r}))
c = cs.get("shared")
print(c.status.value, [r.text for r in c.logs()])
print(c.exec_run(["sh", "-c", "echo exec $$"])[1].decode().strip())
c.stop(timeout=0)
print(c.status.value, c.state.exit_code)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "running ['hello from inside\\n']"
    assert lines[1].startswith("exec ")
    assert lines[2] == "exited 137"
    assert c.status is Status.EXITED


def _wait_for_output(c: Container, text: str, timeout: float = 60) -> None:
    # A readiness poll, not a timing assertion: the deadline only bounds a broken start.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in output(c):
            return
        if not c.status.running:
            break
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared; log: {output(c)!r}, {c.state}")


def test_init_is_pid_1_and_the_command_pid_2(containers: ContainerStore) -> None:
    c = make(containers, ["sh", "-c", "echo $$; cat /proc/1/comm; exit 4"], init=True)
    c.start()
    assert c.wait(timeout=60).exit_code == 4
    assert output(c).split() == ["2", "isolate-init"]


def test_an_oom_kill_is_reported(containers: ContainerStore) -> None:
    from isolate.cgroups import Limits

    c = make(containers, ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
             limits=Limits(memory_max="32M", memory_swap_max=0))
    c.start()
    result = c.wait(timeout=120)
    assert result.exit_code == 137 and result.oom_killed
    assert c.inspect()["State"]["OOMKilled"] is True


def test_prune_removes_what_is_not_running(containers: ContainerStore) -> None:
    done = make(containers, ["true"])
    running = make(containers, ["sleep", "100000"])
    running.start()
    removed = containers.prune()
    assert done.id in removed and running.id not in removed
    assert running.status is Status.RUNNING
    running.remove(force=True)


def test_ps_rows_and_filters_are_dockers(containers: ContainerStore) -> None:
    up = make(containers, ["sleep", "100000"], name="ps-up", labels={"tier": "web"})
    down = make(containers, ["sh", "-c", "exit 3"], name="ps-down", labels={"tier": "db"})
    up.start()
    down.start()
    down.wait(timeout=60)
    rows = {r.names: r for r in containers.ps(all=True)}
    assert rows["ps-up"].state == "running" and rows["ps-up"].status.startswith("Up ")
    assert rows["ps-down"].status.startswith("Exited (3) ")
    assert rows["ps-up"].fields()["ID"] == up.id[:12]
    assert rows["ps-up"].fields()["Labels"] == "tier=web"
    assert [r.names for r in containers.ps(filters={"name": ["ps-"]})] == ["ps-up"]
    assert [r.names for r in containers.ps(filters={"status": ["exited"],
                                                    "label": ["tier=db"]})] == ["ps-down"]
    assert [r.names for r in containers.ps(all=True, filters={"exited": ["3"]})] == \
        ["ps-down"]
    with pytest.raises(ValueError, match="invalid filter"):
        containers.ps(filters={"bogus": ["x"]})
    up.stop(timeout=0)


def test_what_needs_the_shim_is_refused_without_it(containers: ContainerStore) -> None:
    from isolate.errors import UnsupportedError

    containers = ContainerStore(containers.images, supervisor="inprocess")
    c = make(containers, ["true"], restart="always")
    with pytest.raises(UnsupportedError, match="isolate-shim"):
        c.start()
    assert c.status is Status.CREATED
    d = make(containers, ["true"], tty=True, open_stdin=True)
    with pytest.raises(UnsupportedError, match="a tty and an open stdin"):
        d.start()


def test_the_in_process_supervisor_cleans_up_when_the_container_ends(
        containers: ContainerStore) -> None:
    import time

    from .test_faults import _cgroup_dirs

    containers = ContainerStore(containers.images, supervisor="inprocess")
    kept = make(containers, ["sh", "-c", "exit 2"])
    gone = make(containers, ["true"], auto_remove=True)
    kept.start()
    gone.start()
    deadline = time.monotonic() + 60
    while (os.path.exists(gone.dir) or _cgroup_dirs(kept.id)) and time.monotonic() < deadline:
        time.sleep(0.02)
    # No verb or listing since: the watching thread removed one and settled the other.
    assert not os.path.exists(gone.dir) and not _cgroup_dirs(gone.id)
    assert not _cgroup_dirs(kept.id)
    assert kept.state.exit_code == 2


def test_a_waiter_of_an_auto_remove_container_gets_its_exit_code_while_others_list(
        containers: ContainerStore) -> None:
    import threading

    c = make(containers, ["sh", "-c", "while [ ! -e /go ]; do sleep 0.01; done; exit 6"],
             auto_remove=True)
    c.start()
    got: list[int] = []
    waiting = threading.Event()

    def wait() -> None:
        with c.awaiting():  # a waiter before the end (else its supervisor may remove it)
            waiting.set()
            got.append(c.wait(timeout=60).exit_code)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert waiting.wait(60)
    c.exec_run(["touch", "/go"])
    while waiter.is_alive():
        containers.list(all=True)  # a lister would remove it, but someone waits for it
    waiter.join()
    assert got == [6]
    assert not os.path.exists(c.dir)
