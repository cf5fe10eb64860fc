"""Bad input to the image commands: one line on stderr and exit 125, never a traceback, never
a hang, never an image made of something that is not a layer. Each runs ``isolate`` as its own
process, as a user would."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from tests.image.conftest import SRC
from tests.image.test_cli_images import isolate_cmd

from isolate.image import Store

pytestmark = pytest.mark.root


def one_line_error(*args: str, stdin: str | None = None) -> str:
    r = isolate_cmd(*args, input=stdin)
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert len(r.stderr) < 400, r.stderr  # the whole input is not echoed back
    return r.stderr


@pytest.fixture
def store_dir(tmp_path: Path, rootfs_tar: Path) -> Path:
    store = tmp_path / "store"
    Store(store).import_tarball(rootfs_tar, "local/errs:1")
    return store


# ---- item 6: tracebacks that are now one line


@pytest.mark.parametrize("args", [
    ("pull", "localhost:99999/x"),
    ("push", "local/errs:1", "localhost:99999/x"),
    ("login", "localhost:99999", "-u", "me", "--password-stdin"),
])
def test_registry_port_out_of_range_is_one_line(store_dir: Path, args: tuple[str, ...]) -> None:
    extra = ("--store", str(store_dir)) if args[0] != "login" else ()
    err = one_line_error(args[0], *extra, *args[1:], stdin="secret\n")
    assert "99999" in err and "port" in err


@pytest.mark.parametrize("target", ["missing/out.tar", "adir", "", "/dev/full",
                                    "/proc/self/environ", "/proc/version"])
def test_save_to_an_output_it_cannot_write_is_one_line(store_dir: Path, tmp_path: Path,
                                                       target: str) -> None:
    (tmp_path / "adir").mkdir()
    path = str(tmp_path / target) if target and not target.startswith("/") else target
    one_line_error("save", "--store", str(store_dir), "-o", path, "local/errs:1")
    assert os.listdir(tmp_path / "adir") == []
    # No temp file is left beside the target.
    assert sorted(os.listdir(tmp_path)) == ["adir", "store"]


def test_save_to_another_filesystem_and_into_a_pipe(store_dir: Path) -> None:
    # The archive used to be renamed from the store's tmp/ (EXDEV on another filesystem).
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    elsewhere = tempfile.mkdtemp(prefix="isolate-save-", dir="/dev/shm")
    try:
        if os.stat(elsewhere).st_dev == os.stat(store_dir).st_dev:
            pytest.skip("/dev/shm is on the store's filesystem here")
        out = os.path.join(elsewhere, "saved.tar")
        r = isolate_cmd("save", "--store", str(store_dir), "-o", out, "local/errs:1")
        assert r.returncode == 0, r.stderr
        with tarfile.open(out) as tar:
            assert "manifest.json" in tar.getnames()
        assert os.listdir(elsewhere) == ["saved.tar"]
    finally:
        shutil.rmtree(elsewhere)
    piped = subprocess.run([sys.executable, "-m", "isolate.cli", "save", "--store",
                            str(store_dir), "-o", "/dev/stdout", "local/errs:1"],
                           env=dict(os.environ, PYTHONPATH=SRC), capture_output=True,
                           timeout=120, check=False)
    assert piped.returncode == 0, piped.stderr
    with tarfile.open(fileobj=io.BytesIO(piped.stdout)) as tar:
        assert "manifest.json" in tar.getnames()


def test_import_cmd_nested_too_deep_is_one_line(tmp_path: Path, rootfs_tar: Path) -> None:
    deep = "[" * 20000 + "]" * 20000
    err = one_line_error("import", "--store", str(tmp_path / "s"), "--cmd", deep,
                         str(rootfs_tar), "x:1")
    assert "--cmd" in err


def _tar_with(tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    path = tmp_path / "odd.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("field", ["uid", "devmajor"])
def test_import_of_a_layer_with_a_huge_id_is_one_line(tmp_path: Path, field: str) -> None:
    info = tarfile.TarInfo("dev" if field == "devmajor" else "f")
    if field == "devmajor":
        info.type = tarfile.CHRTYPE
    setattr(info, field, 2**40)  # GNU format writes it base-256
    err = one_line_error("import", "--store", str(tmp_path / "s"),
                         str(_tar_with(tmp_path, info)), "x:1")
    assert "out of range" in err


def test_a_layer_nesting_1500_directories_is_imported_run_ready_and_collected(
        tmp_path: Path) -> None:
    # Deeper than Python's recursion limit: import, extraction into the store (fsync and
    # rename), and gc all work; nothing deep is left behind.
    layer = tmp_path / "deep.tar"
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        name = "/".join(["d"] * 1500)
        info = tarfile.TarInfo(name + "/f")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"deep"))
    store = Store(tmp_path / "s")
    img = store.import_tarball(layer, "deep:1")
    [lower] = store.layer_dirs(img)
    fd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):
            fd, old = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        assert os.stat("f", dir_fd=fd).st_size == 4
    finally:
        os.close(fd)
    store.rmi("deep:1")
    report = store.gc()
    assert report.layers == 1 and os.listdir(tmp_path / "s" / "layers") == []


# ---- item 8: import checks the layer; load neither hangs nor rambles


def test_import_of_a_file_that_is_not_a_layer_fails_and_makes_no_image(tmp_path: Path) -> None:
    err = one_line_error("import", "--store", str(tmp_path / "s"), "/etc/passwd", "x:1")
    assert "tar" in err
    assert Store(tmp_path / "s").images() == []


@pytest.mark.parametrize("what", ["truncated", "absolute"])
def test_import_refuses_what_extraction_would_refuse(tmp_path: Path, rootfs_tar: Path,
                                                     what: str) -> None:
    if what == "truncated":
        data = rootfs_tar.read_bytes()
        bad = tmp_path / "cut.tar.gz"
        bad.write_bytes(data[: len(data) // 2])
    else:
        info = tarfile.TarInfo("/etc/evil")
        bad = _tar_with(tmp_path, info, b"x")
    one_line_error("import", "--store", str(tmp_path / "s"), str(bad), "x:1")
    assert Store(tmp_path / "s").images() == []


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/null"])
def test_load_of_a_device_is_refused_at_once(tmp_path: Path, source: str) -> None:
    # /dev/zero used to hang in the xz probe; isolate_cmd's timeout bounds a regression.
    err = one_line_error("load", "--store", str(tmp_path / "s"), "-i", source)
    assert "not a regular file" in err


@pytest.mark.parametrize("source", ["/etc/passwd", "zeros", "empty"])
def test_load_of_a_non_archive_is_one_line(tmp_path: Path, source: str) -> None:
    if source == "zeros":
        (tmp_path / source).write_bytes(bytes(1 << 20))
    elif source == "empty":
        (tmp_path / source).write_bytes(b"")
    path = source if source.startswith("/") else str(tmp_path / source)
    one_line_error("load", "--store", str(tmp_path / "s"), "-i", path)
