"""detect() against fixture trees (real files in a temporary directory) for each layout, and
against this host."""

from __future__ import annotations

from pathlib import Path

import pytest

from isolate.cgroups import BackendKind, detect, host_layout
from isolate.cgroups.detect import parse_mountinfo, parse_proc_cgroup
from isolate.errors import CgroupError, UnsupportedError

ROOTFS = "23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
TMPFS = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"


def v1_line(n: int, name: str, opts: str, root: str = "/") -> str:
    return (f"{n} 31 0:{n} {root} /sys/fs/cgroup/{name} rw,relatime shared:{n} "
            f"- cgroup cgroup {opts}\n")


def v2_line(point: str = "/sys/fs/cgroup/unified") -> str:
    return f"41 31 0:41 / {point} rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"


def make_tree(tmp: Path, mountinfo: str, proc_cgroup: str,
              v2_at: str | None = None, v2_controllers: str = "") -> dict[str, str]:
    (tmp / "mountinfo").write_text(mountinfo)
    (tmp / "cgroup").write_text(proc_cgroup)
    if v2_at is not None:
        d = tmp / v2_at.lstrip("/")
        d.mkdir(parents=True)
        (d / "cgroup.controllers").write_text(v2_controllers + "\n")
    return {"mountinfo": str(tmp / "mountinfo"), "proc_cgroup": str(tmp / "cgroup"),
            "sysroot": str(tmp)}


def test_v1_only_host_with_comounted_and_named_hierarchies(tmp_path: Path) -> None:
    info = (ROOTFS + TMPFS + v1_line(32, "cpu,cpuacct", "rw,cpu,cpuacct")
            + v1_line(33, "memory", "rw,memory") + v1_line(34, "systemd", "rw,xattr,name=systemd"))
    cgroup = "3:memory:/jobs/a\n2:cpu,cpuacct:/\n1:name=systemd:/init.scope\n"
    layout = detect(**make_tree(tmp_path, info, cgroup))
    assert layout.kind is BackendKind.V1
    assert layout.v2 is None
    assert [h.key for h in layout.v1] == ["cpu,cpuacct", "memory"]
    mem = layout.v1_for("memory")
    assert mem is not None and mem.self_path == "/jobs/a"
    assert mem.mount == str(tmp_path / "sys/fs/cgroup/memory")
    assert layout.v1_for("cpuacct") is layout.v1_for("cpu")
    assert layout.v1_for("pids") is None


def test_v2_only_host(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, ROOTFS + v2_line("/sys/fs/cgroup"), "0::/user.slice/me\n",
                     v2_at="/sys/fs/cgroup", v2_controllers="cpuset cpu io memory pids")
    layout = detect(**tree)
    assert layout.kind is BackendKind.V2
    assert layout.v1 == ()
    assert layout.v2 is not None and layout.v2.self_path == "/user.slice/me"
    assert layout.v2_controllers == {"cpuset", "cpu", "io", "memory", "pids"}
    assert layout.v2.dir_of("/user.slice/me/isolate") == str(
        tmp_path / "sys/fs/cgroup/user.slice/me/isolate")


def test_hybrid_host_like_this_machine(tmp_path: Path) -> None:
    info = (ROOTFS + TMPFS + v1_line(32, "cpu", "rw,cpu") + v1_line(35, "memory", "rw,memory")
            + v1_line(40, "systemd", "rw,name=systemd") + v2_line())
    cgroup = "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu:/\n0::/\n"
    layout = detect(**make_tree(tmp_path, info, cgroup, v2_at="/sys/fs/cgroup/unified",
                                v2_controllers="hugetlb"))
    assert layout.kind is BackendKind.HYBRID
    assert layout.v2 is not None and layout.v2.mount == str(tmp_path / "sys/fs/cgroup/unified")
    assert [h.key for h in layout.hierarchies] == ["unified", "cpu", "memory"]
    assert layout.v2_controllers == {"hugetlb"}


def test_a_v1_controller_alone_on_a_v2_host_with_only_named_v1_is_v2(tmp_path: Path) -> None:
    info = ROOTFS + v1_line(34, "systemd", "rw,name=systemd") + v2_line("/sys/fs/cgroup/unified")
    layout = detect(**make_tree(tmp_path, info, "0::/\n1:name=systemd:/\n",
                                v2_at="/sys/fs/cgroup/unified", v2_controllers="memory"))
    assert layout.kind is BackendKind.V2


def test_no_cgroup_mount_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError) as err:
        detect(**make_tree(tmp_path, ROOTFS, ""))
    assert err.value.missing == "a cgroup mount"


def test_malformed_mountinfo_is_a_cgroup_error(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match="malformed"):
        detect(**make_tree(tmp_path, "garbage line\n", ""))


def test_missing_files_are_cgroup_errors_with_errno(tmp_path: Path) -> None:
    with pytest.raises(CgroupError) as err:
        detect(mountinfo=str(tmp_path / "nope"))
    assert err.value.errno == 2


def test_mount_of_a_subtree_maps_paths_below_its_root(tmp_path: Path) -> None:
    info = ROOTFS + v1_line(35, "memory", "rw,memory", root="/jobs")
    layout = detect(**make_tree(tmp_path, info, "4:memory:/jobs/a\n"))
    mem = layout.v1[0]
    assert mem.dir_of("/jobs/a/isolate") == str(tmp_path / "sys/fs/cgroup/memory/a/isolate")
    with pytest.raises(UnsupportedError):
        mem.dir_of("/elsewhere")


def test_escaped_mount_points_are_decoded() -> None:
    line = "41 31 0:41 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    assert parse_mountinfo(line) == [("cgroup2", "/mnt/my cgroups", "/", frozenset({"rw"}))]


def test_proc_cgroup_keys_sort_comounted_controllers() -> None:
    assert parse_proc_cgroup("2:cpuacct,cpu:/a\n0::/b\n") == {"cpu,cpuacct": "/a",
                                                              "unified": "/b"}


def test_this_host_is_detected_as_it_is_mounted() -> None:
    layout = host_layout()
    text = Path("/proc/self/mountinfo").read_text()
    has_v2 = " - cgroup2 " in text
    has_v1 = any(" - cgroup " in line and "name=" not in line.rsplit(" ", 1)[-1]
                 for line in text.splitlines())
    expected = {(True, True): BackendKind.HYBRID, (True, False): BackendKind.V2,
                (False, True): BackendKind.V1}[(has_v2, has_v1)]
    assert layout.kind is expected
