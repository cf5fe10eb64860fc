"""Tests of the container supervisor (isolate-shim and isolate._shim) with real plans, processes,
terminals and cgroups: logs in Docker's json-file format (escaping, partial lines, rotation, a
full disk), exit statuses and OOM kills, restart policies and their back-off, the attach
socket (two clients, stdin, a pty's size and Ctrl-C), set-up errors as typed exceptions, a shim
that outlives its starter, a SIGKILLed shim taking its container along, and nothing left
behind. Each container is a plan of lowlevel ops: new mount (and pid) namespace, the host root
read-only."""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from isolate import _plan, _shim, lowlevel
from isolate._plan import Fd, Mode, Op, OpKind, Plan
from isolate._shim import AttachClient, Message, RestartPolicy, ShimConfig, Started
from isolate.errors import ConfigError, IsolateOSError, MountError, SpawnError
from isolate.fs.mounts import MOUNT_ATTR_RDONLY, MS_REC, MS_SLAVE
from sandbox_helpers import marker, pids_with_argv

pytestmark = pytest.mark.root  # namespaces, mounts and cgroups of the host

SHIM_H = Path(_shim.__file__).parent / "_native" / "shim" / "shim.h"
PATH = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
WAIT = 60.0  # generous: the machine is shared


def container(script: str, *, pidns: bool = True, tty: bool = False,
              mode: Mode = Mode.VFORK, flags: int = 0, first: Sequence[Op] = (),
              last: Sequence[Op] = (), init_fd: int = -1) -> Plan:
    """A plan running ``sh -c script`` as the shim's child: private mounts, the host root
    read-only, a fresh /proc with a pid namespace, a devpts and a pty with ``tty``."""
    p = Plan(_plan.CLONE_NEWNS | (_plan.CLONE_NEWPID if pidns else 0) | flags, mode)
    p.extend(first)
    p.extend([
        Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=Fd.PARENT, note="die with the shim"),
        _plan.mount(None, "/", None, MS_REC | MS_SLAVE),
        _plan.setattr_("/", MOUNT_ATTR_RDONLY, recursive=True),
    ])
    if pidns:
        p.add(_plan.mount("proc", "/proc", "proc"))
    if tty:
        p.add(_plan.mount("devpts", "/dev/pts", "devpts", 0,
                          "newinstance,ptmxmode=0666,mode=620"))
        p.add(_plan.console(rows=24, cols=80))
    p.extend(last)
    p.extend(_plan.exec_tail(_plan.exec_("sh", ["sh", "-c", script], PATH),
                             [(0, 0, False), (1, 1, False), (2, 2, False)],
                             init_fd=init_fd, index=len(p.ops)))
    return p


def connect(state: str) -> AttachClient:
    """A client whose reads fail after WAIT seconds instead of hanging the test."""
    return AttachClient.connect(state, timeout=WAIT)


def read_raw_until(client: AttachClient, got: bytes, want: bytes) -> bytes:
    while want not in got:
        chunk = client.read_raw()
        assert chunk, f"EOF before {want!r}; got {got!r}"
        got += chunk
    return got


def gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True  # (ESRCH: reaped between the open and the read)


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


Supervise = Callable[..., tuple[str, Started]]


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Supervise]:
    """Start a shim for a plan in a fresh state dir; at the end make sure it and its container
    are gone (killing the shim, which takes the container with it)."""
    started: list[tuple[str, Started]] = []
    names = itertools.count()

    def run(plan: Plan, **options: object) -> tuple[str, Started]:
        state = tmp_path / f"c{next(names)}"
        state.mkdir()
        options.setdefault("log_path", str(state / "container.log"))
        s = _shim.start(plan, ShimConfig(str(state), **options))  # type: ignore[arg-type]
        started.append((str(state), s))
        return str(state), s

    yield run
    for state, s in started:
        if _shim.is_alive(state):
            os.kill(s.shim_pid, signal.SIGKILL)
        assert _shim.wait_exit(state, WAIT)
        eventually(lambda s=s: gone(s.pid) and gone(s.shim_pid), "the container to end")


