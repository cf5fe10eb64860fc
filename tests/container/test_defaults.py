"""A container gets Docker's defaults: its 14 capabilities, its seccomp profile, masked and
read-only /proc paths, no_new_privs only when asked, nothing but stdio open, its own hostname,
hosts and resolv.conf; and what those defaults allow (binding port 80, chown, chroot as root)
works while what they refuse (mount, a device node) does not."""

from __future__ import annotations

import pytest

from isolate.container import Container, ContainerConfig, ContainerStore
from isolate.errors import ConfigError
from isolate.security import CapabilitySet

pytestmark = pytest.mark.root


def run(cs: ContainerStore, script: str, **options: object) -> tuple[int, str]:
    c = cs.create(ContainerConfig("busybox", ["sh", "-c", script],
                                  **options))  # type: ignore[arg-type]
    c.start()
    code = c.wait(timeout=120).exit_code
    return code, "".join(r.text for r in c.logs())


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


def test_root_gets_dockers_capabilities_and_no_new_privs_is_off(
        containers: ContainerStore) -> None:
    code, out = run(containers, "cat /proc/self/status")
    assert code == 0, out
    mask = CapabilitySet.docker_default().mask
    assert int(status_field(out, "CapEff"), 16) == mask
    assert int(status_field(out, "CapBnd"), 16) == mask
    assert int(status_field(out, "CapInh"), 16) == 0
    assert status_field(out, "NoNewPrivs") == "0"
    assert status_field(out, "Seccomp") == "2"


def test_a_non_root_user_keeps_no_capability(containers: ContainerStore) -> None:
    code, out = run(containers, "cat /proc/self/status", user="1000")
    assert code == 0, out
    assert int(status_field(out, "CapEff"), 16) == 0
    assert int(status_field(out, "CapBnd"), 16) == CapabilitySet.docker_default().mask


def test_cap_add_cap_drop_and_privileged(containers: ContainerStore) -> None:
    code, out = run(containers, "cat /proc/self/status", cap_add=["NET_ADMIN"],
                    cap_drop=["CHOWN", "cap_kill"])
    caps = CapabilitySet.from_mask(int(status_field(out, "CapEff"), 16))
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps and "CAP_KILL" not in caps
    code, out = run(containers, "cat /proc/self/status", cap_drop=["ALL"], cap_add=["KILL"])
    assert CapabilitySet.from_mask(int(status_field(out, "CapEff"), 16)).names() == \
        ["CAP_KILL"]
    code, out = run(containers, "cat /proc/self/status; mount -t tmpfs none /srv && echo "
                    "mounted", privileged=True)
    assert code == 0, out
    assert status_field(out, "Seccomp") == "0" and "mounted" in out
    assert "CAP_SYS_ADMIN" in CapabilitySet.from_mask(int(status_field(out, "CapEff"), 16))


def test_what_dockers_defaults_allow_works(containers: ContainerStore) -> None:
    script = (
        "nc -l -p 80 & "
        "for i in $(seq 200); do cat /proc/net/tcp* | grep -q ':0050 ' && break; sleep 0.05; "
        "done; cat /proc/net/tcp* | grep -q ':0050 ' && echo bound-80; kill %1; "
        "touch /tmp/f && chown 1000:1000 /tmp/f && stat -c '%u:%g' /tmp/f; "
        "chroot / true && echo chroot-ok")
    _code, out = run(containers, script)
    assert "bound-80" in out, out
    assert "1000:1000" in out and "chroot-ok" in out


def test_what_dockers_defaults_refuse_is_refused(containers: ContainerStore) -> None:
    script = (
        "mount -t tmpfs none /srv 2>/dev/null && echo mounted; "
        "unshare -n true 2>/dev/null && echo unshared; "
        # CAP_MKNOD is Docker's, but no node made in the container can be opened (nodev).
        "mknod /tmp/zero c 1 5 && echo made; head -c1 /tmp/zero >/dev/null 2>&1 && echo "
        "opened; mknod /dev/zero2 c 1 5; head -c1 /dev/zero2 >/dev/null 2>&1 && echo opened2; "
        "head -c1 /dev/zero >/dev/null && echo dev-zero-ok")
    _code, out = run(containers, script)
    assert "mounted" not in out and "unshared" not in out
    assert "made" in out and "opened" not in out.replace("dev-zero-ok", "")
    assert "dev-zero-ok" in out


def test_masked_and_readonly_proc_paths(containers: ContainerStore) -> None:
    import os

    masked = next(p for p in ("/proc/timer_list", "/proc/keys", "/proc/interrupts")
                  if os.path.exists(p))
    _code, out = run(containers, f"wc -c < {masked}; (echo 1 > /proc/sys/kernel/hostname) "
                    "2>/dev/null || echo ro-sys; ls /proc/acpi 2>/dev/null | wc -l")
    lines = out.split()
    assert lines[0] == "0" and "ro-sys" in out and lines[-1] == "0"


