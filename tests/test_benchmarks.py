"""The benchmarks run against the installed package (not only from a tree built in place):
their child processes import the same isolate they do, and a tree without its C core is one
line saying what to do. A smoke run with two rounds each; the numbers are not checked (no timed
assertions), only that every table comes out."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

import isolate

pytestmark = pytest.mark.root

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def _run(tmp_path: pathlib.Path, *args: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_bench_cgroups_runs_against_the_installed_package(tmp_path: pathlib.Path) -> None:
    result = _run(tmp_path, str(BENCH / "bench_cgroups.py"), "--rounds", "2")
    assert result.returncode == 0, result.stderr
    package_dir = os.path.dirname(os.path.dirname(isolate.__file__))
    assert f"Timed: isolate {isolate.__version__} from {package_dir}" in result.stdout
    assert "### Cgroup life cycle per backend" in result.stdout
    assert "### What limits add to a sandbox" in result.stdout


def test_bench_spawn_children_import_the_same_isolate(tmp_path: pathlib.Path) -> None:
    # Its whole-process rows run `python -m isolate.cli run` and import probes in children.
    result = _run(tmp_path, str(BENCH / "bench_spawn.py"), "--rounds", "2", "--whole-every",
                  "1", "--skip", "memory", "--skip", "breakdown", "--skip", "call",
                  "--skip", "import")
    assert result.returncode == 0, result.stderr
    assert "| whole process: isolate run |" in result.stdout, result.stdout


def test_bench_rootless_times_an_ordinary_user_with_and_without_a_range(
        tmp_path: pathlib.Path) -> None:
    result = _run(tmp_path, str(BENCH / "bench_rootless.py"), "--rounds", "2")
    assert result.returncode == 0, result.stderr
    if "cannot run as an ordinary user here" in result.stdout:
        pytest.skip(result.stdout.strip())
    assert "### Rootless: one id mapped against a subordinate range" in result.stdout
    assert "| sandbox: enter + run /bin/true, subordinate range |" in result.stdout


def test_bench_startup_runs_against_the_installed_package(tmp_path: pathlib.Path) -> None:
    # Its candidates are child processes (python -m isolate.cli, import probes): they must
    # import the same isolate, and every table and target line must come out.
    result = _run(tmp_path, str(BENCH / "bench_startup.py"), "--rounds", "2", "--no-podman")
    assert result.returncode == 0, result.stderr
    assert "| isolate run -- /bin/true |" in result.stdout, result.stdout
    assert "| isolate run --image IMAGE /bin/true |" in result.stdout
    assert "- isolate run -- /bin/true / python -c pass = " in result.stdout
    assert "| import isolate.sandbox |" in result.stdout
    # The same rows under Debian's python3, in a venv the benchmark made (and removed).
    if "second interpreter skipped" in result.stdout:
        pytest.skip(result.stdout[result.stdout.index("second interpreter skipped"):]
                    .splitlines()[0])
    assert "| isolate run --image IMAGE /bin/true [Debian python3 venv] |" in result.stdout
    assert "- isolate run -- /bin/true / python -c pass [Debian python3 venv] = " in \
        result.stdout
    venv = result.stdout.split("made for this run (", 1)[1].split(",", 1)[0]
    assert venv.startswith("/var/tmp/isolate-bench-venv-") and not os.path.exists(venv)


def test_a_source_tree_without_its_c_core_is_one_line_saying_what_to_do(
    tmp_path: pathlib.Path,
) -> None:
    tree = tmp_path / "src"
    (tree / "isolate" / "_native").mkdir(parents=True)
    package = pathlib.Path(isolate.__file__).parent
    for name in ("__init__.py", "_lazy.py", "_memo.py", "_typing.py", "errors.py", "_sys.py",
                 "_native/__init__.py"):
        (tree / "isolate" / name).write_text((package / name).read_text())
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = _run(tmp_path, str(BENCH / "bench_cgroups.py"), "--rounds", "2", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"isolate from {tree} has no built C core"), result.stderr
    assert "pip install ." in result.stderr and len(result.stderr.splitlines()) == 1


# Two runs of bench_containers at once (two developers): each one's podman must keep its own
# state, or the first's `system reset` makes the second's `rm -f` report success and leave its
# container (a conmon orphaned to pid 1, a container process, its cgroups) running for good.
_PODMAN_PAIR = """
import os, subprocess, sys, time
sys.path.insert(0, {bench!r})
import _own_podman, bench_containers as b
root = {root!r}
os.makedirs(root + "/s")
cs = b._image_store(root + "/s")
first, second = [b._podman_env(os.makedirs(root + "/" + n) or root + "/" + n, cs) for n in "ab"]
if isinstance(first, str):
    print("skip:", first)
    sys.exit(0)
ctr = subprocess.run(["podman", "run", "-d", "--network=none", "busybox:latest", "sleep",
                      "100000"], env=first, capture_output=True, text=True, check=True)
try:
    _own_podman.reset(second)
    subprocess.run(["podman", "rm", "-f", "-t", "0", ctr.stdout.strip()], env=first,
                   capture_output=True, check=True)
    def ours():  # processes naming our podman dirs (conmon's exit command ends by itself)
        found = []
        for p in os.listdir("/proc"):
            try:
                if p.isdigit() and int(p) != os.getpid() and root.encode() in open(
                        f"/proc/{{p}}/cmdline", "rb").read():
                    found.append(p)
            except OSError:
                pass
        return found
    deadline = time.monotonic() + 30
    while ours() and time.monotonic() < deadline:
        time.sleep(0.1)
    print("left:", ours())
finally:
    _own_podman.reset(first)  # (ends by pid a conmon of ours that podman did not)
"""


def test_two_runs_podman_states_stay_apart(tmp_path: pathlib.Path) -> None:
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    code = _PODMAN_PAIR.format(bench=str(BENCH), root=str(tmp_path / "pair"))
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "--", sys.executable,
                             "-c", code], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    if result.stdout.startswith("skip:"):
        pytest.skip(result.stdout.strip())
    assert "left: []" in result.stdout, result.stdout + result.stderr
    assert "podman left conmon" not in result.stderr, result.stderr
