"""Fixtures for the container commands: a store with a busybox image the tests build, the
``isolate`` command run as a user runs it (a separate process, real stdio), and clean-up of
every container and volume a test made (force-removed through the CLI itself)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import isolate
from isolate.image import ImageConfig, Store

BUSYBOX = "/bin/busybox"
SRC = os.path.dirname(os.path.dirname(isolate.__file__))
# The generous wait for anything a process must do: a loaded 2-core machine is slow, and
# nothing in these tests is timed.
WAIT = 120.0


def _busybox_tree(root: Path) -> None:
    for d in ("bin", "etc", "tmp", "root", "home/app", "data", "srv"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "app:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    os.chown(root / "home" / "app", 1000, 1000)
    (root / "data" / "seed.txt").write_text("from the image\n")
    (root / "etc" / "marker").write_text("isolate test image\n")


@pytest.fixture(scope="session")
def cli_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store for the session with ``busybox`` (Cmd sh) and ``busybox-vol`` (a Volume at
    /data, StopSignal SIGUSR1)."""
    if os.geteuid() != 0:
        pytest.skip("the container commands' tests run as root")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    base = tmp_path_factory.mktemp("cli-store")
    tree = base / "tree"
    tree.mkdir()
    _busybox_tree(tree)
    store = Store(base / "store")
    store.from_directory(tree, "busybox:latest",
                         config=ImageConfig(env=["PATH=/bin"], cmd=["sh"]))
    store.from_directory(tree, "busybox-vol:latest",
                         config=ImageConfig(env=["PATH=/bin"], cmd=["sh"], volumes=["/data"],
                                            stop_signal="SIGUSR1"))
    shutil.rmtree(tree)
    yield base / "store"
    shutil.rmtree(base, ignore_errors=True)


def env_for(store: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=str(store))


def argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "isolate.cli", *args]


class Isolate:
    """Runs ``isolate ARGS`` against the test store, as a separate process."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.env = env_for(store)

    def __call__(self, *args: str, input: str | bytes | None = None, timeout: float = WAIT,
                 text: bool = True) -> subprocess.CompletedProcess[str]:
        if isinstance(input, bytes):
            text = False
        proc = subprocess.run(argv(*args), input=input, capture_output=True, text=text,
                              env=self.env, timeout=timeout, check=False)
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
        assert "Traceback" not in err, err
        return proc

    def ok(self, *args: str, input: str | None = None) -> str:
        """Run it; it must succeed; its stdout."""
        proc = self(*args, input=input)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc.stdout

    def popen(self, *args: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(argv(*args), env=self.env, text=True,  # type: ignore[call-overload]
                                **kw)

    def inspect(self, ref: str) -> dict[str, object]:
        doc = json.loads(self.ok("inspect", "--type", "container", ref))
        assert isinstance(doc, list) and len(doc) == 1
        return doc[0]  # type: ignore[no-any-return]

    def status(self, ref: str) -> str:
        return self.ok("inspect", "-f", "{{.State.Status}}", ref).strip()

    def wait_status(self, ref: str, *wanted: str) -> str:
        deadline = time.monotonic() + WAIT
        while True:
            status = self.status(ref)
            if status in wanted or time.monotonic() > deadline:
                return status
            time.sleep(0.1)


@pytest.fixture
def isolate_cli(cli_store: Path) -> Iterator[Isolate]:
    """``isolate`` on the session store; every container and volume the test made is
    removed at its end (``rm -f -v``, ``volume rm -f``)."""
    cli = Isolate(cli_store)
    before = set(cli.ok("ps", "-a", "-q", "--no-trunc").split())
    volumes_before = set(cli.ok("volume", "ls", "-q").split())
    yield cli
    left = set(cli.ok("ps", "-a", "-q", "--no-trunc").split()) - before
    if left:
        cli("rm", "-f", "-v", *sorted(left))
    vols = set(cli.ok("volume", "ls", "-q").split()) - volumes_before
    if vols:
        cli("volume", "rm", "-f", *sorted(vols))


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = WAIT) -> str:
    """What ``proc`` printed on stdout up to and including the line ``marker`` (read a byte
    at a time, so nothing after it is taken from the pipe)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
        if byte == b"\n":
            seen.append(line.decode())
            if line == marker.encode() + b"\n":
                return "".join(seen)
            line = b""
    raise AssertionError(f"no {marker!r} line from {proc.args}; got {''.join(seen)!r}")


@contextlib.contextmanager
def foreground(cli: Isolate, name: str, *run_args: str, script: str = "sleep 100000",
               image: str = "busybox") -> Iterator[subprocess.Popen[str]]:
    """``isolate run --name NAME RUN_ARGS IMAGE sh -c 'echo ready; SCRIPT'`` attached in a
    process of its own, once it printed ``ready``; the container is force-removed (and the
    process reaped) at the end."""
    proc = cli.popen("run", "--name", name, *run_args, image, "sh", "-c",
                     f"echo ready; {script}", stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
    try:
        read_until(proc, "ready")
        yield proc
    finally:
        if proc.poll() is None:
            cli("rm", "-f", name)
            try:
                proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def shim_supervises(cli: Isolate) -> bool:
    """Whether containers outlive the command that started them here (isolate-shim
    supervises them, not the process that started them)."""
    cid = cli.ok("create", "busybox", "true").strip()
    try:
        proc = cli("start", cid)
        assert proc.returncode == 0, proc.stderr
        return "isolate-shim is not built" not in proc.stderr
    finally:
        cli("rm", "-f", cid)


_SHIM: dict[str, bool] = {}


@pytest.fixture
def detachable(isolate_cli: Isolate) -> Isolate:
    """``isolate_cli``, where a container started by one command outlives it (skips where
    it does not: without isolate-shim a container is supervised by its starter)."""
    if "shim" not in _SHIM:
        _SHIM["shim"] = shim_supervises(isolate_cli)
    if not _SHIM["shim"]:
        pytest.skip("containers are supervised in-process here (isolate-shim is not used by "
                    "isolate.container yet): one started by a command ends with it")
    return isolate_cli
