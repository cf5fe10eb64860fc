"""Run Python code as an unprivileged uid, for tests of the rootless paths.

The interpreter's site-packages may live under /root, which an ordinary uid cannot read, so the
code runs with a world-readable copy of what it imports: the ``isolate`` package (with the built
extension and programs), ``attrs``/``attr``, ``cloudpickle`` and cffi's ``_cffi_backend``. Each
call stages a fresh copy in a temp dir under /var/tmp (a sandbox's /tmp is private, so a copy
there would be hidden from ``Sandbox.call``) and removes it afterwards. The interpreter is
``sys.executable`` where that uid may run it, else the system's python of the same version.

With ``subids=True`` the uid gets a subordinate id range the way an administrator grants one
(``/etc/subuid`` and ``/etc/subgid`` lines), but only for that run: the files are bound over the
machine's in a private mount namespace of the run, so the machine's files are never changed and
nothing is left to remove. Needs root (setpriv, and unshare for binds).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import pathlib
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import _cffi_backend
import attr
import attrs
import pytest

import isolate

__all__ = ["SUBID_COUNT", "SUBID_START", "run_unprivileged", "staged_pythonpath", "xdg_home"]

#: The subordinate range ``subids=True`` grants: ids 1..SUBID_COUNT inside map to
#: SUBID_START.. outside (podman's default size; far above the machine's own users).
SUBID_START = 200000
SUBID_COUNT = 65536
_STAGE_DIR = "/var/tmp" if os.path.isdir("/var/tmp") else None


@contextlib.contextmanager
def staged_pythonpath() -> Iterator[str]:
    """A world-readable temp dir holding copies of isolate, attrs, attr, cloudpickle and
    _cffi_backend."""
    root = tempfile.mkdtemp(prefix="isolate-rootless-", dir=_STAGE_DIR)
    try:
        os.chmod(root, 0o755)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        modules = [isolate, attrs, attr]
        if importlib.util.find_spec("cloudpickle") is not None:
            import cloudpickle  # type: ignore[import-untyped]

            modules.append(cloudpickle)
        for module in modules:
            src = os.path.dirname(module.__file__ or "")
            shutil.copytree(src, os.path.join(root, os.path.basename(src)), ignore=ignore)
        backend = _cffi_backend.__file__ or ""
        shutil.copy(backend, os.path.join(root, os.path.basename(backend)))
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames:
                os.chmod(os.path.join(dirpath, name), 0o755)
            for name in filenames:
                executable = name.endswith(".so") or name.startswith("isolate-")
                os.chmod(os.path.join(dirpath, name), 0o755 if executable else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _open_to_others(path: str) -> bool:
    """Whether any uid may run ``path``: the program open to others, and every directory on
    the way to it (the path as given, and where its symlinks lead)."""
    real = os.path.realpath(path)
    if not os.stat(real).st_mode & 0o001:
        return False
    for start in (os.path.abspath(path), real):
        d = os.path.dirname(start)
        while True:
            if not os.stat(d).st_mode & 0o001:
                return False
            if d == "/":
                break
            d = os.path.dirname(d)
    return True


@functools.cache
def interpreter() -> str | None:
    """The interpreter unprivileged code runs with: ours where any uid may run it, else the
    system's python3 of our version (the staged extension fits it), else None."""
    if _open_to_others(sys.executable):
        return sys.executable
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (f"/usr/bin/python{version}", "/usr/bin/python3"):
        if not os.path.exists(candidate) or not _open_to_others(candidate):
            continue
        out = subprocess.run([candidate, "-c", "import sys; print(*sys.version_info[:2])"],
                             capture_output=True, text=True, check=False)
        if out.stdout.split() == version.split("."):
            return candidate
    return None


def _command(code: str, uid: int, gid: int, binds: Mapping[str, str],
             keep_bounding_set: bool, python: str) -> list[str]:
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
               "--inh-caps=-all"]
    if not keep_bounding_set:
        setpriv.append("--bounding-set=-all")
    cmd = [*setpriv, python, "-c", code]
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