def test_only_stdio_is_open_and_no_new_privileges_when_asked(
        containers: ContainerStore) -> None:
    _, out = run(containers, "ls /proc/self/fd")
    assert sorted(out.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory
    _code, out = run(containers, "cat /proc/self/status", no_new_privileges=True)
    assert status_field(out, "NoNewPrivs") == "1"


def test_etc_hostname_hosts_and_resolv_conf(containers: ContainerStore) -> None:
    c = containers.create(ContainerConfig("busybox", ["sh", "-c", "hostname; cat /etc/hostname; "
                                                      "cat /etc/hosts; echo ==; "
                                                      "cat /etc/resolv.conf"],
                                          name="named-one", hostname="web",
                                          extra_hosts=["db:10.0.0.5"]))
    c.start()
    c.wait(timeout=60)
    out = "".join(r.text for r in c.logs())
    lines = out.splitlines()
    assert lines[0] == "web" and lines[1] == "web"
    assert "127.0.0.1\tlocalhost" in lines and "127.0.0.1\tweb named-one" in lines
    assert "10.0.0.5\tdb" in lines
    # The image's own files stay untouched underneath.
    assert not any(n.startswith("etc") for n in _upper_entries(c))


def _upper_entries(c: Container) -> list[str]:
    import os

    return os.listdir(c.upper_dir)


def test_read_only_root_and_tmpfs_mounts(containers: ContainerStore) -> None:
    _code, out = run(containers, "touch /x 2>/dev/null || echo ro-root; touch /scratch/y && "
                    "echo tmpfs-rw; grep ' /scratch ' /proc/mounts", read_only=True,
                    mounts=[__import__("isolate.container", fromlist=["x"]).parse_tmpfs(
                        "/scratch:size=1m,mode=1777")])
    assert "ro-root" in out and "tmpfs-rw" in out
    assert "size=1024k" in out and "noexec" in out and "nodev" in out


def test_seccomp_unconfined_and_a_profile_file(containers: ContainerStore,
                                               tmp_path: object) -> None:
    import json
    import pathlib

    _, out = run(containers, "grep Seccomp: /proc/self/status", seccomp="unconfined")
    assert out.split()[-1] == "0"
    profile = pathlib.Path(str(tmp_path)) / "deny-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    _code, out = run(containers, "mkdir /tmp/d 2>/dev/null || echo denied",
                    seccomp=str(profile))
    assert "denied" in out
    with pytest.raises(ConfigError, match="seccomp profile"):
        containers.create(ContainerConfig("busybox", ["true"],
                                          seccomp=str(profile) + ".missing"))


def test_environment_is_dockers(containers: ContainerStore) -> None:
    _code, out = run(containers, "env | sort", env={"MINE": "1", "IMAGE_ENV": "overridden"})
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["PATH"] == "/bin" and env["MINE"] == "1" and env["IMAGE_ENV"] == "overridden"
    assert env["HOME"] == "/root" and env["HOSTNAME"]


def test_the_cgroup_holds_dockers_device_list(containers: ContainerStore) -> None:
    import os

    c = containers.create(ContainerConfig("busybox", ["sleep", "100000"]))
    c.start()
    try:
        cg = c.state.cgroup or {}
        devices = cg.get("devices")
        if devices is None:
            pytest.skip("no v1 devices hierarchy here (the v2 device program is not readable)")
        with open(os.path.join(devices, "devices.list")) as f:
            rules = f.read().split("\n")
        assert "a *:* rwm" not in rules and "c 1:3 rwm" in rules  # /dev/null, not everything
        with open(os.path.join(devices, "cgroup.procs")) as f:
            assert str(c.state.pid) in f.read().split()
    finally:
        c.remove(force=True)


def test_device_gives_a_host_node_with_the_access_asked(containers: ContainerStore) -> None:
    import os

    for node in ("/dev/fuse", "/dev/loop-control"):
        if not os.path.exists(node):
            pytest.skip(f"this host has no {node}")
    code, out = run(containers, "test -e /dev/fuse && echo present || echo absent")
    assert (code, out.strip()) == (0, "absent")  # no host device without --device
    code, out = run(containers, "exec 3<>/dev/fuse && echo opened", devices=["/dev/fuse"])
    assert (code, out.strip()) == (0, "opened"), out
    # loop-control is not on Docker's list: with access r, the device cgroup allows a read
    # open and refuses a write open
    script = "exec 3</dev/lc && echo read-open; (exec 4>/dev/lc) 2>/dev/null || echo no-write"
    code, out = run(containers, script, devices=["/dev/loop-control:/dev/lc:r"])
    assert out.split() == ["read-open", "no-write"], out


def test_device_that_is_no_device_node_is_refused_at_create(
        containers: ContainerStore) -> None:
    for spec in ("/etc/passwd", "/dev/no-such-node"):
        with pytest.raises(ConfigError, match="device"):
            containers.create(ContainerConfig("busybox", ["true"], devices=[spec]))
    assert containers.list(all=True) == []


def test_devices_survive_the_config_round_trip() -> None:
    cfg = ContainerConfig("busybox", devices=["/dev/fuse", "/dev/sda:/dev/xvda:r"])
    again = ContainerConfig.from_json(cfg.to_json())
    assert again.devices == cfg.devices
    assert [(d.source, d.path, d.access) for d in again.devices] == [
        ("/dev/fuse", "/dev/fuse", "rwm"), ("/dev/sda", "/dev/xvda", "r")]


def test_privileged_gets_every_host_device_made_in_a_dev_without_nodev(
        containers: ContainerStore) -> None:
    import os

    if not os.path.exists("/dev/loop-control"):
        pytest.skip("this host has no /dev/loop-control")
    script = ("exec 3<>/dev/loop-control && echo opened; test -L /dev/ptmx && echo ptmx-link; "
              "grep ' /dev ' /proc/self/mountinfo")
    code, out = run(containers, script, privileged=True)
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["opened", "ptmx-link"], out
    assert "nodev" not in lines[2].split()[5]  # the mount's own flags
    code, out = run(containers, "ls /dev; grep ' /dev ' /proc/self/mountinfo")
    assert "loop-control" not in out.split() and "nodev" in out  # not privileged: neither
