"""Whole-process start-up: `isolate run` against the interpreter's own start and against podman.

Not a test: prints Markdown tables (medians, p90, ratios within one run). Run as root, against
the installed package or a tree built in place (see docs/performance.md):
    python benchmarks/bench_startup.py [--rounds N]
Every candidate is a fresh process that runs /bin/true (or nothing) to its exit, sampled
round-robin so that load from other processes falls on all of them alike; the CPU time
(user + system) of each child is reported beside its wall time, since CPU time is less
disturbed by other work on a shared machine. The isolate rows and ``python -c pass`` are timed
under a second interpreter too (Debian's python3 in a venv of its own: see _second_python.py,
``--second-python``). podman runs with a containers.conf and storage of
this benchmark's own (runc, cgroupfs, rlimits root may set here), always --network=none; it is
skipped with a note when it is missing or fails here.
"""

from __future__ import annotations

import argparse
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
from _harness import Candidate, Result, command_line, interleave, machine_notes, table
from _isolate_path import bytecode_env, command, describe, pythonpath_prefix
from _second_python import SecondPython, add_option

PY = sys.executable  # the real interpreter, never a pyenv shim (which adds ~70 ms per start)
BUSYBOX = "/bin/busybox"
PYCACHE, ENV = bytecode_env()  # .pyc files on, in a private prefix removed at exit

_CPU: dict[str, list[float]] = {}


def _process(name: str, argv: list[str], env: dict[str, str] | None = None
             ) -> Callable[[], object]:
    """Start ``argv``, wait for it, record its CPU time under ``name``; fail on non-zero."""
    def fn() -> None:
        pid = os.posix_spawn(argv[0], argv, env if env is not None else ENV)
        _, status, usage = os.wait4(pid, 0)
        if status != 0:
            raise SystemExit(f"{name}: {argv} exited with wait status {status}")
        _CPU.setdefault(name, []).append(usage.ru_utime + usage.ru_stime)
    return fn


def _cpu_ms(name: str, rounds: int) -> str:
    samples = _CPU.get(name, [])[-rounds:]
    return f"{statistics.median(samples) * 1000:.1f}" if samples else "-"


