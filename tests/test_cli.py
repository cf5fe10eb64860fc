"""Tests of ``isolate run`` as a user runs it: a separate process, real stdio, real signals,
and docker-run exit codes (the command's own status, 128+N for a signal, 125 for isolate's own
failure, 126/127 when the command cannot be executed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

import isolate
from sandbox_helpers import busybox_rootfs, marker, need_root, pids_with_argv

pytestmark = pytest.mark.root

SRC = os.path.dirname(os.path.dirname(isolate.__file__))


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def isolate_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "isolate.cli", "run", *args]


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC)


def cli(*args: str, input: str | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(isolate_argv(*args), input=input, capture_output=True, text=True,
                          env=env(), timeout=timeout, check=False)


@pytest.fixture(scope="module")
def rootfs() -> Iterator[str]:
    with busybox_rootfs() as path:
        yield path


# -- stdio and exit status -------------------------------------------------------------------

def test_run_passes_stdin_stdout_and_stderr_through() -> None:
    result = cli("--", "sh", "-c", "cat; echo to-err >&2", input="from stdin\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "from stdin\n",
                                                                 "to-err\n")


def test_run_exits_with_the_commands_status() -> None:
    assert cli("--", "sh", "-c", "exit 3").returncode == 3
    # Without "--" the first word names an image, as in docker run (see test_cli_images).
    assert cli("--", "sh", "-c", "exit 0").returncode == 0


def test_the_command_runs_sandboxed() -> None:
    result = cli("--hostname", "cli-box", "--", "sh", "-c",
                 "echo $$ $(hostname) $(ls /sys/class/net); touch /etc/x 2>/dev/null; echo $?")
    assert result.stdout.split() == ["1", "cli-box", "lo", "1"]


def start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(isolate_argv(*args), stdout=subprocess.PIPE, text=True, env=env())
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"  # the command's trap is in place
    return proc


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 42), (signal.SIGINT, 43)])
def test_sigterm_and_sigint_are_forwarded_to_the_command(sig: int, code: int) -> None:
    with start("--", "sh", "-c", "trap 'exit 42' TERM; trap 'exit 43' INT; echo ready; "
               "while :; do sleep 0.05; done") as proc:
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code


def test_a_command_ignoring_sigterm_is_killed_and_exits_128_plus_9() -> None:
    mark = marker()
    with start("--stop-timeout", "0.3", "--", "sh", "-c",
               f"echo ready; sleep {mark}") as proc:
        proc.send_signal(signal.SIGTERM)  # pid 1 without a handler ignores it
        assert proc.wait(timeout=60) == 128 + signal.SIGKILL
    assert pids_with_argv("sleep", mark) == []


def test_with_init_the_command_is_pid_2_and_dies_by_a_forwarded_sigterm() -> None:
    result = cli("--init", "--", "sh", "-c", "echo $$ $(cat /proc/1/comm)")
    assert (result.returncode, result.stdout) == (0, "2 isolate-init\n"), result.stderr
    assert cli("--init", "--", "sh", "-c", "exit 3").returncode == 3
    assert cli("--init", "--", "sh", "-c", "kill -TERM $$").returncode == 128 + signal.SIGTERM
    mark = marker()
    # No trap: without --init the SIGTERM would be dropped and the kill come only after the
    # stop timeout (far beyond the wait below).
    with start("--init", "--stop-timeout", "600", "--", "sh", "-c",
               f"echo ready; exec sleep {mark}") as proc:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert pids_with_argv("sleep", mark) == []


def test_with_init_an_exec_failure_exits_as_without() -> None:
    for program, code in (("/no/such/program", 127), ("/etc/passwd", 126)):
        plain, with_init = cli("--", program), cli("--init", "--", program)
        assert (with_init.returncode, with_init.stderr) == (plain.returncode, plain.stderr)
        assert plain.returncode == code


def test_timeout_kills_the_command_tree_and_says_so() -> None:
    mark = marker()
    result = cli("--timeout", "0.5", "--", "sh", "-c", f"sleep {mark} & sleep {mark}")
    assert result.returncode == 128 + signal.SIGKILL
    assert result.stderr == "isolate: killed: --timeout of 0.5 s reached\n"
    assert pids_with_argv("sleep", mark) == []


# -- bad input: one line on stderr, exit 125 ------------------------------------------------

@pytest.mark.parametrize("args", [
    ("--bogus-option", "--", "true"),
    ("--rootfs", "/no/such/rootfs", "--", "true"),
    ("--bind", "/no/such/source:/mnt", "--", "true"),
    ("--bind", "not-a-bind-spec", "--", "true"),
    ("--user", "alice", "--", "true"),
    ("--env", "=value", "--", "true"),
    ("--workdir", "relative/dir", "--", "true"),
    ("--net", "container:x", "--", "true"),
    ("--net", "no such network!", "--", "true"),
    ("-p", "80", "--", "true"),
    ("--net", "pasta", "-p", "80:80:80", "--", "true"),
    (),
])
def test_bad_input_gets_one_line_on_stderr_and_exit_125(args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 125
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--cpus", "1e308"), "--cpus: 1e+308 is more than the kernel's largest cpu quota"),
    (("--cpus", "nan"), "--cpus: expected a number of cpus"),
    (("--timeout", "nan"), "--timeout: expected a number of seconds, got 'nan'"),
    (("--memory", "0"), "--memory: '0' is below the smallest memory limit, 6M"),
    (("--memory", "1"), "--memory: '1' is below the smallest memory limit, 6M"),
    (("--memory", "4096"), "--memory: '4096' is below the smallest memory limit, 6M"),
    (("--memory", "99999999999999999999999T"), "--memory: '99999999999999999999999T' is more "
     "than the kernel's largest size"),
    (("--timeout", "-1"), "--timeout: must be at least 0.001 seconds, got '-1'"),
    (("--timeout", "0"), "--timeout: must be at least 0.001 seconds, got '0'"),
    (("--timeout", "1e-300"), "--timeout: must be at least 0.001 seconds, got '1e-300'"),
    (("--memory", "64M", "--memory-swap", "32M"), "--memory-swap 32M is less than --memory 64M"),
    (("--memory-swap", "1G"), "--memory-swap needs --memory as well"),
    (("--stop-timeout", "-1"), "--stop-timeout: must be 0 or at least 0.001 seconds"),
    (("--stop-timeout", "nan"), "--stop-timeout: expected a number of seconds"),
    (("--user", "1_000"), "uid: expected a number of digits 0-9, got '1_000'"),
    (("--user", "\u0663"), "uid: expected a number of digits 0-9, got '\u0663'"),
    (("--user", "0:1_0"), "gid: expected a number of digits 0-9"),
    (("--user", "4294967295"), "uid: must be at most 4294967294"),
    (("--pids-limit", "0"), "--pids-limit: must be between 1 and 4194304, got 0"),
    (("--pids-limit", "1_0"), "--pids-limit: expected a number of digits 0-9"),
])
def test_values_out_of_range_get_one_line_naming_the_option_and_exit_125(
    args: tuple[str, ...], message: str,
) -> None:
    result = cli(*args, "--", "true")
    assert (result.returncode, result.stdout) == (125, ""), result.stderr
    assert result.stderr.startswith("isolate run: ") and message in result.stderr, \
        result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("value", "library", "option"), [
    ("nan", dict(timeout=float("nan")), "--timeout"),
    ("0", dict(timeout=0), "--timeout"),
    ("1e-300", dict(timeout=1e-300), "--timeout"),
    ("1e300", dict(timeout=1e300), "--timeout"),
    ("4096", dict(limits=dict(memory_max=4096)), "--memory"),
    ("1e308", dict(limits=dict(cpus=1e308)), "--cpus"),
    ("0.0001", dict(limits=dict(cpus=0.0001)), "--cpus"),
])
def test_the_library_and_the_command_line_refuse_the_same_values(
    value: str, library: dict[str, object], option: str,
) -> None:
    options = dict(library)
    if isinstance(options.get("limits"), dict):
        with pytest.raises(isolate.errors.ConfigError):
            isolate.Limits(**options["limits"])  # type: ignore[arg-type]
    else:
        with pytest.raises(isolate.errors.ConfigError):
            isolate.SandboxConfig(**options)  # type: ignore[arg-type]
    result = cli(option, value, "--", "true")
    assert result.returncode == 125 and option in result.stderr, result.stderr


def test_memory_swap_counts_memory_and_swap_together_as_docker_does() -> None:
    from isolate.cli import build_parser
    from isolate.cli.run import _limits

    def limits(*args: str) -> isolate.Limits | None:
        return _limits(build_parser().parse_args(["run", *args, "--", "true"]))

    assert limits("-m", "64M", "--memory-swap", "96M") == isolate.Limits(
        memory_max="64M", memory_swap_max="32M")
    assert limits("-m", "64M", "--memory-swap", "64M") == isolate.Limits(
        memory_max="64M", memory_swap_max=0)
    assert limits("-m", "64M", "--memory-swap", "-1") == isolate.Limits(memory_max="64M")
    assert limits("--pids-limit", "-1") is None


def test_a_command_not_found_exits_127() -> None:
    result = cli("--", "no-such-command-anywhere")
    assert result.returncode == 127
    assert "no-such-command-anywhere" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_command_that_cannot_be_executed_exits_126() -> None:
    result = cli("--", "/etc")  # a directory: EACCES
    assert result.returncode == 126
    assert len(result.stderr.strip().splitlines()) == 1


# -- options ---------------------------------------------------------------------------------

def test_rootfs_bind_tmpfs_env_workdir_and_user_options(rootfs: str) -> None:
    with tempfile.TemporaryDirectory() as data:
        os.chmod(data, 0o777)  # the command runs as uid 1000
        with open(os.path.join(data, "in"), "w") as f:
            f.write("bound")
        result = cli("--rootfs", rootfs, "--bind", f"{data}:/data:ro",
                     "--bind", f"{data}:/out:rw", "--tmpfs", "/scratch", "--env", "K=V",
                     "--workdir", "/scratch", "--user", "1000:1001", "--",
                     "sh", "-c", "cat /data/in; echo; echo $K; pwd; id -u; id -g; "
                     "touch /data/x 2>/dev/null || echo ro; echo hi > /out/made; "
                     "ls /usr 2>/dev/null || echo no-usr")
        assert result.stdout.split() == ["bound", "V", "/scratch", "1000", "1001", "ro",
                                         "no-usr"], result.stderr
        assert result.returncode == 0
        with open(os.path.join(data, "made")) as f:
            assert f.read() == "hi\n"


def test_net_host_shares_the_hosts_network_devices() -> None:
    result = cli("--net", "host", "--", "ls", "/sys/class/net")
    assert sorted(result.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_memory_limit_reports_killed_out_of_memory() -> None:
    result = cli("--memory", "64M", "--", sys.executable, "-c",
                 "b = bytearray(256 << 20)")
    if "cgroup" in result.stderr and result.returncode == 125:
        pytest.skip(f"memory limits unavailable here: {result.stderr.strip()}")
    assert result.returncode == 128 + signal.SIGKILL
    assert "killed: out of memory" in result.stderr


def test_isolate_run_works_for_an_unprivileged_user() -> None:
    import rootless

    code = ("import sys\nfrom isolate.cli import main\n"
            "sys.exit(main(['run', '--', 'sh', '-c', "
            "'echo pid $$ uid $(id -u) on $(hostname); touch /etc/x 2>/dev/null || echo ro']))")
    result = rootless.run_unprivileged(code)
    assert result.stdout.splitlines() == ["pid 1 uid 0 on sandbox", "ro"], result.stderr


def test_limits_as_an_unprivileged_user_say_why_and_best_effort_runs_without_them() -> None:
    import rootless
    from isolate.cgroups import BackendKind, host_layout

    def code(argv: list[str]) -> str:
        return f"import sys\nfrom isolate.cli import main\nsys.exit(main({argv!r}))"

    argv = ["run", "-m", "64M", "--pids-limit", "32", "--", "sh", "-c", "echo ran"]
    refused = rootless.run_unprivileged(code(argv), check=False)
    assert (refused.returncode, refused.stdout) == (125, ""), refused.stderr
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    if host_layout().kind is BackendKind.V2:
        assert "Delegate=yes" in refused.stderr
    else:
        assert f"this host is {host_layout().kind.value}" in refused.stderr
        assert "systemd delegation does not help" in refused.stderr
    assert "--best-effort" in refused.stderr
    best = rootless.run_unprivileged(code([*argv[:1], "--best-effort", *argv[1:]]))
    assert best.stdout == "ran\n"
    assert best.stderr.startswith("isolate: warning: sandbox runs without resource limits: ")
    assert len(best.stderr.splitlines()) == 1, best.stderr


# -- version ---------------------------------------------------------------------------------

def isolate_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isolate.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": SRC, **env}, timeout=120,
                          check=False)


def test_version_flag_prints_one_line() -> None:
    result = isolate_cli("--version")
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"isolate version {isolate.__version__}\n", "")


def test_version_command_reports_isolate_python_kernel_cgroups_and_store(tmp_path: str) -> None:
    import json
    import platform

    from isolate.cgroups import host_layout

    result = isolate_cli("version", ISOLATE_STORE=f"{tmp_path}/store")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["isolate"].split()[0] == isolate.__version__
    assert lines["Python"].split()[0] == platform.python_version()
    assert os.uname().release in lines["Kernel"]
    assert lines["Cgroups"].split(";")[0].strip() == host_layout().kind.value
    assert lines["User namespaces"].strip() == "available"
    assert lines["Store"].strip() == f"{tmp_path}/store (from ISOLATE_STORE)"
    as_json = json.loads(isolate_cli("version", "--format", "json", "--store",
                                     f"{tmp_path}/other").stdout)
    assert as_json["isolate"]["version"] == isolate.__version__
    assert as_json["kernel"]["release"] == os.uname().release
    assert as_json["cgroups"]["layout"] == host_layout().kind.value
    assert as_json["store"] == {"path": f"{tmp_path}/other", "from": "--store"}
    assert not os.path.exists(f"{tmp_path}/store"), "version only reads"


_EXIT = """
import atexit, sys, threading, time
from isolate.cli import _exit
atexit.register(lambda: print("atexit ran", end=" "))
def late():
    time.sleep(0.2)
    print("thread joined", end=" ")
threading.Thread(target=late).start()
print("buffered", end=" ")
sys.stderr.write("err ")
_exit(int(sys.argv[1]))
"""


def test_the_cli_exits_as_the_interpreter_would_without_its_teardown() -> None:
    # (isolate's entry() ends with _exit: the interpreter's teardown of every module is most
    # of a quick command's exit, and the kernel frees the memory anyway)
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run([sys.executable, "-c", _EXIT, "3"], capture_output=True, text=True,
                          timeout=60, env=buffered)
    assert proc.returncode == 3
    assert proc.stdout == "buffered thread joined atexit ran "
    assert proc.stderr == "err "
    # A pipe nobody reads: the buffered output fails at the last flush, as at any exit.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-c", _EXIT, "0"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=buffered)
    finally:
        os.close(write_end)
    assert proc.returncode == 120  # stdout could not be flushed: the interpreter's status
