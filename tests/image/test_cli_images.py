"""The image commands of the CLI against a real store and a registry on 127.0.0.1, and
``isolate run IMAGE`` end to end (as a separate process, as a user runs it)."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.image.conftest import SRC, Registry, need, skopeo

from isolate.cli import main

pytestmark = pytest.mark.root


def cli(store: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([args[0], "--store", str(store), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def isolate_cmd(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "isolate.cli", *args], env=env, text=True,
                          timeout=120, **kw)  # type: ignore[call-overload]


@pytest.fixture
def cli_store(tmp_path: Path) -> Path:
    return tmp_path / "clistore"


def test_import_images_tag_inspect_rmi(cli_store: Path, rootfs_tar: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(cli_store, "import", str(rootfs_tar), "local/cli:1", "--cmd",
                         '["/bin/echo", "hi"]', "-e", "A=1", capsys=capsys)
    assert code == 0, err
    image_id = out.strip()
    assert image_id.startswith("sha256:")

    assert cli(cli_store, "tag", "local/cli:1", "local/cli:2", capsys=capsys)[0] == 0
    code, out, _ = cli(cli_store, "images", capsys=capsys)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"]
    assert {tuple(line.split()[:3]) for line in lines[1:]} == {
        ("local/cli", "1", image_id[7:19]), ("local/cli", "2", image_id[7:19])}
    assert cli(cli_store, "images", "-q", capsys=capsys)[1].split() == [image_id[7:19]]

    code, out, _ = cli(cli_store, "inspect", "local/cli:2", capsys=capsys)
    (doc,) = json.loads(out)
    assert doc["Id"] == image_id
    assert doc["Config"] == {"Env": ["A=1"], "Cmd": ["/bin/echo", "hi"]}
    assert len(doc["RootFS"]["Layers"]) == 1

    code, out, _ = cli(cli_store, "rmi", "local/cli:1", capsys=capsys)
    assert out == "Untagged: docker.io/local/cli:1\n"
    code, out, err = cli(cli_store, "rmi", "local/cli:1", capsys=capsys)
    assert code == 125 and out == "" and len(err.splitlines()) == 1


def test_errors_are_one_line_and_exit_125(cli_store: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(cli_store, "inspect", "not/here:1", capsys=capsys)
    assert code == 125 and out == "[]\n"  # the objects found (none), as docker inspect
    assert len(err.splitlines()) == 1 and err.startswith("isolate: ")
    code, _, err = cli(cli_store, "tag", "Bad Ref", "x", capsys=capsys)
    assert code == 125 and len(err.splitlines()) == 1


@pytest.mark.registry
def test_push_pull_save_load_against_a_loopback_registry(
        cli_store: Path, rootfs_tar: Path, registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(cli_store, "import", str(rootfs_tar), "local/pushme:1", capsys=capsys)
    image_id = out.strip()
    target = f"{registry.host}/cli/pushme:{os.urandom(3).hex()}"
    code, out, err = cli(cli_store, "push", "local/pushme:1", target, capsys=capsys)
    assert code == 0, err
    assert out.strip().startswith("sha256:")
    assert err == ""  # no progress bars in a pipe
    # The registry really has it.
    assert json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}").stdout)

    other = tmp_path / "other"
    code, out, err = cli(other, "pull", target, capsys=capsys)
    assert code == 0, err
    assert out.strip() == image_id and err == ""

    archive = tmp_path / "saved.tar"
    assert cli(other, "save", target, "-o", str(archive), capsys=capsys)[0] == 0
    third = tmp_path / "third"
    code, out, _ = cli(third, "load", "-i", str(archive), capsys=capsys)
    assert code == 0 and out == f"Loaded image: {target}\n"
    assert cli(third, "images", "-q", "--no-trunc", capsys=capsys)[1].split() == [image_id]


@pytest.mark.registry
def test_a_pulled_tag_is_one_row_and_load_prints_only_the_archives_names(
        cli_store: Path, rootfs_tar: Path, registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli(cli_store, "import", str(rootfs_tar), "local/rows:1", capsys=capsys)
    target = f"{registry.host}/cli/rows:{os.urandom(3).hex()}"
    assert cli(cli_store, "push", "local/rows:1", target, capsys=capsys)[0] == 0
    other = tmp_path / "other"
    assert cli(other, "pull", target, capsys=capsys)[0] == 0
    # The pull recorded repo@digest too; docker images shows no <none> row for it.
    _, out, _ = cli(other, "images", capsys=capsys)
    repo, tag = target.rsplit(":", 1)
    assert [line.split()[:2] for line in out.splitlines()[1:]] == [[repo, tag]]

    assert cli(other, "tag", target, "local/alias:1", capsys=capsys)[0] == 0
    archive = tmp_path / "rows.tar"
    assert cli(other, "save", "-o", str(archive), target, capsys=capsys)[0] == 0
    code, out, err = cli(other, "load", "-i", str(archive), capsys=capsys)
    assert code == 0, err
    assert out == f"Loaded image: {target}\n"  # not the alias, nor the digest name


@pytest.mark.registry
def test_pull_draws_progress_bars_on_a_terminal(
        cli_store: Path, rootfs_tar: Path, registry: Registry, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    cli(cli_store, "import", str(rootfs_tar), "local/bars:1", capsys=capsys)
    target = f"{registry.host}/cli/bars:1"
    assert cli(cli_store, "push", "local/bars:1", target, capsys=capsys)[0] == 0
    primary, secondary = pty.openpty()
    try:
        proc = isolate_cmd("pull", "--store", str(tmp_path / "tty"), target, stderr=secondary)
    finally:
        os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.returncode == 0
    drawn = b"".join(chunks).decode()
    assert f"Pulling {target}" in drawn and "\x1b[2K" in drawn and "Complete" in drawn


@pytest.fixture
def run_store(tmp_path: Path, rootfs_tar: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    store = tmp_path / "runstore"
    code, _, err = cli(store, "import", str(rootfs_tar), "local/runme:1", "--cmd",
                       "echo cmd $GREETING; cat marker", "-e", "GREETING=hello",
                       "-w", "/etc", capsys=capsys)
    assert code == 0, err
    return store


def test_run_image_uses_its_cmd_env_and_workdir(run_store: Path) -> None:
    r = isolate_cmd("run", "--store", str(run_store), "local/runme:1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "cmd hello\nisolate test image\n"


def test_run_image_with_a_command_and_exit_status(run_store: Path) -> None:
    r = isolate_cmd("run", "--store", str(run_store), "-e", "X=1", "local/runme:1",
                    "sh", "-c", "echo $X $GREETING; pwd; echo w > /w && cat /w; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "1 hello\n/etc\nw\n"
    r = isolate_cmd("run", "--store", str(run_store), "--read-only", "--image",
                    "local/runme:1", "--", "sh", "-c", "echo w > /w")
    assert r.returncode != 0 and "Read-only" in r.stderr
    r = isolate_cmd("run", "--store", str(run_store), "--entrypoint", "/bin/echo",
                    "local/runme:1", "via", "entrypoint")
    assert r.stdout == "via entrypoint\n"


def test_run_dashdash_keeps_the_host_root(run_store: Path) -> None:
    r = isolate_cmd("run", "--", "/bin/sh", "-c", "test -d /usr && echo host")
    assert r.returncode == 0 and r.stdout == "host\n", r.stderr


def test_run_unknown_image_without_pull_fails_in_one_line(run_store: Path) -> None:
    r = isolate_cmd("run", "--store", str(run_store), "--pull", "never", "local/nope:1")
    assert r.returncode == 125 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "nope" in r.stderr


def test_save_formats_are_read_by_skopeo_and_umoci(cli_store: Path, rootfs_tar: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cli(cli_store, "import", str(rootfs_tar), "local/fmt:1", capsys=capsys)
    archive = tmp_path / "oci.tar"
    assert cli(cli_store, "save", "local/fmt:1", "-o", str(archive), "--format",
               "oci-archive", capsys=capsys)[0] == 0
    info = json.loads(skopeo("inspect", f"oci-archive:{archive}:docker.io/local/fmt:1").stdout)
    assert len(info["Layers"]) == 1
    layout = tmp_path / "layout"
    assert cli(cli_store, "save", "local/fmt:1", "-o", str(layout), "--format", "oci",
               capsys=capsys)[0] == 0
    umoci = need("umoci")
    listed = subprocess.run([umoci, "ls", "--layout", str(layout)], check=True,
                            capture_output=True, text=True)
    assert listed.stdout.split() == ["docker.io/local/fmt:1"]


def test_run_image_with_the_fuse_overlay_flag(run_store: Path) -> None:
    if shutil.which("fuse-overlayfs") is None:
        pytest.skip("fuse-overlayfs (Debian package fuse-overlayfs) is not installed")
    # --image: the image as a throwaway sandbox's root ('run IMAGE' makes a container).
    r = isolate_cmd("run", "--store", str(run_store), "--overlay", "fuse", "--image",
                    "local/runme:1", "sh", "-c", "grep ' / / ' /proc/self/mountinfo; cat marker")
    assert r.returncode == 0, r.stderr
    assert "fuse" in r.stdout and r.stdout.endswith("isolate test image\n")
