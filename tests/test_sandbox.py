"""Tests of isolate.Sandbox on the real kernel, as root and (through tests/rootless.py) as an
unprivileged uid: what a sandboxed process sees, the run/popen/call API, options, timeouts,
cleanup when the with block is left, and typed errors for bad arguments."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import isolate
from isolate import Bind, Limits, Sandbox, SandboxConfig, Tmpfs, lowlevel
from isolate.errors import (
    CallError,
    ConfigError,
    IsolateError,
    MountError,
    SpawnError,
    StateError,
    UnsupportedError,
)
from sandbox_helpers import (
    busybox_rootfs,
    marker,
    need_root,
    open_fds,
    pids_with_argv,
    started_with_argv,
)

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


@pytest.fixture
def host_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="isolate-sbtest-")
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", path], check=True)


@pytest.fixture(scope="module")
def rootfs() -> Iterator[str]:
    with busybox_rootfs() as path:
        yield path


def out(box: Sandbox, script: str, **kwargs: Any) -> str:
    result = box.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True,
                     **kwargs)
    return str(result.stdout)


# -- what a sandboxed process sees -----------------------------------------------------------

def test_the_process_is_pid_1_and_host_pids_are_invisible(sb: Sandbox) -> None:
    lines = out(sb, "echo $$; ls /proc").split()
    assert lines[0] == "1"
    pids = sorted(int(x) for x in lines[1:] if x.isdigit())
    # Only the shell and ls; the host's processes (this test's, its init) are not there.
    assert pids == [1, 2]
    # ... while the host's /proc lists more, so their absence means something.
    assert len([p for p in os.listdir("/proc") if p.isdigit()]) > 2


def test_hostname_is_the_sandboxes_own_and_the_hosts_is_unchanged() -> None:
    before = socket.gethostname()
    with Sandbox(hostname="box-under-test") as box:
        assert out(box, "hostname").strip() == "box-under-test"
        assert out(box, "hostname other-name 2>/dev/null; hostname").strip() == \
            "box-under-test"
    assert socket.gethostname() == before


def write_errno(path: str) -> int:
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError as exc:
        return exc.errno or -1
    return 0


@pytest.mark.parametrize("path", ["/etc/isolate-probe", "/usr/isolate-probe",
                                  "/root/isolate-probe", "/var/isolate-probe"])
def test_writes_to_the_hosts_root_fail_with_erofs(sb: Sandbox, path: str) -> None:
    assert sb.call(write_errno, path) == errno.EROFS
    assert not os.path.exists(path)


def test_tmp_is_private_and_writable(sb: Sandbox) -> None:
    with tempfile.NamedTemporaryFile(prefix="host-only-", dir="/tmp") as host_file:
        name = os.path.basename(host_file.name)
        seen = out(sb, f"ls /tmp; echo inside > /tmp/{name}-made; cat /tmp/{name}-made")
        assert name not in seen.split()
        assert seen.split()[-1] == "inside"
        assert not os.path.exists(f"/tmp/{name}-made")


def test_only_lo_is_in_the_network_namespace(sb: Sandbox) -> None:
    assert out(sb, "ls /sys/class/net").split() == ["lo"]
    devices = [line.split(":")[0].strip() for line in out(sb, "cat /proc/net/dev")
               .splitlines()[2:]]
    assert devices == ["lo"]


def test_network_true_shares_the_hosts_devices() -> None:
    with Sandbox(network=True) as box:
        assert sorted(out(box, "ls /sys/class/net").split()) == \
            sorted(os.listdir("/sys/class/net"))


# -- run ------------------------------------------------------------------------------------

def test_run_returns_a_completed_process_like_subprocess_run(sb: Sandbox) -> None:
    result = sb.run(["/bin/sh", "-c", "cat; echo err >&2; exit 3"], input=b"in",
                    capture_output=True)
    assert isinstance(result, subprocess.CompletedProcess)
    assert (result.returncode, result.stdout, result.stderr) == (3, b"in", b"err\n")
    assert result.args == ["/bin/sh", "-c", "cat; echo err >&2; exit 3"]


def test_run_check_raises_called_process_error(sb: Sandbox) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        sb.run(["sh", "-c", "echo bad; exit 4"], capture_output=True, check=True)
    assert (info.value.returncode, info.value.stdout) == (4, b"bad\n")


def test_run_env_replaces_the_environment_and_cwd_sets_the_directory(sb: Sandbox) -> None:
    os.environ["ISOLATE_SECRET_FROM_CALLER"] = "leak"
    try:
        default_env = out(sb, "env")
        assert "ISOLATE_SECRET_FROM_CALLER" not in default_env
        env = sb.run(["/usr/bin/env"], env={"ONLY": "this"}, capture_output=True).stdout
        assert env.split() == [b"ONLY=this"]
        assert out(sb, "pwd", cwd="/usr/bin").strip() == "/usr/bin"
    finally:
        del os.environ["ISOLATE_SECRET_FROM_CALLER"]


def test_sandbox_env_and_cwd_options_apply_to_every_process() -> None:
    with Sandbox(env={"PATH": "/bin:/usr/bin", "K": "v"}, cwd="/etc") as box:
        assert out(box, "echo $K; pwd").split() == ["v", "/etc"]


def test_run_reports_a_killed_process_as_a_negative_signal(sb: Sandbox) -> None:
    # pid 1 cannot be killed from inside its namespace; a child of it can.
    script = "sh -c 'kill -9 $$'; echo $?"
    assert out(sb, script).strip() == str(128 + signal.SIGKILL)
    with sb.popen(["sleep", "1000"]) as proc:
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL


# -- popen -----------------------------------------------------------------------------------

def test_popen_gives_pipes_poll_wait_and_send_signal(sb: Sandbox) -> None:
    with sb.popen(["sh", "-c", "trap 'echo term; exit 42' TERM; echo ready; "
                   "while read line; do echo got $line; done; sleep 1000 & wait"],
                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.pid > 0
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        proc.stdin.write("hello\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "got hello\n"
        assert proc.poll() is None
        proc.stdin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait() == 42
        assert proc.stdout.read() == "term\n"


def test_popen_kill_ends_the_process_with_sigkill(sb: Sandbox) -> None:
    mark = marker()
    proc = sb.popen(["sleep", mark])
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert pids_with_argv("sleep", mark) == []


# -- spawn: a process without subprocess -------------------------------------------------------

def test_spawn_gives_a_child_with_the_given_stdio_env_and_cwd(sb: Sandbox) -> None:
    read_end, write_end = os.pipe()
    in_r, in_w = os.pipe()
    try:
        os.write(in_w, b"hello\n")
        os.close(in_w)
        with sb.spawn(["sh", "-c", 'read line; echo "$line $GREETING $(pwd)"; exit 3'],
                      env={"PATH": "/bin:/usr/bin", "GREETING": "hi"}, cwd="/tmp",
                      stdio=(in_r, write_end, -1)) as child:
            os.close(write_end)
            assert isinstance(child, lowlevel.Child) and child.pid > 0
            assert child.wait() == 3 and child.returncode == 3 and child.poll() == 3
        assert os.read(read_end, 100) == b"hello hi /tmp\n"
    finally:
        os.close(read_end)
        os.close(in_r)


def test_spawn_passes_fds_at_their_numbers_and_closes_the_rest(sb: Sandbox) -> None:
    r, w = os.pipe()
    stray_r, stray_w = os.pipe()
    os.set_inheritable(stray_w, True)  # (closed in the child all the same: not passed)
    try:
        child = sb.spawn(["sh", "-c", f"echo passed > /proc/self/fd/{w}; "
                          f"if [ -e /proc/self/fd/{stray_w} ]; then exit 7; fi"],
                         pass_fds=[w])
        os.close(w)
        assert child.wait() == 0
        child.close()
        assert os.read(r, 4096) == b"passed\n"
    finally:
        os.close(r)
        os.close(stray_r)
        os.close(stray_w)


def test_spawn_signals_through_the_pidfd_and_the_sandbox_ends_what_it_started() -> None:
    mark = marker()
    with Sandbox() as box:
        child = box.spawn(["sleep", mark])
        assert started_with_argv("sleep", mark)
        child.send_signal(signal.SIGKILL)  # (pid 1 of its namespace: no SIGTERM without a trap)
        assert child.wait() == -signal.SIGKILL
        child.close()
        box.spawn(["sleep", mark])  # left running: the sandbox ends it
        assert started_with_argv("sleep", mark)
    assert not pids_with_argv("sleep", mark)


def test_spawn_refuses_what_popen_refuses(sb: Sandbox) -> None:
    with pytest.raises(ConfigError, match="sequence of arguments"):
        sb.spawn("true")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must not be empty"):
        sb.spawn([])
    with pytest.raises(SpawnError, match="exec /no/such/program"):
        sb.spawn(["/no/such/program"])
    with pytest.raises(StateError):
        Sandbox().spawn(["true"])


# -- call ------------------------------------------------------------------------------------

def echo_args(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return args, kwargs


def raise_value_error(message: str) -> None:
    raise ValueError(message)


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def where_am_i() -> tuple[str, int, int]:
    return socket.gethostname(), os.getpid(), os.getuid()


def test_call_round_trips_values(sb: Sandbox) -> None:
    value = {"int": 2**100, "bytes": b"\0\xff", "list": [1.5, None, True], "set": {1, 2},
             "nested": ({"a": ()},)}
    assert sb.call(echo_args, value, key="word") == ((value,), {"key": "word"})
    assert sb.call(lambda x: x * 2, 21) == 42  # closures and lambdas go by value


def test_call_runs_in_the_sandbox(sb: Sandbox) -> None:
    hostname, pid, uid = sb.call(where_am_i)
    assert hostname == "sandbox"
    assert pid < 10  # a fresh pid namespace, not the host's
    assert uid == 0


def test_call_reraises_the_exception_with_the_childs_traceback(sb: Sandbox) -> None:
    with pytest.raises(ValueError, match="from inside") as info:
        sb.call(raise_value_error, "from inside")
    tb = info.value.child_traceback  # type: ignore[attr-defined]
    assert "raise_value_error" in tb and "ValueError: from inside" in tb
    if sys.version_info >= (3, 11):
        assert any("raise_value_error" in n for n in info.value.__notes__)


def test_call_of_a_process_that_dies_is_a_call_error_and_the_next_call_works(
        sb: Sandbox) -> None:
    with pytest.raises(CallError, match="SIGKILL"):
        sb.call(kill_myself)
    assert sb.call(echo_args, 1) == ((1,), {})


def test_a_call_that_exceeds_the_sandbox_timeout_is_killed() -> None:
    import time

    with Sandbox(timeout=1.0) as box, pytest.raises(TimeoutError):
        box.call(time.sleep, 1000)


# -- timeouts and process trees --------------------------------------------------------------

def test_run_timeout_kills_the_whole_process_tree(sb: Sandbox) -> None:
    mark = marker()
    with pytest.raises(subprocess.TimeoutExpired):
        sb.run(["sh", "-c", f"sleep {mark} & sleep {mark} & wait"], timeout=0.5)
    assert pids_with_argv("sleep", mark) == []


def test_sandbox_timeout_kills_a_tree_that_outlives_it() -> None:
    mark = marker()
    with Sandbox(timeout=0.5) as box:
        proc = box.popen(["sh", "-c", f"sleep {mark} & sleep {mark} & wait"])
        assert proc.wait(timeout=60) == -signal.SIGKILL
        assert pids_with_argv("sleep", mark) == []


@pytest.mark.parametrize("init", [False, True])
def test_a_run_cut_short_by_the_sandbox_timeout_always_raises_timeout_expired(
    init: bool,
) -> None:
    # The sandbox's timer and run's own wait share one deadline; whichever sees it first, the
    # caller gets the same answer (several tries make both orders likely).
    for _ in range(5):
        with Sandbox(timeout=0.2, init=init) as box, \
                pytest.raises(subprocess.TimeoutExpired):
            box.run(["sleep", "1000"])


def test_no_process_starts_after_the_sandbox_timeout() -> None:
    with Sandbox(timeout=0.3) as box:
        assert box.popen(["sleep", "1000"]).wait(timeout=60) == -signal.SIGKILL
        with pytest.raises(StateError, match="expired"):
            box.run(["sleep", "1000"])


# -- leaving the with block -------------------------------------------------------------------

class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [None, Boom, KeyboardInterrupt])
def test_leaving_the_block_kills_every_process_and_frees_its_fds(exc: type | None) -> None:
    mark = marker()
    fds_before = open_fds()
    try:
        with Sandbox() as box:
            procs = [box.popen(["sh", "-c", f"sleep {mark} & sleep {mark}"]) for _ in range(3)]
            box.call(echo_args)  # start the call helper too
            assert len(pids_with_argv("sleep", mark)) == 6
            if exc is not None:
                raise exc()
    except (Boom, KeyboardInterrupt):
        pass
    assert pids_with_argv("sleep", mark) == []
    assert all(p.returncode == -signal.SIGKILL for p in procs)
    # The namespace fds the sandbox held (and the helper's socket) are closed.
    assert open_fds() == fds_before


def test_a_closed_sandbox_refuses_to_run() -> None:
    with Sandbox() as box:
        pass
    with pytest.raises(StateError):
        box.run(["true"])
    with pytest.raises(StateError):
        Sandbox().run(["true"])


# -- a failing set-up step names itself -------------------------------------------------------

def test_a_bind_onto_a_file_path_names_the_failing_step(tmp_path: Path) -> None:
    rootfs = tmp_path / "root"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    with pytest.raises(MountError) as info, Sandbox(
            rootfs=str(rootfs), binds=["/etc/hostname:/etc/passwd/below-a-file"]) as box:
        box.run(["true"])
    err = info.value
    assert err.errno == errno.ENOTDIR
    assert err.step == "mkdir" and err.op_index is not None
    assert "/etc/passwd/below-a-file" in str(err)


def test_a_missing_mount_target_below_the_read_only_host_root_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="/etc/passwd/below-a-file"), \
            Sandbox(binds=["/etc/hostname:/etc/passwd/below-a-file"]):
        pass


def test_a_missing_cwd_names_the_chdir_step(sb: Sandbox) -> None:
    with pytest.raises(SpawnError, match="chdir /no/such/dir") as info:
        sb.run(["true"], cwd="/no/such/dir")
    assert (info.value.errno, info.value.step) == (errno.ENOENT, "chdir")


def test_a_missing_program_is_a_spawn_error_at_exec(sb: Sandbox) -> None:
    with pytest.raises(SpawnError) as info:
        sb.run(["no-such-program-anywhere"])
    assert (info.value.errno, info.value.step) == (errno.ENOENT, "exec")


def test_a_new_top_level_target_in_the_read_only_host_root_is_made_inside_only() -> None:
    target = f"/isolate-no-such-dir-{marker()}"
    with Sandbox(tmpfs=[target], binds=[f"/etc:{target}-etc"]) as box:
        r = box.run(["sh", "-c", f"touch {target}/x && ls {target} && ls {target}-etc/hostname"
                     "&& touch /new-file"], capture_output=True, text=True)
    assert r.stdout.split() == ["x", f"{target}-etc/hostname"]
    assert "Read-only file system" in r.stderr        # the rest of the root stays read-only
    assert not os.path.exists(target) and not os.path.exists(f"{target}-etc")


def test_a_missing_deep_target_in_the_read_only_host_root_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="does not exist in the read-only host root"), \
            Sandbox(tmpfs=[f"/usr/isolate-no-such-dir-{marker()}"]):
        pass


# -- options ---------------------------------------------------------------------------------

def test_binds_are_read_only_or_writable_as_asked(host_dir: str) -> None:
    with open(os.path.join(host_dir, "data"), "w") as f:
        f.write("from host")
    binds = [Bind(host_dir, "/mnt", readonly=True), f"{host_dir}:/opt:rw"]
    with Sandbox(binds=binds) as box:
        assert out(box, "cat /mnt/data") == "from host"
        assert box.call(write_errno, "/mnt/new") == errno.EROFS
        assert box.call(write_errno, "/opt/new") == 0
    assert sorted(os.listdir(host_dir)) == ["data", "new"]


def test_tmpfs_option_mounts_a_fresh_writable_tmpfs_of_the_given_size() -> None:
    with Sandbox(tmpfs=[Tmpfs("/mnt", size="1M")]) as box:
        lines = out(box, "grep ' /mnt ' /proc/self/mountinfo; touch /mnt/x && ls /mnt")
        assert "tmpfs" in lines and "size=1024k" in lines
        assert lines.split()[-1] == "x"
    assert not os.path.exists("/mnt/x")


def test_uid_and_gid_options_set_the_credentials_without_capabilities() -> None:
    with Sandbox(uid=1000, gid=1001) as box:
        assert out(box, "id -u; id -g; id -G").split() == ["1000", "1001", "1001"]
        caps = out(box, "grep CapEff /proc/self/status").split()[-1]
        assert int(caps, 16) == 0


def test_a_rootfs_directory_replaces_the_hosts_root(rootfs: str) -> None:
    with Sandbox(rootfs=rootfs, tmpfs=["/scratch"], binds=["/etc/hostname:/hn"]) as box:
        listing = out(box, "ls /")
        for name in ("bin", "proc", "dev", "tmp", "scratch", "hn"):
            assert name in listing.split()
        assert "usr" not in listing.split()  # the host's /usr is not there
        assert out(box, "echo $$; touch /scratch/a /tmp/b && echo ok").split() == ["1", "ok"]
        assert box.run(["sh", "-c", "touch /bin/new"]).returncode != 0
    assert not os.path.exists(os.path.join(rootfs, "scratch", "a"))
    assert not os.path.exists(os.path.join(rootfs, "bin", "new"))


def test_call_in_a_rootfs_without_python_is_a_call_error(rootfs: str) -> None:
    with Sandbox(rootfs=rootfs) as box, pytest.raises((CallError, SpawnError)):
        box.call(echo_args)


# -- cgroup limits ---------------------------------------------------------------------------

@contextlib.contextmanager
def limited(init: bool = False, **limits: Any) -> Iterator[Sandbox]:
    box = Sandbox(limits=Limits(**limits), init=init)
    try:
        box.__enter__()
    except UnsupportedError as exc:
        pytest.skip(f"cgroup limits unavailable here: {exc}")
    try:
        yield box
    finally:
        box.close()


@pytest.mark.parametrize("init", [False, True], ids=["pid1", "init"])
def test_a_process_allocating_past_memory_max_is_reported_oom_killed(init: bool) -> None:
    with limited(memory_max="64M", init=init) as box:
        result = box.run([sys.executable, "-c", "b = bytearray(256 << 20); print(len(b))"],
                         capture_output=True)
        assert result.returncode == -signal.SIGKILL
        assert result.oom_killed
        assert box.oom_kills() >= 1
        assert not box.run(["true"]).oom_killed


def test_pids_max_stops_a_fork_bomb_and_the_sandbox_still_ends_cleanly() -> None:
    mark = marker()
    with limited(pids_max=16) as box:
        cgroup = box.cgroup
        assert cgroup is not None
        result = box.run(["sh", "-c", f"for i in $(seq 64); do sleep {mark} & done; wait"],
                         capture_output=True, text=True, timeout=60)
        assert "fork" in result.stderr.lower()  # sh: Cannot fork
        assert pids_with_argv("sleep", mark) == []
    # Given back empty, the group is kept for the next sandbox (isolate.cgroups.pool) until
    # the pool is drained or the process ends; nothing of it is left then.
    from isolate.cgroups.pool import default_pool

    default_pool().drain()
    assert all(not os.path.exists(d) for d in cgroup.dirs.values())


def test_proc_self_cgroup_shows_the_root_inside() -> None:
    with limited(memory_max="64M") as box:
        lines = out(box, "cat /proc/self/cgroup").splitlines()
        assert lines and all(line.endswith(":/") for line in lines)


# -- bad arguments get typed errors ------------------------------------------------------------

NUL_TEXT = st.builds(lambda a, b: a + "\0" + b, st.text(max_size=10), st.text(max_size=10))
RELATIVE = st.text(min_size=1, max_size=20).filter(lambda s: not s.startswith("/"))
DOTDOT = st.lists(st.sampled_from(["a", "..", "b", "."]), min_size=1, max_size=5).map(
    lambda parts: "/" + "/".join(parts)).filter(lambda p: ".." in p.split("/"))
BAD_PATH = NUL_TEXT | RELATIVE | DOTDOT


@settings(max_examples=60, deadline=None)
@given(path=BAD_PATH)
def test_bad_container_paths_are_config_errors(path: str) -> None:
    for make in (lambda: SandboxConfig(cwd=path), lambda: SandboxConfig(tmpfs=[path]),
                 lambda: SandboxConfig(binds=[Bind("/etc", path)])):
        with pytest.raises(ConfigError):
            make()


@settings(max_examples=40, deadline=None)
@given(key=st.text(max_size=10), value=st.text(max_size=10))
def test_environment_with_nul_or_equals_in_names_is_a_config_error(key: str,
                                                                   value: str) -> None:
    bad = [{key + "\0": value}, {key: value + "\0"}, {key + "=x": value}, {"": value}]
    for env in bad:
        with pytest.raises(ConfigError):
            SandboxConfig(env=env)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arg=NUL_TEXT)
def test_nul_in_argv_or_env_at_run_time_is_a_config_error_and_leaks_no_fd(arg: str) -> None:
    with Sandbox() as box:
        before = open_fds()
        with pytest.raises(ConfigError):
            box.run(["echo", arg])
        with pytest.raises(ConfigError):
            box.run(["echo"], env={"K": arg})
        assert open_fds() == before


@pytest.mark.parametrize("options", [
    {"hostname": "x" * 65}, {"hostname": ""}, {"uid": -1}, {"gid": 2**32}, {"uid": True},
    {"timeout": 0}, {"timeout": -1.0}, {"rootfs": "/no/such/rootfs"},
    {"binds": ["/no/such/source:/mnt"]}, {"binds": ["just-one-part"]},
    {"tmpfs": ["/"]}, {"capabilities": ["CAP_NO_SUCH_THING"]},
])
def test_bad_sandbox_options_are_config_errors_before_anything_starts(
        options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        Sandbox(**options)


def test_a_huge_environment_is_a_typed_e2big_error(sb: Sandbox) -> None:
    with pytest.raises(SpawnError) as info:
        sb.run(["true"], env={"HUGE": "x" * (4 << 20)})
    assert (info.value.errno, info.value.step) == (errno.E2BIG, "exec")


def test_a_string_argv_or_unsupported_popen_option_is_a_config_error(sb: Sandbox) -> None:
    with pytest.raises(ConfigError):
        sb.run("echo hi")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        sb.run([])
    with pytest.raises(ConfigError):
        sb.popen(["true"], preexec_fn=lambda: None)
    with pytest.raises(ConfigError):
        sb.popen(["true"], shell=True)


def test_all_errors_are_isolate_errors_users_can_catch_as_builtins() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, IsolateError)
    assert issubclass(SpawnError, OSError) and issubclass(MountError, OSError)


# -- the rootless path, as an unprivileged uid ------------------------------------------------

@pytest.mark.userns
def test_rootless_sandbox_runs_as_an_unprivileged_uid() -> None:
    from rootless import run_unprivileged

    code = (
        "import errno, os, signal, subprocess\n"
        "from isolate import Sandbox\n"
        "assert os.getuid() == 65534\n"
        "with Sandbox(hostname='rootless-box') as sb:\n"
        "    r = sb.run(['sh', '-c', 'echo $$ $(id -u) $(hostname); ls /sys/class/net; '\n"
        "               'touch /etc/x 2>&1; touch /tmp/y && echo tmp-ok'],\n"
        "               capture_output=True, text=True)\n"
        "    print(r.stdout.replace(chr(10), ' '))\n"
        "    print('status', r.returncode, 'Read-only' in r.stdout)\n"
        "    try:\n"
        "        sb.run(['sh', '-c', 'sleep 1000 & sleep 1000 & wait'], timeout=0.3)\n"
        "    except subprocess.TimeoutExpired:\n"
        "        print('timeout-ok')\n"
    )
    lines = run_unprivileged(code).stdout.splitlines()
    first = lines[0].split()
    assert first[:5] == ["1", "0", "rootless-box", "lo", "touch:"]
    assert first[-1] == "tmp-ok"
    assert lines[1] == "status 0 True"
    assert lines[2] == "timeout-ok"


@pytest.mark.userns
def test_rootless_sandbox_without_subordinate_ids_refuses_a_uid_saying_how_to_get_some(
) -> None:
    from rootless import run_unprivileged

    code = (
        "from isolate import Sandbox\n"
        "from isolate.errors import UnsupportedError\n"
        "try:\n"
        "    with Sandbox(uid=1000) as sb:\n"
        "        sb.run(['true'])\n"
        "except UnsupportedError as exc:\n"
        "    print('unsupported', exc)\n"
    )
    out = run_unprivileged(code).stdout
    assert out.startswith("unsupported the sandbox's process runs as uid 1000"), out
    # Why only one id is mapped, and how to get a range: what podman's users are told.
    assert "/etc/subuid grants user nobody no subordinate ids" in out, out
    assert "usermod --add-subuids" in out and "--user 0" in out, out


def test_a_dropped_popen_is_still_ended_when_the_sandbox_closes() -> None:
    mark = marker()
    with Sandbox() as box:
        box.popen(["sleep", mark])  # no reference kept
        gc.collect()
        assert started_with_argv("sleep", mark)
    assert not pids_with_argv("sleep", mark)


def test_a_sandbox_left_open_warns_when_collected() -> None:
    box = Sandbox().__enter__()
    try:
        with pytest.warns(ResourceWarning, match="not closed"):
            box.__del__()
    finally:
        box.close()


_OWNER = """
import sys, threading, time, isolate
box = isolate.Sandbox(die_with_parent={die}, init={init}).__enter__()
start = lambda: box.popen(["sleep", "{mark}"])
if {from_thread}:
    t = threading.Thread(target=start)
    t.start()
    t.join()
