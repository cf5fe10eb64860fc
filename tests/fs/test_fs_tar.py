"""isolate's own tar reader (isolate.fs._tar): what is corrupt is decided here, not by tarfile.

Debian's python3.11 security release changed how tarfile treats a bad header after good ones
(it read garbage as the end of the archive, and a truncated or damaged layer was imported as if
whole). These archives are judged the same under every interpreter, both with the C fast path
and without it; and what GNU tar writes, sparse files included, is read as GNU tar reads it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from fs_layer_helpers import Arena, build_tar, entry
from test_fs_layers_native import _file, _header, _raw_tar, _with_checksum, same_both_ways

from isolate.fs import CorruptLayer, UnsafeArchive, extract
from isolate.fs._tar import Entry, TarStream, parse_header


def _corrupt_both_ways(work: Path, data: bytes) -> str:
    result = same_both_ways(work, data)
    assert isinstance(result, list) and result[0] is CorruptLayer, result
    return str(result[1])


def _pax_entry(records: dict[str, str], data: bytes = b"x", name: str = "f") -> bytes:
    info, _ = entry(name)
    info.pax_headers = records
    return build_tar((info, data))


def _pax_block(payload: bytes) -> bytes:
    """A pax extended header ('x') carrying ``payload`` as its records, raw."""
    info = tarfile.TarInfo("./PaxHeaders/f")
    info.type = tarfile.XHDTYPE
    info.size = len(payload)
    return bytes(_header(info)) + payload + bytes(-len(payload) % 512)


# ---- where tarfile's judgement used to decide


def test_stream_that_ends_at_a_header_without_the_end_blocks_is_corrupt(work: Path) -> None:
    # Cut right after a whole entry: nothing says the archive ended there.
    message = _corrupt_both_ways(work, _raw_tar(_file("a", b"a"), end=False))
    assert "end-of-archive" in message


def test_empty_stream_is_corrupt_but_end_blocks_alone_are_an_empty_layer(work: Path) -> None:
    with pytest.raises(CorruptLayer):
        extract(io.BytesIO(b""), work)
    assert extract(io.BytesIO(bytes(1024)), work).files == 0
    assert extract(io.BytesIO(bytes(512)), work).files == 0  # a lone zero block ends it too


def test_garbage_after_the_end_of_archive_is_not_read_as_entries(work: Path) -> None:
    data = _raw_tar(_file("a", b"a")) + b"trailing bytes some writers leave" * 20
    assert same_both_ways(work, data).files == 1  # type: ignore[attr-defined]


def test_extended_header_followed_by_the_end_is_corrupt(work: Path) -> None:
    assert "extended header" in _corrupt_both_ways(
        work, _raw_tar(_pax_block(b"10 path=a\n")))


@pytest.mark.parametrize("payload", [
    b"99 path=a\n",          # the length runs past the header's data
    b"10 path=ab",           # no newline at the record's end
    b"9 pathab\n",           # no '='
    b"x path=a\n",           # no length
    b"3 a\n",                # shorter than the shortest record
    b"10 path=a\ngarbage\n", # a good record, then junk
])
def test_malformed_pax_record_is_corrupt_both_ways(work: Path, payload: bytes) -> None:
    data = _raw_tar(_pax_block(payload), _file("f", b"data"))
    assert "pax record" in _corrupt_both_ways(work, data)


def test_pax_records_override_the_header_and_an_empty_value_deletes(work: Path) -> None:
    info, _ = entry("short")
    info.pax_headers = {"path": "long/" + "n" * 150, "mtime": "1234567890.123456789",
                        "uid": "4321", "comment": ""}
    same_both_ways(work, build_tar((info, b"content")))
    target = work / "native" / "long" / ("n" * 150)
    assert target.read_bytes() == b"content"
    assert target.stat().st_mtime_ns == 1234567890_123456789
    if os.geteuid() == 0:
        assert target.stat().st_uid == 4321


# ---- numbers that do not fit: one clear error, never an OverflowError


def _base256(value: int, width: int = 8) -> bytes:
    return bytes([0x80]) + value.to_bytes(width - 1, "big")


@pytest.mark.parametrize(("at", "width", "what"), [
    (108, 8, "uid"), (116, 8, "gid"), (136, 12, "mtime")])
def test_header_number_too_large_for_the_system_is_corrupt(
        work: Path, at: int, width: int, what: str) -> None:
    block = _header(entry("f")[0])
    block[at : at + width] = _base256(2**40 if what != "mtime" else 2**60, width)
    message = _corrupt_both_ways(work, _raw_tar(bytes(_with_checksum(block))))
    assert f"{what} " in message and "out of range" in message


@pytest.mark.parametrize(("key", "value"), [
    ("uid", str(2**40)), ("gid", str(2**32)), ("mtime", "1e300"), ("mtime", str(10**20)),
    ("size", "-1"), ("uid", "12x")])
def test_pax_number_too_large_or_malformed_is_corrupt(work: Path, key: str, value: str) -> None:
    _corrupt_both_ways(work, _pax_entry({key: value}))


@pytest.mark.parametrize("field", [329, 337])  # devmajor, devminor
def test_device_number_too_large_is_corrupt_privileged_or_not(work: Path, field: int) -> None:
    info, _ = entry("dev", kind=tarfile.CHRTYPE)
    block = _header(info)
    block[field : field + 8] = _base256(2**40)
    data = _raw_tar(bytes(_with_checksum(block)))
    for privileged in (True, False):
        with pytest.raises(CorruptLayer, match=r"device m.* out of range"):
            extract(io.BytesIO(data), work, privileged=privileged)


def test_negative_and_signed_numbers_are_corrupt_not_read_as_python_ints() -> None:
    # int("-644", 8) and int("6_44", 8) are numbers to Python, not to GNU tar.
    for spelling in (b"-000644\0", b"0_00644\0", b"+000644\0"):
        block = _header(entry("f")[0])
        block[100:108] = spelling
        with pytest.raises(CorruptLayer, match="mode field"):
            parse_header(bytes(_with_checksum(block)))


def test_header_reading_agrees_with_gnu_tar_listing(work: Path) -> None:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    src = work / "src"
    (src / "d" / ("x" * 120)).mkdir(parents=True)
    (src / "d" / ("x" * 120) / ("y" * 130)).write_bytes(b"long")
    os.symlink("t" * 150, src / "link")
    names = {}
    for fmt in ("gnu", "pax", "ustar", "v7", "oldgnu"):
        archive = work / f"{fmt}.tar"
        made = subprocess.run(["tar", "-c", f"--format={fmt}", "-C", str(src), "-f",
                               str(archive), "."], capture_output=True)
        if made.returncode:  # ustar and v7 cannot hold names this long
            continue
        listed = subprocess.run(["tar", "-t", "-f", str(archive)], check=True,
                                capture_output=True, text=True).stdout.split()
        with open(archive, "rb") as f:
            stream = TarStream(_Plain(f.read()))
        ours = []
        while (e := stream.next()) is not None:
            ours.append(e.name + ("/" if e.isdir() else ""))
        assert ours == listed, fmt
        names[fmt] = ours
    assert {"gnu", "pax", "oldgnu"} <= set(names)


class _Plain:
    """A forward-only in-memory source for TarStream."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._f.read(size)

    def tell(self) -> int:
        return self._f.tell()

    def seek(self, offset: int) -> int:
        end = len(self._f.getbuffer())
        return self._f.seek(min(offset, end))


