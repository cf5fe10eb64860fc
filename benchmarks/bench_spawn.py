"""Benchmark sandbox start-up against bwrap, unshare and bare /bin/true; sb.call; import; memory.

Not a test: prints Markdown tables (medians, p90, ratios). Run as root, against the installed
package or a source tree built in place (see docs/performance.md):
    python benchmarks/bench_spawn.py [--rounds N] [--skip-memory] ...
Every candidate runs /bin/true to its exit. All spawn candidates are sampled round-robin in one
loop, so machine noise hits each alike and ratios within one run are comparable. Tools that are
missing (bwrap, unshare, crun) are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from _harness import Candidate, Result, command_line, interleave, machine_notes, table
from _isolate_path import bytecode_env, child_env, describe, pythonpath_prefix

from isolate import Limits, lowlevel
from isolate._plan import Mode, Op, OpKind, Plan
from isolate.sandbox import Sandbox

TRUE = "/bin/true"
PY = sys.executable  # the real interpreter, never a pyenv shim (which adds ~70 ms per start)
PYCACHE, ENV = bytecode_env()  # .pyc files on, in a private prefix removed at exit
COLD_ENV = child_env(PYTHONDONTWRITEBYTECODE="1")

BWRAP = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--ro-bind", "/", "/",
         "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev"]
BWRAP_NET = [*BWRAP[:4], "--unshare-net", *BWRAP[4:]]
UNSHARE = ["unshare", "-pfmiu", "--mount-proc"]
UNSHARE_NET = ["unshare", "-pfmiun", "--mount-proc"]

SB_ISOLATION = ("root-owned read-only host root, tmpfs /tmp, fresh /proc, tmpfs /dev with 6 "
                "device binds + devpts + shm + mqueue, masked /proc paths, caps dropped, "
                "no_new_privs, seccomp")
ISOLATE_RUN = [PY, "-m", "isolate.cli", "run"]
FRESH_LIMITS = Limits(memory_max="256M", pids_max=64)


def _run(argv: list[str], env: dict[str, str] | None = None) -> Callable[[], object]:
    def fn() -> None:
        subprocess.run(argv, check=True, env=env)
    return fn


def _posix_spawn() -> None:
    pid = os.posix_spawn(TRUE, [TRUE], {})
    os.waitpid(pid, 0)


def _fresh(**options: object) -> Callable[[], object]:
    def fn() -> None:
        with Sandbox(**options) as sb:
            sb.run([TRUE], check=True)
    return fn


def _have(tool: str, notes: list[str]) -> bool:
    if shutil.which(tool) is None:
        notes.append(f"{tool} not found: its rows are skipped")
        return False
    return True


# -- crun (optional) -----------------------------------------------------------------------

def _crun_bundle(tmp: str, rootfs: str, net: bool) -> str:
    """An OCI bundle running /bin/true on the host root read-only, like the bwrap line."""
    bundle = os.path.join(tmp, "crun-net" if net else "crun")
    os.mkdir(bundle)
    namespaces = [{"type": t} for t in ("pid", "mount", "ipc", "uts")]
    if net:
        namespaces.append({"type": "network"})
    config = {
        "ociVersion": "1.0.2",
        "process": {"args": [TRUE], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/usr/bin:/bin"], "noNewPrivileges": True},
        "root": {"path": rootfs, "readonly": True},
        "hostname": "sandbox",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777"]},
        ],
        "linux": {"namespaces": namespaces},
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    return bundle


def _crun(bundle: str, state: str) -> Callable[[], object]:
    counter = iter(range(10**9))

    def fn() -> None:
        subprocess.run(["crun", "--root", state, "--cgroup-manager=disabled", "run",
                        "--bundle", bundle, f"bench-{os.getpid()}-{next(counter)}"],
                       check=True, stdin=subprocess.DEVNULL)
    return fn


def crun_inside(rounds: int) -> None:
    """Run by ``--crun`` under ``unshare -m``: crun 1.8 refuses this hybrid cgroup host, so in
    this private mount namespace only, unmount the v2 mount; and since crun cannot pivot_root
    onto "/" itself, give it the host root through an rbind. Prints crun's table with bwrap
    and /bin/true as anchors measured here, in the same namespace."""
    subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
    tmp = tempfile.mkdtemp(prefix="isolate-bench-crun-")
    rootfs = os.path.join(tmp, "rootfs")
    os.mkdir(rootfs)
    subprocess.run(["mount", "--rbind", "/", rootfs], check=True)
    subprocess.run(["mount", "--make-rprivate", rootfs], check=True)
    state = os.path.join(tmp, "state")
    b1, b2 = _crun_bundle(tmp, rootfs, False), _crun_bundle(tmp, rootfs, True)
    try:
        results = _crun_interleave(rounds, b1, b2, state)
    finally:
        # The rbind lives in this private mount namespace only; undo it before removing.
        subprocess.run(["umount", "-R", rootfs], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print("### crun (separate run in a private mount namespace, see notes)\n")
    print(table(results, [("x /bin/true", "subprocess.run /bin/true"), ("x bwrap", "bwrap")]))


def _crun_interleave(rounds: int, b1: str, b2: str, state: str) -> list[Result]:
    return interleave([
        Candidate("subprocess.run /bin/true", _run([TRUE]), "none (bare)"),
        Candidate("bwrap", _run([*BWRAP, TRUE]), "as in the first table"),
        Candidate("bwrap --unshare-net", _run([*BWRAP_NET, TRUE]), "as in the second table"),
        Candidate("crun run", _crun(b1, state), "pid+mnt+ipc+uts, ro host root (rbind), tmpfs "
                  "/tmp+/dev, /proc, crun's default masks, caps; --cgroup-manager=disabled"),
        Candidate("crun run + net ns", _crun(b2, state), "as above + net"),
    ], rounds)


def crun_table(rounds: int) -> str:
    if shutil.which("crun") is None or shutil.which("unshare") is None:
        return "crun: not installed, skipped"
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "--", PY,
                           os.path.abspath(__file__), "--crun-inside", "--rounds",
                           str(rounds)], env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"crun: skipped, it failed here: {proc.stderr.strip()[-300:]}"
    return proc.stdout.strip()


# -- start-to-exit ---------------------------------------------------------------------------

def spawn_tables(rounds: int, whole_every: int) -> str:
    notes: list[str] = []
    nonet: list[Candidate] = [
        Candidate("subprocess.run /bin/true", _run([TRUE]), "none (bare)"),
        Candidate("os.posix_spawn /bin/true", _posix_spawn, "none; cheapest spawn from Python"),
    ]
    net: list[Candidate] = []
    if _have("unshare", notes):
        nonet.append(Candidate("unshare -pfmiu --mount-proc", _run([*UNSHARE, TRUE]),
                               "pid+mnt+ipc+uts, fresh /proc; root stays writable, no tmpfs"))
        net.append(Candidate("unshare -pfmiun --mount-proc", _run([*UNSHARE_NET, TRUE]),
                             "as above + net"))
    if _have("bwrap", notes):
        nonet.append(Candidate("bwrap", _run([*BWRAP, TRUE]),
                               "pid+mnt+ipc+uts, ro-bind /, tmpfs /tmp, /proc, /dev"))
        net.append(Candidate("bwrap --unshare-net", _run([*BWRAP_NET, TRUE]),
                             "as above + net (lo up)"))
    warm_nonet = Sandbox(network=True).__enter__()
    warm_net = Sandbox().__enter__()
    warm_init = Sandbox(init=True).__enter__()
    try:
        nonet += [
            Candidate("Sandbox.run, warm sandbox (network=True)",
                      lambda: warm_nonet.run([TRUE], check=True),
                      "per run: a pid ns, a copy of the sandbox's mount ns with a fresh /proc "
                      "and /tmp, a cgroup ns; the root (built at enter), uts+ipc shared; "
                      + SB_ISOLATION),
            Candidate("fresh Sandbox per run (network=True)", _fresh(network=True),
                      "enter (make uts+ipc, build the root) + run + exit; same isolation"),
            Candidate("whole process: isolate run --net host", _run(
                [*ISOLATE_RUN, "--net", "host", "--", TRUE], ENV),
                "python -m isolate.cli; same isolation as above", whole_every),
            Candidate("whole process: python -c pass", _run([PY, "-c", "pass"], ENV),
                      "interpreter start-up baseline (includes this Python's certifi .pth)",
                      whole_every),
        ]
        net += [
            Candidate("Sandbox.run, warm sandbox (default, net ns)",
                      lambda: warm_net.run([TRUE], check=True),
                      "as above, and the sandbox's net ns (lo up) shared too"),
            Candidate("Sandbox.run, warm sandbox (init=True)",
                      lambda: warm_init.run([TRUE], check=True),
                      "as above, under a tiny init as pid 1: a copy-on-write fork of this "
                      "process (pid 1) + a vfork for the command"),
            Candidate("fresh Sandbox per run (default, net ns)", _fresh(),
                      "enter (make net+uts+ipc, lo up, build the root) + run + exit"),
            Candidate("fresh Sandbox per run, Limits(memory_max, pids_max)",
                      _fresh(limits=FRESH_LIMITS),
                      "as above + create a cgroup (memory 256M, pids 64), join it, delete it"),
            Candidate("whole process: isolate run", _run(
                [*ISOLATE_RUN, "--", TRUE], ENV), "python -m isolate.cli, net ns",
                whole_every),
        ]
        results = interleave(nonet + net, rounds)
    finally:
        warm_nonet.close()
        warm_net.close()
        warm_init.close()
    names_nonet = {c.name for c in nonet}
    r1 = [r for r in results if r.name in names_nonet]
    r2 = [r for r in results if r.name not in names_nonet]
    bare = ("x /bin/true", "subprocess.run /bin/true")
    out = ["### Start to exit of /bin/true, pid+mnt+uts+ipc (no network namespace)", "",
           table(r1, [bare, ("x bwrap", "bwrap")]), "",
           "### The same with a network namespace added", "",
           table(r2 + [r for r in r1 if r.name == bare[1]],
                 [bare, ("x bwrap", "bwrap --unshare-net")])]
    out += [f"\nNote: {n}" for n in notes]
    return "\n".join(out) + "\n" + _targets(results)


def _targets(results: list[Result]) -> str:
    by = {r.name: r.median for r in results}
    sb = by.get("Sandbox.run, warm sandbox (default, net ns)")
    fresh = by.get("fresh Sandbox per run (default, net ns)")
    bw = by.get("bwrap --unshare-net")
    bare = by["subprocess.run /bin/true"]
    lines = ["", "Targets (medians of this run):"]
    if sb is not None and bw is not None:
        lines.append(f"- Sandbox.run (warm, with net ns) / bwrap --unshare-net = {sb / bw:.2f}x "
                     f"(target <= 0.6x): {'met' if sb / bw <= 0.6 else 'NOT met'}")
        if fresh is not None:
            lines.append(f"- fresh Sandbox per run / bwrap --unshare-net = {fresh / bw:.2f}x "
                         f"(same target, stricter reading): "
                         f"{'met' if fresh / bw <= 0.6 else 'NOT met'}")
    limited = by.get("fresh Sandbox per run, Limits(memory_max, pids_max)")
    if limited is not None and fresh is not None:
        extra = (limited - fresh) * 1000
        lines.append(f"- a fresh sandbox with Limits(memory_max, pids_max) costs {extra:.2f} ms "
                     f"more than one without (target < 1 ms): "
                     f"{'met' if extra < 1 else 'NOT met'}")
    if sb is not None:
        lines.append(f"- Sandbox.run (warm, with net ns) / subprocess.run /bin/true = "
                     f"{sb / bare:.2f}x (target <= 3x): {'met' if sb / bare <= 3 else 'NOT met'}")
    return "\n".join(lines)


# -- where the time goes ----------------------------------------------------------------------

def breakdown_table(rounds: int) -> str:
    """Spawn partial plans of the default sandbox's own plan with lowlevel.spawn + wait."""
    sb = Sandbox().__enter__()
    try:
        compiled = sb._compiled
        assert compiled is not None
        env = sb.environment()
        stdio = [(0, 0), (1, 1), (2, 2)]
        full = compiled.plan([TRUE], env, "/", stdio)
        base_ops = list(compiled.base.ops)
        # The base plan: joins (cgroup, shared namespaces incl. the sandbox's prepared mount
        # namespace, unshare a copy), a new session, then this process's /proc and /tmp with
        # their masks. The root itself is built once at enter (see "make shared namespaces").
        n_join = 0
        while n_join < len(base_ops) and base_ops[n_join].kind in (
                OpKind.SETNS, OpKind.UNSHARE, OpKind.CGROUP_JOIN, OpKind.FORK_INTO_PIDNS,
                OpKind.SETSID):
            n_join += 1
        joins, own_ops = base_ops[:n_join], base_ops[n_join:]
        tail = list(full.ops[len(base_ops):])
        seccomp_ops = [op for op in tail if op.kind is OpKind.SECCOMP]
        identity = [op for op in tail if op.kind not in (OpKind.SECCOMP, OpKind.EXEC,
                                                         OpKind.FDS, OpKind.CHDIR)]
        fds_exec = [op for op in tail if op.kind in (OpKind.FDS, OpKind.EXEC)]
        chdir = [op for op in tail if op.kind is OpKind.CHDIR]
        proc_tmp = own_ops[:2]  # a fresh /proc and a private /tmp
        flags = full.clone_flags

        def plan(clone_flags: int, ops: list[Op]) -> Plan:
            return Plan(clone_flags, Mode.VFORK).extend(ops)

        stages = [
            ("exec only (no namespaces)", plan(0, fds_exec)),
            ("+ new pid ns (clone flags)", plan(flags, fds_exec)),
            ("+ join net/uts/ipc and the sandbox root, unshare mnt+cgroup ns",
             plan(flags, joins + fds_exec)),
            ("+ fresh /proc and private /tmp", plan(flags, joins + proc_tmp + chdir + fds_exec)),
            ("+ masked and read-only /proc paths", plan(flags, joins + own_ops + chdir
                                                        + fds_exec)),
            ("+ capabilities, ids, no_new_privs", plan(flags, joins + own_ops + chdir
                                                        + identity + fds_exec)),
            ("+ seccomp = the whole plan", plan(flags, joins + own_ops + chdir + identity
                                                + seccomp_ops + fds_exec)),
        ]

        def spawn(p: Plan) -> Callable[[], object]:
            def fn() -> None:
                with lowlevel.spawn(p) as child:
                    child.wait()
            return fn

        cands = [Candidate(name, spawn(p), f"{len(p.ops)} ops") for name, p in stages]
        cands += [
            Candidate("Sandbox.popen + wait", lambda: sb.popen([TRUE]).wait(),
                      "whole plan + subprocess.Popen machinery"),
            Candidate("Sandbox.run", lambda: sb.run([TRUE]), "what users call"),
            Candidate("build plan only (no spawn)",
                      lambda: compiled.plan([TRUE], env, "/", stdio).encode(3, -1),
                      "Python: _Compiled.plan + encode"),
            Candidate("make shared namespaces only", lambda: _enter_cost(),
                      "Sandbox().__enter__ + close, no process run"),
        ]
        results = interleave(cands, rounds)
    finally:
        sb.close()
    return ("### Where the time goes (default sandbox, lowlevel.spawn of partial plans + wait)"
            "\n\n" + table(results, [("x exec only", "exec only (no namespaces)")]))


