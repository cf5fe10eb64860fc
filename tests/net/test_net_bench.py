"""benchmarks/bench_net.py keeps running against the installed package: a smoke run with one
round of each table (the numbers are not checked -- no timed assertions -- only that every
table comes out and nothing is left)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_net.py"


def test_bench_net_prints_its_tables(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(BENCH), "--rounds", "1", "--mib", "4",
                             "--tp-rounds", "1", "--starts", "1", "--store", str(tmp_path)],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "| connect + release after the container ended |" in out, out
    assert "| --network bridge -p 9090:80 |" in out and "network's share" in out, out
    assert "| host loopback, no container (anchor) |" in out, out
    assert "via the host's other address (DNAT)" in out and "(userland proxy)" in out, out
    if all(os.path.exists(f"/usr/lib/cni/{p}") for p in ("bridge", "portmap", "firewall",
                                                          "tuning")):
        assert "| podman 4's CNI chain with -p 9091:80 |" in out, out
    assert os.listdir(tmp_path) == []  # its networks directory went with it
