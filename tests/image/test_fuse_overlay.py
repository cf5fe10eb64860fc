"""The fuse-overlayfs fallback for image roots: Sandbox(image=..., overlay="fuse"|"auto").

Each test checks the image as the sandbox sees it (whiteouts, opaque dirs, writes), and that
the fuse-overlayfs process, its mount and the scratch dir are gone once the sandbox closes.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.image.conftest import world_readable_copy
from tests.rootless import run_unprivileged

from isolate import Sandbox
from isolate.errors import ConfigError, UnsupportedError
from isolate.fs.mounts import Bind
from isolate.image import Image, ImageConfig, Store

pytestmark = [pytest.mark.root, pytest.mark.userns]

APPLETS = ("sh", "cat", "ls", "rm", "mkdir", "echo", "id", "touch", "true")


def _need_fuse() -> None:
    if shutil.which("fuse-overlayfs") is None:
        pytest.skip("fuse-overlayfs is not installed (Debian package fuse-overlayfs)")
    if not os.path.exists("/dev/fuse"):
        pytest.skip("/dev/fuse does not exist on this machine")


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    root = tmp_path_factory.mktemp("fuseroot")
    for d in ("bin", "etc", "data/dir"):
        (root / d).mkdir(parents=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc" / "marker").write_text("from the image\n")
    (root / "etc" / "gone").write_text("deleted by the top layer\n")
    (root / "data" / "dir" / "a").write_text("a\n")
    return root


@pytest.fixture
def layered(tmp_path: Path, image_tree: Path) -> Iterator[tuple[Store, Image]]:
    """A two-layer image whose top layer deletes /etc/gone (a whiteout) and replaces
    /data/dir by a directory holding only ``c`` (an opaque dir), as the store extracts them."""
    _need_fuse()
    store = Store(tmp_path / "store")
    base = store.from_directory(image_tree, "local/fuse:1", config=ImageConfig(cmd=["sh"]))
    script = "rm /etc/gone && rm -r /data/dir && mkdir /data/dir && echo c > /data/dir/c"
    with Sandbox(image=base, store=store, readonly=False, overlay="kernel") as sb:
        r = sb.run(["sh", "-c", script], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.upper_dir is not None
        top = store.commit(base, r.upper_dir, "local/fuse:2")
    yield store, top
    _store_is_clean(store)


def _store_is_clean(store: Store) -> None:
    assert os.listdir(os.path.join(store.root, "tmp")) == []
    assert os.listdir(os.path.join(store.root, "holds")) == []


def _pids_with(marker: str) -> list[int]:
    """Pids whose command line mentions ``marker`` (a sandbox's unique scratch path)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


def _fuse_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if "fuse-overlayfs" in line]


CHECK = ("cat /etc/marker; ls /etc; echo ---; ls /data/dir; echo ---; "
         "grep ' / / ' /proc/self/mountinfo")


def _check_layers(stdout: str) -> None:
    etc, data, root = stdout.split("---\n")
    assert etc.startswith("from the image\n")
    assert "gone" not in etc.split() and "marker" in etc.split()  # the whiteout hides it
    assert data.split() == ["c"]  # the opaque dir hides the lower layer's ``a``
    assert "fuse.fuse-overlayfs" in root  # and it really is fuse-overlayfs serving /


