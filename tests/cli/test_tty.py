"""``-t`` and ``-i`` as a user at a terminal meets them: the CLI runs on a real pseudo-terminal
(its controlling terminal, so the kernel sends it SIGWINCH), puts it in raw mode and restores
it however it ends, passes the window size at the start and on every change, lets ^C reach the
foreground process inside, detaches on ctrl-p ctrl-q (the container runs on) and ``attach``
re-joins it; ``exec -it`` gets a terminal of its own; ``-i`` without ``-t`` streams stdin; a
SIGKILLed CLI leaves its container running, as a Docker client does."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from cli.conftest import WAIT, Isolate, argv, foreground, read_until

pytestmark = pytest.mark.root

SETSID = shutil.which("setsid")


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Terminal:
    """A pseudo-terminal whose slave is the controlling terminal and stdio of ``isolate
    ARGS``; the test plays the user at the master."""

    def __init__(self, cli: Isolate, args: list[str], rows: int = 24, cols: int = 80) -> None:
        if SETSID is None:
            pytest.skip("setsid (util-linux) is not installed")
        self.master, slave = os.openpty()
        set_size(slave, rows, cols)
        self.cooked = termios.tcgetattr(slave)
        # setsid -c: a session of its own with the slave as controlling terminal.
        self.proc = subprocess.Popen([SETSID, "-c", *argv(*args)], stdin=slave, stdout=slave,
                                     stderr=slave, env=cli.env, close_fds=True)
        os.close(slave)
        self.seen = b""

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, wanted: bytes, timeout: float = WAIT) -> bytes:
        """Read until ``wanted`` has been shown; everything shown so far."""
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{wanted!r} never shown; the terminal shows {self.seen!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: every slave fd is closed
                    chunk = b""
                if not chunk and self.proc.poll() is not None:
                    raise AssertionError(f"{wanted!r} never shown before isolate exited "
                                         f"({self.proc.returncode}): {self.seen!r}")
                self.seen += chunk
        return self.seen

    def settings(self) -> list[object]:
        """The terminal's settings now (the master reads the slave's)."""
        return termios.tcgetattr(self.master)

    def wait(self) -> int:
        code = self.proc.wait(timeout=WAIT)
        with contextlib.suppress(OSError):
            while os.read(self.master, 65536):
                pass
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@contextlib.contextmanager
def terminal(cli: Isolate, *args: str, rows: int = 24, cols: int = 80) -> Iterator[Terminal]:
    t = Terminal(cli, list(args), rows, cols)
    try:
        yield t
    finally:
        t.close()


SCRIPT = "trap 'echo got-INT; exit 5' INT; while read a; do stty size; echo read:$a; done"


def test_run_it_size_resize_ctrl_c_and_the_terminal_restored(detachable: Isolate) -> None:
    with terminal(detachable, "run", "-it", "--name", "tty1", "busybox", "sh", "-c", SCRIPT,
                  rows=30, cols=100) as t:
        t.type(b"hello\r")
        t.expect(b"read:hello")
        assert b"30 100\r\nread:hello" in t.seen
        # Raw while attached: no local echo or signals of ours.
        lflag = t.settings()[3]
        assert isinstance(lflag, int) and not lflag & (termios.ECHO | termios.ICANON |
                                                       termios.ISIG)
        set_size(t.master, 40, 120)  # SIGWINCH to the CLI, which resizes the container's
        for i in range(200):  # until a line typed after the resize sees the new size
            t.type(f"probe{i}\r".encode())
            t.expect(f"read:probe{i}".encode())
            if t.seen.endswith(f"40 120\r\nread:probe{i}".encode()) or \
                    f"40 120\r\nread:probe{i}\r\n".encode() in t.seen:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the new size never reached the container: {t.seen!r}")
        t.type(b"\x03")  # ^C, a byte in raw mode: a SIGINT inside, from its terminal
        t.expect(b"got-INT")
        assert t.wait() == 5
        assert t.settings() == t.cooked
    assert detachable.ok("inspect", "-f", "{{.State.ExitCode}} {{.Config.Tty}}", "tty1") == \
        "5 true\n"


def test_detach_keys_leave_it_running_and_attach_rejoins(detachable: Isolate) -> None:
    with terminal(detachable, "run", "-it", "--name", "tty2", "busybox", "sh", "-c",
                  SCRIPT) as t:
        t.type(b"one\r")
        t.expect(b"read:one")
        t.type(b"\x10\x11")  # ctrl-p ctrl-q
        assert t.wait() == 0
        assert t.settings() == t.cooked
    assert detachable.status("tty2") == "running"
    with terminal(detachable, "attach", "tty2", rows=33, cols=77) as t:
        time.sleep(0.2)  # attached before the line is typed (a lost line only fails)
        t.type(b"two\r")
        t.expect(b"read:two")
        assert b"33 77" in t.seen
        t.type(b"\x03")
        t.expect(b"got-INT")
        assert t.wait() == 5
    # Other keys: --detach-keys.
    detachable.ok("rm", "tty2")
    with terminal(detachable, "run", "-it", "--detach-keys", "ctrl-x,x", "--name", "tty3",
                  "busybox", "sh", "-c", SCRIPT) as t:
        t.type(b"three\r")
        t.expect(b"read:three")
        t.type(b"\x10\x11")  # not the keys now: typed into the container
        t.type(b"\x18x")
        assert t.wait() == 0
    assert detachable.status("tty3") == "running"
    detachable.ok("rm", "-f", "tty3")


def test_a_signal_to_the_attached_cli_restores_the_terminal(detachable: Isolate) -> None:
    with terminal(detachable, "run", "-it", "--name", "tty4", "busybox", "sh", "-c",
                  SCRIPT) as t:
        t.type(b"x\r")
        t.expect(b"read:x")
        t.proc.send_signal(signal.SIGTERM)
        assert t.wait() == 128 + signal.SIGTERM
        assert t.settings() == t.cooked
    # With a tty the client's signals are not the container's: it runs on.
    assert detachable.status("tty4") == "running"


def test_exec_it_gets_a_terminal_of_its_own(detachable: Isolate) -> None:
    with foreground(detachable, "exec-tty"):
        with terminal(detachable, "exec", "-it", "exec-tty", "sh", "-c",
                      "tty; stty size; read x; echo x:$x; exit 3", rows=20, cols=60) as t:
            t.expect(b"20 60")
            t.type(b"y\r")
            t.expect(b"x:y")
            assert t.wait() == 3
            assert b"/dev/pts/" in t.seen and t.settings() == t.cooked
        with terminal(detachable, "exec", "-it", "exec-tty", "sh", "-c",
                      "trap 'echo int; exit 7' INT; echo waiting; "
                      "while :; do sleep 0.1; done") as t:
            t.expect(b"waiting")
            t.type(b"\x03")
            t.expect(b"int")
            assert t.wait() == 7


def test_it_refuses_a_stdin_that_is_not_a_terminal(isolate_cli: Isolate) -> None:
    before = isolate_cli.ok("ps", "-a", "-q")
    proc = isolate_cli("run", "-it", "busybox", "true", input="")
    assert proc.returncode == 125
    assert proc.stderr == "isolate: the input device is not a TTY\n"
    assert isolate_cli.ok("ps", "-a", "-q") == before  # refused before anything was made


def test_i_without_t_streams_stdin_and_its_end(detachable: Isolate) -> None:
    proc = detachable("run", "-i", "--rm", "busybox", "sh", "-c", "echo before; cat; echo after",
                      input="line 1\nline 2\n")
    assert (proc.returncode, proc.stdout) == (0, "before\nline 1\nline 2\nafter\n")


def test_run_d_prints_the_id_and_the_container_outlives_the_command(
        detachable: Isolate) -> None:
    cid = detachable.ok("run", "-d", "--name", "bg", "busybox", "sh", "-c",
                        "echo up; sleep 100000").strip()
    assert len(cid) == 64
    assert detachable.status("bg") == "running"
    deadline = time.monotonic() + WAIT
    while detachable.ok("logs", "bg") != "up\n" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert detachable.ok("logs", "bg") == "up\n"
    detachable.ok("stop", "-t", "0", "bg")
    assert detachable.ok("start", "bg") == "bg\n"
    assert detachable.status("bg") == "running"
    detachable.ok("restart", "-t", "0", "bg")
    assert detachable.inspect("bg")["State"]["Running"] is True  # type: ignore[index]
    detachable.ok("rm", "-f", "bg")


def test_the_container_survives_a_sigkilled_cli(detachable: Isolate) -> None:
    proc = detachable.popen("run", "--name", "orphan", "busybox", "sh", "-c",
                            "echo ready; while :; do echo tick; sleep 0.2; done",
                            stdout=subprocess.PIPE)
    try:
        read_until(proc, "ready")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    assert detachable.status("orphan") == "running"
    before = detachable.ok("logs", "orphan").count("tick")
    deadline = time.monotonic() + WAIT
    while detachable.ok("logs", "orphan").count("tick") <= before:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    attached = detachable.popen("attach", "orphan", stdout=subprocess.PIPE)
    try:
        read_until(attached, "tick")
        detachable.ok("stop", "-t", "1", "orphan")
        assert attached.wait(timeout=WAIT) == 137
    finally:
        if attached.stdout is not None:
            attached.stdout.close()


def test_a_shells_prompt_is_shown_at_run_and_at_attach(detachable: Isolate) -> None:
    with terminal(detachable, "run", "-it", "--name", "prompt", "busybox", "sh",
                  rows=25, cols=90) as t:
        t.expect(b"/ # ")  # nothing typed: drawn (again) once we are attached
        t.type(b"\x10\x11")
        assert t.wait() == 0
    with terminal(detachable, "attach", "prompt") as t:
        t.expect(b"/ # ")
        t.type(b"exit 6\r")
        assert t.wait() == 6


def test_the_terminal_has_its_size_from_the_start(detachable: Isolate) -> None:
    # Printed before anything is typed (perhaps before the CLI is attached): the log has it.
    with terminal(detachable, "run", "-it", "--name", "sized", "busybox", "sh", "-c",
                  "stty size; read x", rows=31, cols=101) as t:
        deadline = time.monotonic() + WAIT
        while "31 101" not in detachable("logs", "sized").stdout:  # (once it exists)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        t.type(b"\r")
        assert t.wait() == 0
