"""What a runtime config accepts and refuses: every bad value is a ConfigError naming it,
before anything is spawned."""

from __future__ import annotations

import pytest

from isolate.errors import ConfigError
from isolate.namespaces import IdMap, NamespaceKind
from isolate.runtime import (
    Capabilities,
    Device,
    Mount,
    NamespaceSpec,
    Process,
    Rlimit,
    Root,
    RuntimeConfig,
    User,
    mountpoints,
    standard_mounts,
)
from isolate.security import CapabilitySet

MNT = [NamespaceKind.MNT, NamespaceKind.PID]


def test_user_ids_are_checked() -> None:
    with pytest.raises(ConfigError, match="uid"):
        User(uid=-1)
    with pytest.raises(ConfigError, match="gid"):
        User(gid=2**32)
    with pytest.raises(ConfigError, match="additional_gids"):
        User(additional_gids=[1, "x"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="umask"):
        User(umask=0o1000)
    assert User(1000, 1000, [27, 100]).additional_gids == (27, 100)


def test_capability_sets_must_nest_as_the_kernel_requires() -> None:
    chown = CapabilitySet(["CAP_CHOWN"])
    with pytest.raises(ConfigError, match="bounding set lacks"):
        Capabilities(bounding=CapabilitySet(), permitted=chown, effective=chown)
    with pytest.raises(ConfigError, match="effective must be a subset"):
        Capabilities(bounding=chown, effective=chown)
    with pytest.raises(ConfigError, match="ambient"):
        Capabilities(bounding=chown, permitted=chown, effective=chown, ambient=chown)
    caps = Capabilities.of(["chown", "kill"])
    assert caps.bounding == caps.permitted == caps.effective
    assert not caps.inheritable and not caps.ambient  # as Docker since 20.10


def test_rlimits_parse_like_docker_ulimit() -> None:
    r = Rlimit.parse("nofile=1024:2048")
    assert (r.type, r.soft, r.hard) == ("nofile", 1024, 2048)
    assert Rlimit.parse("nproc=-1").soft == 2**64 - 1
    assert Rlimit("RLIMIT_CORE", 0, 0).type == "core"
    for bad in ("nofile", "nofile=x", "nofile=2:1", "bogus=1", "nofile=-3"):
        with pytest.raises(ConfigError):
            Rlimit.parse(bad)
    with pytest.raises(ConfigError, match="given twice"):
        Process(rlimits=[Rlimit.parse("nofile=1"), Rlimit.parse("RLIMIT_NOFILE=2")])


def test_process_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="not a string"):
        Process(args="sh -c true")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="NUL"):
        Process(args=["a\0b"])
    with pytest.raises(ConfigError, match="environment"):
        Process(env={"A=B": "1"})
    with pytest.raises(ConfigError, match="absolute"):
        Process(cwd="relative")
    with pytest.raises(ConfigError, match="oom_score_adj"):
        Process(oom_score_adj=5000)
    p = Process(env=["A=1", "B=2", "A=3"])
    assert p.env_dict == {"A": "3", "B": "2"}


def test_mounts_are_validated() -> None:
    with pytest.raises(ConfigError, match="type"):
        Mount("/x", "ext4", "/dev/sda")
    with pytest.raises(ConfigError, match="needs a source"):
        Mount("/x", "bind")
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        Mount("/a/../b", "tmpfs")
    with pytest.raises(ConfigError, match="root directory"):
        Mount("/", "tmpfs")
    with pytest.raises(ConfigError, match="option"):
        Mount("/x", "tmpfs", options=["size=1,mode=2"])
    m = Mount("/x", "tmpfs", options=["nosuid", "size=64m", "mode=1777"])
    assert m.data == "size=64m,mode=1777" and m.option("size") == "64m"
    assert Mount("/y", "bind", "relative/dir").source.startswith("/")


def test_devices_live_under_dev() -> None:
    with pytest.raises(ConfigError, match="under /dev"):
        Device("/etc/kvm")
    with pytest.raises(ConfigError, match="rwm"):
        Device("/dev/kvm", access="rwx")
    assert Device("/dev/fuse").source == "/dev/fuse"


