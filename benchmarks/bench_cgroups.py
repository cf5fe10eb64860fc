"""Benchmark cgroup life cycles per backend, and what limits add to a sandbox's start-up.

Not a test: prints Markdown tables (medians, p90). Run as root, against the installed package
or a source tree built in place (see docs/performance.md):
    python benchmarks/bench_cgroups.py [--rounds N]
Per backend this host can act as (hybrid = what it is; v1 alone; v2 alone, which here has only
its core files and no controllers, so no limits), one cycle is: create (with the default
``isolate`` parent, as Sandbox does) + set limits + attach a running process + delete (which
kills it and waits, as a sandbox's exit does). Every cgroup is made below this process's own
cgroup in an ``isolate`` subtree and removed again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from _harness import Candidate, Result, command_line, interleave, machine_notes, ms, table
from _isolate_path import describe, pythonpath_prefix

from isolate.cgroups import BackendKind, CGroup, Layout, Limits, host_layout
from isolate.sandbox import Sandbox

LIMITS = Limits(memory_max="256M", pids_max=100, cpus=0.5)
TRUE = "/bin/true"


def _layouts() -> list[tuple[str, Layout, Limits | None]]:
    host = host_layout()
    out: list[tuple[str, Layout, Limits | None]] = [(host.kind.value + " (this host)", host,
                                                     LIMITS)]
    if host.kind is BackendKind.HYBRID:
        out.append(("v1 only", Layout(BackendKind.V1, None, host.v1, frozenset()), LIMITS))
        if host.v2 is not None:
            # The v2 mount here offers no controller: core files only, so no limits.
            out.append(("v2 only (core files, no controllers here)",
                        Layout(BackendKind.V2, host.v2, (), host.v2_controllers), None))
    return out


class Cycle:
    """One backend's cycle, remembering each step's time for the per-step table."""

    def __init__(self, layout: Layout, limits: Limits | None, attach: bool) -> None:
        self.layout, self.limits, self.attach = layout, limits, attach
        self.steps: dict[str, list[float]] = {"create": [], "set limits": [], "attach": [],
                                              "delete": []}
        self.totals: list[float] = []  # the four steps only, not the helper's start and reaping
        self.helper: subprocess.Popen[bytes] | None = None
        self._prepare()

    def _prepare(self) -> None:
        # The process to attach is started outside the timed part.
        if self.attach:
            self.helper = subprocess.Popen(["sleep", "60"])

    def __call__(self) -> None:
        t0 = time.perf_counter()
        cg = CGroup.create(layout=self.layout)
        t1 = time.perf_counter()
        try:
            if self.limits is not None:
                cg.set_limits(self.limits)
            t2 = time.perf_counter()
            if self.helper is not None:
                cg.add(self.helper.pid)
            t3 = time.perf_counter()
        finally:
            cg.delete()
        t4 = time.perf_counter()
        for name, dt in zip(self.steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            self.steps[name].append(dt)
        self.totals.append(t4 - t0)
        if self.helper is not None:
            self.helper.wait()
            self._prepare()

    def close(self) -> None:
        if self.helper is not None:
            self.helper.kill()
            self.helper.wait()


def cycle_tables(rounds: int) -> str:
    cycles: list[tuple[str, Cycle]] = []
    try:
        for name, layout, limits in _layouts():
            cycles.append((f"{name}: create + limits + attach + delete",
                           Cycle(layout, limits, True)))
            cycles.append((f"{name}: create + limits + delete, no process",
                           Cycle(layout, limits, False)))
        timed = interleave([Candidate(n, c, "limits: memory 256M, pids 100, 0.5 cpu"
                                      if c.limits else "no limits")
                            for n, c in cycles], rounds)
        results = [Result(r.name, r.note, tuple(c.totals[-rounds:]))
                   for r, (_, c) in zip(timed, cycles, strict=True)]
    finally:
        for _, c in cycles:
            c.close()
    lines = ["### Cgroup life cycle per backend", "", table(results), "",
             "Per step (medians, ms):", "",
             "| cycle | create | set limits | attach | delete |", "|---|---|---|---|---|"]
    for name, c in cycles:
        lines.append(f"| {name} | " + " | ".join(
            ms(statistics.median(v[-rounds:])) for v in c.steps.values()) + " |")
    return "\n".join(lines)


def _fresh(limits: Limits | None) -> Callable[[], object]:
    def fn() -> None:
        with Sandbox(limits=limits) as sb:
            sb.run([TRUE], check=True)
    return fn


def sandbox_table(rounds: int) -> str:
    plain = Sandbox().__enter__()
    limited = Sandbox(limits=LIMITS).__enter__()
    try:
        results = interleave([
            Candidate("Sandbox.run, warm, no limits", lambda: plain.run([TRUE], check=True),
                      "default sandbox (net ns)"),
            Candidate("Sandbox.run, warm, with limits", lambda: limited.run([TRUE], check=True),
                      "+ the child joins the sandbox's cgroup (one write per hierarchy)"),
            Candidate("fresh Sandbox + run + exit, no limits", _fresh(None), ""),
            Candidate("fresh Sandbox + run + exit, with limits", _fresh(LIMITS),
                      "+ create cgroup, set limits, join, delete"),
        ], rounds)
    finally:
        plain.close()
        limited.close()
    by = {r.name: r.median for r in results}
    warm = by["Sandbox.run, warm, with limits"] - by["Sandbox.run, warm, no limits"]
    fresh = (by["fresh Sandbox + run + exit, with limits"]
             - by["fresh Sandbox + run + exit, no limits"])
    return "\n".join([
        "### What limits add to a sandbox (memory 256M, pids 100, 0.5 cpu)", "",
        table(results, [("x no limits (warm)", "Sandbox.run, warm, no limits")]), "",
        f"Added latency, difference of medians: warm run {warm * 1000:+.2f} ms "
        f"(target < 1 ms: {'met' if warm < 0.001 else 'NOT met'}); fresh sandbox per run "
        f"{fresh * 1000:+.2f} ms (target < 1 ms: {'met' if fresh < 0.001 else 'NOT met'}).",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: cgroups are created under this process's own cgroup")
    t0 = time.monotonic()
    print(f"## bench_cgroups\n\nCommand: `{command_line(pythonpath_prefix())}`\n")
    print(f"Timed: {describe()}; host layout: {host_layout().kind.value}\n")
    print(cycle_tables(args.rounds), end="\n\n", flush=True)
    print(sandbox_table(args.rounds), end="\n\n", flush=True)
    print(f"Machine: {machine_notes()}; took {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
