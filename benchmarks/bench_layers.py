"""Benchmark layer extraction against GNU ``tar -x`` and the commit step (diff) of 10k files.

Not a test: prints medians and ratios. Run as root, against the installed package or a source
tree built in place (see docs/performance.md):
    python benchmarks/bench_layers.py [--source DIR] [--files N] [--runs N]
        [--dir DIR ...]
The layer is built from ``--source`` (default: a synthetic tree of mixed file sizes) with
``write_tar``, so both extractors read the very same bytes (plain and gzip). Each ``--dir``
(default: the temp dir, and /dev/shm when present) is where extraction happens: on a disk the
filesystem dominates, on tmpfs the per-entry CPU cost shows.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable

from _isolate_path import describe

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


def _median(fn: Callable[[], object], runs: int, setup: Callable[[], None]) -> float:
    samples = []
    for _ in range(runs):
        setup()
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def _fresh(dest: str) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    os.mkdir(dest)
    # Write back the previous run's data now, not during the next timed run.
    os.sync()


def _gnu_tar(layer: str, dest: str) -> None:
    subprocess.run(["tar", "-x", "-p", "--xattrs", "-C", dest, "-f", layer], check=True)


def _bench_extract(src: str, base: str, runs: int) -> None:
    work = tempfile.mkdtemp(prefix="isolate-bench-", dir=base)
    try:
        dest = os.path.join(work, "dest")
        for compression in (None, "gzip"):
            layer = os.path.join(work, "layer.tar" + (".gz" if compression else ""))
            with open(layer, "wb") as f:
                write_tar(src, f, compression=compression)
            setup = functools.partial(_fresh, dest)
            ours = _median(functools.partial(extract, layer, dest), runs, setup)
            gnu = _median(functools.partial(_gnu_tar, layer, dest), runs, setup)
            label = compression or "plain"
            size = os.path.getsize(layer) / 1e6
            print(f"extract {label:5} {size:7.1f} MB in {base}: isolate {ours * 1e3:7.1f} ms, "
                  f"tar -x {gnu * 1e3:7.1f} ms, ratio {ours / gnu:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _bench_diff(base: str, runs: int) -> None:
    work = tempfile.mkdtemp(prefix="isolate-bench-", dir=base)
    try:
        upper = os.path.join(work, "upper")
        for i in range(10_000):
            d = os.path.join(upper, f"dir{i % 100}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"changed{i}"), "wb") as f:
                f.write(b"y" * (i % 3000))
            if i % 10 == 0:  # deletions, as overlayfs records them
                os.mknod(os.path.join(d, f"deleted{i}"), 0o600 | 0o020000, 0)
        out = os.path.join(work, "diff.tar")

        def commit() -> None:
            with open(out, "wb") as f:
                diff(upper, f)

        t = _median(commit, runs, lambda: None)
        size = os.path.getsize(out) / 1e6
        print(f"diff of a 10k-file change in {base}: {t * 1e3:.1f} ms ({size:.1f} MB layer)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", help="tree to turn into the benchmark layer")
    parser.add_argument("--files", type=int, default=10_000, help="synthetic tree size")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dir", action="append", help="where to extract (repeatable)")
    args = parser.parse_args()
    bases = args.dir or [tempfile.gettempdir()] + (["/dev/shm"] if os.path.isdir("/dev/shm")
                                                   else [])
    print(f"timed: {describe()}")
    scratch = tempfile.mkdtemp(prefix="isolate-bench-src-")
    try:
        src = args.source
        if src is None:
            src = os.path.join(scratch, "src")
            os.mkdir(src)
            _synthetic_tree(src, args.files)
        for base in bases:
            _bench_extract(src, base, args.runs)
        for base in bases:
            _bench_diff(base, args.runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
