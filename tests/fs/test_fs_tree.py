"""Whole trees by fd (isolate.fs._tree): any depth, hostile modes, never outside the tree."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest

from isolate.fs import _tree


def _deep(root: Path, depth: int) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            fd, old = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
            os.close(old)
        with open(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(b"x" * 5000)
    finally:
        os.close(fd)


def test_trees_deeper_than_the_recursion_limit_and_path_max_are_walked(work: Path) -> None:
    # 2500 levels of "d/": a 5000-byte path, over PATH_MAX, deeper than the recursion limit.
    depth = max(2500, sys.getrecursionlimit() + 100)
    top = work / "top"
    top.mkdir()
    _deep(top, depth)
    seen: set[tuple[int, int]] = set()
    assert _tree.tree_bytes(str(top), seen) >= 5000
    assert len(seen) == depth + 1  # every directory and the file, not top itself
    _tree.fsync_tree(str(top))
    _tree.remove_tree(str(top))
    assert not top.exists()
    assert os.listdir(work) == []


def test_remove_tree_of_a_file_a_symlink_or_nothing(work: Path) -> None:
    (work / "file").write_text("x")
    os.symlink(work, work / "link")  # removed as a link, its target kept
    for name in ("file", "link", "absent", "absent/below"):
        _tree.remove_tree(str(work / name))
    assert os.listdir(work) == []


def test_walk_refuses_to_go_up_into_a_directory_it_did_not_come_down_from(work: Path) -> None:
    (work / "a" / "b").mkdir(parents=True)
    (work / "a" / "b" / "f").write_text("x")
    (work / "a" / "keep").write_text("must stay")

    def move_away(dir_fd: int, name: str, _entry: object) -> None:
        # While the walk is in a/b, b is moved out of a: ".." is no longer a.
        if name == "f":
            os.rename(work / "a" / "b", work / "b-moved")

    parent = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError) as info:
            for _ in _tree.walk_at(parent, "a", move_away):
                pass
        assert info.value.errno == errno.ESTALE
    finally:
        os.close(parent)
    assert (work / "a" / "keep").read_text() == "must stay"


def test_remove_tree_takes_directories_their_owner_may_not_enter_or_write(work: Path) -> None:
    from rootless import run_unprivileged

    os.chmod(work, 0o777)
    code = f"""
import os
from isolate.fs import _tree
top = {str(work / 'top')!r}
for sub, mode in (("none", 0o000), ("readonly", 0o500), ("listonly", 0o400)):
    os.makedirs(os.path.join(top, sub, "inner"))
    with open(os.path.join(top, sub, "inner", "f"), "w") as f:
        f.write("x")
    os.chmod(os.path.join(top, sub, "inner"), mode)
    os.chmod(os.path.join(top, sub), mode)
os.chmod(top, 0o500)
_tree.remove_tree(top)
print(os.path.exists(top))
"""
    proc = run_unprivileged(code)
    assert proc.stdout.strip() == "False"
