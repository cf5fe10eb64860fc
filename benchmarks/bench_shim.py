"""Benchmark the container supervisor: isolate-shim's idle memory against conmon's, and what
the exec'd isolate-init costs against the fork-based INIT it replaced in Sandbox(init=True).

Not a test: prints Markdown tables. Run as root from the worktree (with the package built, so
that isolate/_native/isolate-shim exists):
    PYTHONPATH=src python benchmarks/bench_shim.py [--rounds N] [--rss-rounds N]

Idle RSS: one container (``sleep``, pid and mount namespaces, the host root read-only) under
each supervisor, measured from /proc/PID/status once it has been idle for half a second:
isolate-shim started by isolate._shim.start(); conmon 2.x (Debian's package) driving
``runc create`` + ``runc start`` on a busybox bundle, as podman would, with its cgroup under an
``isolate`` subtree (removed again). Init cost: ``Sandbox(init=True).run(["/bin/true"])`` from
a warm sandbox, with the exec'd init and with the fork-based one, also from a caller that
holds 1 GiB (the fork copies the page tables of all of it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator

import attrs
from _harness import Candidate, command_line, interleave, machine_notes, ms, table

from isolate import Sandbox, _plan, _shim
from isolate._plan import Fd, Mode, Op, OpKind, Plan
from isolate.fs.mounts import MOUNT_ATTR_RDONLY, MS_REC, MS_SLAVE

BUSYBOX = "/bin/busybox"


def rss(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    return out


def shim_rss() -> dict[str, int]:
    plan = Plan(_plan.CLONE_NEWNS | _plan.CLONE_NEWPID, Mode.VFORK).extend([
        Op(OpKind.PDEATHSIG, a=signal.SIGKILL, b=Fd.PARENT),
        _plan.mount(None, "/", None, MS_REC | MS_SLAVE),
        _plan.setattr_("/", MOUNT_ATTR_RDONLY, recursive=True),
        _plan.mount("proc", "/proc", "proc"),
        _plan.fds([(0, 0, False), (1, 1, False), (2, 2, False)]),
        _plan.exec_("sleep", ["sleep", "1000"], {"PATH": "/bin:/usr/bin"}),
    ])
    state = tempfile.mkdtemp(prefix="bench-shim-")
    try:
        started = _shim.start(plan, _shim.ShimConfig(state, log_path=f"{state}/container.log"))
        time.sleep(0.5)
        sample = rss(started.shim_pid)
        with _shim.AttachClient.connect(state) as client:
            client.kill(signal.SIGKILL)
        _shim.wait_exit(state, 30)
        return sample
    finally:
        shutil.rmtree(state, ignore_errors=True)


@contextlib.contextmanager
def busybox_bundle() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="bench-conmon-")
    try:
        bundle = os.path.join(root, "bundle")
        os.makedirs(os.path.join(bundle, "rootfs"))
        subprocess.run(["runc", "spec"], cwd=bundle, check=True)
        with open(os.path.join(bundle, "config.json")) as f:
            config = json.load(f)
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/sleep", "1000"]
        config["root"]["readonly"] = True
        # Its cgroup goes where this project may make cgroups, and runc delete removes it.
        config["linux"]["cgroupsPath"] = f"/isolate/bench-conmon-{os.getpid()}"
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        rootfs = os.path.join(bundle, "rootfs")
        for d in ("bin", "proc", "dev", "sys", "tmp"):
            os.makedirs(os.path.join(rootfs, d), exist_ok=True)
        shutil.copy(BUSYBOX, os.path.join(rootfs, "bin", "busybox"))
        os.symlink("busybox", os.path.join(rootfs, "bin", "sleep"))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def conmon_rss(root: str, n: int) -> dict[str, int]:
    cid = f"bench{os.getpid()}x{n}"
    runc = ["runc", "--root", os.path.join(root, "runc")]
    for d in ("exits", "sock", "runc"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    pidfile = os.path.join(root, "conmon.pid")
    subprocess.run(["conmon", "--api-version", "1", "-c", cid, "-u", cid,
                    "-r", shutil.which("runc") or "runc",
                    "--runtime-arg", "--root", "--runtime-arg", os.path.join(root, "runc"),
                    "-b", os.path.join(root, "bundle"), "-p", os.path.join(root, "pid"),
                    "-l", f"k8s-file:{root}/log", "--exit-dir", f"{root}/exits",
                    "--socket-dir-path", f"{root}/sock", "-P", pidfile],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    try:
        # conmon's first process returns at once; runc create has run once its pid file is.
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(root, "pid")) and time.monotonic() < deadline:
            time.sleep(0.01)
        subprocess.run([*runc, "start", cid], check=True)
        with open(pidfile) as f:
            pid = int(f.read())
        time.sleep(0.5)
        return rss(pid)
    finally:
        subprocess.run([*runc, "kill", cid, "KILL"], check=False, stderr=subprocess.DEVNULL)
        subprocess.run([*runc, "delete", "-f", cid], check=False)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(root, "pid"))
        deadline = time.monotonic() + 30
        while os.path.exists(pidfile) and time.monotonic() < deadline:
            try:
                with open(pidfile) as f:
                    os.kill(int(f.read()), 0)
            except (ProcessLookupError, ValueError):
                break
            time.sleep(0.05)


def median_rss(samples: list[dict[str, int]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


def rss_table(rounds: int) -> str:
    rows = [("isolate-shim", median_rss([shim_rss() for _ in range(rounds)]),
             f"{_shim.binary()} ({'static' if _shim.init_binary() else 'dynamic'})")]
    if shutil.which("conmon") and shutil.which("runc") and os.path.exists(BUSYBOX):
        with busybox_bundle() as root:
            samples = [conmon_rss(root, i) for i in range(rounds)]
        version = subprocess.run(["conmon", "--version"], capture_output=True,
                                 text=True).stdout.split("\n")[0]
        rows.append(("conmon", median_rss(samples), f"{version}, runc, busybox bundle"))
    lines = ["| supervisor | VmRSS KiB | RssAnon KiB | RssFile KiB | ratio | notes |",
             "|---|---|---|---|---|---|"]
    base = rows[-1][1]["VmRSS"]
    for name, r, note in rows:
        lines.append(f"| {name} | {r['VmRSS']:.0f} | {r['RssAnon']:.0f} | {r['RssFile']:.0f} "
                     f"| {r['VmRSS'] / base:.2f}x | {note} |")
    if len(rows) == 1:
        lines.append("| conmon | - | - | - | - | skipped: conmon, runc or busybox missing |")
    return "\n".join(lines)


def init_table(rounds: int, ballast_mib: int) -> str:
    real = _shim.init_binary
    boxes = {}
    with contextlib.ExitStack() as stack:
        boxes["exec"] = stack.enter_context(Sandbox(init=True))
        _shim.init_binary = lambda: None  # type: ignore[assignment]
        try:
            boxes["fork"] = stack.enter_context(Sandbox(init=True))
        finally:
            _shim.init_binary = real  # type: ignore[assignment]
        boxes["none"] = stack.enter_context(Sandbox())
        for box in boxes.values():
            box.run(["/bin/true"])

        def run(kind: str) -> None:
            assert boxes[kind].run(["/bin/true"]).returncode == 0

        cands = [
            Candidate("Sandbox(init=True): exec'd isolate-init", lambda: run("exec"),
                      "pid 1 is the static binary, exec'd by the vfork child"),
            Candidate("Sandbox(init=True): fork-based INIT op", lambda: run("fork"),
                      "pid 1 is a fork of the caller (FORK_INTO_PIDNS)"),
            Candidate("Sandbox(): no init", lambda: run("none"), "the command is pid 1"),
        ]
        small = interleave(cands, rounds)
        ballast = bytearray(ballast_mib << 20)
        for i in range(0, len(ballast), 4096):
            ballast[i] = 1  # touched: its page tables are what a fork copies
        big = [attrs.evolve(r, name=f"{r.name} (caller holds {ballast_mib} MiB)")
               for r in interleave(cands[:2], rounds)]
        del ballast
    anchors = [("vs fork-based", cands[1].name), ("vs no init", cands[2].name)]
    out = table(small, anchors)
    # On a loaded machine the median carries other work's scheduling delays; the fastest
    # tenth shows what the work itself costs.
    p10 = ", ".join(f"{r.name.split(': ')[-1]} {ms(statistics.quantiles(r.samples, n=10)[0])}"
                    for r in small)
    out += f"\n\np10 (ms): {p10}\n\n" + table(big, [("vs fork-based", big[1].name)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--rss-rounds", type=int, default=5)
    parser.add_argument("--ballast-mib", type=int, default=1024)
    args = parser.parse_args()
    print("## bench_shim\n")
    print(f"`{command_line()}`; {machine_notes()}\n")
    print("### Idle memory of a container's supervisor (median of "
          f"{args.rss_rounds} containers)\n")
    print(rss_table(args.rss_rounds))
    print("\n### What an init costs: `Sandbox.run([\"/bin/true\"])`, warm sandbox\n")
    print(init_table(args.rounds, args.ballast_mib))


if __name__ == "__main__":
    main()