def _image(tmp: str) -> tuple[str, str]:
    """A busybox image in a store of this run's own: (store dir, image name)."""
    from isolate.image import ImageConfig, Store

    tree = os.path.join(tmp, "tree")
    for d in ("bin", "etc", "tmp", "proc", "dev", "sys"):
        os.makedirs(os.path.join(tree, d))
    shutil.copy2(BUSYBOX, os.path.join(tree, "bin", "busybox"))
    for applet in ("sh", "true"):
        os.symlink("busybox", os.path.join(tree, "bin", applet))
    with open(os.path.join(tree, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
    store = Store(os.path.join(tmp, "store"))
    store.from_directory(tree, "localhost/bench/busybox:1", config=ImageConfig(
        env=["PATH=/bin"], cmd=["/bin/sh"]))
    return store.root, "localhost/bench/busybox:1"


class Podman:
    """podman with a config, storage, temp dir and locks of this benchmark's own
    (:func:`_own_podman.private_env`)."""

    def __init__(self, tmp: str) -> None:
        self.base = os.path.join(tmp, "podman")
        self.env = _own_podman.private_env(self.base)
        self.exe = shutil.which("podman") or "podman"

    def load(self, store_root: str, name: str) -> str | None:
        """Load ``name`` from the isolate store; None, or why podman cannot be used here."""
        from isolate.image import Store

        archive = os.path.join(self.base, "image.tar")
        Store(store_root).save(name, archive)
        for argv in (["load", "-i", archive], ["run", "--rm", "--network=none", name, "true"]):
            r = subprocess.run([self.exe, *argv], env=self.env, capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                return f"podman {argv[0]} failed here: {r.stderr.strip()[-300:]}"
        return None

    def close(self) -> None:
        _own_podman.reset(self.env)


#: The rows a second interpreter repeats: (name, key, argv after the interpreter).
def _second_rows(exe: str, store: str, image: str) -> list[tuple[str, str, list[str]]]:
    run = [*command(exe), "run"]
    return [("python -c pass", "pass2", [exe, "-c", "pass"]),
            ("isolate run -- /bin/true", "run2", [*run, "--", "/bin/true"]),
            ("python -m isolate.cli run -- /bin/true", "runm2",
             [exe, "-m", "isolate.cli", "run", "--", "/bin/true"]),
            ("isolate run --image IMAGE /bin/true", "image2",
             [*run, "--store", store, "--image", image, "/bin/true"])]


def whole_process_table(rounds: int, tmp: str, with_podman: bool, second: SecondPython) -> str:
    store, image = _image(tmp)
    run = [*command(PY), "run"]
    cands = [
        Candidate("python -c pass", _process("pass", [PY, "-c", "pass"]),
                  "this interpreter's own start-up (its site and .pth files included)"),
        Candidate("python -c 'import isolate.sandbox'",
                  _process("import", [PY, "-c", "import isolate.sandbox"]), ""),
        Candidate("isolate run -- /bin/true", _process("run", [*run, "--", "/bin/true"]),
                  "the default sandbox: host root read-only, net+pid+mnt+uts+ipc+cgroup ns, "
                  "no caps, seccomp"),
        Candidate("python -m isolate.cli run -- /bin/true", _process(
            "runm", [PY, "-m", "isolate.cli", "run", "--", "/bin/true"]),
            "the same through python -m (runpy: ~3 ms more)"),
        Candidate("isolate run --image IMAGE /bin/true", _process("image", [
            *run, "--store", store, "--image", image, "/bin/true"]),
            "busybox image from a local store: throwaway writable overlay, same isolation"),
    ]
    keys = ["pass", "import", "run", "runm", "image"]
    if second.exe is not None:
        for name, key, argv in _second_rows(second.exe, store, image):
            cands.append(Candidate(f"{name} {second.label}", _process(
                key, argv, second.env), "the same, under the second interpreter"))
            keys.append(key)
    notes = [second.describe(), "the isolate rows run the installed command, "
             f"`{' '.join([*run, '...'])}`" + (f" (and `{' '.join(command(second.exe))} ...` "
                                               "under the second interpreter)"
                                               if second.exe is not None else "")]
    podman: Podman | None = None
    if not with_podman:
        notes.append("podman left out (--no-podman)")
    elif shutil.which("podman") is None:
        notes.append("podman is not installed: its row is skipped")
    else:
        podman = Podman(tmp)
        why = podman.load(store, image)
        if why is not None:
            notes.append(f"podman skipped: {why}")
            podman.close()
            podman = None
        else:
            cands.append(Candidate("podman run --rm --network=none IMAGE /bin/true", _process(
                "podman", [podman.exe, "run", "--rm", "--network=none", image, "/bin/true"],
                podman.env), "the same image (loaded from a docker-archive isolate saved); "
                "runc, cgroupfs; podman's defaults", every=2))
            keys.append("podman")
    try:
        results = interleave(cands, rounds)
    finally:
        if podman is not None:
            podman.close()
    out = [table(results, [("x python -c pass", "python -c pass"),
                           ("x podman", "podman run --rm --network=none IMAGE /bin/true")]),
           "", "CPU time (user + system) of each child, medians:", "",
           "| candidate | cpu ms |", "|---|---|"]
    key_of = dict(zip([c.name for c in cands], keys, strict=True))
    out += [f"| {r.name} | {_cpu_ms(key_of[r.name], len(r.samples))} |" for r in results]
    out += [f"\nNote: {n}" for n in notes]
    return "\n".join(out) + "\n" + _targets(results, second.label)


def _targets(results: list[Result], label: str) -> str:
    by = {r.name: r.median for r in results}
    lines = ["", "Targets (medians of this run):"]
    n = len(results[0].samples)
    podman = by.get("podman run --rm --network=none IMAGE /bin/true")
    for suffix, run_key, pass_key in (("", "run", "pass"), (f" {label}", "run2", "pass2")):
        if f"python -c pass{suffix}" not in by:
            continue
        ratio = by[f"isolate run -- /bin/true{suffix}"] / by[f"python -c pass{suffix}"]
        lines.append(f"- isolate run -- /bin/true / python -c pass{suffix} = {ratio:.2f}x "
                     f"(target <= 2.5x): {'met' if ratio <= 2.5 else 'NOT met'}")
        cpu = statistics.median(_CPU[run_key][-n:]) / statistics.median(_CPU[pass_key][-n:])
        lines.append(f"  (in CPU time: {cpu:.2f}x)")
        if podman is not None:
            ratio = by[f"isolate run --image IMAGE /bin/true{suffix}"] / podman
            lines.append(f"- isolate run --image IMAGE{suffix} / podman run = {ratio:.2f}x "
                         f"(target <= 0.4x): {'met' if ratio <= 0.4 else 'NOT met'}")
    return "\n".join(lines)


_PROBE = ("import time; t0 = time.perf_counter(); import isolate.sandbox; "
          "print(time.perf_counter() - t0)")


def import_table(runs: int) -> str:
    """``import isolate.sandbox`` timed around the statement, in fresh interpreters."""
    times = []
    for _ in range(runs):
        out = subprocess.run([PY, "-c", _PROBE], env=ENV, check=True, capture_output=True,
                             text=True).stdout
        times.append(float(out))
    med = statistics.median(times)
    loaded = subprocess.run(
        [PY, "-c", "import sys; before = set(sys.modules); import isolate.sandbox; "
         "import json; print(json.dumps(sorted(m for m in set(sys.modules) - before "
         "if m.startswith('isolate'))))"],
        env=ENV, check=True, capture_output=True, text=True).stdout
    return "\n".join([
        "### import isolate.sandbox", "",
        f"In-process, timed around the import statement (median of {runs} fresh "
        "interpreters): ", "",
        "| import | median ms | min ms | target |", "|---|---|---|---|",
        f"| import isolate.sandbox | {med * 1000:.2f} | {min(times) * 1000:.2f} | <= 15 ms: "
        f"{'met' if med <= 0.015 else 'NOT met'} |", "",
        f"isolate modules it loads: {', '.join(json.loads(loaded))}"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=40, help="samples of each candidate")
    ap.add_argument("--no-podman", action="store_true", help="leave podman out")
    add_option(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: podman and the sandbox run as root here")
    t0 = time.monotonic()
    print(f"## bench_startup\n\nCommand: `{command_line(pythonpath_prefix())}`; timed: "
          f"{describe()}\n")
    tmp = tempfile.mkdtemp(prefix="isolate-bench-startup-")
    try:
        print("### Whole process, start to exit\n")
        with SecondPython(args.second_python, PYCACHE) as second:
            print(whole_process_table(args.rounds, tmp, not args.no_podman, second),
                  end="\n\n", flush=True)
        print(import_table(max(10, args.rounds)), end="\n\n", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(PYCACHE, ignore_errors=True)
    print(f"Machine: {machine_notes()}; took {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
