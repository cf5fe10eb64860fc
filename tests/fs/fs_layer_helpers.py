"""Helpers for layer tests: tar builders, tree snapshots, overlay mounts, a watched arena."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path


class Arena:
    """A destination dir next to an "outside" dir whose content a hostile tar must not touch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dest = root / "dest"
        self.outside = root / "outside"
        self.dest.mkdir()
        self.outside.mkdir()
        (self.outside / "secret").write_bytes(b"secret\n")
        self._before = self.snapshot_outside()

    def snapshot_outside(self) -> dict[str, tuple[int, int, bytes]]:
        result = {}
        for p in sorted(self.root.rglob("*")):
            if self.dest in p.parents or p == self.dest:
                continue
            st = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
            result[str(p.relative_to(self.root))] = (st.st_mode, st.st_nlink, data)
        return result

    def assert_outside_untouched(self) -> None:
        assert self.snapshot_outside() == self._before


def build_tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """A tar (PAX) of the given members, each with its data (empty for non-files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()


def entry(name: str, *, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "",
          mode: int = 0o644, **attrs: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = link
    info.mtime = 1_700_000_000
    for key, value in attrs.items():
        setattr(info, key, value)
    return info, data


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree_snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """What a tree looks like to a reader: type, mode, owner, content or link target."""
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                extra: object = os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    extra = f.read()
            else:
                extra = None
            result[rel] = (st.st_mode, st.st_uid, st.st_gid, extra)
    return result


def mount_overlay(mounted: list[str], target: Path, lower: list[Path],
                  upper: Path | None = None, work: Path | None = None) -> None:
    opts = "lowerdir=" + ":".join(str(p) for p in lower)
    if upper is not None and work is not None:
        opts += f",upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True)
    mounted.append(str(target))


def umount(mounted: list[str], target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True)
    mounted.remove(str(target))