else:
    start()
print("ready", flush=True)
time.sleep(60)
"""


def _killed_owner_leaves(die: bool, from_thread: bool = False, init: bool = False
                         ) -> list[int]:
    """Start a Python process that runs `sleep MARK` in a sandbox, SIGKILL it, and return the
    pids of that sleep still alive a moment later."""
    mark = marker()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(isolate.__file__)))
    owner = subprocess.Popen([sys.executable, "-c", _OWNER.format(die=die, mark=mark,
                                                                 from_thread=from_thread,
                                                                 init=init)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
        assert started_with_argv("sleep", mark)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()  # type: ignore[union-attr]
    deadline = time.monotonic() + 30  # generous: the machine may be busy
    while pids_with_argv("sleep", mark) and time.monotonic() < deadline and die:
        time.sleep(0.02)
    return pids_with_argv("sleep", mark)


def test_sandboxed_processes_die_when_their_owner_is_killed() -> None:
    assert _killed_owner_leaves(die=True) == []


def test_processes_under_init_die_when_their_owner_is_killed() -> None:
    # The init is pid 1 and gets the parent-death signal; the namespace's end kills the rest.
    assert _killed_owner_leaves(die=True, init=True) == []


def test_processes_started_from_another_thread_die_with_the_owner_not_the_thread() -> None:
    assert _killed_owner_leaves(die=True, from_thread=True) == []


def test_a_process_outlives_the_thread_that_started_it(sb: Sandbox) -> None:
    # PR_SET_PDEATHSIG fires when the cloning *thread* ends; the sandbox must not tie its
    # processes to a worker thread of the caller.
    started: list[subprocess.Popen[bytes]] = []
    t = threading.Thread(target=lambda: started.append(sb.popen(["sleep", "60"])))
    t.start()
    t.join()
    proc = started[0]
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)
    proc.kill()
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_die_with_parent_false_lets_them_outlive_it() -> None:
    left = _killed_owner_leaves(die=False)
    try:
        assert left, "die_with_parent=False should leave the process running"
    finally:
        for pid in left:  # ours: started by this test
            os.kill(pid, signal.SIGKILL)
