"""Whiteouts through a real overlayfs: import -> overlay -> change -> diff -> export -> apply."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from fs_layer_helpers import build_tar, entry, mount_overlay, tree_snapshot, umount

from isolate.fs import diff, extract, write_tar

pytestmark = pytest.mark.root


def _base_tree(root: Path) -> None:
    (root / "etc").mkdir()
    (root / "etc" / "keep.conf").write_text("keep\n")
    (root / "etc" / "edit.conf").write_text("before\n")
    (root / "etc" / "delete.conf").write_text("delete me\n")
    (root / "var" / "cache").mkdir(parents=True)
    (root / "var" / "cache" / "a").write_text("a\n")
    (root / "var" / "cache" / "b").write_text("b\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(b"\x7fELF" + b"\0" * 100)
    os.symlink("tool", root / "bin" / "alias")


def _change_through_merged(merged: Path) -> None:
    (merged / "etc" / "delete.conf").unlink()
    (merged / "etc" / "edit.conf").write_text("after\n")
    shutil.rmtree(merged / "var" / "cache")  # a whole lower directory ...
    (merged / "var" / "cache").mkdir()  # ... replaced by a new one: opaque
    (merged / "var" / "cache" / "fresh").write_text("fresh\n")
    (merged / "bin" / "alias").unlink()
    (merged / "bin" / "new").write_text("new\n")


def test_whiteouts_and_opaque_dirs_survive_overlay_diff_and_apply(
    work: Path, overlay_mounts: list[str]
) -> None:
    # Import: the base layer as the store would hold it.
    src = work / "src"
    src.mkdir()
    _base_tree(src)
    base_tar = io.BytesIO()
    write_tar(src, base_tar)
    lower, upper, ovl_work, merged = (work / n for n in ("lower", "upper", "w", "merged"))
    for d in (lower, upper, ovl_work, merged):
        d.mkdir()
    extract(io.BytesIO(base_tar.getvalue()), lower)

    # A container changes things through the merged view.
    mount_overlay(overlay_mounts, merged, [lower], upper, ovl_work)
    _change_through_merged(merged)
    expected = tree_snapshot(merged)
    umount(overlay_mounts, merged)

    # Commit.
    layer = io.BytesIO()
    diff_id = diff(upper, layer)
    with tarfile.open(fileobj=io.BytesIO(layer.getvalue())) as tf:
        names = set(tf.getnames())
    assert {"etc/.wh.delete.conf", "var/cache/.wh..wh..opq", "bin/.wh.alias"} <= names
    assert {"etc/edit.conf", "var/cache/fresh", "bin/new"} <= names
    assert "etc/keep.conf" not in names

    # Export/apply 1: the new layer as an overlay layer on top of the base.
    top, merged2 = work / "top", work / "merged2"
    top.mkdir()
    merged2.mkdir()
    stats = extract(io.BytesIO(layer.getvalue()), top)
    assert stats.diff_id == diff_id
    mount_overlay(overlay_mounts, merged2, [top, lower])
    assert tree_snapshot(merged2) == expected
    umount(overlay_mounts, merged2)

    # Export/apply 2: flattened, both layers applied into one plain tree.
    flat = work / "flat"
    flat.mkdir()
    extract(io.BytesIO(base_tar.getvalue()), flat, whiteouts="apply")
    extract(io.BytesIO(layer.getvalue()), flat, whiteouts="apply")
    assert tree_snapshot(flat) == expected


_USERNS_SCRIPT = textwrap.dedent("""
    import io, os, subprocess, sys
    from isolate.fs import extract, diff
    work = sys.argv[1]
    names = ("bottom", "lower", "upper", "w", "m")
    bottom, lower, upper, w, merged = (os.path.join(work, n) for n in names)
    for d in (bottom, lower, upper, w, merged):
        os.mkdir(d)
    # What the layer's whiteouts must hide: a file and a directory's content below it.
    os.mkdir(os.path.join(bottom, "d"))
    for name in ("gone", "d/hidden"):
        with open(os.path.join(bottom, name), "w") as f:
            f.write(name)
    with open(os.path.join(work, "base.tar"), "rb") as f:
        extract(f, lower)
    assert os.getxattr(os.path.join(lower, "d"), "user.overlay.opaque") == b"y"
    opts = f"lowerdir={lower}:{bottom},upperdir={upper},workdir={w},userxattr"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, merged], check=True)
    try:
        seen = sorted(os.listdir(merged)), sorted(os.listdir(os.path.join(merged, "d")))
        os.unlink(os.path.join(merged, "f"))
    finally:
        subprocess.run(["umount", merged], check=True)
    out = io.BytesIO()
    diff(upper, out)
    import tarfile
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    print(repr((seen, names)))
""")


@pytest.mark.userns
def test_user_namespace_extract_uses_user_overlay_xattrs_that_overlayfs_honours(
    work: Path,
) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    (work / "base.tar").write_bytes(build_tar(
        entry("f", data=b"file"),
        entry(".wh.gone"),
        entry("d", kind=tarfile.DIRTYPE, mode=0o755),
        entry("d/.wh..wh..opq"),
        entry("d/x", data=b"x"),
    ))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    # A child user namespace (mapping only our uid to 0) is what the rootless path sees: uid 0
    # but not the initial namespace, so extract() must pick user.overlay.* xattrs by itself.
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount",
         sys.executable, "-c", _USERNS_SCRIPT, str(work)],
        capture_output=True, text=True, env=env, check=False,
    )
    assert result.returncode == 0, result.stderr
    seen, names = eval(result.stdout.strip())  # our own repr() output
    assert seen == (["d", "f"], ["x"])  # "gone" whited out, "d" opaque: "d/hidden" hidden
    assert ".wh.f" in names


_UNMAPPED_SCRIPT = textwrap.dedent("""
    import os, sys, tempfile
    from isolate.errors import IsolateOSError
    from isolate.fs import layers
    for native in (True, False):
        for name in ("file", "link", "dir", "ok"):
            dest = tempfile.mkdtemp(dir=sys.argv[1])
            try:
                layers._extract(os.path.join(sys.argv[1], name + ".tar"), dest,
                                whiteouts="overlay", privileged=None, xattr_namespace=None,
                                native=native)
                print("extracted", name)
            except IsolateOSError as exc:
                print(exc.errno, exc.filename, exc)
