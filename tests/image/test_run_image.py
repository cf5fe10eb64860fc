"""Running images: Sandbox(image=...) on an overlay of the image's layers, and the commit round
trip (run -> change files -> diff the upper dir -> new image -> save -> skopeo/umoci -> load ->
run) with whiteouts and opaque directories."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.image.conftest import need, skopeo, world_readable_copy
from tests.rootless import run_unprivileged
from tests.sandbox_helpers import need_volatile_overlays, root_is_volatile

from isolate import Sandbox
from isolate.errors import ConfigError, MountError, StateError
from isolate.image import Image, ImageConfig, Store

pytestmark = pytest.mark.root

APPLETS = ("sh", "true", "echo", "cat", "ls", "rm", "mkdir", "id", "pwd", "env", "stat",
           "mknod", "touch")


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A busybox root with users, a file to delete and a directory to replace."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    root = tmp_path_factory.mktemp("imgroot")
    (root / "bin").mkdir()
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "marker").write_text("from the image\n")
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "app:x:1234:4321::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    (root / "data" / "dir").mkdir(parents=True)
    (root / "data" / "dir" / "a").write_text("a\n")
    (root / "data" / "dir" / "b").write_text("b\n")
    (root / "srv").mkdir()
    return root


@pytest.fixture
def image(store: Store, image_tree: Path) -> Image:
    return store.from_directory(image_tree, "local/run:1", config=ImageConfig(
        env=["FOO=from-image", "PATH=/bin"], working_dir="/srv", user="app:staff",
        cmd=["/bin/echo", "default", "cmd"]))


def _store_is_clean(store: Store) -> None:
    assert os.listdir(os.path.join(store.root, "tmp")) == []
    assert os.listdir(os.path.join(store.root, "holds")) == []


def test_runs_in_the_image_root_with_its_env_workdir_and_user(store: Store, image: Image
                                                               ) -> None:
    with Sandbox(image="local/run:1", store=store) as sb:
        assert sb.image is not None and sb.image.id == image.id
        r = sb.run(["sh", "-c", "echo $FOO; pwd; id -u; id -g; cat /etc/marker; ls /"],
                   capture_output=True, text=True, check=True)
    lines = r.stdout.splitlines()
    assert lines[:5] == ["from-image", "/srv", "1234", "50", "from the image"]
    # The image's root, not the host's: no /usr, but the sandbox's mount points are there.
    assert set(lines[5:]) == {"bin", "data", "dev", "etc", "proc", "srv", "sys", "tmp"}
    _store_is_clean(store)


def test_explicit_options_win_over_image_defaults(store: Store, image: Image) -> None:
    with Sandbox(image=image, store=store, env={"FOO": "mine"}, cwd="/etc", uid=0) as sb:
        r = sb.run(["sh", "-c", "echo $FOO $PATH; pwd; id -u"], capture_output=True,
                   text=True, check=True)
    assert r.stdout.split() == ["mine", "/bin", "/etc", "0"]


def test_image_command_applies_entrypoint_and_cmd(store: Store, image_tree: Path) -> None:
    img = store.from_directory(image_tree, "local/ep:1", config=ImageConfig(
        entrypoint=["/bin/echo", "ep"], cmd=["default"]))
    with Sandbox(image=img, store=store) as sb:
        assert sb.image_command() == ["/bin/echo", "ep", "default"]
        assert sb.image_command(["given"]) == ["/bin/echo", "ep", "given"]
        r = sb.run(sb.image_command(), capture_output=True, text=True, check=True)
    assert r.stdout == "ep default\n"
    with Sandbox() as sb, pytest.raises(StateError):
        sb.image_command()


def test_image_without_command_needs_one(store: Store, image_tree: Path) -> None:
    img = store.from_directory(image_tree, "local/nocmd:1")
    with Sandbox(image=img, store=store) as sb, pytest.raises(ConfigError, match="no Entrypoint"):
        sb.image_command()


def test_image_and_rootfs_together_are_rejected(image_tree: Path) -> None:
    with pytest.raises(ConfigError, match="image or a rootfs"):
        Sandbox(image="local/run:1", rootfs=str(image_tree))
    with pytest.raises(ConfigError):
        Sandbox(image="Not A Reference!")


def test_read_only_image_root_refuses_writes(store: Store, image: Image) -> None:
    with Sandbox(image=image, store=store, uid=0) as sb:
        r = sb.run(["sh", "-c", "echo x > /new"], capture_output=True, text=True)
        assert r.returncode != 0 and "Read-only file system" in r.stderr
        assert r.upper_dir is None


def test_writes_go_to_a_throwaway_upper_dir_per_process(store: Store, image: Image) -> None:
    with Sandbox(image=image, store=store, readonly=False, uid=0) as sb:
        first = sb.run(["sh", "-c", "echo new > /new && rm /etc/marker && ls /etc"],
                       capture_output=True, text=True, check=True)
        assert "marker" not in first.stdout.split()
        assert first.upper_dir is not None
        upper = Path(first.upper_dir)
        assert (upper / "new").read_text() == "new\n"
        wh = os.lstat(upper / "etc" / "marker")
        assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0  # an overlay whiteout
        second = sb.run(["sh", "-c", "cat /etc/marker; ls /new"], capture_output=True,
                        text=True)
        assert second.stdout.startswith("from the image")
        assert second.returncode != 0  # /new is gone: the second process has its own upper
    assert not upper.exists()
    # The lower layer itself is untouched.
    lowers = store.layer_dirs(image)
    assert Path(lowers[0], "etc", "marker").read_text() == "from the image\n"
    _store_is_clean(store)


def test_a_processs_throwaway_upper_dir_is_not_synced_at_its_end(store: Store, image: Image
                                                                   ) -> None:
    """Its upper dir is removed with the sandbox: the overlay is ``volatile``, so its unmount
    at the process's end does not sync the store's filesystem (a read-only root has no upper
    dir to sync)."""
    need_volatile_overlays()
    with Sandbox(image=image, store=store, readonly=False, uid=0) as sb:
        r = sb.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True, check=True)
        assert root_is_volatile(r.stdout)
        again = sb.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True,
                       check=True)  # each process's own upper dir, each mounted volatile
        assert root_is_volatile(again.stdout)
    with Sandbox(image=image, store=store, uid=0) as sb:
        r = sb.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True, check=True)
        assert not root_is_volatile(r.stdout)
    _store_is_clean(store)


def test_store_holds_the_image_while_the_sandbox_is_open(store: Store, image: Image) -> None:
    with Sandbox(image=image, store=store):
        holds = os.listdir(os.path.join(store.root, "holds"))
        assert len(holds) == 1
        store.rmi("local/run:1")
        store.gc()
        assert store.get(image.id).id == image.id  # held: gc kept it
    _store_is_clean(store)


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def test_overlay_mounts_leave_no_trace_in_the_callers_namespace(store: Store, image: Image
                                                                 ) -> None:
    before = set(_mountinfo())
    with Sandbox(image=image, store=store, readonly=False) as sb:
        sb.run(["true"], check=True)
        assert not [line for line in _mountinfo() if " overlay " in line
                    and store.root in line]
    # Only mounts of this sandbox count (all name the store: its layers, its scratch dirs):
    # other programs on the machine mount things too.
    assert not [line for line in set(_mountinfo()) - before if store.root in line]


def _layer_tar(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.slow
def test_hundred_layer_image_mounts(store: Store, image: Image, tmp_path: Path) -> None:
    img = image
    for i in range(99):
        upper = tmp_path / f"u{i}"
        (upper / "layers").mkdir(parents=True)
        (upper / "layers" / f"{i:03d}").write_text(f"{i}\n")
        (upper / "layers" / "top").write_text(f"{i}\n")
        img = store.commit(img, upper, None, compression=None)
        shutil.rmtree(upper)
    assert len(img.layers) == 100
    # The lowerdir list would be ~100 * 100 bytes: far past one page of mount data.
    assert sum(len(p) + 1 for p in store.layer_dirs(img)) > 4096
    with Sandbox(image=img, store=store, readonly=False, uid=0) as sb:
        r = sb.run(["ls", "/layers"], capture_output=True, text=True, check=True)
    assert len(r.stdout.split()) == 100  # 99 numbered files and "top"
    with Sandbox(image=img, store=store) as sb:
        r = sb.run(["cat", "/layers/top", "/etc/marker"], capture_output=True, text=True,
                   check=True)
    assert r.stdout == "98\nfrom the image\n"  # the topmost layer wins


@pytest.fixture
def committed(store: Store, image: Image) -> Iterator[Image]:
    """An image committed from a container that deleted a file of a lower layer, replaced a
    directory and added and modified files."""
    script = ("rm /etc/marker && rm -r /data/dir && mkdir /data/dir && "
              "echo c > /data/dir/c && echo changed > /etc/passwd.extra && "
              "echo appended >> /etc/group")
    with Sandbox(image=image, store=store, readonly=False, uid=0) as sb:
        r = sb.run(["sh", "-c", script], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.upper_dir is not None
        yield store.commit(image, r.upper_dir, "local/committed:1")


def _check_changed_root(store: Store, img: Image | str) -> None:
    with Sandbox(image=img, store=store, uid=0) as sb:
        r = sb.run(["sh", "-c", "ls /etc; echo ---; ls /data/dir; echo ---; cat /etc/group"],
                   capture_output=True, text=True, check=True)
    etc, data, group = r.stdout.split("---\n")
    assert "marker" not in etc.split() and "passwd.extra" in etc.split()
    assert data.split() == ["c"]  # the opaque dir hides a and b of the lower layer
    assert group.endswith("appended\n")


def test_commit_round_trip_with_whiteouts_and_opaque_dirs(store: Store, committed: Image,
                                                          image: Image, tmp_path: Path) -> None:
    assert len(committed.layers) == len(image.layers) + 1
    assert committed.config == image.config
    _check_changed_root(store, committed)

    archive = tmp_path / "committed.tar"
    store.save("local/committed:1", archive)
    with tarfile.open(archive) as outer:
        member = outer.extractfile("manifest.json")
        assert member is not None
        layer = outer.extractfile(json.loads(member.read())[0]["Layers"][-1])
        assert layer is not None
        with tarfile.open(fileobj=io.BytesIO(layer.read())) as inner:
            names = inner.getnames()
    assert "etc/.wh.marker" in names
    assert "data/dir/.wh..wh..opq" in names
    assert "data/dir/c" in names

    # skopeo reads the docker-archive; umoci unpacks the OCI layout, applying the whiteouts.
    info = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    assert info["Layers"] and len(info["Layers"]) == 2
    umoci = need("umoci")
    layout = tmp_path / "layout"
    store.save("local/committed:1", layout, format="oci")
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--rootless", "--image",
                    f"{layout}:docker.io/local/committed:1", str(bundle)],
                   check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    assert not (rootfs / "etc" / "marker").exists()
    assert sorted(os.listdir(rootfs / "data" / "dir")) == ["c"]
    assert (rootfs / "etc" / "passwd.extra").read_text() == "changed\n"

    other = Store(tmp_path / "other")
    loaded = other.load(archive)
    assert [i.id for i in loaded] == [committed.id]
    _check_changed_root(other, "local/committed:1")


@pytest.mark.userns
def test_rootless_image_sandbox_writes_to_its_upper_dir(image_tree: Path) -> None:
    # Everything the unprivileged user touches must be reachable for it: a world-open dir.
    work = Path(tempfile.mkdtemp(prefix="isolate-rootless-image-"))
    try:
        tree = world_readable_copy(image_tree, work)
        code = f"""
