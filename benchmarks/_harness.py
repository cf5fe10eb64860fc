"""Shared timing harness for the benchmarks: round-robin sampling, medians, Markdown tables.

Owns how candidates are timed against each other; it knows nothing about isolate. Candidates
are sampled interleaved (one sample of each per round, the order rotated every round) so that
load from other processes on this shared machine falls on all of them alike.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import attrs


@attrs.frozen
class Candidate:
    """One thing to time. ``every``: take a sample only every N-th round (slow candidates)."""

    name: str
    fn: Callable[[], object]
    note: str = ""
    every: int = 1


@attrs.frozen
class Result:
    name: str
    note: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=10, method="inclusive")[8]


def interleave(cands: Sequence[Candidate], rounds: int, warmup: int = 3) -> list[Result]:
    """Time every candidate ``rounds`` times, round-robin, after ``warmup`` untimed rounds."""
    samples: dict[str, list[float]] = {c.name: [] for c in cands}
    n = len(cands)
    for r in range(-warmup, rounds):
        start = r % n if n else 0
        for c in [*cands[start:], *cands[:start]]:
            if r >= 0 and r % c.every:
                continue
            t0 = time.perf_counter()
            c.fn()
            dt = time.perf_counter() - t0
            if r >= 0:
                samples[c.name].append(dt)
    return [Result(c.name, c.note, tuple(samples[c.name])) for c in cands]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def table(results: Sequence[Result], anchors: Sequence[tuple[str, str]] = ()) -> str:
    """A Markdown table: median and p90 in ms, and the ratio of medians to each anchor.

    ``anchors`` are (column title, candidate name) pairs; a missing anchor leaves its column
    out.
    """
    by_name = {r.name: r for r in results}
    cols = [(title, by_name[name]) for title, name in anchors if name in by_name]
    head = ["candidate", "median ms", "p90 ms", "n", *[t for t, _ in cols], "isolation / notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ratios = [f"{r.median / a.median:.2f}x" for _, a in cols]
        row = [r.name, ms(r.median), ms(r.p90), str(len(r.samples)), *ratios, r.note]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def machine_notes() -> str:
    """One line on where and when this ran: date, cores, load, kernel, Python."""
    load = os.getloadavg()
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}; {os.cpu_count()} cores; load average "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end; Linux "
            f"{platform.release()}; Python {platform.python_version()} ({sys.executable})")


def command_line(prefix: str = "") -> str:
    """How this benchmark was started (``prefix``: environment, e.g. ``PYTHONPATH=src ``)."""
    return f"{prefix}python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])
