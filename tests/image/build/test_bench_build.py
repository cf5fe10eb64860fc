"""benchmarks/bench_build.py runs against the installed package and prints every table it
promises (podman included where it is installed: its state lives in the script's own temp
dir, ``--network=none``). A smoke run with one round; the numbers are not checked."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

BENCH = pathlib.Path(__file__).resolve().parents[3] / "benchmarks" / "bench_build.py"


def test_bench_build_prints_its_tables(tmp_path: pathlib.Path) -> None:
    if not pathlib.Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TMPDIR"] = str(tmp_path)
    args = [sys.executable, str(BENCH), "--rounds", "1", "--files", "300"]
    podman = shutil.which("podman") is not None
    if not podman:
        args.append("--no-podman")
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "### Hashing a 300-file build context" in out and "| tar -c, into a pipe |" in out
    if podman:
        for row in ("isolate build (cold, --no-cache)", "podman build (cold, --no-cache)",
                    "isolate build (cached)", "podman build (cached)"):
            assert f"| {row} |" in out, out
        assert "cached rebuild / podman" in out, out
    # Everything the script made was in its temp dir, and is gone.
    assert os.listdir(tmp_path) == []