@contextlib.contextmanager
def subordinate_id_files(uid: int) -> Iterator[dict[str, str]]:
    """``/etc/subuid`` and ``/etc/subgid`` granting ``uid`` SUBID_COUNT ids from SUBID_START,
    as binds for :func:`run_unprivileged` (files in a temp dir, removed afterwards)."""
    d = tempfile.mkdtemp(prefix="isolate-subids-")
    try:
        os.chmod(d, 0o755)
        binds = {}
        try:
            owner = pwd.getpwuid(uid).pw_name  # as an administrator writes it
        except KeyError:
            owner = str(uid)
        for which in ("uid", "gid"):
            path = os.path.join(d, f"sub{which}")
            with open(path, "w") as f:
                f.write(f"{owner}:{SUBID_START}:{SUBID_COUNT}\n")
            os.chmod(path, 0o644)
            binds[path] = f"/etc/sub{which}"
        yield binds
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_unprivileged(code: str, uid: int = 65534, gid: int | None = None, *,
                     binds: Mapping[str, str] | None = None, keep_bounding_set: bool = False,
                     subids: bool = False, timeout: float = 120,
                     extra_env: Mapping[str, str] | None = None,
                     check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as ``uid``/``gid`` (no groups, no capabilities).

    ``binds`` maps host files to paths they are bind-mounted on, in a private mount namespace
    of the run only. ``keep_bounding_set`` leaves the capability bounding set alone (setuid
    helpers such as newuidmap need it). ``subids`` grants the uid a subordinate id range for
    the run (see the module's docstring; it keeps the bounding set, for newuidmap, and skips
    the test where newuidmap/newgidmap are missing). Skips the test when no interpreter can
    start as that uid. With ``check``, a non-zero exit fails the test showing its output.
    """
    if os.geteuid() != 0:
        pytest.skip("running code as another uid needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    python = interpreter()
    if python is None:
        pytest.skip(f"no interpreter of Python {sys.version_info[0]}.{sys.version_info[1]} "
                    "that an ordinary uid may run")
    gid = uid if gid is None else gid
    with contextlib.ExitStack() as stack:
        binds = dict(binds or {})
        if subids:
            if shutil.which("newuidmap") is None or shutil.which("newgidmap") is None:
                pytest.skip("newuidmap/newgidmap (package uidmap) are not installed")
            binds.update(stack.enter_context(subordinate_id_files(uid)))
            keep_bounding_set = True
        path = stack.enter_context(staged_pythonpath())
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": path,
               "PYTHONDONTWRITEBYTECODE": "1", "HOME": path, "LANG": "C.UTF-8"}
        env.update(extra_env or {})
        probe = subprocess.run(_command("import isolate.namespaces", uid, gid, {}, False,
                                        python),
                               env=env, cwd=path, capture_output=True, text=True,
                               timeout=timeout, check=False)
        if probe.returncode != 0:
            pytest.skip(f"the interpreter cannot start as uid {uid}: {probe.stderr.strip()}")
        proc = subprocess.run(_command(code, uid, gid, binds, keep_bounding_set, python),
                              env=env, cwd=path, capture_output=True, text=True,
                              timeout=timeout, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"unprivileged code exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                    f"\n--- stderr\n{proc.stderr}")
    return proc


def run_in_user_store(tmp_path: pathlib.Path, code: str,
                      **kw: Any) -> dict[str, object]:
    """Run ``code`` as uid 65534 (:func:`run_unprivileged`, ``kw`` passed on) with its own
    store (``$XDG_DATA_HOME`` from :func:`xdg_home`); the JSON object its last line prints."""
    env = {**kw.pop("extra_env", {}), "XDG_DATA_HOME": str(xdg_home(tmp_path))}
    proc = run_unprivileged(code, extra_env=env, **kw)
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


def argv_for(code: str) -> Sequence[str]:
    """An argv that runs ``code`` with this interpreter (for spawning in namespaces)."""
    return [sys.executable, "-c", code]