""")


@pytest.mark.userns
def test_an_owner_the_user_namespace_does_not_map_is_named_in_the_error(work: Path) -> None:
    # What a rootless store meets with too small a subordinate range: chown to an unmapped
    # id is EINVAL, and the error names the entry, the owner and what is mapped -- from the C
    # fast path and from Python alike, for a file, a symlink and a directory.
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    owner = {"uid": 1234, "gid": 5678}
    (work / "file.tar").write_bytes(build_tar(entry("f", data=b"x", **owner)))
    (work / "link.tar").write_bytes(build_tar(entry("l", kind=tarfile.SYMTYPE, link="f",
                                                    **owner)))
    (work / "dir.tar").write_bytes(build_tar(entry("d", kind=tarfile.DIRTYPE, mode=0o755,
                                                   **owner)))
    (work / "ok.tar").write_bytes(build_tar(entry("f", data=b"x")))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", _UNMAPPED_SCRIPT,
         str(work)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    tail = ("its owner 1234:5678, which this user namespace does not map (it maps uids 0 and "
            "gids 0); a rootless store needs subordinate ids (/etc/subuid, /etc/subgid) for "
            "every owner in the image: EINVAL (Invalid argument)")
    expected = [f"22 {name} cannot give layer entry {name!r} {tail}" for name in "fld"]
    expected.append("extracted ok")
    assert result.stdout.splitlines() == expected * 2
