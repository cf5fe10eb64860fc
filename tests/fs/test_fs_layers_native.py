"""The C fast path of extract() gives the very tree, stats and errors that Python alone gives.

Every archive here is unpacked twice, into two copies of the same starting tree: once as
``extract`` does it (C for plain entries, Python for the rest) and once with the C path kept out
(``layers._extract(native=False)``); names, types, modes, owners, mtimes, contents, xattrs and
the outcome (stats, or the exception) must agree. Then hostile archives aimed at the C header
parser, and generated ones.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fs_layer_helpers import Arena, build_tar, entry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fs_layers import _rich_tree as base_tree

from isolate.errors import IsolateOSError
from isolate.fs import CorruptLayer, UnsafeArchive, extract, layers, write_tar

MTIME = 1_600_000_000
_RECENT = time.time() - 24 * 3600


def snapshot(root: Path, *, times: bool = True) -> dict[str, tuple[object, ...]]:
    """Everything extraction sets, for every path under ``root`` and ``root`` itself."""
    result: dict[str, tuple[object, ...]] = {}
    paths = [str(root)]
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [os.path.join(dirpath, n) for n in dirnames + filenames]
    for p in sorted(paths):
        st_ = os.lstat(p)
        if stat.S_ISLNK(st_.st_mode):
            extra: object = os.readlink(p)
            xattrs: dict[str, bytes] = {}
        else:
            if stat.S_ISREG(st_.st_mode):
                extra = Path(p).read_bytes()
            elif stat.S_ISCHR(st_.st_mode) or stat.S_ISBLK(st_.st_mode):
                extra = st_.st_rdev
            else:
                extra = None
            xattrs = {n: os.getxattr(p, n) for n in sorted(os.listxattr(p))}
        # Times an archive set are long past; "now" (a directory made implicitly, or one whose
        # metadata a failure left unset) differs between the two runs.
        mtime = st_.st_mtime_ns if times and st_.st_mtime < _RECENT else None
        result[os.path.relpath(p, root)] = (st_.st_mode, st_.st_uid, st_.st_gid, mtime,
                                            st_.st_nlink, extra, xattrs)
    return result


def _outcome(data: bytes, dest: Path, native: bool, **kwargs: object) -> object:
    try:
        stats = layers._extract(io.BytesIO(data), dest, native=native,
                                whiteouts=kwargs.get("whiteouts", "overlay"),  # type: ignore[arg-type]
                                privileged=None, xattr_namespace=None)
    except Exception as e:  # the outcome is compared, whatever it is
        details = [type(e), str(e)]
        if isinstance(e, UnsafeArchive):
            details += [e.entry, e.reason]
        if isinstance(e, OSError):
            details += [e.errno, e.filename]
        return details
    return stats


def same_both_ways(work: Path, data: bytes, *, lower: Callable[[Path], None] | None = None,
                   whiteouts: str = "overlay") -> object:
    """Unpack ``data`` both ways over the same starting tree; assert the results agree and
    return the outcome (LayerStats or the exception's details)."""
    dests = [work / "native", work / "python"]
    for d in dests:
        d.mkdir()
        if lower is not None:
            lower(d)
            os.utime(d, ns=(1, 1))
    results = [_outcome(data, d, native, whiteouts=whiteouts)
               for d, native in zip(dests, (True, False), strict=True)]
    assert results[0] == results[1]
    failed = isinstance(results[0], list)
    # After a failure directories keep the time they were made at: compare all but mtimes.
    assert snapshot(dests[0], times=not failed) == snapshot(dests[1], times=not failed)
    return results[0]


def _header(info: tarfile.TarInfo, fmt: int = tarfile.USTAR_FORMAT) -> bytearray:
    return bytearray(info.tobuf(fmt, "utf-8", "surrogateescape"))


def _with_checksum(block: bytearray) -> bytearray:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return block


def _raw_tar(*blocks: bytes, end: bool = True) -> bytes:
    return b"".join(blocks) + (bytes(1024) if end else b"")


def _file(name: str, data: bytes, **attrs: object) -> bytes:
    info, _ = entry(name, **attrs)  # type: ignore[arg-type]
    info.size = len(data)
    return bytes(_header(info)) + data + bytes(-len(data) % 512)


# ---- the same archives both ways


def _rich_tree(root: Path) -> None:
    # test_fs_layers' tree (every entry type, owners, set-id, xattrs), plus names that need
    # GNU/pax long names or a ustar prefix, a non-ASCII name, dir owner and xattr.
    base_tree(root)
    os.symlink("dangling", root / "dangling")
    os.setxattr(root / "dir" / "sub", "user.dirnote", b"d")
    os.chown(root / "dir" / "sub", 42, 43)
    (root / ("long-" + "n" * 120)).write_bytes(b"long name")
    deep = root / "p" / ("q" * 90) / ("r" * 90)
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"in a ustar prefix")
    (root / "caf\u00e9").write_bytes(b"utf-8 name")
    for p in [*root.rglob("*"), root]:
        os.utime(p, ns=(MTIME * 10**9, MTIME * 10**9), follow_symlinks=False)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_native_and_python_agree_on_a_rich_tree(work: Path, compression: str | None) -> None:
    src = work / "src"
    src.mkdir()
    _rich_tree(src)
    out = io.BytesIO()
    write_tar(src, out, compression=compression)  # type: ignore[arg-type]
    stats = same_both_ways(work, out.getvalue())
    assert isinstance(stats, layers.LayerStats) and stats.files > 10


