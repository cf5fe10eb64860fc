"""A corpus of hostile layers: each is rejected, naming the entry, with nothing written outside."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from fs_layer_helpers import Arena, build_tar, entry

from isolate.errors import ImageError
from isolate.fs import CorruptLayer, UnsafeArchive, extract


def _rejected(arena: Arena, data: bytes, entry_name: str) -> UnsafeArchive:
    with pytest.raises(UnsafeArchive) as info:
        extract(io.BytesIO(data), arena.dest)
    assert isinstance(info.value, ImageError)
    assert info.value.entry == entry_name
    assert entry_name in str(info.value)
    arena.assert_outside_untouched()
    return info.value


def test_hostile_tar_absolute_name_is_rejected(arena: Arena) -> None:
    name = str(arena.outside / "planted")
    err = _rejected(arena, build_tar(entry(name, data=b"evil")), name)
    assert "absolute" in err.reason


@pytest.mark.parametrize("name", ["../outside/planted", "a/../../outside/planted", ".."])
def test_hostile_tar_dotdot_component_is_rejected(arena: Arena, name: str) -> None:
    data = build_tar(entry("a", kind=tarfile.DIRTYPE, mode=0o755), entry(name, data=b"evil"))
    err = _rejected(arena, data, name)
    assert "'..'" in err.reason


@pytest.mark.parametrize("target", ["ABS", "../outside"])
def test_hostile_tar_symlink_then_file_is_rejected(arena: Arena, target: str) -> None:
    link = str(arena.outside) if target == "ABS" else target
    data = build_tar(
        entry("link", kind=tarfile.SYMTYPE, link=link),
        entry("link/planted", data=b"evil"),
    )
    err = _rejected(arena, data, "link/planted")
    assert "symlink" in err.reason


def test_hostile_tar_symlink_then_deep_path_is_rejected(arena: Arena) -> None:
    data = build_tar(
        entry("d", kind=tarfile.DIRTYPE, mode=0o755),
        entry("d/link", kind=tarfile.SYMTYPE, link="../../outside"),
        entry("d/link/sub/planted", data=b"evil"),
    )
    _rejected(arena, data, "d/link/sub/planted")
    assert not (arena.outside / "sub").exists()


def test_hostile_tar_symlink_then_dir_is_rejected(arena: Arena) -> None:
    data = build_tar(
        entry("link", kind=tarfile.SYMTYPE, link=str(arena.outside)),
        entry("link/newdir", kind=tarfile.DIRTYPE, mode=0o755),
    )
    _rejected(arena, data, "link/newdir")


def test_hostile_tar_whiteout_through_symlink_is_rejected(arena: Arena) -> None:
    data = build_tar(
        entry("link", kind=tarfile.SYMTYPE, link=str(arena.outside)),
        entry("link/.wh.secret"),
    )
    _rejected(arena, data, "link/.wh.secret")


@pytest.mark.parametrize("link", ["../outside/secret", "ABS"])
def test_hostile_tar_hardlink_out_is_rejected(arena: Arena, link: str) -> None:
    target = str(arena.outside / "secret") if link == "ABS" else link
    data = build_tar(entry("stolen", kind=tarfile.LNKTYPE, link=target))
    err = _rejected(arena, data, "stolen")
    assert "hardlink target" in err.reason
    assert (arena.outside / "secret").stat().st_nlink == 1


def test_hostile_tar_hardlink_through_symlink_is_rejected(arena: Arena) -> None:
    data = build_tar(
        entry("link", kind=tarfile.SYMTYPE, link=str(arena.outside)),
        entry("stolen", kind=tarfile.LNKTYPE, link="link/secret"),
    )
    _rejected(arena, data, "stolen")
    assert (arena.outside / "secret").stat().st_nlink == 1


def test_hostile_tar_file_over_symlink_replaces_the_link_not_its_target(arena: Arena) -> None:
    # Not an error: the later entry wins, but as a new file, never written through the link.
    data = build_tar(
        entry("x", kind=tarfile.SYMTYPE, link=str(arena.outside / "secret")),
        entry("x", data=b"evil"),
    )
    extract(io.BytesIO(data), arena.dest)
    assert not (arena.dest / "x").is_symlink()
    assert (arena.dest / "x").read_bytes() == b"evil"
    arena.assert_outside_untouched()


def test_file_over_hardlink_does_not_change_the_other_name(arena: Arena) -> None:
    data = build_tar(
        entry("f", data=b"original"),
        entry("h", kind=tarfile.LNKTYPE, link="f"),
        entry("h", data=b"replaced"),
    )
    extract(io.BytesIO(data), arena.dest)
    assert (arena.dest / "f").read_bytes() == b"original"
    assert (arena.dest / "h").read_bytes() == b"replaced"


def test_hostile_tar_invalid_whiteout_name_is_rejected(arena: Arena) -> None:
    _rejected(arena, build_tar(entry("a/.wh..")), "a/.wh..")


def _raw_header(name: bytes, size: int, kind: bytes) -> bytes:
    """A ustar header built by hand, so sizes tarfile would refuse to write are possible."""
    fields = [
        name.ljust(100, b"\0"), b"0000644\0", b"0000000\0", b"0000000\0",
        b"%011o\0" % size, b"00000000000\0", b" " * 8, kind, b"\0" * 100,
        b"ustar\x0000", b"\0" * 32, b"\0" * 32, b"0000000\0", b"0000000\0", b"\0" * 155,
    ]
    header = bytearray(b"".join(fields).ljust(512, b"\0"))
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_hostile_tar_huge_extended_header_is_rejected_without_reading_it(
    arena: Arena, kind: bytes
) -> None:
    # Claims 8 GiB (the ustar maximum) of header while only a few blocks follow: reading it
    # whole would exhaust memory.
    data = _raw_header(b"././@PaxHeader", (1 << 33) - 1, kind) + b"\0" * 4096
    err = _rejected(arena, data, "././@PaxHeader")
    assert "extended header" in err.reason
    assert os.listdir(arena.dest) == []


def test_hostile_tar_garbage_header_is_corrupt(arena: Arena) -> None:
    with pytest.raises(CorruptLayer):
        extract(io.BytesIO(os.urandom(512) * 4), arena.dest)
    arena.assert_outside_untouched()


def test_garbage_after_valid_entries_is_corrupt_not_a_silent_end(arena: Arena) -> None:
    good = build_tar(entry("ok", data=b"fine"))
    first = good[:1024]  # header + data block, cut before the end-of-archive blocks
    garbage = b"A" * 512
    with pytest.raises(CorruptLayer):
        extract(io.BytesIO(first + garbage + b"\0" * 1024), arena.dest)


def test_truncated_file_data_is_corrupt(arena: Arena) -> None:
    good = build_tar(entry("big", data=b"x" * 100_000))
    with pytest.raises(CorruptLayer):
        extract(io.BytesIO(good[:20_000]), arena.dest)


def test_unknown_compression_is_corrupt(arena: Arena) -> None:
    with pytest.raises(CorruptLayer, match="bzip2/xz"):
        extract(io.BytesIO(b"BZh91AY&SY" + b"\0" * 100), arena.dest)


def test_header_parser_reads_what_tarfile_reads_or_refuses_on_mutated_headers() -> None:
    # isolate reads headers itself (fast for the common spelling, then field by field). What
    # it accepts it must read as tarfile does; where it is stricter than tarfile, only number
    # fields that GNU tar would refuse too (signs, underscores, odd bytes) may be the reason.
    import random

    from isolate.fs._tar import parse_header

    base = tarfile.TarInfo("dir/name")
    base.size, base.uid, base.gid, base.mtime, base.mode = 1234, 1000, 100, 1_700_000_000, 0o4755
    good = base.tobuf(tarfile.USTAR_FORMAT)
    rng = random.Random(1234)
    alphabet = b"0123456789 \0\x80\xff\x1c\t_+-x"
    accepted = stricter = 0
    for _ in range(4000):
        buf = bytearray(good)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(100, 345)] = rng.choice(alphabet)
        for chk in (False, True):
            if chk:  # also with a correct checksum, so the number fields are really parsed
                buf[148:156] = b"        "
                buf[148:156] = b"%06o\0 " % sum(buf)
            want: object
            try:
                ref = tarfile.TarInfo.frombuf(bytes(buf), "utf-8", "surrogateescape")
                want = (ref.name, ref.linkname, ref.type, ref.mode & 0o7777, ref.uid, ref.gid,
                        ref.size, ref.mtime * 10**9, ref.devmajor, ref.devminor)
            except tarfile.HeaderError:
                want = "error"
            try:
                ours = parse_header(bytes(buf))
            except CorruptLayer as e:
                if want != "error":
                    assert "is not a number" in str(e), bytes(buf[100:345])
                    stricter += 1
                continue
            got = (ours.name, ours.linkname, ours.type, ours.mode, ours.uid, ours.gid,
                   ours.size, ours.mtime_ns, ours.devmajor, ours.devminor)
            assert got == want, bytes(buf[100:345])
            accepted += 1
    assert accepted > 1000 and stricter  # both kinds of header were really seen


def test_hardlink_replacing_the_directory_holding_its_target_is_corrupt(arena: Arena) -> None:
    data = build_tar(
        entry("a/b/f", data=b"x"),
        entry("a", kind=tarfile.LNKTYPE, link="a/b/f"),
    )
    with pytest.raises(CorruptLayer, match="inside it"):
        extract(io.BytesIO(data), arena.dest)
    assert (arena.dest / "a" / "b" / "f").read_bytes() == b"x"


@pytest.mark.parametrize("cut", [10, 200])
def test_damaged_gzip_is_corrupt(arena: Arena, cut: int) -> None:
    import gzip

    blob = gzip.compress(build_tar(entry("f", data=os.urandom(5000))))
    damaged = blob[:cut] + bytes(b ^ 0x55 for b in blob[cut : cut + 50]) + blob[cut + 50 :]
    with pytest.raises(CorruptLayer):
        extract(io.BytesIO(damaged), arena.dest)
    with pytest.raises(CorruptLayer):
        extract(io.BytesIO(b"\x1f\x8b\x08garbage"), arena.dest)
