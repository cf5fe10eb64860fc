"""``isolate build``, ``isolate history`` and ``isolate builder prune`` as a user runs them:
real processes, real output; and what Ctrl-C and SIGKILL in the middle of a build leave."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from isolate.image import Image, Store
from isolate.image.build import BuildCache

from ..conftest import SRC
from .conftest import BASE, read

pytestmark = pytest.mark.root


def isolate(store: Store, *args: str, input: bytes | None = None, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root)
    return subprocess.run([sys.executable, "-m", "isolate.cli", *args], env=env,
                          capture_output=True, input=input, cwd=cwd, timeout=timeout)


@pytest.fixture
def ctx(tmp_path: Path, base: Image) -> Path:
    path = tmp_path / "ctx"
    path.mkdir()
    (path / "hello.txt").write_text("hello\n")
    (path / "Dockerfile").write_text(
        f"FROM {BASE}\nCOPY hello.txt /\nRUN echo from-run && cat /hello.txt > /copy\n"
        "ENV DONE=1\nCMD [\"cat\", \"/copy\"]\n")
    return path


def test_build_prints_steps_output_and_the_id_last(store: Store, ctx: Path) -> None:
    proc = isolate(store, "build", "-t", "test/cli:1", "-t", "test/cli:2", "--progress",
                   "plain", str(ctx))
    assert proc.returncode == 0, proc.stderr.decode()
    err = proc.stderr.decode()
    lines = err.splitlines()
    assert lines[0] == f"[1/5] FROM {BASE}"
    assert "[2/5] COPY hello.txt /" in lines and "[3/5] RUN echo from-run && cat /hello.txt" \
        " > /copy" in lines
    assert "from-run" in lines  # the RUN's own output, streamed
    assert any(line.startswith("[3/5] DONE ") and line.endswith("s") for line in lines)
    assert "Successfully tagged docker.io/test/cli:1" in lines
    image_id = proc.stdout.decode().strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert {t for t in store.get(image_id).tags} == {"docker.io/test/cli:1",
                                                     "docker.io/test/cli:2"}
    again = isolate(store, "build", "--progress", "plain", str(ctx))
    assert "[2/5] CACHED" in again.stderr.decode() and "[3/5] CACHED" in again.stderr.decode()
    assert again.stdout.decode().strip() == image_id
    # the image runs
    run = isolate(store, "run", image_id)
    assert run.stdout == b"hello\n"


def test_quiet_and_iidfile(store: Store, ctx: Path, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    proc = isolate(store, "build", "-q", "--iidfile", str(iid), str(ctx))
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout.decode().strip() == iid.read_text()


def test_tty_progress_has_colours(store: Store, ctx: Path) -> None:
    proc = isolate(store, "build", "--progress", "tty", str(ctx))
    assert b"\x1b[1m[3/5] RUN" in proc.stderr and b"\x1b[32mDONE" in proc.stderr


def test_another_dockerfile_and_one_from_stdin(store: Store, ctx: Path) -> None:
    (ctx / "other.Dockerfile").write_text(f"FROM {BASE}\nRUN echo other > /o\n")
    proc = isolate(store, "build", "-q", "-f", str(ctx / "other.Dockerfile"), str(ctx))
    assert proc.returncode == 0, proc.stderr.decode()
    assert read(store, proc.stdout.decode().strip(), "/o") == b"other\n"
    proc = isolate(store, "build", "-q", "-f", "-", str(ctx),
                   input=f"FROM {BASE}\nCOPY hello.txt /stdin\n".encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert read(store, proc.stdout.decode().strip(), "/stdin") == b"hello\n"


def test_a_context_tar_on_stdin(store: Store, ctx: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.add(ctx, arcname=".")
    proc = isolate(store, "build", "-q", "-", input=buf.getvalue())
    assert proc.returncode == 0, proc.stderr.decode()
    assert read(store, proc.stdout.decode().strip(), "/copy") == b"hello\n"
    assert os.listdir(os.path.join(store.root, "tmp")) == []


def test_build_args_labels_target_and_network(store: Store, tmp_path: Path,
                                               base: Image) -> None:
    path = tmp_path / "c2"
    path.mkdir()
    (path / "Dockerfile").write_text(f"""FROM {BASE} AS first
