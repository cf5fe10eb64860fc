"""Tests of ``Sandbox(init=True)`` on the real kernel: a tiny C init is pid 1 and the command
pid 2; the init reaps orphans, forwards signals, keeps no fd of the command's and shows nothing
of the caller; the command's exit status (also death by a signal) and exec errors come back as
without an init; kill, timeouts and close still end the whole tree. (OOM reports and
die_with_parent under an init are tested beside their tests without one, in test_sandbox.)"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from isolate import Sandbox
from isolate.errors import SpawnError, StateError
from sandbox_helpers import marker, pids_with_argv

pytestmark = pytest.mark.root  # conftest skips these, with the reason, when not root


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    # The timeout turns a broken init (a zombie never reaped, a signal never passed on) into
    # a failed assertion instead of a hang.
    with Sandbox(init=True, timeout=120) as box:
        yield box


def out(box: Sandbox, script: str) -> str:
    result = box.run(["sh", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result
    return result.stdout


def test_with_init_the_command_is_pid_2_and_pid_1_is_the_init(sb: Sandbox) -> None:
    assert out(sb, "echo $$ $PPID; cat /proc/1/comm").split() == ["2", "1", "isolate-init"]
    # Without one, the command itself is pid 1.
    with Sandbox() as plain:
        assert out(plain, "echo $$").split() == ["1"]


def test_the_init_shows_nothing_of_the_caller(sb: Sandbox) -> None:
    # The init is a copy of this process: its command line must not show through /proc/1.
    result = sb.run(["cat", "/proc/1/cmdline"], capture_output=True)
    assert result.stdout.rstrip(b"\0") == b"isolate-init"
    with open("/proc/self/cmdline", "rb") as f:
        ours = f.read().split(b"\0")[0]
    assert ours not in result.stdout
    # Not dumpable: the command (no CAP_SYS_PTRACE) can read neither its environment nor its
    # memory, nor follow its fds.
    for probe in ("cat /proc/1/environ", "cat /proc/1/mem", "readlink /proc/1/exe",
                  "readlink /proc/1/fd/$(ls /proc/1/fd)"):
        assert sb.run(["sh", "-c", f"{probe} > /dev/null"]).returncode != 0, probe


def test_pid_1_is_the_exec_d_isolate_init_not_a_copy_of_the_caller(sb: Sandbox) -> None:
    from isolate import _shim

    init = _shim.init_binary()
    if init is None:
        pytest.skip("isolate-shim is not statically linked here: the fork-based init is used")
    with sb.popen(["sleep", "1000"]) as proc:
        # Seen from outside: pid 1 runs the init program itself, with its own small memory.
        assert os.readlink(f"/proc/{proc.pid}/exe") == os.path.realpath(init)
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            assert f.read().rstrip(b"\0") == b"isolate-init"
        proc.kill()


def test_the_init_keeps_no_fd_the_commands_reader_waits_on(sb: Sandbox) -> None:
    # The command closes its stdout and lives on: the reader sees EOF now, not at the end.
    proc = sb.popen(["sh", "-c", "exec >&-; exec sleep 1000"], stdout=subprocess.PIPE)
    with proc:
        assert proc.stdout is not None
        assert proc.stdout.read() == b""
        assert proc.poll() is None
        # An init holds one fd: the pipe it reports the command's end on. It closes the rest
        # once the command has exec'd, so the command may look a moment too early: it waits
        # (up to 30 s, for a busy machine) until the count is down, and shows what is left.
        script = ("i=0; while [ $(ls /proc/1/fd | wc -l) != 1 ] && [ $i -lt 600 ]; do "
                  "sleep 0.05; i=$((i + 1)); done; ls /proc/1/fd")
        assert len(out(sb, script).split()) == 1
        proc.kill()


def test_an_orphan_that_exits_is_reaped_by_the_init(sb: Sandbox) -> None:
    # The orphan waits on a fifo until we have seen that the init adopted it; then it exits,
    # and the loop ends only once it is no zombie either (/proc/PID is gone when reaped).
    script = (
        "mkfifo /tmp/go; "
        "sh -c 'sh -c \"read x < /tmp/go\" & echo $! > /tmp/pid'; "
        "pid=$(cat /tmp/pid); "
        "grep PPid /proc/$pid/status; "
        "echo go > /tmp/go; "
        "while [ -e /proc/$pid ]; do sleep 0.01; done; "
        "echo reaped"
    )
    assert out(sb, script).split() == ["PPid:", "1", "reaped"]


def test_sigterm_kills_the_command_under_init_but_not_as_pid_1_without(sb: Sandbox) -> None:
    with sb.popen(["sleep", "1000"]) as proc:
        proc.terminate()
        assert proc.wait() == -signal.SIGTERM
    with Sandbox() as plain, plain.popen(["sleep", "1000"]) as proc:
        # pid 1 has no handler: the kernel drops SIGTERM, and only the SIGKILL ends it (a
        # fatal SIGTERM would have set the exit status at once, before SIGKILL).
        proc.terminate()
        proc.kill()
        assert proc.wait() == -signal.SIGKILL


@pytest.mark.parametrize(("script", "status"), [
    ("exit 0", 0),
    ("exit 42", 42),
    ("exit 143", 143),  # an exit code that looks like 128 + SIGTERM stays an exit code
    ("kill -TERM $$", -signal.SIGTERM),
    ("kill -KILL $$", -signal.SIGKILL),
    ("kill -USR1 $$", -signal.SIGUSR1),
])
def test_the_commands_status_passes_through_the_init(sb: Sandbox, script: str,
                                                     status: int) -> None:
    assert sb.run(["sh", "-c", script]).returncode == status
    with sb.popen(["sh", "-c", script]) as proc:
        while proc.poll() is None:  # poll() takes the same path as wait()
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        assert proc.returncode == status


def test_signals_are_forwarded_to_the_command(sb: Sandbox) -> None:
    script = ("trap 'echo hup' HUP; trap 'echo usr2' USR2; trap 'echo int; exit 7' INT; "
              "echo ready; while :; do sleep 0.01; done")
    with sb.popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        for sig, line in ((signal.SIGHUP, "hup\n"), (signal.SIGUSR2, "usr2\n")):
            proc.send_signal(sig)
            assert proc.stdout.readline() == line
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline() == "int\n"
        assert proc.wait() == 7


@pytest.mark.parametrize(("program", "err"), [("/no/such/program", errno.ENOENT),
                                              ("/etc/passwd", errno.EACCES)])
def test_an_exec_failure_is_the_same_error_with_or_without_init(program: str,
                                                               err: int) -> None:
    errors = []
    for init in (False, True):
        with Sandbox(init=init) as box, pytest.raises(SpawnError) as info:
            box.run([program])
        exc = info.value
        errors.append((type(exc), exc.errno, exc.step, exc.filename, str(exc)))
    assert errors[0] == errors[1]
    assert errors[0][1] == err


def test_kill_timeout_and_close_end_the_whole_tree_under_init() -> None:
    mark = marker()
    tree = ["sh", "-c", f"sleep {mark} & sleep {mark} & wait"]
    with Sandbox(init=True) as box:
        proc = box.popen(tree)
        with proc:
            proc.kill()
            assert proc.wait() == -signal.SIGKILL
        assert pids_with_argv("sleep", mark) == []
        with pytest.raises(subprocess.TimeoutExpired):
            box.run(tree, timeout=0.3)
        assert pids_with_argv("sleep", mark) == []
        box.popen(tree)
        box.popen(["sh", "-c", f"exec sleep {mark}"])
    assert pids_with_argv("sleep", mark) == []


def test_the_sandbox_timeout_ends_a_tree_under_init() -> None:
    mark = marker()
    with Sandbox(init=True, timeout=0.3) as box:
        proc = box.popen(["sh", "-c", f"sleep {mark} & sleep {mark}"])
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert pids_with_argv("sleep", mark) == []
        with pytest.raises(StateError, match="expired"):  # and it takes no new work
            box.run(["sh", "-c", f"sleep {mark} & sleep {mark}"])
        assert pids_with_argv("sleep", mark) == []


def echo_pid() -> int:
    return os.getpid()


def test_call_works_under_init() -> None:
    with Sandbox(init=True) as box:
        assert box.call(echo_pid) > 2  # a fork of the call helper, itself pid 2


@pytest.mark.userns
def test_rootless_sandbox_with_init() -> None:
    from rootless import run_unprivileged

    code = (
        "import signal\n"
        "from isolate import Sandbox\n"
        "with Sandbox(init=True) as sb:\n"
        "    r = sb.run(['sh', '-c', 'echo $$ $(id -u) $(cat /proc/1/comm)'],\n"
        "               capture_output=True, text=True)\n"
        "    print(r.stdout.strip())\n"
        "    with sb.popen(['sleep', '1000']) as p:\n"
        "        p.terminate()\n"
        "        print('status', p.wait())\n"
    )
    lines = run_unprivileged(code).stdout.splitlines()
    assert lines == ["2 0 isolate-init", f"status {-signal.SIGTERM}"]


@pytest.mark.userns
def test_rootless_proc_1_cmdline_shows_no_caller_command_line() -> None:
    from rootless import run_unprivileged

    code = (
        "from isolate import Sandbox\n"
        "with Sandbox(init=True) as sb:\n"
        "    r = sb.run(['cat', '/proc/1/cmdline'], capture_output=True)\n"
        "    print(repr(r.stdout.rstrip(b'\\0')))\n"
        "    print(sb.run(['sh', '-c', 'cat /proc/1/environ; readlink /proc/1/exe'],\n"
        "                 capture_output=True).returncode)\n"
        "    with sb.popen(['sleep', '1000']) as p:\n"
        "        print(os.path.basename(os.readlink(f'/proc/{p.pid}/exe')))\n"
        "        p.kill()\n"
    )
    out = run_unprivileged("import os\n" + code).stdout
    # The caller's command line (python -c CODE) shows nowhere; its environment and exe are
    # closed to the command; the init is the exec'd program, not a copy of the caller.
    assert out.splitlines() == ["b'isolate-init'", "1", "isolate-shim"]
