"""A second interpreter for the whole-process candidates: Debian's ``/usr/bin/python3`` in a
venv of its own, without system site packages -- the interpreter a fresh machine runs the
README's ``pip install`` with.

Why: this machine's pyenv interpreter (the one the benchmarks run under) pays 15-24 ms at
every start in ``site`` for a ``.pth`` hook the machine's environment installed (it imports
certifi, and with it importlib.resources, pathlib, re, zipfile...). That hook is neither
isolate's nor on a user's machine, so every whole-process row is also timed under an
interpreter without it, in the same round-robin loop (ratios within one run).

The venv is made under /var/tmp with this worktree ``pip install``-ed into it and removed
afterwards (``--second-python PATH`` names an interpreter that already has isolate instead;
``--second-python none`` leaves the rows out). Its children get no ``PYTHONPATH`` (they import
the venv's own isolate, attrs and cffi) and, as the first interpreter's, bytecode caching on
in a private prefix.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ["DEBIAN_PYTHON", "SecondPython", "add_option"]

DEBIAN_PYTHON = "/usr/bin/python3"
_WORKTREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def add_option(parser: argparse.ArgumentParser) -> None:
    """``--second-python`` on a benchmark's parser."""
    parser.add_argument(
        "--second-python", metavar="PATH|none", default=None,
        help="also time the whole-process rows under this interpreter (with isolate "
        "installed); default: a venv of Debian's /usr/bin/python3 made for the run, "
        "without system site packages, with this worktree pip-installed; 'none': leave out")


class SecondPython:
    """The second interpreter: ``exe`` (None when left out, ``why`` says so), ``env`` for its
    children, ``label`` for the rows. Use as a context manager: a venv it made is removed."""

    def __init__(self, option: str | None, pycache: str) -> None:
        self.exe: str | None = None
        self.why = ""
        self.label = ""
        self._venv: str | None = None
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONHOME")}
        env["PYTHONPYCACHEPREFIX"] = pycache
        self.env = env
        if option == "none":
            self.why = "second interpreter left out (--second-python none)"
        elif option is not None:
            self.exe = option
            self.label = f"[{option}]"
        elif not os.path.exists(DEBIAN_PYTHON):
            self.why = f"second interpreter skipped: {DEBIAN_PYTHON} is missing"
        else:
            self._make_venv()

    def _make_venv(self) -> None:
        venv = tempfile.mkdtemp(prefix="isolate-bench-venv-", dir="/var/tmp")
        steps = ([DEBIAN_PYTHON, "-m", "venv", venv],
                 [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                  "--disable-pip-version-check", _WORKTREE])
        for argv in steps:
            r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                               env=self.env, check=False)
            if r.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                self.why = (f"second interpreter skipped: {' '.join(argv[:4])} failed: "
                            f"{(r.stderr or r.stdout).strip()[-300:]}")
                return
        self._venv = venv
        self.exe = os.path.join(venv, "bin", "python")
        self.label = "[Debian python3 venv]"

    def describe(self) -> str:
        """One line for the report: which interpreter, and why it is there."""
        if self.exe is None:
            return self.why
        version = subprocess.run([self.exe, "-c", "import sys, isolate; print(sys.version"
                                  ".split()[0], isolate.__file__)"], env=self.env,
                                 capture_output=True, text=True, check=True).stdout.split()
        made = (f"a venv of {DEBIAN_PYTHON} made for this run ({self._venv}, removed "
                "afterwards), this worktree pip-installed" if self._venv else "as given")
        return (f"rows marked {self.label}: Python {version[0]}, {made}; isolate from "
                f"{os.path.dirname(version[1])}. They leave out the {sys.executable} "
                "interpreter's site hook (see benchmarks/_second_python.py)")

    def __enter__(self) -> SecondPython:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._venv is not None:
            shutil.rmtree(self._venv, ignore_errors=True)
            self._venv = None