def _enter_cost() -> None:
    with Sandbox():
        pass


# -- sb.call ---------------------------------------------------------------------------------

def call_table(rounds: int) -> str:
    sb = Sandbox().__enter__()
    try:
        sb.call(abs, -1)  # start the zygote

        def first_call() -> None:
            with Sandbox() as s:
                s.call(abs, -1)

        data = bytes(1 << 20)
        results = interleave([
            Candidate("sb.call(abs, -1), warm", lambda: sb.call(abs, -1),
                      "fork of the zygote + pickle round trip"),
            Candidate("sb.call(len, 1 MiB bytes), warm", lambda: sb.call(len, data),
                      "argument of 1 MiB"),
            Candidate("fresh Sandbox + first sb.call", first_call,
                      "enter + start the zygote interpreter + call + exit", 5),
        ], rounds)
    finally:
        sb.close()
    r = results[0].median
    return ("### sb.call round trip\n\n" + table(results) +
            f"\n\nTarget: warm sb.call round trip {r * 1000:.2f} ms (target < 3 ms): "
            f"{'met' if r < 0.003 else 'NOT met'}")


# -- import time -----------------------------------------------------------------------------

_IMPORT_PROBE = ("import time; t0 = time.perf_counter(); import isolate; "
                 "t1 = time.perf_counter(); import isolate.sandbox; "
                 "t2 = time.perf_counter(); print(t1 - t0, t2 - t0)")


