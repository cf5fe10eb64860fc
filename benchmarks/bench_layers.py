"""Benchmark layer extraction against GNU ``tar -x`` and the commit step (diff) of 10k files.

Not a test: prints medians and ratios. Run as root from the worktree:
    PYTHONPATH=src python benchmarks/bench_layers.py [--source DIR] [--runs N]
The layer is built from ``--source`` (default: a synthetic tree of mixed file sizes) with
``write_tar``, so both extractors read the very same bytes (plain and gzip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from isolate.fs import diff, extract, write_tar


def _synthetic_tree(root: str, files: int) -> None:
    # Sizes like a distro layer: mostly small files, a few large ones.
    sizes = [200, 1_500, 4_000, 12_000, 60_000, 900_000]
    for i in range(files):
        d = os.path.join(root, f"d{i % 97:02d}", f"s{i % 7}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i}"), "wb") as f:
            f.write(os.urandom(64) * (sizes[i % len(sizes)] // 64 if i % 50 == 0 else 1))
            f.write(b"x" * sizes[i % 4])
        if i % 25 == 0:
            os.symlink(f"f{i}", os.path.join(d, f"l{i}"))


def _time(fn: Callable[[], object], runs: int, setup: Callable[[], None]) -> float:
    samples = []
    for _ in range(runs):
        setup()
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", help="tree to turn into the benchmark layer")
    parser.add_argument("--files", type=int, default=20_000, help="synthetic tree size")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="isolate-bench-")
    try:
        src = args.source
        if src is None:
            src = os.path.join(work, "src")
            os.mkdir(src)
            _synthetic_tree(src, args.files)
        dest = os.path.join(work, "dest")

        def fresh_dest() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            os.mkdir(dest)
            # Write back the previous run's data now, not during the next timed run.
            os.sync()

        for compression in (None, "gzip"):
            layer = os.path.join(work, "layer.tar" + (".gz" if compression else ""))
            with open(layer, "wb") as f:
                write_tar(src, f, compression=compression)
            size = os.path.getsize(layer)
            ours = _time(lambda: extract(layer, dest), args.runs, fresh_dest)  # noqa: B023
            gnu = _time(
                lambda: subprocess.run(  # noqa: B023
                    ["tar", "-x", "-p", "--xattrs", "-C", dest, "-f", layer], check=True),
                args.runs, fresh_dest,
            )
            label = compression or "plain"
            print(f"extract {label:5} {size / 1e6:8.1f} MB: isolate {ours * 1e3:8.1f} ms, "
                  f"tar -x {gnu * 1e3:8.1f} ms, ratio {ours / gnu:.2f}x")

        upper = os.path.join(work, "upper")
        os.mkdir(upper)
        for i in range(10_000):
            d = os.path.join(upper, f"dir{i % 100}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"changed{i}"), "wb") as f:
                f.write(b"y" * (i % 3000))
            if i % 10 == 0:
                os.mknod(os.path.join(d, f"deleted{i}"), 0o600 | 0o020000, 0)
        out = os.path.join(work, "diff.tar")

        def commit() -> None:
            with open(out, "wb") as f:
                diff(upper, f)

        t = _time(commit, args.runs, lambda: None)
        print(f"diff of a 10k-file change: {t * 1e3:.1f} ms ({os.path.getsize(out) / 1e6:.1f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