ARG MSG
RUN echo "$MSG" > /msg && ls /sys/class/net > /nets
FROM first AS second
RUN echo second > /s
""")
    proc = isolate(store, "build", "-q", "--build-arg", "MSG=hi there", "--label", "k=v",
                   "--target", "first", "--network", "none", str(path))
    assert proc.returncode == 0, proc.stderr.decode()
    image = store.get(proc.stdout.decode().strip())
    assert read(store, image, "/msg") == b"hi there\n" and read(store, image, "/s") is None
    assert read(store, image, "/nets") == b"lo\n"
    assert image.config.labels == {"k": "v"}


def test_a_failing_run_shows_its_command_and_exits_1(store: Store, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY hello.txt /\nRUN echo oops; exit 4\n")
    proc = isolate(store, "build", "--progress", "plain", str(ctx))
    assert proc.returncode == 1
    last = proc.stderr.decode().strip().splitlines()[-1]
    assert last == ("isolate: Dockerfile:3:1: process '/bin/sh -c echo oops; exit 4' did not "
                    "complete successfully: exit code 4")
    assert proc.stdout == b""


@pytest.mark.parametrize(("args", "message"), [
    (["--platform", "linux/s390x"], "isolate builds only for the host platform"),
    (["-t", "Bad Name"], "invalid tag"),
    (["--secret", "id="], "an id is required"),
    (["--secret", "type=other,id=x"], "type must be file or env"),
])
def test_bad_options_are_one_line(store: Store, ctx: Path, args: list[str],
                                  message: str) -> None:
    proc = isolate(store, "build", *args, str(ctx))
    assert proc.returncode == 1
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_syntax_error_names_file_line_and_column(store: Store, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\n  COPY --chwon=1 a b\n")
    proc = isolate(store, "build", str(ctx))
    assert proc.returncode == 1
    assert proc.stderr.decode().strip() == (
        "isolate: Dockerfile:2:8: COPY: unknown flag: --chwon (did you mean --chown?)")


def test_history(store: Store, ctx: Path) -> None:
    image_id = isolate(store, "build", "-q", "-t", "test/h:1", str(ctx)).stdout.decode().strip()
    proc = isolate(store, "history", "test/h:1")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(image_id[7:19])
    assert "CMD [\"cat\", \"/copy\"]" in lines[1]
    assert lines[3].startswith("<missing>") and "RUN /bin/sh -c echo from-run" in lines[3]
    assert lines[4].split()[-3] != "0B"  # the COPY's layer has a size
    quiet = isolate(store, "history", "-q", "--no-trunc", "test/h:1").stdout.decode().split()
    assert quiet[0] == image_id and set(quiet[1:]) == {"<missing>"}


def test_builder_prune(store: Store, ctx: Path) -> None:
    isolate(store, "build", "-q", str(ctx))
    assert BuildCache(store).step_keys()
    proc = isolate(store, "builder", "prune", "-af")
    assert proc.returncode == 0
    assert proc.stdout.decode().startswith("Deleted build cache: 2 step(s), 0 cache mount(s)")
    assert BuildCache(store).step_keys() == []


def _wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _processes_with(marker: str) -> list[int]:
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        pids.append(int(name))
            except OSError:
                pass
    return pids


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_build_leaves_nothing_and_the_next_reuses_what_was_done(
        store: Store, ctx: Path, how: signal.Signals) -> None:
    marker = f"7{os.getpid()}{how.value}.25"
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE}\nCOPY hello.txt /\nRUN echo step-two > /two\n"
        f"RUN echo sleeping; sleep {marker}\n")
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root)
    proc = subprocess.Popen([sys.executable, "-m", "isolate.cli", "build", "--progress",
                             "plain", str(ctx)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        seen = b""
        while b"sleeping" not in seen:
            chunk = proc.stderr.readline()
            assert chunk, f"the build ended early: {seen.decode()}"
            seen += chunk
        _wait_for(lambda: _processes_with(marker), "the RUN step's sleep")
        os.kill(proc.pid, how)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    if how == signal.SIGINT:
        assert proc.returncode == 130
    # the step's container went with the build (its whole pid namespace)
    _wait_for(lambda: not _processes_with(marker), "the sandboxed sleep to end")
    # a fresh open of the store clears the dead build's temp space; nothing is half-written
    fresh = Store(store.root)
    assert os.listdir(os.path.join(fresh.root, "tmp")) == []
    for image in fresh.images():
        fresh.verify(image)
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE}\nCOPY hello.txt /\nRUN echo step-two > /two\nRUN echo finished\n")
    again = isolate(fresh, "build", "--progress", "plain", str(ctx))
    err = again.stderr.decode()
    assert again.returncode == 0, err
    assert "[2/4] CACHED" in err and "[3/4] CACHED" in err and "[4/4] DONE" in err
