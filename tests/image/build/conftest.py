"""Fixtures for build tests: a busybox base image, a builder that records its events, a
tree snapshot of any image (what the image's files are, for comparisons), and podman set up
with configuration of the test's own (never a bridge on the machine: ``--network=none``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from isolate._container_runner import ContainerStepRunner
from isolate.image import Image, Store
from isolate.image.build import (
    Builder,
    BuildOptions,
    BuildRequest,
    BuildResult,
    ImageState,
    StepFinished,
    StepOutput,
)
from isolate.image.build.tree import ImageTree

BUSYBOX = Path("/bin/busybox")
BASE = "local/busybox:1"


def busybox_root(root: Path) -> Path:
    """A root filesystem of static busybox with every applet, users and the usual dirs."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "app:x:1000:1000:app:/home/app:/bin/sh\n"
                                         "nobody:x:65534:65534::/nonexistent:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nstaff:x:50:app\n"
                                        "nogroup:x:65534:\n")
    (root / "etc" / "motd").write_text("welcome\n")
    (root / "root").mkdir(mode=0o700)
    os.chmod(root / "root", 0o700)
    (root / "home" / "app").mkdir(parents=True)
    os.chown(root / "home" / "app", 1000, 1000)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    for d in ("proc", "sys", "dev", "run", "var"):
        (root / d).mkdir()
    return root


@pytest.fixture(scope="session")
def busybox_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_root(tmp_path_factory.mktemp("bbroot") / "root")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


@pytest.fixture
def base(store: Store, busybox_tree: Path) -> Image:
    return store.from_directory(busybox_tree, BASE)


@attrs.define
class Recorder:
    """Collects a builder's events."""

    events: list[Any] = attrs.field(factory=list)

    def __call__(self, event: Any) -> None:
        self.events.append(event)

    @property
    def output(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, StepOutput))

    def finished(self) -> list[StepFinished]:
        return [e for e in self.events if isinstance(e, StepFinished)]

    def cached(self) -> list[str]:
        return [e.step.text for e in self.finished() if e.cached and e.step.kind != "from"]

    def ran(self) -> list[str]:
        return [e.step.text for e in self.finished()
                if not e.cached and e.step.kind not in ("from", "config")]


@attrs.define
class Build:
    """Builds Dockerfiles in a context dir with one store; each call records its events."""

    store: Store
    context: Path
    last: Recorder = attrs.field(factory=Recorder)

    def file(self, name: str, data: str | bytes = "", mode: int | None = None) -> Path:
        path = self.context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        if mode is not None:
            os.chmod(path, mode)
        return path

    def __call__(self, dockerfile: str, *, tags: tuple[str, ...] = ("test/built:1",),
                 **options: Any) -> BuildResult:
        self.file("Dockerfile", dockerfile)
        self.last = Recorder()
        builder = Builder(self.store, ContainerStepRunner(), progress=self.last)
        return builder.build(BuildRequest(context=str(self.context), tags=tags,
                                          options=BuildOptions(**options)))


@pytest.fixture
def build(store: Store, base: Image, tmp_path: Path) -> Build:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    return Build(store, ctx)


def config_of(store: Store, image: Image) -> dict[str, Any]:
    """The raw ``config`` object of an image (every field, also those ImageConfig lacks)."""
    return dict(ImageState.from_image(store, image).config)


def history_of(store: Store, image: Image) -> list[dict[str, Any]]:
    return [dict(h) for h in ImageState.from_image(store, image).history]


@attrs.frozen
class FileInfo:
    kind: str
    mode: int
    uid: int
    gid: int
    data: str  # sha256 of a file, a symlink's target, "" otherwise


def snapshot(store: Store, image: Image | str, below: str = "/") -> dict[str, FileInfo]:
    """Every entry of the image's merged tree below ``below``: type, mode, owner, content."""
    img = image if isinstance(image, Image) else store.get(image)
    tree = ImageTree(store.layer_dirs(img))
    out = {}
    for rel, entry in tree.walk(below):
        st = entry.st
        if stat.S_ISREG(st.st_mode):
            kind, data = "file", _sha(entry.host)
        elif stat.S_ISDIR(st.st_mode):
            kind, data = "dir", ""
        elif stat.S_ISLNK(st.st_mode):
            kind, data = "symlink", os.readlink(entry.host)
        else:
            kind, data = "other", f"{st.st_rdev}"
        out[rel] = FileInfo(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, data)
    return out


