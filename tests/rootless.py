"""Run Python code as an unprivileged uid, for tests of the rootless paths.

The interpreter's site-packages live under /root, which an ordinary uid cannot read, so the
code runs with a world-readable copy of what it imports: the ``isolate`` package (with the built
extension), ``attrs``/``attr`` and cffi's ``_cffi_backend``. Each call stages a fresh copy in a
temp dir and removes it afterwards. Needs root (setpriv, and unshare for ``binds``).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence

import _cffi_backend
import attr
import attrs
import pytest

import isolate

__all__ = ["run_unprivileged", "staged_pythonpath", "xdg_home"]


@contextlib.contextmanager
def staged_pythonpath() -> Iterator[str]:
    """A world-readable temp dir holding copies of isolate, attrs, attr and _cffi_backend."""
    root = tempfile.mkdtemp(prefix="isolate-rootless-")
    try:
        os.chmod(root, 0o755)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for module in (isolate, attrs, attr):
            src = os.path.dirname(module.__file__ or "")
            shutil.copytree(src, os.path.join(root, os.path.basename(src)), ignore=ignore)
        backend = _cffi_backend.__file__ or ""
        shutil.copy(backend, os.path.join(root, os.path.basename(backend)))
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                executable = name.endswith(".so") or name == "isolate-shim"
                os.chmod(os.path.join(dirpath, name), 0o755 if executable else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _command(code: str, uid: int, gid: int, binds: Mapping[str, str],
             keep_bounding_set: bool) -> list[str]:
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
               "--inh-caps=-all"]
    if not keep_bounding_set:
        setpriv.append("--bounding-set=-all")
    cmd = [*setpriv, sys.executable, "-c", code]
    if not binds:
        return cmd
    # Bind files over host paths (e.g. /etc/subuid) in a throwaway mount namespace only.
    script = " && ".join(f'mount --bind "${i * 2 + 1}" "${i * 2 + 2}"'
                         for i in range(len(binds)))
    args: list[str] = []
    for source, target in binds.items():
        args += [source, target]
    script += f' && shift {len(args)} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            *args, *cmd]


def xdg_home(tmp_path: pathlib.Path, uid: int = 65534) -> pathlib.Path:
    """``tmp_path/xdg``, owned by ``uid``, for its ``$XDG_DATA_HOME`` (its store); the dirs
    above made searchable for it."""
    home = tmp_path / "xdg"
    home.mkdir()
    shutil.chown(home, uid, uid)
    for d in (tmp_path, *tmp_path.parents):
        if d == pathlib.Path("/"):
            break
        d.chmod(d.stat().st_mode | 0o005)
    return home


def run_unprivileged(code: str, uid: int = 65534, gid: int | None = None, *,
                     binds: Mapping[str, str] | None = None, keep_bounding_set: bool = False,
                     timeout: float = 120, extra_env: Mapping[str, str] | None = None,
                     check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``sys.executable`` as ``uid``/``gid`` (no groups, no capabilities).

    ``binds`` maps host files to paths they are bind-mounted on, in a private mount namespace
    of the run only. ``keep_bounding_set`` leaves the capability bounding set alone (setuid
    helpers such as newuidmap need it). Skips the test when the interpreter cannot start as
    that uid. With ``check``, a non-zero exit fails the test showing its output.
    """
    if os.geteuid() != 0:
        pytest.skip("running code as another uid needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    gid = uid if gid is None else gid
    with staged_pythonpath() as path:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": path,
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": path, "LANG": "C.UTF-8"}
        env.update(extra_env or {})
        probe = subprocess.run(_command("import isolate.namespaces", uid, gid, {}, False),
                               env=env, cwd=path, capture_output=True, text=True,
                               timeout=timeout, check=False)
        if probe.returncode != 0:
            pytest.skip(f"the interpreter cannot start as uid {uid}: {probe.stderr.strip()}")
        proc = subprocess.run(_command(code, uid, gid, binds or {}, keep_bounding_set),
                              env=env, cwd=path, capture_output=True, text=True,
                              timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"unprivileged code exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                    f"\n--- stderr\n{proc.stderr}")
    return proc


def argv_for(code: str) -> Sequence[str]:
    """An argv that runs ``code`` with this interpreter (for spawning in namespaces)."""
    return [sys.executable, "-c", code]
