"""Containers: create + start + wait of /bin/true from an image, against crun and runc on the
same unpacked root filesystem (and podman on the same image, when it works here); exec latency
against nsenter; 100 running containers: memory, and how long listing them takes.

crun 1.8 refuses this hybrid cgroup host, so the whole benchmark runs in a private mount
namespace where the v2 mount is unmounted (the machine's own mounts stay as they are): every
candidate sees the same host. Run as root:

    python benchmarks/bench_containers.py --rounds 40
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import _own_podman
import attrs
from _harness import Candidate, command_line, interleave, machine_notes, ms, table
from _isolate_path import bytecode_env, child_env, command, describe, pythonpath_prefix
from _second_python import SecondPython, add_option

BUSYBOX = "/bin/busybox"


def _tree(root: str) -> None:
    for d in ("bin", "etc", "tmp", "proc", "dev", "sys"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    shutil.copy2(BUSYBOX, os.path.join(root, "bin", "busybox"))
    for applet in ("sh", "true", "sleep", "cat"):
        os.symlink("busybox", os.path.join(root, "bin", applet))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")


def _bundle(tmp: str, name: str, rootfs: str, args: list[str]) -> str:
    """An OCI bundle close to what a Docker container gets: its namespaces (net included),
    /proc, /dev, devpts, shm, mqueue, sysfs, Docker's default capabilities and masks."""
    bundle = os.path.join(tmp, name)
    os.mkdir(bundle)
    caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
            "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
    config = {
        "ociVersion": "1.0.2",
        "process": {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin"],
                    "capabilities": {k: caps for k in ("bounding", "effective", "permitted")}},
        "root": {"path": rootfs, "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in
                                 ("pid", "network", "ipc", "uts", "mount", "cgroup")],
                  "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys",
                                  "/proc/timer_list", "/sys/firmware"],
                  "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                    "/proc/sysrq-trigger"]},
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def _oci(tool: str, bundle: str, state: str, extra: list[str]) -> Callable[[], object]:
    counter = iter(range(10**9))

    def fn() -> None:
        subprocess.run([tool, "--root", state, *extra, "run", "--bundle", bundle,
                        f"bench-{os.getpid()}-{next(counter)}"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return fn


def _works(fn: Callable[[], object]) -> str | None:
    try:
        fn()
    except (subprocess.CalledProcessError, OSError) as exc:
        return str(exc)
    return None


def _podman_env(tmp: str, cs: object) -> dict[str, str] | str:
    """An environment for podman with a storage and config of our own (runc, cgroupfs,
    rlimits root may set here) holding the same image, or why podman cannot run."""
    if shutil.which("podman") is None:
        return "podman: not installed"
    env = _own_podman.private_env(os.path.join(tmp, "podman"))
    archive = os.path.join(tmp, "busybox.tar")
    cs.images.save("busybox:latest", archive)  # type: ignore[attr-defined]
    load = subprocess.run(["podman", "load", "-i", archive], env=env, capture_output=True,
                          text=True)
    if load.returncode != 0:
        return f"podman: skipped, load failed: {load.stderr.strip()[-200:]}"
    return env


def _podman(env: dict[str, str] | str) -> Callable[[], object] | str:
    """``podman run --rm --network=none`` of the image, or why it cannot run."""
    if isinstance(env, str):
        return env

    def fn() -> None:
        subprocess.run(["podman", "run", "--rm", "--network=none", "busybox:latest",
                        "/bin/true"], env=env, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    err = _works(fn)
    if err:
        return f"podman: skipped, it failed here: {err}"
    return fn


#: The isolate CLI as a whole process: the installed command of the real interpreter (never
#: a pyenv shim), or python -m isolate.cli where none is installed.
CLI = command(sys.executable)


@functools.lru_cache(maxsize=1)
def _bytecode_env() -> dict[str, str]:
    return bytecode_env()[1]


def _whole_env(**extra: str) -> dict[str, str]:
    """The environment of a whole-process candidate: :func:`child_env` with bytecode caching
    on in one private prefix for the run (this machine sets PYTHONDONTWRITEBYTECODE, which
    would make each of them compile every module it imports from source), plus ``extra``."""
    return dict(_bytecode_env(), **extra)


def _cli(store_root: str, *args: str, second: SecondPython | None = None
         ) -> Callable[[], object]:
    """The CLI as a whole process (under the second interpreter with ``second``)."""
    if second is not None and second.exe is not None:
        cli, env = command(second.exe), dict(second.env, ISOLATE_STORE=store_root)
    else:
        cli, env = CLI, _whole_env(ISOLATE_STORE=store_root)

    def fn() -> None:
        subprocess.run([*cli, *args], env=env, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
    return fn


def _cli_detached(store_root: str) -> Callable[[], object]:
    """``isolate run -d --rm`` then ``isolate wait``: two whole processes."""
    env = _whole_env(ISOLATE_STORE=store_root)

    def fn() -> None:
        cid = subprocess.run([*CLI, "run", "-d", "busybox", "/bin/true"], env=env,
                             check=True, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True).stdout.strip()
        subprocess.run([*CLI, "wait", cid], env=env, check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL)
    return fn


def _image_store(tmp: str) -> object:
    """The store on disk (``tmp/store``) with the busybox image made from ``tmp/tree``."""
    from isolate.container import ContainerStore
    from isolate.image import ImageConfig, Store

    tree = os.path.join(tmp, "tree")
    os.mkdir(tree)
    _tree(tree)
    store = Store(os.path.join(tmp, "store"))
    store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))
    return ContainerStore(store)


def start_table(rounds: int, tmp: str, podman_env: dict[str, str] | str,
                second: SecondPython) -> str:
    """The create + start + wait table (a store on disk under ``tmp`` and one on tmpfs, in
    /dev/shm, removed afterwards whatever happens)."""
    shm = tempfile.mkdtemp(dir="/dev/shm")
    try:
        return _start_table(rounds, tmp, podman_env, second, shm)
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def _start_table(rounds: int, tmp: str, podman_env: dict[str, str] | str,
                 second: SecondPython, shm: str) -> str:
    from isolate.container import ContainerConfig, ContainerStore
    from isolate.image import ImageConfig, Store

    tree = os.path.join(tmp, "tree")
    stores = {}
    for where, base in (("disk", tmp), ("tmpfs", shm)):
        store = Store(os.path.join(base, "store"))
        store.from_directory(tree, "busybox:latest", config=ImageConfig(env=["PATH=/bin"]))
        stores[where] = (ContainerStore(store), base)
    inprocess = ContainerStore(stores["tmpfs"][0].images, supervisor="inprocess")
    supervisor = stores["disk"][0].supervisor_for_start()
    disk_store = stores["disk"][0]
    rootfs = disk_store.images.layer_dirs(disk_store.images.get("busybox"))[0]

    def isolate_cycle(cs: ContainerStore, remove: bool) -> Callable[[], object]:
        def fn() -> None:
            c = cs.create(ContainerConfig("busybox", ["/bin/true"]))
            c.start()
            c.wait()
            if remove:
                c.remove()
            else:
                pending.append(c)
        return fn

    pending: list[object] = []
    cands = [
        Candidate("Container create+start+wait (store on disk)",
                  isolate_cycle(stores["disk"][0], False),
                  "image overlay (rw upper), Docker's caps + seccomp profile + masks, "
                  "pid+mnt+net+ipc+uts+cgroup ns, own cgroup (v1: 8 hierarchies)"),
        Candidate("... + remove (store on disk)", isolate_cycle(stores["disk"][0], True),
                  "as above, then rm"),
        Candidate("Container create+start+wait (store on tmpfs)",
                  isolate_cycle(stores["tmpfs"][0], False), "as above, store in /dev/shm"),
        Candidate("... in-process supervisor (store on tmpfs)", isolate_cycle(inprocess, False),
                  "the fallback without isolate-shim: the first process is our child"),
        Candidate("isolate run --rm busybox /bin/true (store on disk)",
                  _cli(disk_store.images.root, "run", "--rm", "busybox", "/bin/true"),
                  "the CLI as a whole process: interpreter start, imports, create, start, "
                  "attach to the log, wait, remove", every=2),
        Candidate("isolate run --rm busybox /bin/true (store on tmpfs)",
                  _cli(stores["tmpfs"][0].images.root, "run", "--rm", "busybox",
                       "/bin/true"), "as above, the store in /dev/shm (no disk syncs)",
                  every=2),
        Candidate("isolate run -d busybox /bin/true + isolate wait (store on disk)",
                  _cli_detached(disk_store.images.root), "two whole processes", every=4),
    ]
    if second.exe is not None:
        for where in ("disk", "tmpfs"):
            cands.append(Candidate(
                f"isolate run --rm busybox /bin/true (store on {where}) {second.label}",
                _cli(stores[where][0].images.root, "run", "--rm", "busybox", "/bin/true",
                     second=second), "the same, under the second interpreter", every=2))
    cands[0] = attrs.evolve(cands[0], note=cands[0].note + f"; supervised by {supervisor}")
    state = os.path.join(tmp, "oci-state")
    bundle = _bundle(tmp, "bundle", rootfs, ["/bin/true"])
    notes = []
    for tool, extra in (("crun", ["--cgroup-manager=disabled"]), ("runc", [])):
        if shutil.which(tool) is None:
            notes.append(f"{tool}: not installed")
            continue
        fn = _oci(tool, bundle, state, extra)
        err = _works(fn)
        if err:
            notes.append(f"{tool}: skipped, it failed here: {err}")
            continue
        cands.append(Candidate(f"{tool} run", fn, "same rootfs read-only (bind), same "
                               "namespaces, mounts, caps, masks; no seccomp; "
                               f"{'no cgroup (disabled)' if tool == 'crun' else 'own cgroup'}"))
    podman = _podman(podman_env)
    if isinstance(podman, str):
        notes.append(podman)
    else:
        cands.append(Candidate("podman run --rm --network=none", podman,
                               "the same image (loaded from a docker-archive isolate saved); "
                               "runc, cgroupfs; its own defaults", every=4))
    results = interleave(cands, rounds)
    for c in pending:
        c.remove()  # type: ignore[attr-defined]
    subprocess.run([*CLI, "container", "prune", "-f"], stdout=subprocess.DEVNULL,
                   env=child_env(ISOLATE_STORE=disk_store.images.root), check=False)
    anchors = [(f"x {t} run", f"{t} run") for t in ("crun", "runc")]
    anchors.append(("x podman", "podman run --rm --network=none"))
    out = table(results, anchors)
    notes.append(second.describe())
    return out + "\n\n" + "\n".join(f"- {n}" for n in notes)


def exec_table(rounds: int, tmp: str, podman_env: dict[str, str] | str) -> str:
    from isolate.container import ContainerConfig, ContainerStore
    from isolate.image import Store

    cs = ContainerStore(Store(os.path.join(tmp, "store")))
    c = cs.create(ContainerConfig("busybox", ["sleep", "100000"]))
    c.start()
    pid = c.state.pid
    podman_ctr = None
    if not isinstance(podman_env, str):
        made = subprocess.run(["podman", "run", "-d", "--network=none", "busybox:latest",
                               "sleep", "100000"], env=podman_env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL)
        if made.returncode == 0:
            podman_ctr = made.stdout.strip()
    try:
        cands = [
            Candidate("Container.exec_run(['/bin/true'])", lambda: c.exec_run(["/bin/true"]),
                      "all namespaces + cgroup, Docker's identity, caps, seccomp"),
            Candidate("nsenter -a /bin/true", lambda: subprocess.run(
                ["nsenter", "-t", str(pid), "-a", "/bin/true"], check=True),
                      "namespaces only (no cgroup, caps, seccomp)"),
            Candidate("subprocess.run(['/bin/true'])", lambda: subprocess.run(
                ["/bin/true"], check=True), "no isolation"),
            Candidate("isolate exec CID /bin/true", _cli(cs.images.root, "exec", c.id,
                                                         "/bin/true"),
                      "the CLI as a whole process", every=2),
        ]
        anchors = [("x nsenter", "nsenter -a /bin/true")]
        if podman_ctr is not None:
            cands.append(Candidate("podman exec CTR /bin/true", lambda: subprocess.run(
                ["podman", "exec", podman_ctr, "/bin/true"], env=podman_env, check=True,
                stdin=subprocess.DEVNULL), "runc exec, conmon", every=2))
            anchors.append(("x podman exec", "podman exec CTR /bin/true"))
        return table(interleave(cands, rounds), anchors)
    finally:
        c.remove(force=True)
        if podman_ctr is not None:
            subprocess.run(["podman", "rm", "-f", "-t", "0", podman_ctr], env=podman_env,
                           capture_output=True)


def _timed_process(cpu: dict[str, list[float]], name: str, argv: list[str],
                   env: dict[str, str]) -> Callable[[], object]:
    """Start ``argv`` (stdout to /dev/null), wait, record its CPU time under ``name``."""
    def fn() -> None:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
        _, status, usage = os.wait4(pid, 0)
        if status != 0:
            raise SystemExit(f"{name}: {argv} exited with wait status {status}")
        cpu.setdefault(name, []).append(usage.ru_utime + usage.ru_stime)
    return fn


def _cpu(cpu: dict[str, list[float]], name: str) -> str:
    return f"{statistics.median(cpu[name][3:]) * 1000:.1f}"  # (after interleave's warm-up)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def hundred_table(tmp: str, count: int = 100) -> str:
    from isolate.container import ContainerConfig, ContainerStore
    from isolate.image import Store

    cs = ContainerStore(Store(os.path.join(tmp, "store")))
    before = _rss_kib(os.getpid())
    t0 = time.perf_counter()
    made = []
    for i in range(count):
        c = cs.create(ContainerConfig("busybox", ["sleep", "100000"], name=f"many-{i}"))
        c.start()
        made.append(c)
    started = time.perf_counter() - t0
    try:
        states = [c.state for c in made]
        container_rss = sum(_rss_kib(st.pid) for st in states)
        grown = _rss_kib(os.getpid()) - before
        shims = [_rss_kib(st.supervisor_pid) for st in states if st.supervisor == "shim"]
        times = []
        for _ in range(10):
            t = time.perf_counter()
            rows = cs.ps()
            times.append(time.perf_counter() - t)
        assert len(rows) == count
        code = ("from isolate.image import Store\nfrom isolate.container import ContainerStore\n"
                f"cs = ContainerStore(Store({cs.images.root!r}))\n"
                "print(len([r.fields() for r in cs.ps()]))")
        # Whole processes, sampled round-robin (load falls on all alike), with bytecode
        # caching on (_whole_env); CPU time (user + system) beside wall time, less disturbed
        # by other work.
        env = _whole_env(ISOLATE_STORE=cs.images.root)
        cpu: dict[str, list[float]] = {}
        whole = interleave([
            Candidate("pass", _timed_process(cpu, "pass", [sys.executable, "-c", "pass"],
                                             env)),
            Candidate("library", _timed_process(cpu, "library",
                                                [sys.executable, "-c", code], env)),
            Candidate("cli", _timed_process(cpu, "cli", [*CLI, "ps"], env)),
        ], rounds=15)
        by = {r.name: r for r in whole}
    finally:
        for c in made:
            c.remove(force=True)
    return "\n".join([
        "| measure | value |", "|---|---|",
        f"| {count} containers created and started | {started:.2f} s "
        f"({ms(started / count)} ms each) |",
        f"| their processes' RSS (sleep, pid 1 each) | {container_rss / 1024:.1f} MiB |",
        (f"| idle isolate-shim RSS, median of {len(shims)} | "
         f"{statistics.median(shims) / 1024:.2f} MiB (max {max(shims) / 1024:.2f}) |"
         if shims else f"| the supervising Python process grew by | {grown / 1024:.1f} MiB "
         "(in-process supervisor: threads, pipes) |"),
        f"| the calling Python process grew by | {grown / 1024:.1f} MiB |",
        f"| list + ps rows of {count}, in process (median of 10) | "
        f"{ms(statistics.median(times))} ms |",
        f"| the same as a whole `python -c` process (median of 15) | "
        f"{ms(by['library'].median)} ms (cpu {_cpu(cpu, 'library')} ms), of which `python -c "
        f"pass` {ms(by['pass'].median)} ms (cpu {_cpu(cpu, 'pass')} ms) |",
        f"| `isolate ps` of {count}, the CLI as a whole process (median of 15) | "
        f"{ms(by['cli'].median)} ms (cpu {_cpu(cpu, 'cli')} ms; target < 100 ms: "
        f"{'met' if by['cli'].median < 0.1 else 'NOT met'}) |",
    ])


def inside(args: argparse.Namespace) -> None:
    subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=False)
    tmp = tempfile.mkdtemp(prefix="isolate-bench-ctr-")
    try:
        print("## Containers (bench_containers)\n")
        print(f"`{command_line(pythonpath_prefix())}` -- {machine_notes()}\n")
        print(f"Timed: {describe()}\n")
        podman_env = _podman_env(tmp, _image_store(tmp))
        try:
            if not args.only_many:
                print("### create + start + wait of /bin/true\n")
                with SecondPython(args.second_python, os.path.join(tmp, "pyc")) as second:
                    print(start_table(args.rounds, tmp, podman_env, second))
                print("\n### exec latency\n")
                print(exec_table(args.rounds, tmp, podman_env))
        finally:
            _own_podman.reset(podman_env)
        print(f"\n### {args.many} running containers\n")
        print(hundred_table(tmp, args.many))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--many", type=int, default=100)
    ap.add_argument("--only-many", action="store_true",
                    help="only the table of --many running containers (memory, ps)")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    add_option(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_containers needs root")
    if args.inside:
        inside(args)
        return
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "--", sys.executable,
                           os.path.abspath(__file__), "--inside", "--rounds", str(args.rounds),
                           "--many", str(args.many),
                           *(["--only-many"] if args.only_many else []),
                           *([] if args.second_python is None
                             else ["--second-python", args.second_python])], env=child_env())
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