def records(path: str | Path) -> list[dict[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            assert line.endswith("\n")
            out.append(json.loads(line))
    return out


def finished(state: str) -> _shim.ExitRecord:
    assert _shim.wait_exit(state, WAIT), "the shim did not end"
    record = _shim.read_exit(state)
    assert record is not None
    return record


# -- the protocol -----------------------------------------------------------------------------

def shim_defines() -> dict[str, int]:
    text = SHIM_H.read_text()
    return {m[0]: int(m[1]) for m in re.findall(r"^#define\s+(SHIM_\w+)\s+\(?(\d+)", text, re.M)}


@pytest.mark.parametrize(("enum_cls", "prefix"), [
    (_shim.ReportKind, "SHIM_REPORT_"), (_shim.ShimStep, "SHIM_STEP_"),
    (_shim.Message, "SHIM_MSG_"),
])
def test_the_python_numbers_match_shim_h(enum_cls: type, prefix: str) -> None:
    defines = shim_defines()
    in_c = {k[len(prefix):]: v for k, v in defines.items()
            if k.startswith(prefix) and k != "SHIM_MSG_MAX_PAYLOAD"}
    assert in_c and in_c == {m.name: int(m.value) for m in enum_cls}


def test_the_protocol_limits_match_shim_h() -> None:
    d = shim_defines()
    assert d["SHIM_MSG_MAX_PAYLOAD"] == _shim.MAX_PAYLOAD
    assert d["SHIM_STOP_NO_TIMEOUT"] == _shim.STOP_NO_TIMEOUT
    assert d["SHIM_LOG_LINE_MAX"] == _shim.LOG_LINE_MAX
    assert d["SHIM_STDIN_QUEUE_MAX"] == _shim.STDIN_QUEUE_MAX
    assert d["SHIM_MAX_CGROUPS"] == _shim._MAX_CGROUPS
    assert d["SHIM_MAX_EXIT_ARGS"] == _shim._MAX_EXIT_ARGS
    # (256 * 1024) in C
    assert "(256 * 1024)" in SHIM_H.read_text() and _shim.CLIENT_QUEUE_MAX == 256 * 1024
    assert _shim.ReportKind.ERROR == _plan.Report.ERROR


def test_the_installed_shim_is_static_so_its_init_runs_in_any_root() -> None:
    out = subprocess.run(["gcc", "-print-file-name=libc.a"], capture_output=True, text=True)
    if not os.path.isabs(out.stdout.strip()):
        pytest.skip("no static libc here: the shim is linked dynamically (with a warning)")
    assert _shim.init_binary() == _shim.binary()


def test_restart_policies_parse_as_docker_writes_them() -> None:
    assert RestartPolicy.parse("on-failure:3") == RestartPolicy("on-failure", 3)
    assert str(RestartPolicy.parse("unless-stopped")) == "unless-stopped"
    for bad in ("sometimes", "always:3", "on-failure:x", "on-failure:-1"):
        with pytest.raises(ConfigError):
            RestartPolicy.parse(bad)
    with pytest.raises(ConfigError):
        ShimConfig("/tmp", newuidmap=(0, 1))
    with pytest.raises(ConfigError):
        ShimConfig("/tmp", log_max_file=0)


def test_a_record_that_is_missing_empty_or_torn_reads_as_none(tmp_path: Path) -> None:
    # What read_start/read_exit and the container layer's readers take for "no record".
    (tmp_path / "file").write_text("{}")
    cases = {"missing": None, "file/below": None, "empty": "", "torn": '{"pid": 1',
             "zeros": "\0\0\0", "list": "[1]", "record": '{"pid": 1}'}
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    assert {name: _shim.read_json(str(tmp_path / name)) for name in cases} == {
        "missing": None, "file/below": None, "empty": None, "torn": None, "zeros": None,
        "list": None, "record": {"pid": 1}}
    (tmp_path / "start.json").write_text("")
    assert _shim.read_start(str(tmp_path)) is None


def test_a_bad_command_line_is_refused_on_the_ready_fd() -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        proc = subprocess.run([_shim.binary(), "run", "--ready-fd", str(w), "--bogus", "x"],
                              pass_fds=(w,), capture_output=True, check=False)
        os.close(w)
        w = -1
        data = os.read(r, 4096)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert proc.returncode == 1
    kind, err, step, _, _ = _plan.REPORT.unpack(data)
    assert (kind, err, step) == (_shim.ReportKind.FAILED, errno.EINVAL, _shim.ShimStep.ARGS)
    usage = subprocess.run([_shim.binary()], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "usage" in usage.stderr


# -- logs -------------------------------------------------------------------------------------

def test_output_is_logged_in_dockers_json_file_format(supervise: Supervise) -> None:
    long_line = "y" * 40000
    script = textwrap.dedent(rf"""
        echo plain
        echo to-stderr >&2
        printf 'quote" back\\ tab\t cr\r bell\007 <b>&amp; \342\200\250 caf\303\251\n'
        printf 'bad \377 \300\257 \355\240\200 end\n'
        printf '%s\n' {long_line}
        echo more to-stderr >&2
        printf 'no newline at the end'
    """)
    state, _ = supervise(container(script))
    assert finished(state).exit_code == 0
    path = Path(state) / "container.log"
    recs = records(path)
    raw = path.read_text()
    for rec in recs:
        assert list(rec) == ["log", "stream", "time"]
        assert TIME.match(rec["time"]), rec["time"]
    times = [r["time"] for r in recs]
    assert times == sorted(times)  # fixed-width RFC 3339: text order is time order
    out = [r["log"] for r in recs if r["stream"] == "stdout"]
    err = [r["log"] for r in recs if r["stream"] == "stderr"]
    assert err == ["to-stderr\n", "more to-stderr\n"]
    assert out[:3] == [
        "plain\n",
        "quote\" back\\ tab\t cr\r bell\x07 <b>&amp; \u2028 caf\u00e9\n",
        # Docker's rule: every byte outside valid UTF-8 is one U+FFFD
        "bad \ufffd \ufffd\ufffd \ufffd\ufffd\ufffd end\n",
    ]
    # A line over 16 KiB is cut into partial records of 16 KiB, as Docker cuts it.
    assert out[3:6] == ["y" * 16384, "y" * 16384, "y" * (40000 - 2 * 16384) + "\n"]
    assert out[6:] == ["no newline at the end"]
    # Escaped as Docker's writer escapes: HTML characters, U+2028 and control bytes.
    assert r"\u003cb\u003e\u0026amp;" in raw and r"\u2028" in raw and r"\u0007" in raw


def test_the_log_rotates_at_max_size_keeping_max_file_files(supervise: Supervise) -> None:
    script = "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"
    state, _ = supervise(container(script), log_max_size=2000, log_max_file=3)
    finished(state)
    names = sorted(os.listdir(state))
    assert [n for n in names if n.startswith("container.log")] == [
        "container.log", "container.log.1", "container.log.2"]
    lines = []
    for name in ("container.log.2", "container.log.1", "container.log"):
        path = Path(state) / name
        assert 0 < path.stat().st_size <= 2000
        lines += [r["log"] for r in records(path)]
    # The newest records, oldest first, with nothing missing in between.
    last = int(lines[-1].split("-")[1])
    assert last == 299
    assert lines == [f"line-{i}\n" for i in range(last - len(lines) + 1, last + 1)]


def test_with_max_file_1_the_log_is_emptied_instead_of_rotated(supervise: Supervise) -> None:
    script = "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done"
    state, _ = supervise(container(script), log_max_size=1000, log_max_file=1)
    finished(state)
    assert [n for n in os.listdir(state) if n.startswith("container.log")] == ["container.log"]
    path = Path(state) / "container.log"
    assert path.stat().st_size <= 1000
    assert records(path)[-1]["log"] == "line-199\n"


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    lowlevel.mount("tmpfs", str(path), "tmpfs", 0, f"size={size},mode=0755")
    try:
        yield path
    finally:
        lowlevel.umount2(str(path))


def read_until(client: AttachClient, want: bytes, stream: Message = Message.STDOUT) -> bytes:
    got = b""
    while want not in got:
        frame = client.read_frame()
        assert frame is not None, f"EOF before {want!r}; got {got!r}"
        if frame[0] == stream:
            got += frame[1]
    return got


def tail(path: Path, size: int = 200) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
            return f.read()
    except FileNotFoundError:
        return b""


def logged_lines(path: Path) -> list[str]:
    return [r["log"] for r in records(path)]


def test_a_full_disk_drops_log_lines_says_so_later_and_the_container_runs_on(
        supervise: Supervise, tmp_path: Path) -> None:
    script = "echo before; while read n; do echo line-$n; done; echo after"
    with small_tmpfs(tmp_path / "small", "16k") as small:
        log = small / "c.log"
        state, _ = supervise(container(script), stdin=True, log_path=str(log))
        with connect(state) as client:
            client.attach()
            client.write_stdin(b"1\n")
            read_until(client, b"line-1\n")
            # Fill the disk; the log's last page still takes records until it is full too.
            with open(small / "filler", "wb", buffering=0) as filler, \
                    contextlib.suppress(OSError):
                while True:
                    filler.write(b"x" * 512)
            n = 1
            while f"line-{n}\n" in logged_lines(log):
                n += 1
                client.write_stdin(b"%d\n" % n)
                # The shim logs a chunk of output before it passes it to clients.
                read_until(client, b"line-%d\n" % n)
                assert n < 1000, "the log never filled up"
            # line-n was dropped, and the container runs on.
            (small / "filler").unlink()
            client.write_stdin(b"last\n")
            read_until(client, b"line-last\n")
            client.close_stdin()
            read_until(client, b"after\n")
        finished(state)
        recs = records(log)  # every record whole: a torn one was cut off again
    logs = [(r["stream"], r["log"]) for r in recs]
    assert logs[:2] == [("stdout", "before\n"), ("stdout", "line-1\n")]
    assert ("stdout", f"line-{n}\n") not in logs
    note = logs[-3]
    assert note[0] == "stderr", logs[-4:]
    assert f"1 log line(s) ({len(f'line-{n}') + 1} bytes) were dropped" in note[1]
    assert "No space left on device" in note[1]
    assert logs[-2:] == [("stdout", "line-last\n"), ("stdout", "after\n")]


# -- exits ------------------------------------------------------------------------------------

def test_the_exit_code_is_recorded_with_times_and_the_state_files(supervise: Supervise) -> None:
    state, started = supervise(container("exit 3"))
    record = finished(state)
    assert (record.pid, record.exit_code, record.signal, record.returncode) == (
        started.pid, 3, 0, 3)
    assert not (record.oom_killed or record.restarting or record.stopped or record.error)
    assert TIME.match(record.started_at) and TIME.match(record.finished_at)
    assert record.started_at <= record.finished_at
    assert _shim.read_pid(state) == started.shim_pid
    assert _shim.read_pid(state, _shim.CONTAINER_PID_FILE) == started.pid
    start = _shim.read_start(state)
    assert start is not None and (start.pid, start.restart_count) == (started.pid, 0)
    assert start.started_at == record.started_at
    # The socket goes with the shim; no temp file stays.
    assert sorted(os.listdir(state)) == ["container.log", "container.pid", "exit.json", "plan",
                                         "shim.lock", "shim.pid", "start.json"]


def test_death_by_a_signal_is_recorded_as_docker_does(supervise: Supervise) -> None:
    # Without a pid namespace the shell is no init, so its own signal kills it.
    state, _ = supervise(container("kill -USR1 $$", pidns=False))
    record = finished(state)
    assert (record.signal, record.exit_code, record.returncode) == (
        signal.SIGUSR1, 128 + signal.SIGUSR1, -signal.SIGUSR1)


def test_an_oom_kill_is_recorded(supervise: Supervise) -> None:
    from isolate.cgroups import CGroup, Limits
    from isolate.errors import UnsupportedError

    try:
        cg = CGroup.create(limits=Limits(memory_max="64M"))
    except UnsupportedError as exc:
        pytest.skip(f"no memory cgroup here: {exc}")
    with cg:
        memory_dir = cg.dirs.get("memory", cg.dirs.get("unified"))
        results = []
        for script in (f"exec {sys.executable} -c 'b = bytearray(256 << 20)'", "exit 0"):
            fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in cg.procs_files(["memory"])]
            try:
                join = [Op(OpKind.CGROUP_JOIN, a=fd, note="join the cgroup") for fd in fds]
                state, _ = supervise(container(script, first=join), keep_fds=fds,
                                     oom_cgroup=memory_dir)
                results.append(finished(state))
            finally:
                for fd in fds:
                    os.close(fd)
    killed, fine = results
    assert killed.oom_killed and (killed.signal, killed.exit_code) == (signal.SIGKILL, 137)
    # The same cgroup, no OOM kill this time: not reported as one.
    assert not fine.oom_killed and fine.exit_code == 0


def test_at_the_end_the_shim_removes_the_cgroup_then_runs_the_exit_command(
        supervise: Supervise, tmp_path: Path) -> None:
    from isolate.cgroups import CGroup

    cg = CGroup.create(f"shimend-{os.getpid()}")
    try:
        dirs = sorted(set(cg.dirs.values()))
        fds = [os.open(f, os.O_WRONLY | os.O_CLOEXEC) for f in cg.procs_files()]
        done = tmp_path / "exit-command-ran"
        # The command runs once the lock is free: it sees the shim gone and the cgroup removed.
        check = ("import os, sys; from isolate import _shim; "
                 "open(sys.argv[1], 'w').write(repr((_shim.is_alive(sys.argv[2]), "
                 "[os.path.exists(d) for d in sys.argv[3:]])))")
        try:
            join = [Op(OpKind.CGROUP_JOIN, a=fd, note="join the cgroup") for fd in fds]
            # A child that outlives the container's first process for a moment (the pid
            # namespace's end kills it): the cgroup is busy until it is reaped too.
            state, _ = supervise(
                container("sleep 100 & sleep 0.2; exit 5", first=join), keep_fds=fds,
                cgroups=dirs,
                exit_command=[sys.executable, "-c", check, str(done), str(tmp_path / "c0"),
                              *dirs])
        finally:
            for fd in fds:
                os.close(fd)
        assert finished(state).exit_code == 5
        eventually(lambda: done.exists() and done.read_text() != "", "the exit command")
        assert done.read_text() == repr((False, [False] * len(dirs)))
        assert not any(os.path.exists(d) for d in dirs)
    finally:
        cg.delete()


@pytest.mark.parametrize("removed", [False, True])
def test_the_exit_command_waits_for_the_exit_lock_and_is_skipped_once_it_is_gone(
        supervise: Supervise, tmp_path: Path, removed: bool) -> None:
    import fcntl

    lock = tmp_path / "wait.lock"
    done = tmp_path / "ran"
    held = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_SH)  # a waiter
        state, _ = supervise(container("exit 0"), exit_lock=str(lock),
                             exit_command=["/bin/sh", "-c", f"echo ran > {done}"])
        finished(state)
        # The shim is gone, its command waits for the waiter.
        assert not _shim.is_alive(state)
        time.sleep(0.3)
        assert not done.exists()
        if removed:
            lock.unlink()  # the waiter removed the container
    finally:
        os.close(held)
    if removed:
        time.sleep(0.5)
        assert not done.exists()  # (a command that would run does so at once)
    else:
        eventually(done.exists, "the exit command")


def test_an_exit_command_must_be_an_absolute_path() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        ShimConfig("/tmp", exit_command=["python3", "-c", "pass"])
    with pytest.raises(ConfigError, match="non-empty"):
        ShimConfig("/tmp", cgroups=[""])


@pytest.fixture
def init_fd() -> Iterator[int]:
    """An fd of the static isolate-init, for plans that exec it (the shim keeps it open)."""
    init = _shim.init_binary()
    if init is None:
        pytest.skip("isolate-shim is not static here")
    fd = os.open(init, os.O_PATH | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def test_an_init_in_the_container_passes_the_commands_status_to_the_shim(
        supervise: Supervise, init_fd: int) -> None:
    # pid 1 is isolate-init; the shell (pid 2) dies by its own signal, which the init reports
    # on the exit fd that the shim filled in.
    plan = container("test $$ = 2 && test \"$(cat /proc/1/comm)\" = isolate-init && "
                     "kill -TERM $$", init_fd=init_fd)
    state, _ = supervise(plan, keep_fds=[init_fd])
    record = finished(state)
    assert (record.signal, record.exit_code) == (signal.SIGTERM, 143)


# -- set-up errors ----------------------------------------------------------------------------

def test_a_failed_set_up_step_raises_what_lowlevel_spawn_raises(tmp_path: Path) -> None:
    stdio = _plan.fds([(0, 0, False), (1, 1, False), (2, 2, False)])
    bad_mount = Plan(_plan.CLONE_NEWNS | _plan.CLONE_NEWPID, Mode.VFORK).extend([
        _plan.mount(None, "/", None, MS_REC | MS_SLAVE),
        _plan.mount("tmpfs", "/does/not/exist", "tmpfs"),
        stdio, _plan.exec_("true", ["true"], PATH)])
    bad_exec = Plan(_plan.CLONE_NEWNS, Mode.VFORK).extend([
        stdio, _plan.exec_("/no/such/program", ["/no/such/program"], PATH)])
    for plan, cls in ((bad_mount, MountError), (bad_exec, SpawnError)):
        state = tmp_path / cls.__name__
        state.mkdir()
        with pytest.raises(cls) as shim_error:
            _shim.start(plan, ShimConfig(str(state)))
        with pytest.raises(cls) as direct:
            # The same plan straight from Python: its placeholders filled with no fds.
            lowlevel.spawn(plan)
        a, b = shim_error.value, direct.value
        assert (a.errno, a.step, a.op_index, a.filename, str(a)) == (
            b.errno, b.step, b.op_index, b.filename, str(b))
        # Nothing stays: no shim, no socket.
        assert not _shim.is_alive(str(state))
        assert "attach.sock" not in os.listdir(state)


def test_the_shims_own_failures_are_typed_and_leave_no_shim(supervise: Supervise,
                                                            tmp_path: Path) -> None:
    with pytest.raises(IsolateOSError) as info:
        supervise(container("true"), log_path=str(tmp_path / "missing" / "c.log"))
    assert info.value.errno == errno.ENOENT and info.value.step == "shim log"
    # A second shim for a state dir that one supervises already: EBUSY.
    state, _ = supervise(container("cat"), stdin=True)
    with pytest.raises(IsolateOSError) as busy:
        _shim.start(container("true"), ShimConfig(state))
    assert busy.value.errno == errno.EBUSY and "another isolate-shim" in str(busy.value)
    assert _shim.is_alive(state)
    with connect(state) as client:
        client.close_stdin()
    assert finished(state).exit_code == 0
    with pytest.raises(ConfigError):
        _shim.start(Plan(mode=Mode.VFORK).extend([Op(OpKind.WAIT_PARENT)]),
                    ShimConfig(str(tmp_path)))
    with pytest.raises(IsolateOSError) as gone_shim:
        connect(state)
    assert gone_shim.value.errno == errno.ENOENT


# -- restarts ---------------------------------------------------------------------------------

def run_times(state: str) -> list[float]:
    from datetime import datetime

    def seconds(stamp: str) -> float:
        whole, frac = stamp[:-1].split(".")
        return datetime.fromisoformat(whole + "+00:00").timestamp() + int(frac) / 1e9

    return [seconds(r["time"]) for r in records(Path(state) / "container.log")
            if r["log"] == "run\n"]


def test_on_failure_3_restarts_exactly_three_times_with_growing_delays(
        supervise: Supervise) -> None:
    state, _ = supervise(container("echo run; exit 1"), restart=RestartPolicy("on-failure", 3))
    record = finished(state)
    assert (record.exit_code, record.restart_count, record.restarting) == (1, 3, False)
    start = _shim.read_start(state)
    assert start is not None and start.restart_count == 3
    times = run_times(state)
    assert len(times) == 4
    # Docker's back-off: at least 100 ms, 200 ms, 400 ms between the runs (a lower bound: load
    # can only make the gaps longer).
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, least in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert gap >= least, gaps


def test_on_failure_does_not_restart_a_success(supervise: Supervise) -> None:
    state, _ = supervise(container("echo run"), restart=RestartPolicy.parse("on-failure"))
    record = finished(state)
    assert (record.exit_code, record.restart_count) == (0, 0)
    assert len(run_times(state)) == 1


@pytest.mark.parametrize("policy", ["always", "unless-stopped"])
def test_always_restarts_until_stopped(supervise: Supervise, policy: str) -> None:
    state, _ = supervise(container("echo run"), restart=RestartPolicy(policy))
    eventually(lambda: len(run_times(state)) >= 3, "three runs")
    with connect(state) as client:
        client.stop()
    record = finished(state)
    assert record.stopped and not record.restarting and record.restart_count >= 2
    assert len(run_times(state)) == record.restart_count + 1


def test_stop_signals_then_escalates_to_sigkill_and_ends_restarting(
        supervise: Supervise) -> None:
    # pid 1 of a pid namespace ignores SIGTERM without a handler: only SIGKILL ends it.
    state, _ = supervise(container("exec sleep 1000"), restart=RestartPolicy("always"))
    with connect(state) as client:
        client.stop(timeout=0.2)
    record = finished(state)
    assert (record.signal, record.stopped, record.restarting) == (signal.SIGKILL, True, False)
    assert record.restart_count == 0


def test_kill_with_another_signal_is_a_signal_and_restarting_goes_on(
        supervise: Supervise) -> None:
    # Without a pid namespace sleep is no init: SIGUSR1 kills it, and `always` starts it again
    # (as `docker kill -s USR1`); the stop signal ends restarting (as `docker kill`).
    state, started = supervise(container("echo run; exec sleep 1000", pidns=False),
                               restart=RestartPolicy("always"))
    eventually(lambda: len(run_times(state)) == 1, "the first run")
    with connect(state) as client:
        client.kill(signal.SIGUSR1)
        eventually(lambda: (_shim.read_start(state) or started).restart_count == 1,
                   "the restart")
        eventually(lambda: len(run_times(state)) == 2, "the second run")
        client.kill(signal.SIGTERM)
    record = finished(state)
    assert (record.signal, record.restart_count, record.stopped) == (signal.SIGTERM, 1, True)


def test_a_rootless_container_is_mapped_again_at_every_restart(tmp_path: Path) -> None:
    # The parent steps (uid/gid maps) are the shim's, so restarts need no Python. As root any
    # map may be written directly.
    plan = container("cat /proc/self/uid_map /proc/self/gid_map; exit 1", pidns=False,
                     mode=Mode.FORK, flags=_plan.CLONE_NEWUSER,
                     first=[Op(OpKind.WAIT_PARENT, note="wait for the id maps")])
    state = tmp_path / "c"
    state.mkdir()
    config = ShimConfig(str(state), log_path=str(state / "log"), setgroups="deny",
                        uid_map="0 200000 1000\n", gid_map="0 300000 1000\n",
                        restart=RestartPolicy("on-failure", 1))
    _shim.start(plan, config)
    assert finished(str(state)).restart_count == 1
    maps = [r["log"].split() for r in records(state / "log")]
    assert maps == [["0", "200000", "1000"], ["0", "300000", "1000"]] * 2


@pytest.mark.userns
def test_rootless_subordinate_ids_are_mapped_with_newuidmap_at_every_restart() -> None:
    from rootless import run_unprivileged

    code = textwrap.dedent(f"""
        import json, os, signal, tempfile
        from isolate import _plan, _shim
        from isolate._plan import Fd, Mode, Op, OpKind, Plan
        uids = (0, os.getuid(), 1, 1, 200000, 65536)
        gids = (0, os.getgid(), 1, 1, 200000, 65536)
        p = Plan(_plan.CLONE_NEWUSER, Mode.FORK).extend([
            Op(OpKind.WAIT_PARENT),
            Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=Fd.PARENT),
            _plan.fds([(0, 0, False), (1, 1, False), (2, 2, False)]),
            _plan.exec_("sh", ["sh", "-c", "cat /proc/self/uid_map; exit 1"], {PATH!r})])
        state = tempfile.mkdtemp()
        _shim.start(p, _shim.ShimConfig(state, log_path=state + "/log", newuidmap=uids,
                                        newgidmap=gids,
                                        restart=_shim.RestartPolicy("on-failure", 2)))
        assert _shim.wait_exit(state, 60)
        print(json.dumps([_shim.read_exit(state).restart_count,
                          [json.loads(l)["log"] for l in open(state + "/log")]]))
        for name in os.listdir(state):
            os.unlink(os.path.join(state, name))
        os.rmdir(state)
    """)
    out = run_unprivileged(code, subids=True).stdout  # nobody:200000:65536, this run only
    count, logs = json.loads(out)
    assert count == 2
    lines = "".join(logs).split("\n")
    assert [line.split() for line in lines if line] == [
        ["0", "65534", "1"], ["1", "200000", "65536"]] * 3


# -- attach -----------------------------------------------------------------------------------

class Output:
    """What a client has read, per stream."""

    def __init__(self, client: AttachClient) -> None:
        self.client = client
        self.streams = {Message.STDOUT: b"", Message.STDERR: b""}

    def until(self, want: bytes, stream: Message = Message.STDOUT) -> None:
        while want not in self.streams[stream]:
            frame = self.client.read_frame()
            assert frame is not None, f"EOF before {want!r}: {self.streams}"
            self.streams[frame[0]] = self.streams.get(frame[0], b"") + frame[1]

    def rest(self) -> None:
        while (frame := self.client.read_frame()) is not None:
            self.streams[frame[0]] = self.streams.get(frame[0], b"") + frame[1]


def test_two_clients_get_the_output_and_stdin_round_trips(supervise: Supervise) -> None:
    script = 'while read line; do echo "out $line"; echo "err $line" >&2; done; echo bye'
    state, _ = supervise(container(script), stdin=True)
    with connect(state) as a, connect(state) as b:
        seen = {a: Output(a), b: Output(b)}
        for name, client in (("a", a), ("b", b)):
            client.attach()
            client.write_stdin(f"sync-{name}\n".encode())
            seen[client].until(f"out sync-{name}\n".encode())  # attached for sure now
        # The two connections are read in no set order: one line at a time.
        a.write_stdin(b"one\n")
        seen[a].until(b"out one\n")
        b.write_stdin(b"two\n")
        seen[b].until(b"out two\n")
        a.close_stdin()
        for output in seen.values():
            output.rest()
            # Everything from b's sync line on (a saw its own before), then EOF.
            assert output.streams[Message.STDOUT].endswith(
                b"out sync-b\nout one\nout two\nbye\n")
            output.until(b"err two\n", Message.STDERR)
            assert output.streams[Message.STDERR].endswith(b"err sync-b\nerr one\nerr two\n")
    logged = logged_lines(Path(state) / "container.log")
    assert "out one\n" in logged and "err two\n" in logged


def test_a_client_that_reads_nothing_never_slows_the_container(supervise: Supervise) -> None:
    # 4 MiB of output to an attached client that reads nothing: the container gets through
    # it, the log is complete, and once the client reads it learns exactly what it missed.
    total = 4 * 1024 * 1024
    script = f"read go; head -c {total} /dev/zero | tr '\\0' x; echo; echo done; read x; exit 0"
    state, _ = supervise(container(script), stdin=True)
    log = Path(state) / "container.log"
    with connect(state) as client:
        client.attach()
        client.write_stdin(b"go\n")  # after the ATTACH: all of the output is for us
        eventually(lambda: b'{"log":"done\\n"' in tail(log), "the whole output in the log")
        # Output and notes of what was dropped, until they account for every byte.
        expected = total + len("\ndone\n")
        received = dropped = 0
        while received + dropped < expected:
            ready, _, _ = select.select([client], [], [], WAIT)
            assert ready, f"stuck at {received} received + {dropped} dropped of {expected}"
            frame = client.read_frame()
            assert frame is not None
            if frame[0] is Message.STDOUT:
                received += len(frame[1])
            elif frame[0] is Message.NOTE:
                assert b"were dropped: this client read too slowly" in frame[1]
                dropped += int(frame[1].split()[1])
        client.close_stdin()
    assert dropped > 0 and received + dropped == expected
    assert finished(state).exit_code == 0
    lines = logged_lines(log)
    assert "".join(lines) == "x" * total + "\ndone\n"


def test_a_tty_has_its_size_resizes_and_ctrl_c_reaches_the_foreground_process(
        supervise: Supervise) -> None:
    # "go" comes from the foreground child itself, so ^C cannot come before it exists.
    script = ("trap 'echo shell got INT' INT; read x; stty size; read y; stty size; "
              "sh -c 'echo go; exec sleep 1000'; echo sleep ended $?; read z; echo bye")
    state, _ = supervise(container(script, tty=True), tty=True)
    with connect(state) as client:
        client.attach()
        client.write_stdin(b"x\n")
        got = read_raw_until(client, b"", b"24 80\r\n")  # the size the CONSOLE op gave it
        client.resize(33, 101)
        client.write_stdin(b"y\n")
        got = read_raw_until(client, got, b"go\r\n")
        client.write_stdin(b"\x03")  # the pty's ^C: SIGINT to the foreground process group
        got = read_raw_until(client, got, b"sleep ended")
        client.write_stdin(b"z\n")
        while chunk := client.read_raw():
            got += chunk
    # The foreground process group got SIGINT: the child died of it, the shell ran its trap.
    assert b"33 101\r\n" in got and b"sleep ended 130\r\n" in got and b"bye\r\n" in got
    assert b"shell got INT\r\n" in got
    recs = records(Path(state) / "container.log")
    assert {r["stream"] for r in recs} == {"stdout"}  # a terminal is one stream
    logged = [r["log"] for r in recs]
    assert logged.index("24 80\r\n") < logged.index("33 101\r\n") < logged.index("bye\r\n")


def test_under_an_init_the_command_holds_the_terminals_foreground(
        supervise: Supervise, init_fd: int) -> None:
    # The init owns the pty's session; it gives the command a process group of its own and
    # the terminal's foreground, so ^C reaches the command and not the init.
    script = ("trap 'echo shell got INT' INT; read x; echo $$ $(cut -d' ' -f5,8 /proc/$$/stat);"
              " sh -c 'echo go; exec sleep 1000'; echo ended $?")
    state, _ = supervise(container(script, tty=True, init_fd=init_fd), tty=True,
                         keep_fds=[init_fd])
    with connect(state) as client:
        client.attach()
        client.write_stdin(b"x\n")
        got = read_raw_until(client, b"", b"go\r\n")
        client.write_stdin(b"\x03")
        got = read_raw_until(client, got, b"ended 130\r\n")
    record = finished(state)
    assert record.exit_code == 0 and b"shell got INT" in got
    ids = logged_lines(Path(state) / "container.log")[1].split()
    assert ids == ["2", "2", "2"]  # pid 2, a process group of its own, the foreground one


# -- lifetime ---------------------------------------------------------------------------------

def test_the_shim_survives_its_sigkilled_starter(tmp_path: Path) -> None:
    state = tmp_path / "c"
    state.mkdir()
    code = textwrap.dedent(f"""
        import signal
        from isolate import _plan, _shim
        from isolate._plan import Fd, Mode, Op, OpKind, Plan
        plan = Plan(_plan.CLONE_NEWNS | _plan.CLONE_NEWPID, Mode.VFORK).extend([
            Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=Fd.PARENT),
            _plan.fds([(0, 0, False), (1, 1, False), (2, 2, False)]),
            _plan.exec_("sh", ["sh", "-c", "read x; echo got $x; exit 7"], {PATH!r})])
        s = _shim.start(plan, _shim.ShimConfig({str(state)!r}, log_path={str(state / 'log')!r},
                                               stdin=True))
        print(s.shim_pid, s.pid, flush=True)
        signal.pause()
    """)
    starter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert starter.stdout is not None
        shim_pid, pid = map(int, starter.stdout.readline().split())
        starter.kill()
        assert starter.wait() == -signal.SIGKILL
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if starter.stdout is not None:
            starter.stdout.close()
    assert _shim.is_alive(str(state)) and not gone(pid)
    with connect(str(state)) as client:
        client.write_stdin(b"hello\n")
    record = finished(str(state))
    assert record.exit_code == 7
    assert [r["log"] for r in records(state / "log")] == ["got hello\n"]
    eventually(lambda: gone(shim_pid), "the shim to end")


def test_a_sigkilled_shim_frees_its_lock_and_takes_its_container_along(
        supervise: Supervise) -> None:
    mark = marker()
    state, started = supervise(container(f"exec sleep {mark}"))
    # (STARTED comes when the plan has exec'd sh, which then execs sleep.)
    eventually(lambda: pids_with_argv("sleep", mark) == [started.pid], "sleep to run")
    assert _shim.is_alive(state)
    os.kill(started.shim_pid, signal.SIGKILL)
    eventually(lambda: not _shim.is_alive(state), "the lock to be free")
    eventually(lambda: gone(started.pid), "the container to die with its shim")
    assert pids_with_argv("sleep", mark) == []
    assert _shim.read_exit(state) is None  # no one recorded an exit: the reader must tell


def fd_flags(pid: int) -> dict[str, int]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
        except OSError:
            continue
        out[f"{fd} {target}"] = flags
    return out


def test_an_idle_shim_holds_only_its_own_fds_and_nothing_is_left(supervise: Supervise,
                                                                 tmp_path: Path) -> None:
    from traces import snapshot

    before = snapshot()
    state, started = supervise(container("cat"), stdin=True)
    # (The run's files are written just after the start is reported.)
    eventually(lambda: _shim.read_start(state) is not None, "start.json")
    held = fd_flags(started.shim_pid)
    # The pipes: stdout and stderr read ends, stdin's write end -- never a write end of
    # the container's output, or its readers would never see EOF.
    pipes = {k: v & 3 for k, v in held.items() if "pipe:" in k}
    assert sorted(pipes.values()) == [os.O_RDONLY, os.O_RDONLY, os.O_WRONLY]
    assert all(v & os.O_CLOEXEC for k, v in held.items() if not k.startswith(("0 ", "1 ",
                                                                              "2 ")))
    assert len(held) <= 14, held
    status = Path(f"/proc/{started.shim_pid}/status").read_text()
    assert "isolate-shim" in status.splitlines()[0]
    with connect(state) as client:
        client.close_stdin()
    assert finished(state).exit_code == 0
    eventually(lambda: gone(started.shim_pid) and gone(started.pid), "both to end")
    assert not [n for n in os.listdir(state) if n.endswith(".tmp")]
    # No mount, child process or fd of ours is left. (This test makes no cgroup; the cgroups
    # listed are the machine's, which other runs share.)
    left = [t for t in snapshot().left_since(before) if not t.startswith("cgroups:")]
    assert left == []
