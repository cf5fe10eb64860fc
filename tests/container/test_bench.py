"""benchmarks/bench_containers.py runs against the installed package and prints every table
(a smoke run: two rounds, three containers; the numbers are not checked)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_containers.py"


@pytest.mark.slow
def test_bench_containers_prints_its_tables(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(BENCH), "--rounds", "2", "--many", "3"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr
    for heading in ("### create + start + wait of /bin/true", "### exec latency",
                    "### 3 running containers"):
        assert heading in result.stdout
    assert "| Container create+start+wait (store on disk) |" in result.stdout
