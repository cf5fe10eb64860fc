"""Run code as if the process lived in a cgroup of the test's own, so that races and orphan
sweeps happen in a private ``isolate`` base (below that cgroup) and never in the machine's.

Two ways: :func:`layout_below` gives a :class:`Layout` that places *this* process there (for
in-process threads, no process moves), and :func:`argv_in` wraps a command so that the new
process joins the cgroup before it execs (for separate processes and the CLI).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

import attrs

from isolate.cgroups import CGroup, Hierarchy, Layout

__all__ = ["argv_in", "dirs_of", "layout_below", "python_in"]

# Join the cgroups whose cgroup.procs files are listed (JSON), then exec the command.
_JOIN = ("import json, os, sys\n"
         "for path in json.loads(sys.argv[1]):\n"
         "    with open(path, 'w') as f:\n"
         "        f.write('0')\n"
         "os.execv(sys.argv[2], sys.argv[2:])\n")


def dirs_of(cg: CGroup, elsewhere: Mapping[str, str] | None = None) -> dict[str, str]:
    """``cg``'s directory in each hierarchy, except where ``elsewhere`` (key -> dir) says."""
    return {**cg.dirs, **(elsewhere or {})}


def _cgroup_path(h: Hierarchy, directory: str) -> str:
    rel = os.path.relpath(directory, h.mount)
    root = h.root.rstrip("/")
    return f"{root}/{rel}" if rel != "." else (root or "/")


def layout_below(cg: CGroup, elsewhere: Mapping[str, str] | None = None) -> Layout:
    """The layout a process in ``cg`` (in the hierarchies of ``elsewhere``: in that dir)
    would detect: pass it as ``layout=`` and the default parent is ``cg``'s ``isolate``."""
    dirs = dirs_of(cg, elsewhere)
    layout = cg.layout

    def moved(h: Hierarchy) -> Hierarchy:
        return attrs.evolve(h, self_path=_cgroup_path(h, dirs[h.key]))

    return attrs.evolve(layout, v2=moved(layout.v2) if layout.v2 is not None else None,
                        v1=tuple(moved(h) for h in layout.v1))


def argv_in(cg: CGroup, argv: Sequence[str],
            elsewhere: Mapping[str, str] | None = None) -> list[str]:
    """``argv`` (its program an absolute path) run by a process that first joins ``cg``
    (in the hierarchies of ``elsewhere``: that dir) in every hierarchy."""
    procs = [os.path.join(d, "cgroup.procs") for d in dirs_of(cg, elsewhere).values()]
    return [sys.executable, "-S", "-c", _JOIN, json.dumps(procs), *argv]


def python_in(cg: CGroup, code: str, elsewhere: Mapping[str, str] | None = None) -> list[str]:
    """Run Python ``code`` (this interpreter) in ``cg``, as :func:`argv_in`."""
    return argv_in(cg, [sys.executable, "-c", code], elsewhere)


def in_threads(step: Callable[[], object], rounds: int, threads: int = 4) -> list[str]:
    """Run ``step`` ``rounds`` times in each of ``threads`` threads at once; every failure
    (whatever its type) as ``"Type: message"``."""
    errors: list[str] = []
    lock = threading.Lock()

    def churn() -> None:
        for _ in range(rounds):
            try:
                step()
            except Exception as exc:
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=churn) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors
