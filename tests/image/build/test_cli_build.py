"""``isolate build``, ``isolate history`` and ``isolate builder prune`` as a user runs them:
real processes, real output; and what Ctrl-C and SIGKILL in the middle of a build leave."""

from __future__ import annotations

import io
import json
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
    assert "[3/5] from-run" in lines  # the RUN's own output, streamed after its label
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


def test_stages_built_at_once_print_each_line_after_its_step(store: Store, tmp_path: Path,
                                                             base: Image) -> None:
    path = tmp_path / "par"
    path.mkdir()
    # Each stage prints half a line, waits until the other has started (through a cache
    # mount both see), then ends its line: interleaved output, but every line whole.
    wait = ("while ! [ -e /shared/{0} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done")
    (path / "Dockerfile").write_text(f"""FROM {BASE} AS a
RUN --mount=type=cache,id=s,target=/shared i=0; printf 'from-a '; touch /shared/a; \
    {wait.format("b")}; echo done-a; echo second-a
FROM {BASE} AS b
RUN --mount=type=cache,id=s,target=/shared i=0; printf 'from-b '; touch /shared/b; \
    {wait.format("a")}; echo done-b
FROM {BASE}
COPY --from=a /etc/motd /a
COPY --from=b /etc/motd /b
""")
    proc = isolate(store, "build", "--progress", "plain", str(path))
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stderr.decode().splitlines()
    assert "[a 2/2] from-a done-a" in lines and "[a 2/2] second-a" in lines
    assert "[b 2/2] from-b done-b" in lines
    assert "[a 2/2] DONE" in " ".join(lines) and "[b 2/2] DONE" in " ".join(lines)


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


def test_history_gives_each_layer_its_size(store: Store, ctx: Path) -> None:
    assert isolate(store, "build", "-q", "-t", "test/h:1", str(ctx)).returncode == 0
    image = store.get("test/h:1")
    rows = json.loads(isolate(store, "history", "--format", "json", "test/h:1").stdout)
    # newest first: CMD, ENV (no layer), RUN, COPY, then the base's one entry
    assert [r["created_by"].split()[0] for r in rows[:4]] == ["CMD", "ENV", "RUN", "COPY"]
    with_files = [r["size"] for r in rows if r["size"]]
    assert with_files == [d.size for d in reversed(image.layers)]
    assert rows[0]["size"] == rows[1]["size"] == 0 and all(s > 0 for s in with_files)
    table = isolate(store, "history", "--no-human", "test/h:1").stdout.decode().splitlines()
    assert table[3].split()[-3] == str(image.layers[-1].size)  # the RUN's layer


def test_builder_prune(store: Store, ctx: Path) -> None:
    isolate(store, "build", "-q", str(ctx))
    assert BuildCache(store).step_keys()
    proc = isolate(store, "builder", "prune", "-af")
    assert proc.returncode == 0
    assert proc.stdout.decode().startswith("Deleted build cache: 2 step(s), 0 cache mount(s)")
    assert BuildCache(store).step_keys() == []


def test_rmi_prune_frees_the_cache_of_an_image_nothing_names(store: Store, ctx: Path) -> None:
    assert isolate(store, "build", "-q", "-t", "test/g:1", str(ctx)).returncode == 0
    keys = BuildCache(store).step_keys()
    assert len(keys) == 2
    # While the image is named, the gc keeps what its cache entries use.
    other = isolate(store, "build", "-q", "-t", "test/other:1", str(ctx))
    assert other.returncode == 0
    assert isolate(store, "rmi", "--prune", "test/other:1").returncode == 0
    again = isolate(store, "build", "--progress", "plain", "-t", "test/g:1", str(ctx))
    assert "[2/5] CACHED" in again.stderr.decode() and "[3/5] CACHED" in again.stderr.decode()
    proc = isolate(store, "rmi", "--prune", "test/g:1")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "Untagged: docker.io/test/g:1" in proc.stdout.decode()
    # The layers went with the image: the entries that named them are misses.
    last = isolate(store, "build", "--progress", "plain", str(ctx))
    err = last.stderr.decode()
    assert last.returncode == 0, err
    assert "CACHED" not in err and "[2/5] DONE" in err and "[3/5] DONE" in err


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


def _wait_or_dump(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """Wait for the interrupted build to end; if it does not, fail with the tracebacks of
    its threads (faulthandler, on SIGABRT) and what it printed."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGABRT)
        proc.wait()
        assert proc.stderr is not None
        pytest.fail(f"the build did not stop:\n{proc.stderr.read().decode()[-8000:]}")


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_an_interrupted_build_leaves_nothing_and_the_next_reuses_what_was_done(
        store: Store, ctx: Path, how: signal.Signals) -> None:
    marker = f"7{os.getpid()}{how.value}.25"
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE}\nCOPY hello.txt /\nRUN echo step-two > /two\n"
        f"RUN echo sleeping; sleep {marker}\n")
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root, PYTHONFAULTHANDLER="1")
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
        _wait_or_dump(proc)
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
    _wait_for(lambda: not _processes_with(marker), "the step's sleep to end")
    # no mount of the step's was made where this process can see it (its root and binds
    # were in the container's own mount namespace, gone with it)
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if store.root in line] == []
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


def test_ctrl_c_while_stages_build_at_once_stops_both(store: Store, ctx: Path) -> None:
    marker = f"8{os.getpid()}.5"
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE} AS one\nRUN sleep {marker}1\nFROM {BASE} AS two\nRUN sleep {marker}2\n"
        f"FROM {BASE}\nCOPY --from=one /etc/motd /1\nCOPY --from=two /etc/motd /2\n")
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root, PYTHONFAULTHANDLER="1")
    proc = subprocess.Popen([sys.executable, "-m", "isolate.cli", "build", "-q", str(ctx)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: len(_processes_with(marker)) == 2, "both stages' sleeps")
        os.kill(proc.pid, signal.SIGINT)
        _wait_or_dump(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert proc.returncode == 130
    _wait_for(lambda: not _processes_with(marker), "both sleeps to end")
    assert os.listdir(os.path.join(Store(store.root).root, "tmp")) == []