def _import_times(env: dict[str, str], runs: int) -> tuple[float, float]:
    top: list[float] = []
    sandbox: list[float] = []
    for _ in range(runs):
        out = subprocess.run([PY, "-c", _IMPORT_PROBE], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        top.append(float(out[0]))
        sandbox.append(float(out[1]))
    return statistics.median(top), statistics.median(sandbox)


def import_table(runs: int) -> str:
    tm, sm = _import_times(ENV, runs)
    ctm, csm = _import_times(COLD_ENV, max(3, runs // 3))
    results = interleave([
        Candidate("python -c pass", _run([PY, "-c", "pass"], ENV),
                  "baseline: this interpreter's start-up, certifi .pth included"),
        Candidate("python -S -c pass", _run([PY, "-S", "-c", "pass"], ENV),
                  "no site: shows the .pth start-up cost that is not ours"),
        Candidate("python -c 'import isolate'", _run([PY, "-c", "import isolate"], ENV), ""),
        Candidate("python -c 'import isolate.sandbox'",
                  _run([PY, "-c", "import isolate.sandbox"], ENV), "what Sandbox users pay"),
    ], runs)
    # One -X importtime run: the biggest cumulative imports below isolate.sandbox.
    err = subprocess.run([PY, "-X", "importtime", "-c", "import isolate.sandbox"], env=ENV,
                         check=True, capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), int(m.group(1)), len(m.group(3)), m.group(4)))
    biggest = sorted((r for r in rows if r[2] <= 5), reverse=True)[:12]
    lines = [
        "### Import time", "",
        f"In-process, timed around the import statement (median of {runs} fresh interpreters):",
        "",
        "| import | median ms | target |",
        "|---|---|---|",
        f"| import isolate | {tm * 1000:.2f} | < 30 ms: {'met' if tm < 0.03 else 'NOT met'} |",
        f"| import isolate + isolate.sandbox | {sm * 1000:.2f} | < 30 ms: "
        f"{'met' if sm < 0.03 else 'NOT met'} |",
        f"| import isolate, no .pyc (PYTHONDONTWRITEBYTECODE=1, as set here) | "
        f"{ctm * 1000:.2f} | (not what an installed package costs) |",
        f"| import isolate + isolate.sandbox, no .pyc | {csm * 1000:.2f} | |",
        "", "Whole interpreter, start to exit:", "", table(results, [
            ("x python -c pass", "python -c pass")]), "",
        "Largest cumulative imports under `import isolate.sandbox` (one `-X importtime` run, "
        "top-level and first-level entries):", "",
        "| module | cumulative us | self us |", "|---|---|---|",
    ]
    lines += [f"| {'. ' * (depth // 2)}{name} | {cum} | {own} |"
              for cum, own, depth, name in biggest]
    return "\n".join(lines)


# -- peak memory -----------------------------------------------------------------------------

_MEM_PROBE = r"""
import os, resource, sys, contextlib
def rss():
    # VmHWM, not ru_maxrss: after a vfork+exec ru_maxrss starts at the parent's peak.
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
def fds(): return len(os.listdir("/proc/self/fd"))
mode = sys.argv[1]
if mode == "baseline":
    print(rss(), fds()); raise SystemExit
from isolate.sandbox import Sandbox
before = fds()
if mode == "import":
    pass
elif mode == "fresh":
    for _ in range(100):
        with Sandbox() as sb:
            sb.run(["/bin/true"], check=True)
elif mode == "warm":
    with Sandbox() as sb:
        for _ in range(100):
            sb.run(["/bin/true"], check=True)
elif mode == "open":
    with contextlib.ExitStack() as stack:
        boxes = [stack.enter_context(Sandbox()) for _ in range(100)]
        for sb in boxes:
            sb.run(["/bin/true"], check=True)
elif mode == "call":
    with Sandbox() as sb:
        for _ in range(100):
            sb.call(abs, -1)
print(rss(), fds() - before)
"""


def memory_table() -> str:
    modes = [
        ("baseline", "python -c: interpreter only"),
        ("import", "import isolate.sandbox"),
        ("fresh", "100 sandboxes one after another, each runs /bin/true"),
        ("warm", "one sandbox runs /bin/true 100 times"),
        ("open", "100 sandboxes open at once, each runs /bin/true"),
        ("call", "one sandbox, 100 sb.call (parent side only)"),
    ]
    lines = ["### Peak memory (VmHWM, peak resident set, of the calling process)", "",
             "| process | peak RSS MiB | over baseline MiB | fds left open |", "|---|---|---|---|"]
    base = 0
    for mode, what in modes:
        out = subprocess.run([PY, "-c", _MEM_PROBE, mode], env=ENV, check=True,
                             capture_output=True, text=True).stdout.split()
        kib, fds = int(out[0]), int(out[1])
        if mode == "baseline":
            base = kib
        lines.append(f"| {what} | {kib / 1024:.1f} | {(kib - base) / 1024:.1f} | "
                     f"{'-' if mode == 'baseline' else fds} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100, help="samples of each fast candidate")
    ap.add_argument("--whole-every", type=int, default=4,
                    help="sample whole-process candidates every N-th round")
    ap.add_argument("--crun", action="store_true", help="also time crun (if it works here)")
    ap.add_argument("--crun-inside", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip", action="append", default=[],
                    choices=("spawn", "crun", "breakdown", "call", "import", "memory"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the comparison is with root bwrap/unshare")
    if args.crun_inside:
        try:
            crun_inside(args.rounds)
        finally:
            shutil.rmtree(PYCACHE, ignore_errors=True)
        return
    t0 = time.monotonic()
    print(f"## bench_spawn\n\nCommand: `{command_line(pythonpath_prefix())}`; timed: "
          f"{describe()}\n")
    sections: list[tuple[str, Callable[[], str]]] = [
        ("spawn", lambda: spawn_tables(args.rounds, args.whole_every)),
        ("crun", lambda: crun_table(args.rounds) if args.crun else "crun: not asked (--crun)"),
        ("breakdown", lambda: breakdown_table(args.rounds)),
        ("call", lambda: call_table(args.rounds)),
        ("import", lambda: import_table(max(10, args.rounds // 5))),
        ("memory", memory_table),
    ]
    try:
        for name, fn in sections:
            if name not in args.skip:
                print(fn(), end="\n\n", flush=True)
    finally:
        shutil.rmtree(PYCACHE, ignore_errors=True)
    print(f"Machine: {machine_notes()}; took {time.monotonic() - t0:.0f} s; "
          f"self ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")


if __name__ == "__main__":
    main()
