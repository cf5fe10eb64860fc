"""ContainerConfig is validated when made, with Docker's words, before any system call; and
Docker's strings (restart policies, signals, --mount, --tmpfs) parse as Docker parses them."""

from __future__ import annotations

import errno
import signal

import pytest

from isolate.cgroups import IoDeviceLimit, Limits
from isolate.container import (
    BindMount,
    ContainerConfig,
    RestartPolicy,
    Status,
    TmpfsMount,
    VolumeMount,
    parse_mount,
    parse_signal,
    parse_tmpfs,
)
from isolate.container.preset import capabilities_for, command_for
from isolate.container.state import format_time, parse_time
from isolate.errors import ConfigError, StateError
from isolate.image import ImageConfig
from isolate.runtime import Rlimit
from isolate.runtime.docker import docker_seccomp_profile
from isolate.security import CapabilitySet, SeccompAction, SeccompProfile


@pytest.mark.parametrize("options, message", [
    ({"name": "a"}, "Invalid container name (a)"),
    ({"name": "bad name"}, "Invalid container name"),
    ({"restart": "sometimes"}, "unknown policy 'sometimes'"),
    ({"restart": "always:3"}, "maximum retry count can only be used with 'on-failure'"),
    ({"restart": "on-failure:x"}, "must be a positive integer"),
    ({"restart": "always", "auto_remove": True}, "Conflicting options: --restart and --rm"),
    ({"stop_signal": "SIGNOPE"}, "Invalid signal: SIGNOPE"),
    ({"cap_add": ["CAP_NOPE"]}, 'unknown capability: "CAP_NOPE"'),
    ({"hostname": "-bad-"}, "invalid hostname format"),
    ({"env": ["NOEQUALS"]}, "KEY=VALUE"),
    ({"workdir": "relative"}, "absolute"),
    ({"mounts": ["/a", "/a"]}, "Duplicate mount point: /a"),
    ({"user": "a:b:c"}, "invalid user"),
    ({"log_max_file": 3}, "max-file cannot be set without max-size"),
    ({"rlimits": ["nofile"]}, "--ulimit"),
    ({"network": "host", "hostname": "x1"}, "Conflicting options"),
    ({"expose": ["80/icmp"]}, "invalid range format for --expose: 80/icmp"),
    ({"expose": ["90-80"]}, "invalid range format for --expose: 90-80"),
])
def test_bad_configs_are_refused_before_anything_happens(options: dict[str, object],
                                                         message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ContainerConfig("busybox", **options)  # type: ignore[arg-type]


def test_expose_takes_dockers_ranges_and_survives_the_json_form() -> None:
    cfg = ContainerConfig("busybox", expose=["8000-8002/udp", "80", "80/tcp"])
    assert cfg.expose == ("8000/udp", "8001/udp", "8002/udp", "80/tcp")
    assert ContainerConfig.from_json(cfg.to_json()) == cfg


def test_a_config_survives_its_json_form() -> None:
    cfg = ContainerConfig(
        "busybox:latest", ["sh", "-c", "x"], entrypoint=[], env={"A": "1"}, workdir="/w",
        user="app:staff", group_add=["audio", "7"], name="web", hostname="h", read_only=True,
        mounts=["/anon", "named:/n:ro", "/host:/b", parse_tmpfs("/t:size=1m,exec")],
        limits=Limits(memory_max="64M", cpus=0.5, pids_max=10,
                      io_devices=[IoDeviceLimit("8:0", read_bps=1 << 20)]),
        cap_add=["NET_ADMIN"], cap_drop=["ALL"], seccomp="unconfined",
        no_new_privileges=True, rlimits=["nofile=1024:2048"], sysctls={"net.ipv4.ip_forward":
                                                                      "1"},
        tty=True, open_stdin=True, labels={"k": "v"}, stop_signal="SIGINT", stop_timeout=3,
        restart="on-failure:2", init=True, extra_hosts=["db:10.0.0.1"], shm_size="1g",
        log_max_size="10m", log_max_file=3)
    assert ContainerConfig.from_json(cfg.to_json()) == cfg
    assert cfg.stop_signal == signal.SIGINT and cfg.restart == RestartPolicy("on-failure", 2)
    assert cfg.rlimits == (Rlimit("nofile", 1024, 2048),)


def test_docker_mount_and_tmpfs_syntax() -> None:
    assert parse_mount("type=bind,source=/h,target=/c,readonly") == BindMount("/h", "/c", True)
    assert parse_mount("type=volume,src=v1,dst=/d,volume-nocopy") == VolumeMount("v1", "/d",
                                                                                 False, True)
    assert parse_mount("type=volume,target=/anon") == VolumeMount(None, "/anon")
    assert parse_mount("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1700") == \
        TmpfsMount("/t", 64 << 20, 0o1700, noexec=False)
    assert parse_tmpfs("/run:size=64m,mode=755,exec") == TmpfsMount("/run", 64 << 20, 0o755,
                                                                    noexec=False)
    for bad, message in (("type=bind,target=/c", "Source must not be empty"),
                         ("type=nfs,target=/c", "mount type unknown"),
                         ("type=bind,source=/h", "target is required"),
                         ("type=tmpfs,source=/x,target=/t", "Source must be empty"),
                         ("type=bind,source=/h,target=/c,bogus=1", "unexpected key 'bogus'"),
                         ("type=volume,target=relative", "must be absolute")):
        with pytest.raises(ConfigError, match=message):
            parse_mount(bad)


def test_signals_and_restart_policies_parse_as_dockers() -> None:
    assert parse_signal("SIGTERM") == parse_signal("term") == parse_signal(15) == 15
    assert parse_signal("KILL") == 9 and parse_signal("10") == 10
    for bad in ("", "0", "SIG", "999", "NOPE"):
        with pytest.raises(ConfigError, match="Invalid signal"):
            parse_signal(bad)
    assert RestartPolicy.parse("on-failure:5") == RestartPolicy("on-failure", 5)
    assert str(RestartPolicy.parse("unless-stopped")) == "unless-stopped"
    assert not RestartPolicy.parse("no").enabled


def test_the_command_is_built_as_dockers() -> None:
    image = ImageConfig(entrypoint=["/entry"], cmd=["default"])
    assert command_for(ContainerConfig("i"), image) == ("/entry", "default")
    assert command_for(ContainerConfig("i", ["mine"]), image) == ("/entry", "mine")
    # --entrypoint resets the image's Cmd; an empty one clears the image's entrypoint.
    assert command_for(ContainerConfig("i", entrypoint=["/other"]), image) == ("/other",)
    assert command_for(ContainerConfig("i", ["x"], entrypoint=[]), image) == ("x",)
    with pytest.raises(ConfigError, match="No command specified"):
        command_for(ContainerConfig("i", entrypoint=[]), ImageConfig())


def test_capabilities_as_docker_tweaks_them() -> None:
    default = CapabilitySet.docker_default()
    assert capabilities_for(ContainerConfig("i")) == default
    assert capabilities_for(ContainerConfig("i", cap_drop=["ALL"])) == CapabilitySet.none()
    plus = capabilities_for(ContainerConfig("i", cap_add=["SYS_ADMIN"], cap_drop=["MKNOD"]))
    assert "CAP_SYS_ADMIN" in plus and "CAP_MKNOD" not in plus
    assert len(capabilities_for(ContainerConfig("i", cap_add=["ALL"]))) > len(default)


@pytest.mark.parametrize("status, allowed", [
    (Status.CREATED, {"start", "remove", "restart", "rename", "commit"}),
    (Status.RUNNING, {"stop", "kill", "pause", "exec", "restart", "rename", "commit"}),
    (Status.PAUSED, {"stop", "unpause", "restart", "rename", "commit"}),
    (Status.RESTARTING, {"stop", "kill", "restart", "rename", "commit"}),
    (Status.EXITED, {"start", "remove", "restart", "rename", "commit"}),
    (Status.DEAD, {"remove", "rename"}),
    (Status.REMOVING, set()),
])
def test_the_guards(status: Status, allowed: set[str]) -> None:
    verbs = ("start", "stop", "kill", "pause", "unpause", "exec", "restart", "rename",
             "commit", "remove")
    for verb in verbs:
        if verb in allowed:
            status.check(verb, "c1")
        else:
            with pytest.raises(StateError) as err:
                status.check(verb, "c1")
            assert err.value.current == status.value and err.value.requested == verb
    assert status.can_remove(force=True) == (status is not Status.REMOVING)


def test_times_are_rfc3339_with_nanoseconds() -> None:
    ns = 1_700_000_000_123_456_789
    text = format_time(ns)
    assert text == "2023-11-14T22:13:20.123456789Z" and parse_time(text) == ns
    assert parse_time("2023-11-14T23:13:20.5+01:00") == parse_time(
        "2023-11-14T22:13:20.5Z") == 1_700_000_000_500_000_000
    assert parse_time("0001-01-01T00:00:00Z") == 0


@pytest.mark.parametrize("date", [(1970, 1, 1), (1969, 12, 31), (1972, 2, 29), (2000, 2, 29),
                                  (2000, 3, 1), (2023, 12, 31), (2100, 3, 1), (2400, 2, 29),
                                  (1600, 1, 1), (9999, 12, 31), (1900, 2, 28)])
def test_the_fast_reading_of_our_own_times_counts_days_as_calendar_does(
        date: tuple[int, int, int]) -> None:
    import calendar  # the reference: the fast path avoids it (it loads datetime)

    year, month, day = date
    text = f"{year:04d}-{month:02d}-{day:02d}T23:59:58.000000007Z"
    expected = calendar.timegm((*date, 23, 59, 58, 0, 0, 0)) * 1_000_000_000 + 7
    assert parse_time(text) == expected
    # The general (strptime) path agrees with it.
    assert parse_time(text.replace(".000000007Z", ".000000007+00:00")) == expected


def _decision(profile: SeccompProfile, name: str, *args: int) -> tuple[SeccompAction, int]:
    return profile.evaluate(name, [*args, 0, 0, 0, 0, 0, 0][:6], arch="x86_64")


def test_dockers_seccomp_profile_follows_the_capabilities() -> None:
    default = docker_seccomp_profile()
    allow = (SeccompAction.ALLOW, 0)
    eperm = (SeccompAction.ERRNO, errno.EPERM)
    assert _decision(default, "chroot") == allow
    assert _decision(default, "read") == allow and _decision(default, "ptrace") == allow
    for name in ("mount", "unshare", "setns", "bpf", "kexec_load", "io_uring_setup",
                 "open_by_handle_at", "init_module", "reboot", "keyctl"):
        assert _decision(default, name) == eperm, name
    assert _decision(default, "clone3") == (SeccompAction.ERRNO, errno.ENOSYS)
    assert _decision(default, "clone", 0x11) == allow  # SIGCHLD | a plain fork
    assert _decision(default, "clone", 0x10000000) == eperm  # CLONE_NEWUSER
    assert _decision(default, "socket", 2) == allow  # AF_INET
    assert _decision(default, "socket", 40) == eperm and _decision(default, "socket", 38) == \
        eperm  # AF_VSOCK, AF_ALG
    admin = docker_seccomp_profile(CapabilitySet.docker_default() | CapabilitySet(
        ["CAP_SYS_ADMIN"]))
    assert _decision(admin, "mount") == allow and _decision(admin, "clone3") == allow
    nochroot = docker_seccomp_profile(CapabilitySet.docker_default() - CapabilitySet(
        ["CAP_SYS_CHROOT"]))
    assert _decision(nochroot, "chroot") == eperm


def test_dockers_profile_covers_what_the_podman_profile_allows() -> None:
    import os

    path = "/usr/share/containers/seccomp.json"
    if not os.path.exists(path):
        pytest.skip("golang-github-containers-common's seccomp.json is not installed")
    from isolate import _syscalls

    with open(path) as f:
        podman = SeccompProfile.from_docker_json(f.read())
    ours = docker_seccomp_profile()
    # Podman allows these to every container; Docker gates them behind capabilities
    # (CAP_SYS_ADMIN, CAP_SYS_BOOT, CAP_SYS_NICE, CAP_SYS_PTRACE, CAP_SYSLOG) or refuses them.
    gated = {"clone3", "fsconfig", "fsmount", "fsopen", "fspick", "get_mempolicy", "keyctl",
             "mbind", "mount", "mount_setattr", "move_mount", "open_tree", "pidfd_getfd",
             "pivot_root", "reboot", "set_mempolicy", "setns", "syslog", "umount2", "unshare",
             "add_key", "request_key"}
    missing = [n for n in sorted(_syscalls.X86_64)
               if _decision(podman, n)[0] is SeccompAction.ALLOW
               and _decision(ours, n)[0] is not SeccompAction.ALLOW and n not in gated]
    assert not missing