@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar"])
def test_native_and_python_agree_on_gnu_tar_output(work: Path, fmt: str) -> None:
    src = work / "src"
    src.mkdir()
    _rich_tree(src)
    if fmt == "ustar":  # no room for these long names there
        shutil.rmtree(src / "p")
        for name in ("long-" + "n" * 120, "null"):
            (src / name).unlink()
    layer = work / "layer.tar"
    subprocess.run(["tar", "-c", f"--format={fmt}", "-f", str(layer), "-C", str(src), "."],
                   check=True)
    stats = same_both_ways(work, layer.read_bytes())
    assert isinstance(stats, layers.LayerStats)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_native_and_python_agree_on_odd_but_valid_names(work: Path, fmt: int) -> None:
    members = [
        entry("./a", kind=tarfile.DIRTYPE, mode=0o750),
        entry("./a/./b//c", data=b"c", mode=0o640),
        entry("a/d/", kind=tarfile.DIRTYPE, mode=0o705),
        entry("implied/parents/f", data=b"f"),
        entry("cont", kind=tarfile.CONTTYPE, data=b"contiguous"),
        entry("big-ids", data=b"x", uid=3_000_000, gid=2_500_000),
        entry("a/link", kind=tarfile.SYMTYPE, link="../nowhere"),
        entry("a/link", data=b"file replaces symlink"),
        entry("x", data=b"file"),
        entry("x", kind=tarfile.DIRTYPE, mode=0o755),
        entry("x/y", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        entry("a/d", data=b"file replaces dir"),
        entry(".", kind=tarfile.DIRTYPE, mode=0o711),
        entry("\udcff\udcfe-bytes", data=b"not utf-8"),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in members:
            info.size = len(data)
            if fmt == tarfile.USTAR_FORMAT and info.uid >= 8**7:
                info.uid = info.gid = 7
            tf.addfile(info, io.BytesIO(data) if data else None)
    assert isinstance(same_both_ways(work, buf.getvalue()), layers.LayerStats)


def _lower(root: Path) -> None:
    (root / "d" / "old").mkdir(parents=True)
    (root / "d" / "old" / "f").write_bytes(b"lower")
    (root / "d" / "keep").write_bytes(b"lower")
    (root / "gone").write_bytes(b"lower")
    (root / "gone2").mkdir()
    os.mknod(root / "wh-was-here", stat.S_IFCHR, 0)


@pytest.mark.parametrize("whiteouts", ["overlay", "keep", "apply"])
def test_native_and_python_agree_on_whiteouts(work: Path, whiteouts: str) -> None:
    data = build_tar(
        entry("d", kind=tarfile.DIRTYPE, mode=0o755),
        entry("d/new", data=b"new"),            # made by C, then "whited out": must stay
        entry("d/.wh.new"),
        entry("d/.wh..wh..opq"),                # opaque: lower children go, this layer's stay
        entry("d/later", data=b"after the opaque marker"),
        entry(".wh.gone"),
        entry(".wh.gone2"),
        entry("gone", data=b"back again"),
        entry("wh-was-here/inside", data=b"implied dir over a whiteout"),
        entry("e", kind=tarfile.DIRTYPE, mode=0o755),
        entry("e/.wh.x"),
        entry("e/x", data=b"made after its whiteout"),
    )
    assert isinstance(same_both_ways(work, data, lower=_lower, whiteouts=whiteouts),
                      layers.LayerStats)


def test_native_and_python_agree_after_a_global_pax_header(work: Path) -> None:
    # C unpacks "first" and "sub/" before the global header; the rest is Python's alone.
    before = _file("first", b"1" * 600) + bytes(
        _header(entry("sub", kind=tarfile.DIRTYPE, mode=0o750)[0]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT,
                      pax_headers={"uid": "77", "mtime": "1234567"}) as tf:
        for info, data in (entry("a", data=b"a"), entry("d", kind=tarfile.DIRTYPE),
                           entry("d/b", data=b"b")):
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    stats = same_both_ways(work, before + buf.getvalue())
    assert isinstance(stats, layers.LayerStats)
    assert (stats.files, stats.bytes) == (5, 602)
    if os.geteuid() == 0:
        assert (work / "native" / "d" / "b").stat().st_uid == 77


def test_directory_replaced_by_python_is_not_written_through_by_c(work: Path) -> None:
    # C caches the fd of "d" while unpacking d/f; a pax entry (Python's) then replaces "d" with
    # a symlink out of the tree. d/g, plain again, must not land in the old or the new "d".
    link, _ = entry("d", kind=tarfile.SYMTYPE, link=str(work / "outside"))
    link.pax_headers = {"comment": "makes this entry Python's"}
    (work / "outside").mkdir()
    data = build_tar(entry("d", kind=tarfile.DIRTYPE, mode=0o755), entry("d/f", data=b"f"),
                     (link, b""), entry("d/g", data=b"evil"))
    result = same_both_ways(work, data)
    assert isinstance(result, list) and result[0] is UnsafeArchive and result[2] == "d/g"
    assert list((work / "outside").iterdir()) == []


def test_directory_recreated_by_python_gets_later_c_entries(work: Path) -> None:
    again, _ = entry("d", kind=tarfile.DIRTYPE, mode=0o700)
    again.pax_headers = {"comment": "Python's"}
    data = build_tar(entry("d", kind=tarfile.DIRTYPE, mode=0o755), entry("d/f", data=b"f"),
                     entry("d", data=b"a file now"), (again, b""), entry("d/g", data=b"g"))
    assert isinstance(same_both_ways(work, data), layers.LayerStats)
    assert sorted(os.listdir(work / "native" / "d")) == ["g"]


# ---- hostile archives aimed at the C header parser


def test_bad_checksum_in_the_middle_is_corrupt_both_ways(work: Path) -> None:
    bad = bytearray(_file("b", b"bbb"))
    bad[0:1] = b"c"  # the checksum no longer matches
    result = same_both_ways(work, _raw_tar(_file("a", b"a"), bytes(bad), _file("c", b"c")))
    assert isinstance(result, list) and result[0] is CorruptLayer
    assert (work / "native" / "a").read_bytes() == b"a"
    assert not (work / "native" / "c").exists()


@pytest.mark.parametrize("cut", [100, 511, 513, 2012, 2530, 2563])
def test_truncated_stream_is_corrupt_both_ways(work: Path, cut: int) -> None:
    # Cut inside the first header, its data (2000 bytes from 512), its padding, the next header.
    tar = _raw_tar(_file("f", b"x" * 2000), _file("g", b"g"))
    result = same_both_ways(work, tar[:cut])
    assert isinstance(result, list) and result[0] is CorruptLayer


def test_huge_size_without_the_data_is_corrupt_not_a_huge_allocation(work: Path) -> None:
    info, _ = entry("huge")
    info.size = 8**11 - 1  # 8 GiB
    result = same_both_ways(work, bytes(_header(info)) + b"only this")
    assert isinstance(result, list) and result[0] is CorruptLayer
    assert "data truncated" in result[1]
    assert (work / "native" / "huge").stat().st_size == 9


@pytest.mark.parametrize("name", [b"a\0/../../outside/x", b"ok\0\xff\xfe"])
def test_name_field_is_read_up_to_its_nul(work: Path, name: bytes) -> None:
    block = _header(entry("placeholder")[0])
    block[0:100] = name.ljust(100, b"\0")
    assert isinstance(same_both_ways(work, _raw_tar(bytes(_with_checksum(block)))),
                      layers.LayerStats)
    assert os.listdir(work / "native") == [name.split(b"\0")[0].decode()]


@pytest.mark.parametrize(("prefix", "name"), [(b"..", b"x"), (b"a/../..", b"x"),
                                               (b"/abs", b"x"), (b"a", b"../../x")])
def test_unsafe_names_through_the_ustar_prefix_are_rejected_both_ways(
    arena: Arena, prefix: bytes, name: bytes
) -> None:
    block = _header(entry("placeholder", data=b"")[0])
    block[0:100] = name.ljust(100, b"\0")
    block[345:500] = prefix.ljust(155, b"\0")
    result = same_both_ways(arena.dest, _raw_tar(bytes(_with_checksum(block))))
    assert isinstance(result, list) and result[0] is UnsafeArchive
    assert result[2] == (prefix + b"/" + name).decode()
    arena.assert_outside_untouched()


@pytest.mark.parametrize("field", [
    (100, b" 644   \0"), (100, b"0000644 "), (100, b"644\0junk"), (124, b"   \0" + b" " * 8),
    (100, b"6_44\0\0\0\0"), (100, b"0o644\0\0\0"), (100, b"\x80\0\0\0\0\0\x01\xa4"),
    (136, b"\xff" * 12), (108, b"9\0\0\0\0\0\0\0"), (156, b"X"), (156, b"1"),
    (156, b"S"), (329, b"garbage!"),
])
def test_unusual_header_fields_give_the_same_result_both_ways(
    work: Path, field: tuple[int, bytes]
) -> None:
    at, value = field
    block = _header(entry("f", data=b"")[0])
    block[at : at + len(value)] = value
    same_both_ways(work, _raw_tar(_file("first", b"1"), bytes(_with_checksum(block)),
                                  _file("last", b"2")))


def test_signed_checksum_is_accepted_both_ways(work: Path) -> None:
    block = _header(entry("caf\u00e9-\u00ff")[0])
    block[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % signed
    assert isinstance(same_both_ways(work, _raw_tar(bytes(block))), layers.LayerStats)


def test_symlink_then_file_through_it_is_rejected_when_c_saw_both(arena: Arena) -> None:
    data = _raw_tar(
        bytes(_header(entry("d", kind=tarfile.DIRTYPE, mode=0o755)[0])),
        bytes(_header(entry("d/l", kind=tarfile.SYMTYPE, link=str(arena.outside))[0])),
        _file("d/l/planted", b"evil"),
    )
    result = same_both_ways(arena.dest, data)
    assert isinstance(result, list) and result[0] is UnsafeArchive
    assert result[2] == "d/l/planted" and "symlink" in result[3]
    arena.assert_outside_untouched()


def test_file_over_a_symlink_replaces_the_link_when_c_saw_both(arena: Arena) -> None:
    data = _raw_tar(
        bytes(_header(entry("l", kind=tarfile.SYMTYPE,
                            link=str(arena.outside / "secret"))[0])),
        _file("l", b"evil"),
    )
    assert isinstance(same_both_ways(arena.dest, data), layers.LayerStats)
    assert (arena.dest / "native" / "l").read_bytes() == b"evil"
    arena.assert_outside_untouched()


def test_a_write_failing_mid_file_raises_with_errno_and_entry(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    dest = work / "small"
    dest.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(dest)], check=True)
    try:
        with pytest.raises(IsolateOSError) as info:
            extract(io.BytesIO(_raw_tar(_file("big", b"x" * 200_000))), dest)
    finally:
        subprocess.run(["umount", str(dest)], check=True)
    assert info.value.errno == 28  # ENOSPC
    assert info.value.filename == "big" and "'big'" in str(info.value)


# ---- generated archives


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    # hypothesis runs a test many times within one function-scoped fixture: a dir per example.
    work = Path(tempfile.mkdtemp(prefix="isolate-fs-test-"))
    try:
        yield work
    finally:
        for dirpath, dirnames, _ in os.walk(work):
            for d in dirnames:
                if not os.path.islink(os.path.join(dirpath, d)):
                    os.chmod(os.path.join(dirpath, d), 0o755)
        shutil.rmtree(work)

_NAMES = st.sampled_from(["a", "b", ".wh.a", ".wh..wh..opq", "..", ".", ""])
_ENTRY = st.tuples(
    st.lists(_NAMES, min_size=1, max_size=3).map("/".join),
    st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE]),
    st.binary(max_size=700),
    st.sampled_from(["a", "b", "a/b", "../x", "/etc"]),
    st.sampled_from([0o644, 0o755, 0o4711, 0o000]),
    st.booleans(),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(entries=st.lists(_ENTRY, max_size=8),
       fmt=st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
       whiteouts=st.sampled_from(["overlay", "keep", "apply"]))
def test_generated_archives_give_the_same_result_both_ways(
    entries: list[tuple[str, bytes, bytes, str, int, bool]], fmt: int, whiteouts: str
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, data, link, mode, pax in entries:
            info, _ = entry(name, kind=kind, link=link, mode=mode)
            if pax and fmt == tarfile.PAX_FORMAT:
                info.pax_headers = {"SCHILY.xattr.user.k": "v"}
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(info, io.BytesIO(data) if info.size else None)
    with _scratch() as work:
        same_both_ways(work, buf.getvalue(), lower=_lower, whiteouts=whiteouts)


def test_c_unpacks_plain_entries_itself_and_stops_at_the_first_other_header(work: Path) -> None:
    from isolate import _sys

    link, _ = entry("hard", kind=tarfile.LNKTYPE, link="d/f")
    tar = build_tar(entry("d", kind=tarfile.DIRTYPE, mode=0o751), entry("d/f", data=b"f" * 700),
                    entry("d/s", kind=tarfile.SYMTYPE, link="f"), (link, b""))
    fd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    unpacker = _sys.LayerUnpacker(fd, chown=os.geteuid() == 0, track_created=True)
    try:
        handoff, used = unpacker.feed(tar, 0)
        assert handoff and used == 512 * 5  # three headers and the file's two data blocks
        assert (unpacker.files, unpacker.written) == (3, 700)
        assert unpacker.take_created() == [b"d", b"d/f", b"d/s"]
        assert [(p, mode) for p, _, mode, *_ in unpacker.take_dirs()] == [(b"d", 0o751)]
        assert (work / "d" / "f").read_bytes() == b"f" * 700
        assert os.readlink(work / "d" / "s") == "f"
        assert not (work / "hard").exists()
    finally:
        unpacker.close()
        os.close(fd)


_PLAIN = _raw_tar(
    bytes(_header(entry("d", kind=tarfile.DIRTYPE, mode=0o755)[0])),
    _file("d/f", b"data" * 200),
    bytes(_header(entry("d/s", kind=tarfile.SYMTYPE, link="f")[0])),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(st.tuples(st.sampled_from([0, 512, 1024, 2048]),
                                    st.integers(0, 511), st.integers(0, 255)),
                          min_size=1, max_size=4),
       fix_checksum=st.booleans())
def test_mutated_archives_give_the_same_result_both_ways(
    mutations: list[tuple[int, int, int]], fix_checksum: bool
) -> None:
    # Headers at 0 (dir), 512 (file; its 800 bytes of data from 1024), 2048 (symlink).
    tar = bytearray(_PLAIN)
    for block, at, value in mutations:
        tar[block + at] = value
    if fix_checksum:
        for block in {b for b, _, _ in mutations}:
            tar[block : block + 512] = _with_checksum(bytearray(tar[block : block + 512]))
    with _scratch() as work:
        same_both_ways(work, bytes(tar))


# ---- what the C path does to names that already exist (found safe by tests/fuzz; kept so)


def test_file_over_a_lower_hardlink_to_outside_replaces_the_name(arena: Arena) -> None:
    # A lower layer's hardlink shares its inode with a file outside the root: C creates a new
    # file (O_EXCL after unlinking the name), never opens the shared inode for writing.
    os.link(arena.outside / "secret", arena.dest / "h")
    extract(io.BytesIO(_raw_tar(_file("h", b"evil"))), arena.dest)
    assert (arena.dest / "h").read_bytes() == b"evil"
    arena.assert_outside_untouched()  # the secret's content, and its nlink back to 1


def test_file_over_a_lower_device_node_replaces_the_node(work: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")

    def lower(dest: Path) -> None:
        os.mknod(dest / "n", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers

    same_both_ways(work, _raw_tar(_file("n", b"data")), lower=lower)
    assert (work / "native" / "n").read_bytes() == b"data"


def test_cached_parent_fd_never_follows_a_symlink_put_in_its_place(work: Path) -> None:
    # extract() drops C's cached directory fd before Python changes the tree. Even were that
    # missed, the fd is the directory itself: a symlink now at its name is not followed.
    from isolate import _sys

    root, outside = work / "root", work / "outside"
    root.mkdir()
    outside.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    unpacker = _sys.LayerUnpacker(fd, chown=False, track_created=False)
    try:
        first = _raw_tar(bytes(_header(entry("d", kind=tarfile.DIRTYPE)[0])), _file("d/f", b"f"),
                         end=False)
        assert unpacker.feed(first, 0) == (False, len(first))
        os.rename(root / "d", root / "old")
        os.symlink(outside, root / "d")
        second = _raw_tar(_file("d/g", b"g"))
        assert unpacker.feed(second, 0) == (True, 1024)  # stops at the end-of-archive block
        assert sorted(os.listdir(root / "old")) == ["f", "g"]
        unpacker.forget_dirs()
        assert unpacker.feed(_raw_tar(_file("d/h", b"h")), 0) == (True, 0)  # Python's now
        assert list(outside.iterdir()) == []
    finally:
        unpacker.close()
        os.close(fd)
