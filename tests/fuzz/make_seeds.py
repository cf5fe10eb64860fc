"""Write the seed corpus of fuzz_extract (tests/fuzz/corpus/): small tars from Python's tarfile
and GNU tar, each behind the harness's 3-byte prefix (flags, chunk size seed).

Run from anywhere: ``python tests/fuzz/make_seeds.py``. The names used (abs, up, d/up, lnkf,
hl) are the symlinks and hardlink the harness puts in each root before the input.
"""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import subprocess
import tarfile
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
END = bytes(1024)


def _info(name: str, kind: bytes = tarfile.REGTYPE, *, link: str = "", size: int = 0,
          mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, size, mode
    info.mtime = 1_700_000_000
    return info


def _tar(entries: list[tuple[tarfile.TarInfo, bytes]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue().rstrip(b"\0")
    # Keep the last member's padding and the end-of-archive blocks, not tarfile's record fill.
    return raw + bytes(-len(raw) % 512) + END


def _file(name: str, data: bytes, mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, size=len(data), mode=mode), data


def _dir(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.DIRTYPE, mode=mode), b""


def _sym(name: str, link: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.SYMTYPE, link=link), b""


def _hard(name: str, link: str) -> tuple[tarfile.TarInfo, bytes]:
    return _info(name, tarfile.LNKTYPE, link=link), b""


SEEDS: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes]], int]] = {
    "plain": ([_dir("a"), _file("a/f", b"hello\n"), _sym("a/s", "f"), _file("top", b"x" * 700)],
              tarfile.USTAR_FORMAT),
    "nested": ([_dir("a/b/c", 0o700), _file("a/b/c/f", b"1"), _file("a/b/g", b"2", 0o4755)],
               tarfile.GNU_FORMAT),
    "prefix": ([_file("p" * 60 + "/" + "q" * 60 + "/" + "r" * 90, b"long")],
               tarfile.USTAR_FORMAT),
    "gnu_longname": ([_file("n" * 150 + "/x", b"gnu"), _sym("s", "t" * 120)], tarfile.GNU_FORMAT),
    "pax": ([_file("é/" + "z" * 120, b"pax"), _file("small", b"s")], tarfile.PAX_FORMAT),
    "hardlink": ([_file("f", b"data"), _hard("h", "f"), _file("g", b"after")],
                 tarfile.USTAR_FORMAT),
    "escape": ([_file("abs/x", b"out"), _file("up/x", b"out"), _file("d/up/x", b"out"),
                _dir("abs/y"), _sym("up/s", "/"), _file("d/z", b"in")], tarfile.USTAR_FORMAT),
    "replace_links": ([_file("lnkf", b"over"), _file("hl", b"over"), _sym("abs", "elsewhere"),
                       _dir("up")], tarfile.USTAR_FORMAT),
    "symlink_then_file": ([_sym("e", "../../sentinel/f"), _file("e", b"replaced"),
                           _sym("q", "/dev/shm"), _file("q/x", b"no")], tarfile.USTAR_FORMAT),
    "dir_then_symlink": ([_dir("a"), _file("a/f", b"1"), _sym("a", "../sentinel"),
                          _file("a/g", b"2")], tarfile.USTAR_FORMAT),
    "dots": ([_file("./a/./b", b"1"), _file("a//c", b"2"), _file("../x", b"3"),
              _file("/abs", b"4"), _file(".wh.a", b""), _dir("a/.")], tarfile.USTAR_FORMAT),
}


def main() -> None:
    CORPUS.mkdir(exist_ok=True)
    for name, (entries, fmt) in SEEDS.items():
        tar = _tar(entries, fmt)
        # Flags 0x03 (chown, track created), one chunk; and a 1x7-byte-chunk variant.
        (CORPUS / name).write_bytes(b"\x03\xff\xff" + tar)
        (CORPUS / f"{name}.chunked").write_bytes(b"\x07\x06\x00" + tar)
    # Flags 0x13: files limited to 1000 bytes (RLIMIT_FSIZE), so this write fails mid-file.
    big = _tar([_dir("a"), _file("a/big", b"b" * 3000), _file("after", b"a")], tarfile.GNU_FORMAT)
    (CORPUS / "write_fails").write_bytes(b"\x13\x00\x04" + big)
    if shutil.which("tar"):
        with tempfile.TemporaryDirectory() as tmp:
            src = pathlib.Path(tmp, "src")
            (src / "d" / "e").mkdir(parents=True)
            (src / "d" / "e" / "f").write_bytes(b"gnu tar\n")
            os.symlink("e/f", src / "d" / "s")
            os.link(src / "d" / "e" / "f", src / "d" / "h")
            (src / ("L" * 110)).write_bytes(b"long")
            out = subprocess.run(
                ["tar", "--format=gnu", "--sort=name", "--mtime=@0", "-C", str(src), "-cf", "-",
                 "."], check=True, capture_output=True).stdout
            raw = out.rstrip(b"\0")
            (CORPUS / "gnutar").write_bytes(b"\x03\xff\xff" + raw + bytes(-len(raw) % 512) + END)


if __name__ == "__main__":
    main()
