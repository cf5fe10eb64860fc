"""Layers: tar <-> tree round trips, whiteout translation, determinism, compression, errors."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fs_layer_helpers import build_tar, entry, sha256

from isolate.errors import ConfigError, UnsupportedError
from isolate.fs import (
    MEDIA_TYPE_TAR_GZIP,
    MEDIA_TYPE_TAR_ZSTD,
    diff,
    extract,
    pack,
    write_tar,
)

_skip_unless_root = pytest.mark.skipif(os.geteuid() != 0,
                                       reason="needs root (chown, mknod, trusted.* xattrs)")


def needs_root(test: F) -> F:
    return pytest.mark.root(_skip_unless_root(test))  # type: ignore[no-any-return]
F = TypeVar("F", bound=Callable[..., Any])
MTIME = 1_600_000_000


def _rich_tree(root: Path) -> None:
    (root / "dir").mkdir()
    (root / "dir" / "sub").mkdir()
    (root / "dir" / "file").write_bytes(b"hello\n" * 1000)
    (root / "dir" / "sub" / "empty").write_bytes(b"")
    os.link(root / "dir" / "file", root / "dir" / "hard")
    os.symlink("../dir/file", root / "dir" / "sym")
    os.mkfifo(root / "fifo")
    setuid = root / "setuid"
    setuid.write_bytes(b"#!/bin/true\n")
    os.chown(setuid, 1234, 5678)
    os.chmod(setuid, 0o4755)
    os.setxattr(root / "dir" / "file", "user.note", b"\x00\xffbinary")
    os.chmod(root / "dir" / "sub", 0o511)
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    for p in [*root.rglob("*"), root]:
        os.utime(p, ns=(MTIME * 10**9, MTIME * 10**9), follow_symlinks=False)


def _meta(root: Path) -> dict[str, tuple[object, ...]]:
    result: dict[str, tuple[object, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        xattrs = {} if p.is_symlink() else {n: os.getxattr(p, n) for n in os.listxattr(p)}
        content = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
        link = os.readlink(p) if p.is_symlink() else None
        result[str(p.relative_to(root))] = (
            stat.filemode(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, st.st_rdev,
            content, link, xattrs,
        )
    return result


@needs_root
def test_write_tar_then_extract_keeps_modes_owners_xattrs_mtimes_links(work: Path) -> None:
    src, dest = work / "src", work / "dest"
    src.mkdir()
    dest.mkdir()
    _rich_tree(src)
    blob = io.BytesIO()
    diff_id = write_tar(src, blob)
    stats = extract(io.BytesIO(blob.getvalue()), dest)
    assert _meta(dest) == _meta(src)
    assert os.stat(dest / "dir" / "hard").st_ino == os.stat(dest / "dir" / "file").st_ino
    assert stats.diff_id == diff_id == sha256(blob.getvalue())
    assert stats.bytes == 6000 + 12
    assert stats.skipped == 0


@needs_root
def test_unprivileged_extract_skips_device_nodes_and_counts_them(work: Path) -> None:
    dest = work / "dest"
    dest.mkdir()
    data = build_tar(entry("null", kind=tarfile.CHRTYPE, devmajor=1, devminor=3),
                     entry("f", data=b"x"))
    stats = extract(io.BytesIO(data), dest, privileged=False)
    assert os.listdir(dest) == ["f"]
    assert stats.skipped == 1
    assert stats.files == 1


def test_write_tar_is_deterministic_and_sorted(work: Path) -> None:
    src = work / "src"
    src.mkdir()
    for name in ["b", "a", "c"]:
        (src / name).mkdir()
        (src / name / "z").write_bytes(name.encode())
        (src / name / "y").write_bytes(name.encode())
    first, second = io.BytesIO(), io.BytesIO()
    write_tar(src, first, compression="gzip")
    os.utime(src / "a" / "z", ns=(1, os.stat(src / "a" / "z").st_mtime_ns))  # atime only
    write_tar(src, second, compression="gzip")
    assert first.getvalue() == second.getvalue()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(first.getvalue()))) as tf:
        names = tf.getnames()
        assert all("atime" not in m.pax_headers for m in tf.getmembers())
    assert names == ["a", "a/y", "a/z", "b", "b/y", "b/z", "c", "c/y", "c/z"]


@pytest.mark.parametrize("compression", [None, "gzip", "zstd"])
def test_extract_detects_compression_and_reports_the_uncompressed_diff_id(
    work: Path, compression: str | None
) -> None:
    if compression == "zstd":
        pytest.importorskip("zstandard")
    src, dest = work / "src", work / "dest"
    src.mkdir()
    dest.mkdir()
    (src / "f").write_bytes(os.urandom(300_000))
    plain, blob = io.BytesIO(), io.BytesIO()
    write_tar(src, plain)
    diff_id = write_tar(src, blob, compression=compression)  # type: ignore[arg-type]
    path = work / "layer"
    path.write_bytes(blob.getvalue())
    stats = extract(path, dest)
    assert diff_id == stats.diff_id == sha256(plain.getvalue())
    assert (dest / "f").read_bytes() == (src / "f").read_bytes()


@pytest.mark.parametrize(("compression", "media_type"),
                         [("gzip", MEDIA_TYPE_TAR_GZIP), ("zstd", MEDIA_TYPE_TAR_ZSTD)])
def test_pack_describes_the_blob_as_written(work: Path, compression: str,
                                            media_type: str) -> None:
    pytest.importorskip("zstandard")
    (work / "f").write_bytes(b"data" * 1000)
    out = io.BytesIO()
    layer = pack(work, out, compression=compression)  # type: ignore[arg-type]
    assert layer.digest == sha256(out.getvalue())
    assert layer.size == len(out.getvalue())
    assert layer.media_type == media_type
    assert layer.diff_id != layer.digest


def _oci_whiteout_layer() -> bytes:
    return build_tar(
        entry("gone", data=b"will be whited out"),  # same layer: kept by "apply"
        entry(".wh.gone"),
        entry(".wh.lower_file"),
        entry("d", kind=tarfile.DIRTYPE, mode=0o755),
        entry("d/.wh..wh..opq"),
        entry("d/new", data=b"new"),
    )


@needs_root
def test_extract_translates_oci_whiteouts_to_overlay_devices_and_opaque_xattr(
    work: Path,
) -> None:
    stats = extract(io.BytesIO(_oci_whiteout_layer()), work)
    st = os.lstat(work / "lower_file")
    assert stat.S_ISCHR(st.st_mode)
    assert st.st_rdev == 0
    # Whiteouts hide lower layers only; this layer's own "gone" stays (and hides the lower).
    assert (work / "gone").read_bytes() == b"will be whited out"
    assert os.getxattr(work / "d", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(work / "d")) == ["new"]
    assert stats.files == 6


def test_extract_user_namespace_overlay_xattrs(work: Path) -> None:
    extract(io.BytesIO(_oci_whiteout_layer()), work, xattr_namespace="user")
    assert os.getxattr(work / "d", "user.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(work / "d")


def test_extract_keep_leaves_whiteouts_as_files(work: Path) -> None:
    extract(io.BytesIO(_oci_whiteout_layer()), work, whiteouts="keep")
    assert (work / ".wh.gone").is_file()
    assert (work / "gone").read_bytes() == b"will be whited out"
    assert (work / "d" / ".wh..wh..opq").is_file()


def test_extract_apply_deletes_only_what_earlier_layers_made(work: Path) -> None:
    (work / "lower_file").write_bytes(b"lower")
    (work / "d").mkdir()
    (work / "d" / "old").write_bytes(b"old")
    (work / "keep").write_bytes(b"untouched")
    extract(io.BytesIO(_oci_whiteout_layer()), work, whiteouts="apply")
    assert sorted(os.listdir(work)) == ["d", "gone", "keep"]
    assert (work / "gone").read_bytes() == b"will be whited out"
    assert sorted(os.listdir(work / "d")) == ["new"]


@needs_root
def test_write_tar_turns_overlay_whiteouts_into_oci_entries(work: Path) -> None:
    os.mknod(work / "deleted", stat.S_IFCHR, 0)
    (work / "opaque").mkdir()
    os.setxattr(work / "opaque", "trusted.overlay.opaque", b"y")
    out = io.BytesIO()
    write_tar(work, out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert sorted(members) == [".wh.deleted", "opaque", "opaque/.wh..wh..opq"]
    assert members[".wh.deleted"].isreg()
    assert not any(k.startswith("SCHILY.xattr") for k in members["opaque"].pax_headers)


@needs_root
def test_diff_refuses_redirect_dir_upper(work: Path) -> None:
    (work / "moved").mkdir()
    os.setxattr(work / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(UnsupportedError, match="redirect"):
        diff(work, io.BytesIO())


def test_bad_arguments_are_config_errors_before_any_write(work: Path) -> None:
    with pytest.raises(ConfigError, match="whiteouts"):
        extract(io.BytesIO(b""), work, whiteouts="bogus")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dest"):
        extract(io.BytesIO(b""), work / "missing")
    with pytest.raises(ConfigError, match="compression"):
        write_tar(work, io.BytesIO(), compression="lz4")  # type: ignore[arg-type]
    assert os.listdir(work) == []


def _info(name: str, kind: bytes, **attrs: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime, ti.uname, ti.gname = kind, 0o755, 1_700_000_000, "", ""
    for key, value in attrs.items():
        setattr(ti, key, value)
    return ti


def test_own_ustar_headers_are_the_bytes_tarfile_writes() -> None:
    # write_tar builds simple headers itself (speed); they must be what tarfile would write.
    from isolate.fs.layers import _ustar_header

    simple = [
        _info("etc/passwd", tarfile.REGTYPE, size=1234, uid=0o7777777, gid=5, mode=0o104755),
        _info("dir", tarfile.DIRTYPE),
        _info("dir/", tarfile.DIRTYPE, mtime=0),
        _info("l", tarfile.SYMTYPE, linkname="../" * 33),
        _info("h", tarfile.LNKTYPE, linkname="etc/passwd"),
        _info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _info("fifo", tarfile.FIFOTYPE),
        _info("n" * 100, tarfile.REGTYPE, size=8**11 - 1),
    ]
    for ti in simple:
        assert _ustar_header(ti) == ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    needs_pax = [
        _info("n" * 101, tarfile.REGTYPE),
        _info("l", tarfile.SYMTYPE, linkname="x" * 101),
        _info("caf\u00e9", tarfile.REGTYPE),
        _info("big", tarfile.REGTYPE, size=8**11),
        _info("uid", tarfile.REGTYPE, uid=8**7),
        _info("neg", tarfile.REGTYPE, mtime=-1),
        _info("frac", tarfile.REGTYPE, mtime=1.5),
        _info("dev", tarfile.BLKTYPE, devmajor=8**7),
        _info("x", tarfile.REGTYPE, pax_headers={"SCHILY.xattr.user.a": "b"}),
    ]
    for ti in needs_pax:
        assert _ustar_header(ti) is None, ti.name


def test_long_unicode_and_non_utf8_names_round_trip(work: Path) -> None:
    src, dest = work / "src", work / "dest"
    src.mkdir()
    dest.mkdir()
    deep = src / ("d" * 120) / ("e" * 150)
    deep.mkdir(parents=True)
    (deep / "f").write_bytes(b"deep")
    (src / "caf\u00e9").write_bytes(b"unicode")
    os.close(os.open(os.fsencode(src) + b"/raw\xff\xfe", os.O_CREAT | os.O_WRONLY, 0o644))
    os.symlink("t" * 200, src / "longlink")
    blob = io.BytesIO()
    write_tar(src, blob)
    extract(io.BytesIO(blob.getvalue()), dest)
    assert sorted(os.listdir(os.fsencode(dest))) == sorted(os.listdir(os.fsencode(src)))
    assert (dest / ("d" * 120) / ("e" * 150) / "f").read_bytes() == b"deep"
    assert os.readlink(dest / "longlink") == "t" * 200


@needs_root
def test_gnu_tar_reads_our_layers_and_we_read_its_gnu_and_sparse_archives(work: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    from fs_layer_helpers import tree_snapshot

    src = work / "src"
    src.mkdir()
    _rich_tree(src)
    (src / ("long" * 40)).write_bytes(b"long name")
    with open(src / "sparse", "wb") as f:
        f.seek(3 << 20)
        f.write(b"end")
    ours = work / "ours.tar"
    with open(ours, "wb") as f:
        write_tar(src, f)
    by_gnu = work / "by_gnu"
    by_gnu.mkdir()
    subprocess.run(["tar", "-x", "-p", "--xattrs", "--xattrs-include=*", "-C", str(by_gnu),
                    "-f", str(ours)], check=True)
    assert tree_snapshot(by_gnu) == tree_snapshot(src)

    for fmt in ("gnu", "pax"):
        theirs = work / f"{fmt}.tar"
        subprocess.run(["tar", "-c", f"--format={fmt}", "--sparse", "-C", str(src),
                        "-f", str(theirs), "."], check=True)
        by_us = work / f"by_us_{fmt}"
        by_us.mkdir()
        extract(theirs, by_us)
        assert tree_snapshot(by_us) == tree_snapshot(src)


@pytest.mark.parametrize("extra", [100, 101])  # both parities: either open may flush
def test_many_directories_and_cross_directory_hardlinks_survive_the_fd_cache(
    work: Path, extra: int
) -> None:
    # More directories than the extractor keeps open, and hardlinks whose target directory is
    # opened after the link's own: a cache flush must never close an fd still in use (its
    # number would be reused, and the link would land in another directory).
    from isolate.fs.layers import _MAX_CACHED_DIRS

    count = _MAX_CACHED_DIRS + extra
    members = [entry(f"t{i}/f", data=str(i).encode()) for i in range(count)]
    members += [entry(f"l{i}/link", kind=tarfile.LNKTYPE, link=f"t{i}/f") for i in range(count)]
    extract(io.BytesIO(build_tar(*members)), work)
    for i in range(count):
        assert sorted(os.listdir(work / f"l{i}")) == ["link"]
        assert sorted(os.listdir(work / f"t{i}")) == ["f"]
        assert (work / f"l{i}" / "link").read_bytes() == str(i).encode()


def test_directory_where_the_same_layer_put_a_whiteout_becomes_opaque(work: Path) -> None:
    data = build_tar(
        entry(".wh.a"),
        entry("a", kind=tarfile.DIRTYPE, mode=0o755),
        entry("a/new", data=b"new"),
        entry(".wh.b"),
        entry("b/implied/f", data=b"f"),  # no directory entry: created implicitly
    )
    extract(io.BytesIO(data), work, xattr_namespace="user")
    for name in ("a", "b"):
        assert (work / name).is_dir()
        assert os.getxattr(work / name, "user.overlay.opaque") == b"y"
    assert (work / "b" / "implied" / "f").read_bytes() == b"f"
