"""The seed's Dockerfile shape on a real Debian: a base with Python (made with debootstrap
from Debian's mirror, once per session), a RUN that appends to a file under /etc, a RUN that
installs a local .deb, a RUN ``pip install`` of a local wheel -- built, run with ``isolate
run``, and compared with what ``podman build`` makes of the same Dockerfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from isolate.image import Image, Store

from ..conftest import SRC
from .conftest import Build, Podman, config_of, snapshot
from .test_podman import compare_configs, compare_trees

pytestmark = [pytest.mark.root, pytest.mark.slow]

BASE = "local/debian-python:bookworm"
MIRROR = os.environ.get("ISOLATE_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A minimal Debian bookworm with python3 and pip, as an uncompressed root tar."""
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        pytest.skip("debootstrap is not installed")
    work = tmp_path_factory.mktemp("debian")
    root = work / "root"
    proc = subprocess.run([debootstrap, "--variant=minbase", "--include=python3,python3-pip",
                           "bookworm", str(root), MIRROR], capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        pytest.skip(f"debootstrap from {MIRROR} failed (no mirror?): {proc.stderr[-500:]}")
    for sub in ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt",
                "var/lib/apt/lists"):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True, exist_ok=True)
    tarball = work / "root.tar"
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tarball), "."],
                   check=True)
    shutil.rmtree(root)
    return tarball


def make_deb(out: Path) -> Path:
    """A tiny architecture-independent .deb: /usr/bin/isolate-hello and a postinst."""
    pkg = out / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr" / "bin").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: isolate-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@x>\n"
        "Description: a test package\n")
    postinst = pkg / "DEBIAN" / "postinst"
    postinst.write_text("#!/bin/sh\nset -e\necho installed-by-postinst > /etc/isolate-hello\n")
    postinst.chmod(0o755)
    hello = pkg / "usr" / "bin" / "isolate-hello"
    hello.write_text("#!/bin/sh\necho hello from the deb\n")
    hello.chmod(0o755)
    deb = out / "isolate-hello_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)],
                   check=True, capture_output=True)
    shutil.rmtree(pkg)
    return deb


def make_wheel(out: Path) -> Path:
    """A pure-Python wheel, written by hand (no network, no build backend)."""
    import base64
    import hashlib

    name = "hello_isolate-1.0-py3-none-any.whl"
    files = {
        "hello_isolate/__init__.py": b'GREETING = "hello from the wheel"\n',
        "hello_isolate-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: hello-isolate\n"
                                                b"Version: 1.0\n",
        "hello_isolate-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\n"
                                             b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append("hello_isolate-1.0.dist-info/RECORD,,")
    files["hello_isolate-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / name
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return wheel


DOCKERFILE = f"""FROM {BASE}
RUN echo "built by isolate's tests" >> /etc/issue
COPY isolate-hello_1.0_all.deb /pkgs/
RUN dpkg -i /pkgs/isolate-hello_1.0_all.deb
COPY hello_isolate-1.0-py3-none-any.whl /wheels/
RUN pip install --no-index --no-cache-dir --break-system-packages \\
        /wheels/hello_isolate-1.0-py3-none-any.whl
WORKDIR /app
ENV APP_MODE=test
CMD ["python3", "-c", \
     "import hello_isolate, os; print(hello_isolate.GREETING, os.environ['APP_MODE'])"]
"""

# Files whose content records when it was made (logs, dpkg's backup of its status,
# bytecode that embeds source mtimes): they must exist in both, with the same owner and
# mode; their bytes are not compared.
TIMESTAMPED = ("var/log/", "var/lib/dpkg/status-old", "var/cache/debconf/", "__pycache__/",
               "var/lib/dpkg/triggers/")


@pytest.fixture
def seed(store: Store, debian_root: Path, tmp_path: Path) -> Build:
    store.import_tarball(debian_root, BASE)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    make_deb(ctx)
    make_wheel(ctx)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return Build(store, ctx)


def isolate_cli(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC, ISOLATE_STORE=store.root)
    return subprocess.run([sys.executable, "-m", "isolate.cli", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_seed_dockerfile_builds_and_runs(seed: Build, store: Store) -> None:
    built = isolate_cli(store, "build", "-t", "seed/app:1", "--network", "none",
                        str(seed.context))
    assert built.returncode == 0, built.stderr
    assert "Setting up isolate-hello (1.0)" in built.stderr  # dpkg's output, streamed
    assert "Successfully installed hello-isolate-1.0" in built.stderr  # pip's
    run = isolate_cli(store, "run", "seed/app:1")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "hello from the wheel test\n"
    run = isolate_cli(store, "run", "seed/app:1", "sh", "-c",
                      "isolate-hello; cat /etc/isolate-hello; tail -n1 /etc/issue; pwd")
    assert run.stdout.splitlines() == ["hello from the deb", "installed-by-postinst",
                                       "built by isolate's tests", "/app"]
    again = isolate_cli(store, "build", "-t", "seed/app:1", "--network", "none",
                        "--progress", "plain", str(seed.context))
    assert again.stdout == built.stdout  # the same image, from the cache
    assert "DONE" not in again.stderr


def test_the_seed_dockerfile_matches_podman(seed: Build, store: Store, podman: Podman,
                                            tmp_path: Path) -> None:
    ours = seed(DOCKERFILE, tags=("seed/app:1",), network="none").image
    archive = tmp_path / "base.tar"
    store.save(BASE, archive)
    podman("load", "-i", str(archive))
    archive.unlink()
    podman.build(seed.context, "seed/app:1", "--format", "docker")
    theirs_store = Store(tmp_path / "podman-images")
    theirs: Image = podman.load_into(theirs_store, "seed/app:1", tmp_path)
    a, b = snapshot(store, ours), snapshot(theirs_store, theirs)
    for snap in (a, b):
        for path, info in list(snap.items()):
            if any(part in path for part in TIMESTAMPED) and info.kind == "file":
                snap[path] = info.__class__(info.kind, info.mode, info.uid, info.gid, "")
    # Docker's reference: "If the WORKDIR doesn't exist, it will be created even if it's not
    # used in any subsequent Dockerfile instruction." isolate does; podman 4.3 makes it only
    # for a later RUN. That is the one difference.
    assert a.pop("app").kind == "dir" and "app" not in b
    problems = compare_trees(a, b)
    assert not problems, "\n".join(problems[:50])
    problems = compare_configs(config_of(store, ours), config_of(theirs_store, theirs))
    assert not problems, "\n".join(problems)
