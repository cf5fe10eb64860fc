"""Fixtures for the container tests: a store with busybox-static images built by the tests,
and a container store that removes every container a test left (and fails the test if it
had to kill one that still ran without being asked to)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from isolate.container import ContainerStore
from isolate.image import Image, ImageConfig, Store

BUSYBOX = "/bin/busybox"


def _busybox_tree(root: Path) -> None:
    for d in ("bin", "etc", "tmp", "root", "home/app", "data", "srv", "var/www"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "app:x:1000:1000:app user:/home/app:/bin/sh\n"
        "www:x:33:33:www:/var/www:/bin/sh\n")
    (root / "etc" / "group").write_text(
        "root:x:0:\napp:x:1000:\nwww:x:33:\nstaff:x:50:app,www\naudio:x:29:app\n")
    os.chown(root / "home" / "app", 1000, 1000)
    (root / "data" / "seed.txt").write_text("from the image\n")
    (root / "data" / "sub").mkdir()
    (root / "data" / "sub" / "deep.txt").write_text("deep\n")
    (root / "etc" / "marker").write_text("isolate test image\n")


@pytest.fixture(scope="session")
def image_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for the session, with the test images (``busybox``, ``busybox-vol``)."""
    if os.geteuid() != 0:
        pytest.skip("container tests as root need root")
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    base = tmp_path_factory.mktemp("ctr-store")
    tree = base / "tree"
    tree.mkdir()
    _busybox_tree(tree)
    store = Store(base / "store")
    store.from_directory(tree, "busybox:latest",
                         config=ImageConfig(env=["PATH=/bin", "IMAGE_ENV=from-image"],
                                            cmd=["sh"], working_dir="/"))
    store.from_directory(tree, "busybox-vol:latest",
                         config=ImageConfig(env=["PATH=/bin"], cmd=["sh"],
                                            volumes=["/data"], stop_signal="SIGUSR1"))
    store.from_directory(tree, "busybox-user:latest",
                         config=ImageConfig(env=["PATH=/bin"], cmd=["id"], user="app",
                                            working_dir="/home/app"))
    yield store
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def containers(image_store: Store) -> Iterator[ContainerStore]:
    """The session store's containers; every container and volume a test made is removed
    when it ends."""
    cs = ContainerStore(image_store)
    before = set(cs.ids())
    volumes_before = {v.name for v in cs.volumes.list()}
    yield cs
    for cid in set(cs.ids()) - before:
        try:
            cs.get(cid).remove(force=True, volumes=True)
        except LookupError:
            pass
    for vol in cs.volumes.list():
        if vol.name not in volumes_before:
            vol.remove(force=True)


@pytest.fixture
def busybox(image_store: Store) -> Image:
    return image_store.get("busybox")
