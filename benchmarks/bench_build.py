"""Benchmark ``isolate build`` against ``podman build`` (buildah), and context hashing
against ``tar -c``.

Not a test: prints Markdown tables. Run as root:
    python benchmarks/bench_build.py [--rounds N] [--files N] [--no-podman]

1. The same 10-step Dockerfile (busybox base, present in both stores; COPY, RUN, ENV,
   WORKDIR, LABEL, CMD), built from a whole process each time: cold (``--no-cache``, so
   every step runs) and fully cached. podman runs with a containers.conf, storage and temp
   dir of this script's own, ``--network=none`` (never a bridge on the machine), runc and
   cgroupfs (see MACHINE.md); everything it made is removed at the end.
2. Hashing a 20k-file build context (what a build does once per build to key COPY . .)
   against ``tar -c`` of the same tree into a pipe, page cache warm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _harness import Candidate, Result, command_line, interleave, machine_notes, table
from _isolate_path import child_env, describe, pythonpath_prefix

from isolate.image import Store
from isolate.image.build import BuildContext

DOCKERFILE = """FROM local/bench-busybox:1
ENV APP=/app
COPY a.txt /app/a.txt
RUN echo one > /one && cat /app/a.txt > /copy
COPY src /app/src
RUN ls -R /app > /listing
WORKDIR /app
RUN echo three > three && chmod 600 three
LABEL bench=1
CMD ["cat", "/listing"]
"""


def busybox_root(root: str) -> None:
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy2("/bin/busybox", os.path.join(root, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", os.path.join(root, "bin", applet))
    for d in ("etc", "tmp", "proc", "sys", "dev", "root"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")


def podman_env(work: str) -> dict[str, str]:
    for d in ("storage", "run", "tmp", "cni", "runc"):
        os.makedirs(os.path.join(work, d))
    # Every directory podman keeps state in is ours (and runc's: --runtime-flag below), and its
    # locks are files there, not the machine-wide shm segment /dev/shm/libpod_lock.
    with open(os.path.join(work, "containers.conf"), "w") as f:
        f.write('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
                'netns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
                'lock_type = "file"\n'
                f'events_logger = "none"\ntmp_dir = "{work}/libpod"\n'
                f'static_dir = "{work}/storage/libpod"\nvolume_path = "{work}/storage/volumes"\n'
                f'[network]\nnetwork_config_dir = "{work}/cni"\n')
    with open(os.path.join(work, "storage.conf"), "w") as f:
        f.write(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/storage"\n'
                f'runroot = "{work}/run"\n')
    with open(os.path.join(work, "registries.conf"), "w") as f:
        f.write('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    return dict(os.environ, CONTAINERS_CONF=f"{work}/containers.conf",
                CONTAINERS_STORAGE_CONF=f"{work}/storage.conf",
                CONTAINERS_REGISTRIES_CONF=f"{work}/registries.conf", TMPDIR=f"{work}/tmp")


def run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr.decode()[-2000:]}")


def bench_builds(rounds: int, work: str) -> None:
    ctx = os.path.join(work, "ctx")
    os.makedirs(os.path.join(ctx, "src"))
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE)
    with open(os.path.join(ctx, "a.txt"), "w") as f:
        f.write("a\n")
    for i in range(50):
        with open(os.path.join(ctx, "src", f"f{i}.py"), "w") as f:
            f.write(f"x = {i}\n" * 20)
    root = os.path.join(work, "bbroot")
    busybox_root(root)
    store_dir = os.path.join(work, "store")
    store = Store(store_dir)
    store.from_directory(root, "local/bench-busybox:1")
    archive = os.path.join(work, "base.tar")
    store.save("local/bench-busybox:1", archive)
    penv = podman_env(os.path.join(work, "podman"))
    run(["podman", "load", "-i", archive], penv)
    # The isolate this script imported (src/ built in place, or an installed one).
    ienv = child_env(ISOLATE_STORE=store_dir)
    iso = [sys.executable, "-m", "isolate.cli", "build", "-q", "-t", "bench/app:1", ctx]
    pod = ["podman", "build", "-q", "--network=none", "--pull=never", "--layers",
           f"--runtime-flag=root={work}/podman/runc", "-t", "bench/app:1", ctx]
    try:
        run(iso, ienv)
        run(pod, penv)
        cands = [
            Candidate("isolate build (cold, --no-cache)", lambda: run([*iso, "--no-cache"], ienv),
                      "whole process; RUN steps in containers"),
            Candidate("podman build (cold, --no-cache)", lambda: run([*pod, "--no-cache"], penv),
                      "whole process; runc, overlay storage"),
            Candidate("isolate build (cached)", lambda: run(iso, ienv), "every step cached"),
            Candidate("podman build (cached)", lambda: run(pod, penv), "every step cached"),
        ]
        results = interleave(cands, rounds, warmup=1)
        print("### Build of a 10-step Dockerfile (busybox base)\n")
        print(table(results[:2], [("vs podman", "podman build (cold, --no-cache)")]))
        print()
        print(table(results[2:], [("vs podman", "podman build (cached)")]))
        print(targets(results))
    finally:
        # No 'podman rmi --all': podman 4.3 then takes a lock file in /etc/cni/net.d whatever
        # network_config_dir says. Its storage goes with the work dir.
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for mountpoint in reversed(mounts):
            if mountpoint.startswith(os.path.join(work, "podman")):
                subprocess.run(["umount", "-l", mountpoint], check=False)


def targets(results: list[Result]) -> str:
    """The issue's targets, checked against this run's medians."""
    by = {r.name: r.median for r in results}
    cold = by["isolate build (cold, --no-cache)"] / by["podman build (cold, --no-cache)"]
    cached_ms = by["isolate build (cached)"] * 1000
    cached = by["isolate build (cached)"] / by["podman build (cached)"]
    ok = {True: "met", False: "NOT met"}
    return "\n".join([
        "", "Targets (medians of this run):",
        f"- cold build / podman = {cold:.2f}x (target <= 0.7x): {ok[cold <= 0.7]}",
        f"- cached rebuild / podman = {cached:.2f}x (target <= 0.2x): {ok[cached <= 0.2]}",
        f"- cached rebuild of 10 steps = {cached_ms:.0f} ms (target < 500 ms): "
        f"{ok[cached_ms < 500]}"])


def bench_context(rounds: int, files: int, work: str) -> None:
    ctx = os.path.join(work, "big")
    for i in range(files):
        d = os.path.join(ctx, f"pkg{i % 200:03d}", f"mod{i % 9}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file{i}.py"), "wb") as f:
            f.write(b"# source\n" * (20 + i % 400))
    tar = f"tar -C {ctx} -cf - . | cat > /dev/null"
    time.sleep(2.5)  # let the new files settle, so that their digests may be remembered
    first = BuildContext.open(ctx)
    first.digest(".")
    known = first.remembered()

    def digest() -> None:
        BuildContext.open(ctx).digest(".")

    def rebuild() -> None:
        again = BuildContext.open(ctx)
        again.known = known
        again.digest(".")

    cands = [Candidate(f"BuildContext digest of {files} files", digest,
                       "walk + .dockerignore + sha256 of every file"),
             Candidate("the same, digests remembered from a build", rebuild,
                       "walk + .dockerignore + stat checks (a rebuild)"),
             Candidate("tar -c, into a pipe",
                       lambda: subprocess.run(["sh", "-c", tar], check=True),
                       "GNU tar reading the same files into a pipe")]
    results = interleave(cands, rounds)
    print(f"\n### Hashing a {files}-file build context\n")
    print(table(results, [("vs tar -c", "tar -c, into a pipe")]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--no-podman", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="isolate-bench-build-")
    try:
        print(f"`{command_line(pythonpath_prefix())}` -- {machine_notes()}\n")
        print(f"timed: {describe()}\n")
        if args.no_podman or shutil.which("podman") is None:
            print("(podman build: skipped)")
        else:
            bench_builds(args.rounds, work)
        bench_context(max(args.rounds, 5), args.files, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