def read(store: Store, image: Image | str, path: str) -> bytes | None:
    img = image if isinstance(image, Image) else store.get(image)
    return ImageTree(store.layer_dirs(img)).read(path)


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def layer_bytes(store: Store, image: Image) -> list[bytes]:
    """Every layer of ``image``, uncompressed (to look for what must not be in any)."""
    import gzip

    out = []
    for desc in image.layers:
        with store.open_blob(desc.digest) as f:
            data = f.read()
        out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


# -- podman ------------------------------------------------------------------------------------

@attrs.frozen
class Podman:
    """podman with a containers.conf, storage and temp dir of the test's own."""

    env: dict[str, str]
    root: Path

    def __call__(self, *args: str, check: bool = True, timeout: float = 900,
                 input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(["podman", *args], env=self.env, capture_output=True,
                              timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout.decode(errors='replace')[-3000:]}\n"
                                 f"{proc.stderr.decode(errors='replace')[-3000:]}")
        return proc

    def build(self, context: Path, tag: str, *extra: str) -> None:
        # Never a bridge on the machine: no network, pull nothing; runc's state is ours too.
        self("build", "--network=none", "--pull=never", "--layers",
             f"--runtime-flag=root={self.root}/runc", "-t", tag, *extra, str(context))

    def load_into(self, store: Store, tag: str, work: Path) -> Image:
        """Save podman's image and load it into an isolate store, to read it the same way."""
        archive = work / f"podman-{abs(hash(tag))}.tar"
        self("save", "--format", "docker-archive", "-o", str(archive), tag)
        try:
            (img,) = store.load(archive)
        finally:
            archive.unlink()
        return img


def _podman_config(work: Path) -> dict[str, str]:
    (work / "storage").mkdir()
    (work / "run").mkdir()
    (work / "tmp").mkdir()
    (work / "cni").mkdir()
    (work / "runc").mkdir()
    # netns none, and every directory podman and runc keep state in is ours: podman never
    # touches the machine's network (not even a lock file in /etc/cni), /run/libpod or
    # /var/lib/containers; and its locks are files there, not the machine-wide shm segment
    # /dev/shm/libpod_lock (which its default lock type makes, and nothing removes).
    (work / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        'netns = "none"\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
        'lock_type = "file"\n'
        f'events_logger = "none"\ntmp_dir = "{work}/libpod"\n'
        f'static_dir = "{work}/storage/libpod"\nvolume_path = "{work}/storage/volumes"\n'
        f'[network]\nnetwork_config_dir = "{work}/cni"\n')
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/storage"\n'
        f'runroot = "{work}/run"\n')
    (work / "registries.conf").write_text('unqualified-search-registries = []\n'
                                          'short-name-mode = "disabled"\n')
    return dict(os.environ, CONTAINERS_CONF=str(work / "containers.conf"),
                CONTAINERS_STORAGE_CONF=str(work / "storage.conf"),
                CONTAINERS_REGISTRIES_CONF=str(work / "registries.conf"),
                TMPDIR=str(work / "tmp"))


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    if os.geteuid() != 0:
        pytest.skip("the podman comparison runs as root")
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman and runc are not installed")
    work = tmp_path_factory.mktemp("podman")
    pm = Podman(_podman_config(work), work)
    try:
        yield pm
    finally:
        # Everything podman made is below work/: unmount what its overlay driver left mounted,
        # then remove its storage. (Not 'podman rmi --all': podman 4.3 then takes a lock file
        # in the machine's /etc/cni/net.d whatever network_config_dir says.)
        for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
            mountpoint = line.split()[4]
            if mountpoint.startswith(str(work)):
                subprocess.run(["umount", "-l", mountpoint], check=False)
        shutil.rmtree(work, ignore_errors=True)
