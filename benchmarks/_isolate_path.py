"""Which isolate the benchmarks time, and how the processes they start find the same one.

A benchmark imports isolate as its interpreter finds it: the installed package (``pip install
.``), or a source tree on ``PYTHONPATH`` whose C core was built in place. Importing this module
first turns a tree without its C core into one line saying what to do, and ``child_env`` puts
the directory isolate came from on the ``PYTHONPATH`` of child processes, so
``python -m isolate.cli`` and import probes time the very same code.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys

import isolate

__all__ = ["PACKAGE_DIR", "child_env", "command", "describe", "pythonpath_prefix"]

#: The directory that holds the ``isolate`` package being timed.
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(isolate.__file__)))
_WORKTREE_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

try:
    import isolate._sys  # needs the built C core, isolate._native._isolate
except ModuleNotFoundError as exc:
    if "_native" not in str(exc):
        raise
    sys.exit(f"isolate from {PACKAGE_DIR} has no built C core ({exc}): run the benchmarks "
             "against the installed package (pip install . ; no PYTHONPATH=src), or build "
             "the tree in place first (python setup.py build_ext --inplace)")


def command(python: str) -> list[str]:
    """The ``isolate`` command as a user runs it under ``python``: the script pip installed
    beside that interpreter (bin/isolate, which loads nothing before isolate's modules), when
    its first line names that interpreter; else ``python -m isolate.cli`` (a tree on
    PYTHONPATH with nothing installed), which also loads runpy (~3 ms)."""
    script = os.path.join(os.path.dirname(python), "isolate")
    try:
        with open(script, "rb") as f:
            first = f.readline().decode(errors="replace").strip()
    except OSError:
        return [python, "-m", "isolate.cli"]
    named = first[2:].split()[0] if first.startswith("#!") and first[2:].split() else ""
    if named and os.path.realpath(named) == os.path.realpath(python):
        return [script]
    return [python, "-m", "isolate.cli"]


def child_env(base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """``base`` (default: this environment) with isolate's directory on ``PYTHONPATH``."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = PACKAGE_DIR
    env.update(extra)
    return env


def bytecode_env() -> tuple[str, dict[str, str]]:
    """A private ``PYTHONPYCACHEPREFIX`` and :func:`child_env` using it, with bytecode caching
    on: this machine's environment sets PYTHONDONTWRITEBYTECODE, which makes every import
    compile from source -- not what an installed package costs its users -- and the prefix
    keeps .pyc files out of the worktree. The directory is removed when this process exits,
    whoever imported the module that made it (its children, which run no atexit of ours, never
    remove it)."""
    import tempfile

    path = tempfile.mkdtemp(prefix="isolate-bench-pyc-")
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    env = child_env({k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
                    PYTHONPYCACHEPREFIX=path)
    return path, env


def _from_worktree() -> bool:
    try:
        return os.path.samefile(PACKAGE_DIR, _WORKTREE_SRC)
    except OSError:
        return False


def pythonpath_prefix() -> str:
    """``"PYTHONPATH=src "`` when the worktree's source is timed, else nothing."""
    return "PYTHONPATH=src " if _from_worktree() else ""


def describe() -> str:
    """Where the timed isolate lives, for the report."""
    where = "this worktree's src, built in place" if _from_worktree() else "installed"
    return f"isolate {isolate.__version__} from {PACKAGE_DIR} ({where})"