def test_a_host_node_is_described_for_mknod_and_the_host_list_leaves_sessions_out() -> None:
    import os

    from isolate.runtime import host_devices

    null = Device.of_host_node("/dev/null")
    st = os.stat("/dev/null")
    assert null.node == ("c", 1, 3, st.st_mode & 0o7777, st.st_uid, st.st_gid)
    with pytest.raises(ConfigError, match="not a character or block device"):
        Device.of_host_node("/etc/passwd")
    for bad in (("x", 1, 3, 0o666, 0, 0), ("c", -1, 3, 0o666, 0, 0), ("c", 1)):
        with pytest.raises(ConfigError, match="device node"):
            Device("/dev/null", node=bad)  # type: ignore[arg-type]
    paths = {d.path for d in host_devices()}
    assert "/dev/null" in paths and all(d.node is not None for d in host_devices())
    assert not {p for p in paths if p.startswith(("/dev/pts/", "/dev/shm/"))}
    assert "/dev/console" not in paths and "/dev/ptmx" not in paths


def test_namespaces_and_maps_must_agree() -> None:
    with pytest.raises(ConfigError, match="listed twice"):
        RuntimeConfig(namespaces=["net", "network"])
    with pytest.raises(ConfigError, match="path or an fd"):
        NamespaceSpec("net", path="/proc/1/ns/net", fd=3)
    with pytest.raises(ConfigError, match="mappings need a new user"):
        RuntimeConfig(uid_mappings=[IdMap(0, 1000)])
    with pytest.raises(ConfigError, match="needs uid_mappings"):
        RuntimeConfig(namespaces=["user"])
    with pytest.raises(ConfigError, match="uid 5 is not mapped"):
        RuntimeConfig(namespaces=["user"], uid_mappings=[IdMap(0, 1000)],
                      gid_mappings=[IdMap(0, 1000)], process=Process(user=User(5)))
    with pytest.raises(ConfigError, match="uts namespace"):
        RuntimeConfig(hostname="box")
    with pytest.raises(ConfigError, match="mount namespace"):
        RuntimeConfig(root=Root("/srv/root"))
    with pytest.raises(ConfigError, match=r"net\.\* sysctls"):
        RuntimeConfig(sysctl={"net.ipv4.ip_forward": "1"})
    ok = RuntimeConfig(namespaces=["user", *MNT], uid_mappings=[IdMap(0, 1000, 2)],
                       gid_mappings=[IdMap(0, 1000, 2)], process=Process(user=User(1, 1)))
    assert ok.in_user_namespace and ok.has_new("user") and not ok.has_new("net")


def test_mountpoints_leave_out_what_an_earlier_mount_covers() -> None:
    mounts = [*standard_mounts(own_network=True), Mount("/data", "tmpfs"),
              Mount("/data/sub", "tmpfs"), Mount("/etc/hosts", "bind", "/etc/hosts")]
    points = mountpoints(RuntimeConfig(mounts=mounts, namespaces=MNT))
    assert ("/data", False) in points and ("/etc/hosts", True) in points
    assert not any(p in ("/dev/pts", "/dev/shm", "/data/sub") for p, _ in points)


_DEV_PROBE = r"""
import os, stat, sys, time
from isolate.runtime import host_devices
from isolate.runtime.config import _RACY_NS

def paths():
    return {d.path for d in host_devices()}

os.mknod("/dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
assert paths() == {"/dev/null"}
# Directory times are coarse: a walk right after a change is not kept; once the change is
# older than that window, the walk is kept and reused as long as /dev stays as it is.
time.sleep(2 * _RACY_NS / 1e9)
first = host_devices()
assert {d.path for d in first} == {"/dev/null"}, first
assert host_devices() is first, "an unchanged /dev is not walked again"
os.mknod("/dev/zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
assert paths() == {"/dev/null", "/dev/zero"}, paths()
os.mkdir("/dev/net")
assert paths() == {"/dev/null", "/dev/zero"}
os.mknod("/dev/net/tun", stat.S_IFCHR | 0o666, os.makedev(10, 200))
assert paths() == {"/dev/null", "/dev/zero", "/dev/net/tun"}, "a node in a subdirectory"
os.unlink("/dev/zero")
assert paths() == {"/dev/null", "/dev/net/tun"}, "a node removed"
os.unlink("/dev/null")
os.mknod("/dev/null", stat.S_IFCHR | 0o600, os.makedev(1, 7))
(null,) = [d for d in host_devices() if d.path == "/dev/null"]
assert null.node is not None and null.node[2] == 7 and null.node[3] == 0o600, null
print("ok")
"""


def test_host_devices_are_walked_again_when_dev_changes() -> None:
    """The walk is kept while /dev is unchanged; a node made, removed or replaced, also in a
    subdirectory, shows at the next call. In a mount namespace of its own with a tmpfs on
    /dev, so that the host's /dev is never touched."""
    import os
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private /dev")
    script = ("import subprocess, sys\n"
              "subprocess.run(['mount', '-t', 'tmpfs', 'tmpfs', '/dev'], check=True)\n"
              f"exec({_DEV_PROBE!r})\n")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                           script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