def test_entry_repr_names_the_entry() -> None:
    e = Entry()
    e.name = "etc/passwd"
    assert "etc/passwd" in repr(e)


# ---- GNU sparse files: written sparse, as GNU tar writes them


def _sparse_source(work: Path, size: int, regions: list[int]) -> Path:
    src = work / "src"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        for at in regions:
            f.seek(at)
            f.write(b"data@%d" % at)
        f.truncate(size)
    return src


def _gnu_tar(work: Path, src: Path, *options: str) -> Path:
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    out = work / "sparse.tar"
    subprocess.run(["tar", "-c", "--sparse", *options, "-C", str(src), "-f", str(out),
                    "sparse"], check=True)
    return out


@pytest.mark.parametrize("options", [
    ("--format=gnu",),
    ("--format=pax", "--sparse-version=0.0"),
    ("--format=pax", "--sparse-version=0.1"),
    ("--format=pax", "--sparse-version=1.0"),
])
def test_gnu_sparse_file_is_written_sparse_not_in_full(work: Path, options: tuple[str]) -> None:
    # A 1 GiB file with 40 small data regions: the tar is tens of KiB (more regions than
    # the old GNU header holds, so it takes extension blocks). Written out in full it would
    # be a GiB on disk.
    size = 1 << 30
    regions = [i * (size // 40) for i in range(40)] + [size - 100]
    src = _sparse_source(work, size, regions)
    archive = _gnu_tar(work, src, *options)
    assert archive.stat().st_size < 1 << 20
    dest = work / "dest"
    dest.mkdir()
    extract(archive, dest)
    out = dest / "sparse"
    assert out.stat().st_size == size
    assert out.stat().st_blocks * 512 < 4 << 20  # the data regions, not the holes
    with open(out, "rb") as f:
        for at in regions:
            f.seek(at)
            assert f.read(len(b"data@%d" % at)) == b"data@%d" % at
        f.seek(size // 80)
        assert f.read(4096) == bytes(4096)  # a hole reads as zeros


@pytest.mark.parametrize("sparse_map", [
    "0,5,2,5",      # regions overlap
    "6,4,0,6",      # out of order
    "0,5,8,5",      # reaches past the file's size (10)
    "0,3,5,3",      # 6 bytes of regions, 10 stored
    "0,5,5",        # odd
    "0,x,5,5",      # not a number
])
def test_hostile_sparse_map_is_corrupt(work: Path, sparse_map: str) -> None:
    data = _pax_entry({"GNU.sparse.map": sparse_map, "GNU.sparse.size": "10"}, b"0123456789")
    with pytest.raises(CorruptLayer, match="sparse"):
        extract(io.BytesIO(data), work)


def test_huge_sparse_map_is_refused_without_reading_it(work: Path) -> None:
    # A 1.0 map claiming more pairs than fit in the limit: refused, not read into memory.
    info, _ = entry("f")
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.realsize": "10"}
    payload = b"99999999\n" + b"1\n" * ((2 << 20) // 2)
    with pytest.raises(UnsafeArchive, match="sparse map too large"):
        extract(io.BytesIO(build_tar((info, payload))), work)


# ---- depth


def test_a_layer_nesting_1500_directories_extracts_and_packs(arena: Arena) -> None:
    # Deeper than Python's recursion limit: extraction, packing and removal walk in loops.
    from isolate.fs import _tree, write_tar

    names = ["/".join(["d"] * n) for n in range(1, 1501)]
    members = [entry(n, kind=tarfile.DIRTYPE, mode=0o755) for n in names]
    members.append(entry(names[-1] + "/f", data=b"deep"))
    data = build_tar(*members)
    try:
        stats = extract(io.BytesIO(data), arena.dest)
        assert stats.files == 1501
        fd = os.open(arena.dest, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(1500):
                fd, old = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
                os.close(old)
            with open(os.open("f", os.O_RDONLY, dir_fd=fd), "rb") as f:
                assert f.read() == b"deep"
        finally:
            os.close(fd)
        out = io.BytesIO()
        write_tar(arena.dest, out)
        again = arena.root / "again"
        again.mkdir()
        assert extract(io.BytesIO(out.getvalue()), again).files == 1501
        _tree.remove_tree(str(again))
        assert not again.exists()
    finally:
        _tree.remove_tree(str(arena.dest / "d"))
    arena.assert_outside_untouched()
