"""ISO_OP_OVERLAY: the builder, the encoding, and the C child mounting real overlays."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from isolate import _plan, lowlevel
from isolate._plan import Mode, Op, OpKind, Plan
from isolate.errors import ConfigError, MountError
from isolate.fs.mounts import MS_REC, MS_SLAVE

HEADER = Path(__file__).resolve().parents[1] / "src" / "isolate" / "_native" / "isolate.h"


def test_overlay_number_agrees_with_the_header() -> None:
    text = HEADER.read_text()
    assert int(re.search(r"#define ISO_OP_OVERLAY (\d+)", text).group(1)) == OpKind.OVERLAY  # type: ignore[union-attr]
    assert int(re.search(r"#define ISO_OP__MAX (\d+)", text).group(1)) == max(OpKind) + 1  # type: ignore[union-attr]


def test_overlay_op_survives_encoding_with_lowers_topmost_first() -> None:
    op = _plan.overlay(["/l/low", "/l/mid", "/l/top"], "/t", "/u", "/w",
                       options=["userxattr", "index=off"])
    p = Plan()
    p.add(op)
    _, (decoded,) = _plan.decode(p.encode(3))
    assert decoded.kind is OpKind.OVERLAY and decoded.a == 3 and decoded.c == 2
    assert decoded.s1 == b"/l/top\0/l/mid\0/l/low"
    assert decoded.s3 == b"/u\0/w" and decoded.s4 == b"userxattr\0index=off"
    assert decoded.s2 == b"/t"


@pytest.mark.parametrize("kwargs", [
    {"lowers": []},
    {"lowers": ["/a:b"], "target": "/t"},
    {"lowers": ["/a"], "target": "/t", "upper": "/u"},
    {"lowers": ["/a"]},  # neither target nor slot
    {"lowers": ["/a"], "target": "/t", "slot": 2},
    {"lowers": ["/a"], "slot": 64},
    {"lowers": ["/a\0b"], "target": "/t"},
])
def test_overlay_builder_rejects_bad_input(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        _plan.overlay(**kwargs)  # type: ignore[arg-type]


def _spawn_in_mntns(ops: list[Op], script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` after ``ops`` in a new mount namespace; capture its output."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        p = Plan(_plan.CLONE_NEWNS, Mode.VFORK)
        p.add(Op(OpKind.MOUNT, a=MS_REC | MS_SLAVE, s2=b"/", note="rslave /"))
        p.extend(ops)
        p.add(_plan.fds([(w, 1, False), (w, 2, False)]))
        p.add(_plan.exec_("/bin/sh", ["sh", "-c", script], {"PATH": "/usr/bin:/bin"}))
        child = lowlevel.spawn(p)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
    with child, os.fdopen(r) as out:
        text = out.read()
        code = child.wait()
    return subprocess.CompletedProcess(script, code, text)


@pytest.mark.root
def test_child_mounts_many_layers_with_the_top_one_winning(tmp_path: Path) -> None:
    lowers = []
    for i in range(40):
        layer = tmp_path / f"layer-with-a-long-name-to-pass-one-page-of-mount-data-{i:03d}"
        layer.mkdir()
        (layer / f"f{i}").write_text(f"{i}\n")
        (layer / "common").write_text(f"{i}\n")
        lowers.append(str(layer))
    assert len(":".join(lowers)) > 4096
    target = tmp_path / "target"
    target.mkdir()
    before = Path("/proc/self/mountinfo").read_text()
    done = _spawn_in_mntns([_plan.overlay(lowers, str(target))],
                           f"cat {target}/common; ls {target} | grep -c '^f'; "
                           f"touch {target}/x 2>&1 || true")
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[:2] == ["39", "40"]
    assert "Read-only file system" in lines[2]  # no upper dir: a read-only overlay
    assert Path("/proc/self/mountinfo").read_text() == before


@pytest.mark.root
def test_child_overlay_in_a_slot_with_upper_dir_records_writes(tmp_path: Path) -> None:
    lower, upper, work, target = (tmp_path / n for n in ("lower", "upper", "work", "target"))
    for d in (lower, upper, work, target):
        d.mkdir()
    (lower / "gone").write_text("x")
    ops = [_plan.overlay([str(lower)], None, str(upper), str(work), slot=5),
           _plan.move_mount(5, str(target), in_root=False, create=False)]
    done = _spawn_in_mntns(ops, f"rm {target}/gone && echo hi > {target}/new")
    assert done.returncode == 0, done.stdout
    assert (upper / "new").read_text() == "hi\n"
    assert os.lstat(upper / "gone").st_rdev == 0 and (lower / "gone").exists()


@pytest.mark.root
def test_a_missing_lower_dir_names_the_overlay_op(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(MountError) as info:
        _spawn_in_mntns([_plan.overlay([str(tmp_path / "absent")], str(target))], "true")
    assert info.value.step == "overlay" and info.value.errno == 2