@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_fuse_root_honours_whiteouts_and_opaque_dirs(layered: tuple[Store, Image],
                                                      userns: bool) -> None:
    store, image = layered
    with Sandbox(image=image, store=store, user_namespace=userns, overlay="fuse") as sb:
        r = sb.run(["sh", "-c", CHECK], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        _check_layers(r.stdout)
        denied = sb.run(["touch", "/new"], capture_output=True, text=True)
        assert denied.returncode != 0 and "Read-only" in denied.stderr
        assert r.upper_dir is None


def test_fuse_root_writes_land_in_the_sandbox_upper_dir(layered: tuple[Store, Image]) -> None:
    store, image = layered
    with Sandbox(image=image, store=store, user_namespace=True, overlay="fuse",
                 readonly=False) as sb:
        first = sb.run(["sh", "-c", "echo x > /new && rm /etc/marker"], capture_output=True,
                       text=True)
        assert first.returncode == 0, first.stderr
        up = first.upper_dir
        assert up is not None
        assert Path(up, "new").read_text() == "x\n"
        gone = os.lstat(os.path.join(up, "etc", "marker"))
        assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0  # a whiteout in the upper
        # One upper dir for the whole sandbox (the kernel path gives each process its own).
        second = sb.run(["sh", "-c", "cat /new; ls /etc"], capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("x\n") and "marker" not in second.stdout.split()
        assert second.upper_dir == up
    assert not os.path.exists(up)


def test_fuse_process_and_mount_are_gone_after_close(layered: tuple[Store, Image]) -> None:
    store, image = layered
    before = _fuse_mounts()
    with Sandbox(image=image, store=store, user_namespace=True, overlay="fuse") as sb:
        root = sb._image_root
        assert root is not None and root.fuse is not None
        marker = root.scratch
        pids = _pids_with(marker)
        assert pids == [root.fuse.pid]
        with open(f"/proc/{pids[0]}/mountinfo") as f:
            assert any(root.fuse.merged in line and "fuse-overlayfs" in line for line in f)
        # Its mount stays in its own mount namespace: the caller's table never shows it.
        assert _fuse_mounts() == before
        sb.run(["true"], check=True)
    assert _pids_with(marker) == []
    assert not os.path.exists(marker)
    assert _fuse_mounts() == before


def test_fuse_process_is_ended_when_entering_fails_after_it_started(
        layered: tuple[Store, Image], tmp_path: Path) -> None:
    store, image = layered
    src = tmp_path / "bindsrc"
    src.write_text("x")
    # Too many binds is found while compiling the plan: after fuse-overlayfs has mounted.
    binds = [Bind(str(src), f"/b{i}") for i in range(70)]
    sb = Sandbox(image=image, store=store, user_namespace=True, overlay="fuse", binds=binds)
    with pytest.raises(ConfigError, match="too many binds"):
        sb.__enter__()
    assert _pids_with(os.path.join(store.root, "tmp")) == []
    _store_is_clean(store)


def test_missing_fuse_overlayfs_is_unsupported_naming_the_package(
        layered: tuple[Store, Image], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, image = layered
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    sb = Sandbox(image=image, store=store, user_namespace=True, overlay="fuse")
    with pytest.raises(UnsupportedError, match="Debian package 'fuse-overlayfs'") as info:
        sb.__enter__()
    assert info.value.missing == "fuse-overlayfs"
    _store_is_clean(store)


def test_fuse_overlayfs_that_exits_before_mounting_says_why_without_an_invented_errno(
        tmp_path: Path) -> None:
    from isolate._fuse_root import FuseRoot
    from isolate.errors import MountError

    _need_fuse()
    merged = tmp_path / "merged"
    merged.mkdir()
    with pytest.raises(MountError) as info:
        FuseRoot.start([str(tmp_path / "no-such-layer")], str(merged),
                       log=str(tmp_path / "fuse.log"))
    # No system call of ours failed: the message is its exit status and its own words.
    assert info.value.errno is None and info.value.step == "fuse-overlayfs"
    text = str(info.value)
    assert text.startswith("fuse-overlayfs exited with status ") and "before mounting: " in text
    assert "EIO" not in text and "Input/output" not in text


@pytest.mark.parametrize("userns", [True, False], ids=["userns", "no-userns"])
def test_auto_uses_the_kernel_overlay_where_it_works(layered: tuple[Store, Image],
                                                      userns: bool) -> None:
    store, image = layered
    with Sandbox(image=image, store=store, user_namespace=userns) as sb:
        assert sb.config.overlay == "auto"
        root = sb._image_root
        assert root is not None and root.fuse is None
        assert _pids_with(root.scratch) == []  # no fuse-overlayfs was started
        r = sb.run(["sh", "-c", "grep ' / / ' /proc/self/mountinfo"], capture_output=True,
                   text=True, check=True)
    assert " - overlay " in r.stdout


def test_overlay_option_is_validated() -> None:
    with pytest.raises(ConfigError, match="overlay must be 'auto', 'kernel' or 'fuse'"):
        Sandbox(overlay="fusefs")


def test_rootless_fuse_root_as_an_unprivileged_user(image_tree: Path) -> None:
    _need_fuse()
    work = Path(tempfile.mkdtemp(prefix="isolate-rootless-fuse-"))
    try:
        tree = world_readable_copy(image_tree, work)
        # This machine's /dev/fuse is root-only (0600); distributions make it 0666. A 0666
        # node of the same device is bound over it in the test's private mount namespace.
        dev = work / "fuse-dev"
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(10, 229))
        os.chmod(dev, 0o666)
        code = f"""
import os, stat
from isolate import Sandbox
from isolate.image import Store
store = Store({str(work / 'store')!r})
base = store.from_directory({str(tree)!r}, "local/rlf:1")
script = "rm /etc/gone && rm -r /data/dir && mkdir /data/dir && echo c > /data/dir/c"
with Sandbox(image=base, store=store, readonly=False, overlay="kernel") as sb:
    r = sb.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    top = store.commit(base, r.upper_dir, "local/rlf:2")
with Sandbox(image=top, store=store, overlay="fuse") as sb:
    assert sb.config.rootless and sb._image_root.fuse is not None
    r = sb.run(["sh", "-c", {CHECK!r}], capture_output=True, text=True, check=True)
    print(r.stdout, end="")
    print("===")
with Sandbox(image=top, store=store, overlay="fuse", readonly=False) as sb:
    r = sb.run(["sh", "-c", "echo x > /new; rm /etc/marker"], capture_output=True, text=True,
               check=True)
    up = r.upper_dir
    assert open(os.path.join(up, "new")).read() == "x\\n"
    assert stat.S_ISCHR(os.lstat(os.path.join(up, "etc", "marker")).st_mode)
    marker = sb._image_root.scratch
assert not os.path.exists(marker)
print("ok")
"""
        r = run_unprivileged(code, binds={str(dev): "/dev/fuse"})
        out, _, rest = r.stdout.partition("===\n")
        _check_layers(out)
        assert rest.strip() == "ok"
        assert _pids_with(str(work / "store")) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_auto_falls_back_to_fuse_when_the_kernel_refuses_the_overlay(
        layered: tuple[Store, Image]) -> None:
    from isolate._image_root import ImageRoot
    from isolate.namespaces import Namespace

    store, image = layered
    root = ImageRoot.open(image, store, mountpoints=[], rootless=True)
    try:
        # An option overlayfs lacks gets EINVAL, as `userxattr` does from a kernel < 5.11:
        # the probe sees a real refusal and "auto" must turn to fuse-overlayfs.
        root.options = ("isolate_no_such_option",)
        with Namespace.create("user") as userns:
            root.choose_overlay("auto", userns.fileno(), writable=False)
        assert root.fuse is not None
        assert _pids_with(root.scratch) == [root.fuse.pid]
    finally:
        root.close()
    assert _pids_with(root.scratch) == []
