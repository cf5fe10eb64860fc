"""Sandbox.call on the real kernel: what a call prints reaches a pipe or a file, an OOM kill says
so, a timeout of one call, and calls from a virtualenv that lives below the sandbox's private
/tmp (where tox, nox and pytest make theirs)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import isolate
from isolate import Limits, Sandbox
from isolate.errors import CallError, ConfigError, UnsupportedError
from sandbox_helpers import need_root

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def _python(code: str, *args: str, executable: str = sys.executable, **kwargs: Any
            ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (with ``args``) in a fresh interpreter that imports this isolate."""
    env = dict(os.environ)
    site = os.path.dirname(os.path.dirname(isolate.__file__ or ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
    return subprocess.run([executable, "-c", textwrap.dedent(code), *args], env=env,
                          text=True, timeout=120, **kwargs)


# -- output -----------------------------------------------------------------------------------

PRINTS = """
    import sys
    from isolate import Sandbox

    def chatty():
        print("out from the call")
        print("err from the call", file=sys.stderr)
        return 7

    with Sandbox() as sb:
        print("result", sb.call(chatty), flush=True)
"""


def test_what_a_call_prints_reaches_a_pipe() -> None:
    r = _python(PRINTS, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["out from the call", "result 7"]
    assert r.stderr.splitlines() == ["err from the call"]


def test_what_a_call_prints_reaches_a_file(tmp_path: Path) -> None:
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        r = _python(PRINTS, stdout=out, stderr=err)
    assert r.returncode == 0, (tmp_path / "err").read_text()
    assert (tmp_path / "out").read_text().splitlines() == ["out from the call", "result 7"]
    assert (tmp_path / "err").read_text().splitlines() == ["err from the call"]


# -- the OOM killer ---------------------------------------------------------------------------

def hog() -> int:
    block = bytearray(256 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def test_a_call_killed_by_the_oom_killer_says_so_with_the_limit() -> None:
    box = Sandbox(limits=Limits(memory_max="64M"))
    try:
        box.__enter__()
    except UnsupportedError as exc:
        pytest.skip(f"cgroup limits unavailable here: {exc}")
    try:
        with pytest.raises(CallError, match=r"killed by the OOM killer: out of memory \(the "
                                            r"sandbox's memory limit is 64M\)"):
            box.call(hog)
        assert box.call(abs, -3) == 3  # the next call works (a new helper if it died too)
    finally:
        box.close()


def test_a_call_killed_otherwise_is_not_called_an_oom_kill() -> None:
    with Sandbox(limits=Limits(memory_max="64M")) as box:
        with pytest.raises(CallError, match="SIGKILL") as info:
            box.call(os.kill, 0, signal.SIGKILL)  # (its own process group)
        assert "OOM" not in str(info.value)


# -- a timeout per call -----------------------------------------------------------------------

def takes(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def test_call_with_a_timeout_kills_the_call_and_the_sandbox_stays_usable() -> None:
    with Sandbox() as box:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"timed out after 0\.5 s"):
            box.call_with(time.sleep, (1000,), timeout=0.5)
        assert time.monotonic() - start < 60
        assert box.call(abs, -1) == 1
        assert box.call_with(abs, (-2,), timeout=60) == 2


def test_call_with_passes_the_functions_own_timeout_keyword_through() -> None:
    with Sandbox() as box:
        assert box.call_with(takes, (1,), {"timeout": 5}, timeout=60) == ((1,), {"timeout": 5})
        assert box.call(takes, 1, timeout=5) == ((1,), {"timeout": 5})


@pytest.mark.parametrize("timeout", [0, -1, "1s", float("nan")])
def test_a_bad_call_timeout_is_a_config_error(timeout: Any) -> None:
    with Sandbox() as box, pytest.raises(ConfigError, match="timeout"):
        box.call_with(abs, (-1,), timeout=timeout)


def test_the_sandboxes_timeout_still_applies_with_a_longer_call_timeout() -> None:
    with Sandbox(timeout=0.5) as box, pytest.raises(TimeoutError, match="sandbox's timeout"):
        box.call_with(time.sleep, (1000,), timeout=600)


# -- a virtualenv below /tmp ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tmp_venv() -> Iterator[Path]:
    """A real virtualenv below /tmp with a module of its own in its site-packages."""
    root = Path(tempfile.mkdtemp(prefix="isolate-venv-", dir="/tmp"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                        str(root / "venv")], check=True, timeout=120)
        python = root / "venv" / "bin" / "python"
        site = _python("import site; print(site.getsitepackages()[0])",
                       executable=str(python), capture_output=True, check=True).stdout.strip()
        assert site.startswith(str(root))
        Path(site, "isolate_venv_probe.py").write_text(textwrap.dedent("""
            import os, sys
            def where():
                return sys.executable, sys.prefix, __file__, os.path.exists(sys.executable)
        """))
        yield root / "venv"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_call_from_a_virtualenv_below_tmp_runs_its_interpreter_and_modules(
        tmp_venv: Path) -> None:
    r = _python("""
        import isolate_venv_probe
        from isolate import Sandbox
        with Sandbox() as sb:
            print(*sb.call(isolate_venv_probe.where), sep="\\n")
            # Bound read-only, and the rest of /tmp stays private.
            print(sb.run(["sh", "-c", "touch $0/x || echo refused; ls /tmp",
                          isolate_venv_probe.__file__], capture_output=True, text=True).stdout)
    """, executable=str(tmp_venv / "bin" / "python"), capture_output=True)
    assert r.returncode == 0, r.stderr
    executable, _, module, exists, refused, *tmp = r.stdout.split()
    assert executable == str(tmp_venv / "bin" / "python") and exists == "True"
    assert module.startswith(str(tmp_venv)) and module.endswith("isolate_venv_probe.py")
    assert refused == "refused"
    assert tmp_venv.parent.name in tmp
    assert not set(tmp) - {p.split("/")[2] for p in [*sys.path, sys.prefix]
                           if p.startswith("/tmp/")} - {tmp_venv.parent.name}


def test_a_call_whose_interpreter_the_root_lacks_says_which_and_how_to_expose_it(
        tmp_venv: Path, tmp_path: Path) -> None:
    for d in ("proc", "dev", "sys", "tmp"):
        (tmp_path / "root" / d).mkdir(parents=True)
    r = _python("""
        import sys
        from isolate import Sandbox
        from isolate.errors import CallError
        with Sandbox(rootfs=sys.argv[1]) as sb:
            try:
                sb.call(abs, -1)
            except CallError as exc:
                print(exc)
    """, str(tmp_path / "root"), executable=str(tmp_venv / "bin" / "python"),
        capture_output=True)
    assert r.returncode == 0, r.stderr
    assert f"cannot run this Python interpreter, {tmp_venv}/bin/python" in r.stdout
    assert f'binds=["{tmp_venv}:{tmp_venv}:ro"]' in r.stdout