import os, stat
from isolate import Sandbox
from isolate.image import Store
store = Store({str(work / 'store')!r})
img = store.from_directory({str(tree)!r}, "local/rl:1")
with Sandbox(image=img, store=store, readonly=False) as sb:
    assert sb.config.rootless
    r = sb.run(["sh", "-c", "echo x > /new; rm /etc/marker; rm -r /data/dir; mkdir /data/dir;"
                " ls /etc /data/dir"], capture_output=True, text=True, check=True)
    assert "marker" not in r.stdout, r.stdout
    up = r.upper_dir
    assert open(os.path.join(up, "new")).read() == "x\\n"
    assert stat.S_ISCHR(os.lstat(os.path.join(up, "etc", "marker")).st_mode)
    new = store.commit(img, up, "local/rl:2")
with Sandbox(image=new, store=store) as sb:
    r = sb.run(["sh", "-c", "ls /etc; ls /data/dir; cat /new"], capture_output=True,
               text=True, check=True)
    assert "marker" not in r.stdout and r.stdout.endswith("x\\n"), r.stdout
    assert "a" not in r.stdout.split(), r.stdout
print("ok")
"""
        r = run_unprivileged(code)
        assert r.stdout.strip().endswith("ok")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_missing_lower_dir_is_reported_as_a_mount_error(store: Store, image: Image) -> None:
    # Writable: each process mounts its own overlay (a read-only root is mounted once, when
    # the sandbox is entered), so a layer that vanished since is seen by the next process.
    with Sandbox(image=image, store=store, readonly=False) as sb:
        shutil.rmtree(store.layer_dirs(image)[0])
        with pytest.raises(MountError) as info:
            sb.run(["true"])
    assert "mount image" in str(info.value) and info.value.errno == errno.ENOENT
