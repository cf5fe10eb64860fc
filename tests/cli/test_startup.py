"""What a command loads, as a whole process: start-up time is mostly imports, so each command
imports only what it uses. Structural checks (the modules a fresh interpreter has after the
command), never timings: those are benchmarks/bench_startup.py's and bench_containers.py's."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.conftest import WAIT, Isolate, env_for
from refusing import prelude

pytestmark = pytest.mark.root


def _run_loading(store: Path, *args: str, refuse: frozenset[str] = frozenset()
                 ) -> tuple[str, set[str]]:
    """``isolate ARGS`` in a fresh interpreter: (its stdout, the modules it loaded), with
    the modules ``refuse`` names refused (an import of one fails the command)."""
    code = (prelude(refuse) if refuse else "") + (
            "import io, sys\n"
            "from isolate.cli import main\n"
            "out = sys.stdout = io.StringIO()\n"
            f"status = main({list(args)!r})\n"
            "sys.stdout = sys.__stdout__\n"
            "print(status, repr(out.getvalue()))\n"
            "print(*sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env_for(store), capture_output=True,
                          text=True, timeout=WAIT)
    assert proc.returncode == 0, proc.stderr
    first, modules = proc.stdout.split("\n", 1)
    status, _, output = first.partition(" ")
    assert status == "0", (first, proc.stderr)
    # Less what the interpreter's own start loads (its site and .pth files).
    bare = subprocess.run([sys.executable, "-c", "import sys; print(*sys.modules)"],
                          env=env_for(store), capture_output=True, text=True, timeout=WAIT,
                          check=True).stdout.split()
    return ast.literal_eval(output), set(modules.split()) - set(bare)


def test_ps_reads_the_store_without_the_runtime_cgroup_network_or_hashing_code(
        isolate_cli: Isolate) -> None:
    isolate_cli.ok("run", "-d", "--name", "ps-light", "--network", "none", "busybox",
                   "sleep", "100000")
    try:
        out, loaded = _run_loading(isolate_cli.store, "ps", "--format",
                                   "{{.Names}} {{.State}} {{.Ports}}")
        assert "ps-light running \n" in out
        assert {"isolate.container.container", "isolate.image.store"} <= loaded
        assert not loaded & {
            "isolate.cgroups", "isolate.net", "isolate.runtime", "isolate.lowlevel",
            "isolate.namespaces", "isolate._native", "isolate._fuse_root", "isolate.fs.mounts",
            "isolate._plan", "isolate.security", "isolate._shim", "isolate.sandbox",
            "hashlib", "_hashlib", "secrets", "datetime", "calendar", "socket", "http.client",
            "tarfile"}
    finally:
        isolate_cli.ok("rm", "-f", "ps-light")


def test_run_rm_of_an_image_loads_no_network_code_when_it_has_no_network(
        isolate_cli: Isolate) -> None:
    out, loaded = _run_loading(isolate_cli.store, "run", "--rm", "--network", "none",
                               "busybox", "true")
    assert out == ""
    assert {"isolate.container.container", "isolate._shim", "isolate.runtime"} <= loaded
    assert not loaded & {"isolate.net", "datetime", "calendar", "http.client", "ssl",
                         "tarfile", "isolate.image.registry"}


# attrs and what it loads (inspect: ast, dis, tokenize ...) cost 12-17 ms, and each class it
# builds 0.5-0.9 ms: isolate's records are isolate._record's. typing is 2-4 ms: the modules of
# a start import it only under TYPE_CHECKING (isolate._typing's).
_HEAVY = {"attr", "attrs", "inspect", "typing"}

# What a plain run of an image (no volumes, no -v) does not need: the volumes (an image
# without Volumes), the sandbox (a container is not one), OpenSSL's hashlib (the records are
# small: CPython's own SHA-256 checks them), secrets (os.urandom makes the ids), the
# supervisor's socket (nothing is attached through it), the store's gc/df/rm reports, shutil
# and tempfile (argparse's formatters asked shutil for the terminal's width; a helper of the
# id-mapped store made temp files), random (a container's name is drawn from os.urandom).
_NOT_FOR_A_PLAIN_RUN = {"isolate.container.volumes", "isolate.sandbox", "hashlib", "_hashlib",
                        "secrets", "random", "socket", "isolate.image._reports", "shutil",
                        "tempfile", *_HEAVY}


def test_run_rm_of_an_image_without_volumes_loads_no_volume_sandbox_or_openssl_code(
        isolate_cli: Isolate) -> None:
    # Nor subprocess (with locale and selectors: isolate-shim starts by our own spawn),
    # threading (the cgroup locks are _thread's) or importlib; nor json and re (records by
    # isolate._json, names by isolate._match), enum and signal (isolate._enum, isolate._sig),
    # contextlib, functools and collections (isolate._ctx, isolate._memo, _collections_abc),
    # termios and tty (only a local terminal needs them), warnings and types. Refused
    # outright, on any interpreter.
    out, loaded = _run_loading(isolate_cli.store, "run", "--rm", "busybox", "true",
                               refuse=frozenset({"subprocess", "locale", "selectors",
                                                 "threading", "importlib", "json", "re",
                                                 "enum", "signal", "contextlib", "functools",
                                                 "collections", "termios", "tty", "warnings",
                                                 "types", "operator", "keyword", "reprlib"}))
    assert out == ""
    assert {"isolate.container.container", "isolate._shim", "isolate.security"} <= loaded
    assert not loaded & _NOT_FOR_A_PLAIN_RUN
    # Its seccomp program is kept in the store (one file per profile; the store is shared
    # with other tests), and the next run reads it: no file is added or written again.
    def programs() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
                for p in (isolate_cli.store / "seccomp").iterdir()}
    kept = programs()
    assert kept
    _run_loading(isolate_cli.store, "run", "--rm", "busybox", "true")
    assert programs() == kept


def test_run_rm_with_a_volume_loads_the_volumes(isolate_cli: Isolate) -> None:
    out, loaded = _run_loading(isolate_cli.store, "run", "--rm", "-v", "/data", "busybox",
                               "true")
    assert out == ""
    assert "isolate.container.volumes" in loaded  # (so the check above can fail)


def test_run_of_an_image_in_a_sandbox_loads_no_container_or_openssl_code(
        isolate_cli: Isolate) -> None:
    out, loaded = _run_loading(isolate_cli.store, "run", "--image", "busybox", "true")
    assert out == ""
    assert "isolate.sandbox" in loaded
    assert not loaded & {"isolate.container.container", "isolate.container.volumes",
                         "hashlib", "_hashlib", "secrets", "isolate.image._reports",
                         "shutil", *_HEAVY}



# What a plain 'isolate run -- CMD' does without, beyond _HEAVY: argparse (with the gettext,
# locale and re it loads: ~7 ms; the quick parser reads the flags), subprocess (~10 ms with
# its locale, selectors and threading: Sandbox.spawn needs none), threading (the locks are
# _thread's), enum (isolate._enum's), signal and re (both load enum: isolate._sig, and sizes
# and numbers read by hand).
_NOT_FOR_A_PLAIN_SANDBOX = {"argparse", "gettext", "locale", "subprocess", "selectors",
                            "threading", "enum", "re", "signal", *_HEAVY}
# Nor the small modules that load collections (~2 ms with keyword, operator, reprlib):
# functools (isolate._memo's caches), contextlib, collections.abc itself (_collections_abc's
# classes, loaded at the interpreter's start), namedtuple; nor importlib (with warnings: the
# lazy exports import by __import__) and types. Refused outright, on any interpreter.
_REFUSED_FOR_A_PLAIN_SANDBOX = frozenset({
    "collections", "functools", "contextlib", "importlib", "warnings", "types", "operator",
    "reprlib", "keyword", *_NOT_FOR_A_PLAIN_SANDBOX})


def test_a_plain_run_loads_no_attrs_and_no_image_or_container_code(
        isolate_cli: Isolate) -> None:
    out, loaded = _run_loading(isolate_cli.store, "run", "--", "/bin/true",
                               refuse=_REFUSED_FOR_A_PLAIN_SANDBOX)
    assert out == ""
    assert {"isolate.sandbox", "isolate.runtime.compiler", "isolate._record",
            "isolate.cli._quick"} <= loaded
    assert not loaded & {*_NOT_FOR_A_PLAIN_SANDBOX, "isolate.image.store",
                         "isolate.container.container", "isolate.cgroups", "shutil",
                         "tempfile", "isolate._sandbox_result"}


def test_a_run_with_flags_parses_them_without_argparse(isolate_cli: Isolate,
                                                        tmp_path: Path) -> None:
    (tmp_path / "seen").write_text("bound\n")
    # (status 0 only if every flag reached the command)
    out, loaded = _run_loading(
        isolate_cli.store, "run", "--bind", f"{tmp_path}:/data", "-e", "A=1",
        "--hostname=box", "--stop-timeout", "3", "--", "/bin/sh", "-c",
        'test "$(cat /data/seen)" = bound && test "$A" = 1 && test "$(hostname)" = box',
        refuse=_REFUSED_FOR_A_PLAIN_SANDBOX)
    assert out == ""
    assert not loaded & _NOT_FOR_A_PLAIN_SANDBOX


def test_a_run_the_quick_parser_cannot_read_goes_to_argparse(isolate_cli: Isolate) -> None:
    out, loaded = _run_loading(isolate_cli.store, "run", "--hostn", "box", "--", "/bin/true")
    assert "argparse" in loaded  # an abbreviation: argparse's to resolve (so the checks above
    assert out == ""             # can fail)


def test_the_format_templates_build_no_attrs_class() -> None:
    from isolate.cli import template

    made = [name for name, value in vars(template).items()
            if isinstance(value, type) and hasattr(value, "__attrs_attrs__")]
    assert made == []  # each costs ~0.3 ms at import: plain tuples do for a parse tree



def _synced(isolate_cli: Isolate, tmp_path: Path, *args: str) -> list[str]:
    """The paths ``isolate ARGS`` fsyncs (strace, not a timing)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (scripts/install.sh --test installs it)")
    trace = tmp_path / "trace"
    subprocess.run([strace, "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
                    sys.executable, "-m", "isolate.cli", *args],
                   env=env_for(isolate_cli.store), check=True, timeout=WAIT,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return [line.split("<", 1)[1].split(">", 1)[0] for line in trace.read_text().splitlines()
            if "sync(" in line and "<" in line]


def test_a_container_syncs_what_a_crash_must_find_and_not_the_plan(isolate_cli: Isolate,
                                                                   tmp_path: Path) -> None:
    # The durable writes of a container: its record, state and name, the image hold. The
    # plan the shim reads once at its start is only replaced at once (every start writes
    # it anew).
    synced = _synced(isolate_cli, tmp_path, "run", "--name", "durable", "busybox", "true")
    try:
        assert any(p.endswith("config.json.tmp") or "/.config.json." in p for p in synced), \
            synced
        assert any("/holds" in p for p in synced), synced
        assert any(p.endswith("/containers/names") for p in synced), synced
        assert not [p for p in synced if p.endswith("/plan") or "/plan." in p], synced
        # Nor the supervisor's records, which mean nothing once the machine is down.
        records = ("shim.pid", "container.pid", "start.json", "exit.json")
        assert not [p for p in synced if p.rsplit("/", 1)[-1].strip(".").removesuffix(".tmp")
                    in records], synced
    finally:
        isolate_cli.ok("rm", "durable")


def test_run_rm_syncs_nothing(isolate_cli: Isolate, tmp_path: Path) -> None:
    # An --rm container ends with its run, and so with a crash of the machine: none of its
    # records is synced, and the next reader disposes of what a crash leaves (tests/
    # container/test_faults.py: ..._an_unsynced_container_...).
    assert _synced(isolate_cli, tmp_path, "run", "--rm", "busybox", "true") == []
    assert isolate_cli.ok("ps", "-aq") == ""


def _imported(argv: list[str], env: dict[str, str]) -> set[str]:
    """The modules a process imports (``PYTHONPROFILEIMPORTTIME``'s report on stderr)."""
    proc = subprocess.run(argv, env=dict(env, PYTHONPROFILEIMPORTTIME="1"), timeout=WAIT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def test_the_isolate_command_loads_no_runpy_and_no_re(isolate_cli: Isolate) -> None:
    # What a user types: the installed command (bin/isolate), not a wrapper of pip's (which
    # imports re) and not python -m (runpy).
    import sysconfig

    command = Path(sysconfig.get_path("scripts")) / "isolate"
    if not command.exists():
        pytest.skip(f"isolate is not installed for {sys.executable} (no {command})")
    env = env_for(isolate_cli.store)
    loaded = _imported([str(command), "run", "--", "/bin/true"], env)
    bare = _imported([sys.executable, "-c", "pass"], env)
    assert "isolate.cli.run" in loaded  # (the report is read: the check below can fail)
    assert not (loaded - bare) & {"runpy", "re", "functools", "contextlib", "collections",
                                  "importlib.util", "argparse", "subprocess"}
