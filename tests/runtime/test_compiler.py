"""What a compiled config does in the kernel: container plans and exec plans run for real.

Each test builds a RuntimeConfig, compiles it and spawns the plan with isolate.lowlevel, then
looks at what the process saw (its hostname, ids, capabilities, mounts, devices, limits).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence

import pytest

from isolate import lowlevel
from isolate.errors import ConfigError, SpawnError
from isolate.namespaces import IdMap, NamespaceKind
from isolate.runtime import (
    Capabilities,
    Mount,
    Process,
    Rlimit,
    Root,
    RuntimeConfig,
    User,
    container_plan,
    exec_plan,
    standard_mounts,
)
from isolate.security import CapabilitySet, SeccompProfile
from sandbox_helpers import busybox_rootfs, need_root

ALL = ["mnt", "pid", "uts", "ipc", "net", "cgroup"]


@pytest.fixture(scope="module")
def rootfs() -> Iterator[str]:
    with busybox_rootfs() as root:
        with open(os.path.join(root, "etc", "group"), "w") as f:
            f.write("root:x:0:\nstaff:x:50:\n")
        yield root


def container(rootfs: str, args: Sequence[str], **changes: object) -> RuntimeConfig:
    defaults: dict[str, object] = dict(
        process=Process(args=args, env={"PATH": "/bin"},
                        capabilities=Capabilities.of(CapabilitySet.docker_default()),
                        no_new_privileges=False),
        root=Root(rootfs, readonly=True), hostname="ctr",
        mounts=standard_mounts(own_network=True), namespaces=ALL,
        seccomp=SeccompProfile.default())
    defaults.update(changes)
    return RuntimeConfig(**defaults)  # type: ignore[arg-type]


def run(cfg: RuntimeConfig, **kw: object) -> tuple[int, str]:
    """Spawn the container plan of ``cfg`` with stdout/stderr into a pipe; (status, output)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        cp = container_plan(cfg, fds=[(null, 0), (w, 1), (w, 2)], **kw)  # type: ignore[arg-type]
        child = lowlevel.spawn(cp.plan, parent_step=cp.parent_step if cp.needs_parent else None)
    except BaseException:
        os.close(r)
        raise
    finally:
        os.close(w)
        os.close(null)
    with child, os.fdopen(r, "rb") as out:
        data = out.read()
        return child.wait(), data.decode()


def test_a_container_sees_its_own_root_hostname_and_pid_1(rootfs: str) -> None:
    need_root()
    status, out = run(container(rootfs, ["sh", "-c", "echo $$ $(hostname); ls /; "
                                         "touch /x 2>&1 || echo ro"]))
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0] == "1 ctr"
    assert "bin" in lines and "etc" in lines and "ro" in out


def test_docker_capabilities_ids_and_groups_are_applied(rootfs: str) -> None:
    need_root()
    cfg = container(rootfs, ["sh", "-c", "id -u; id -g; id -G; grep -E '^Cap(Eff|Bnd|Inh)' "
                             "/proc/self/status; grep NoNewPrivs /proc/self/status"])
    status, out = run(cfg)
    assert status == 0, out
    lines = out.splitlines()
    assert lines[:2] == ["0", "0"]
    mask = CapabilitySet.docker_default().mask
    assert f"CapEff:\t{mask:016x}" in lines and f"CapBnd:\t{mask:016x}" in lines
    assert "CapInh:\t0000000000000000" in lines
    assert "NoNewPrivs:\t0" in lines
    proc = Process(args=["sh", "-c", "id -u; id -g; id -G; grep -E '^Cap(Eff|Amb)' "
                         "/proc/self/status; grep NoNewPrivs /proc/self/status"],
                   env={"PATH": "/bin"}, user=User(1000, 50, [50, 7]),
                   capabilities=Capabilities.of(CapabilitySet.docker_default()))
    status, out = run(container(rootfs, [], process=proc))
    assert status == 0, out
    lines = out.splitlines()
    assert lines[:3] == ["1000", "50", "50 7"]
    # Docker's rule: a non-root user keeps no capability across exec unless ambient.
    assert "CapEff:\t0000000000000000" in lines and "NoNewPrivs:\t1" in lines


def test_mounts_devices_and_masks_are_as_configured(rootfs: str, tmp_path: object) -> None:
    need_root()
    data = os.path.join(str(tmp_path), "data")
    os.mkdir(data)
    with open(os.path.join(data, "f"), "w") as f:
        f.write("host file\n")
    mounts = [*standard_mounts(own_network=True),
              Mount("/data", "bind", data, ["rbind", "ro"]),
              Mount("/rw", "bind", data, ["rbind"]),
              Mount("/scratch", "tmpfs", "tmpfs", ["nosuid", "nodev", "size=1m", "mode=1777"])]
    script = ("cat /data/f; touch /data/g 2>/dev/null || echo data-ro; touch /rw/g && echo rw;"
              "ls /dev; df -k /scratch | tail -1; cat /proc/kcore 2>&1 | head -c 0; "
              "test -s /proc/kcore || echo kcore-masked; echo 1 > /proc/sys/kernel/hostname"
              " 2>/dev/null || echo sys-ro")
    status, out = run(container(rootfs, ["sh", "-c", script], mounts=mounts))
    assert status == 0, out
    assert "host file" in out and "data-ro" in out and "rw" in out
    assert os.path.exists(os.path.join(data, "g"))
    for dev in ("null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue"):
        assert dev in out.split(), out
    assert "sda" not in out and "kcore-masked" in out and "sys-ro" in out
    assert " 1024 " in out  # the 1 MiB tmpfs


def test_rlimits_umask_env_and_cwd(rootfs: str) -> None:
    need_root()
    proc = Process(args=["sh", "-c", "ulimit -n; umask; pwd; echo $GREETING"],
                   env={"PATH": "/bin", "GREETING": "hi"}, cwd="/etc",
                   user=User(umask=0o027), rlimits=[Rlimit.parse("nofile=123:456")])
    status, out = run(container(rootfs, [], process=proc))
    assert status == 0, out
    assert out.split() == ["123", "0027", "/etc", "hi"]


def test_the_default_seccomp_profile_is_loaded_last(rootfs: str) -> None:
    need_root()
    # Docker's profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN.
    status, out = run(container(rootfs, ["unshare", "-U", "true"]))
    assert status != 0, out
    status, out = run(container(rootfs, ["unshare", "-U", "true"], seccomp=None))
    assert status == 0, out


def test_a_mapped_range_is_written_by_the_parent_while_the_child_waits(rootfs: str) -> None:
    need_root()
    cfg = container(rootfs, ["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u"],
                    namespaces=["user", *ALL], uid_mappings=[IdMap(0, 200000, 65536)],
                    gid_mappings=[IdMap(0, 200000, 65536)],
                    process=Process(args=["sh", "-c", "cat /proc/self/uid_map; id -u; id -g"],
                                    env={"PATH": "/bin"}, user=User(1000, 1000),
                                    capabilities=Capabilities.of(["CAP_CHOWN"])))
    cp = container_plan(cfg)
    assert cp.needs_parent and cp.uid_map == (IdMap(0, 200000, 65536),)
    status, out = run(cfg)
    assert status == 0, out
    fields = out.split()
    assert fields[:3] == ["0", "200000", "65536"] and fields[3:] == ["1000", "1000"]


def test_a_failed_step_names_the_op(rootfs: str) -> None:
    need_root()
    with pytest.raises(SpawnError, match="exec nonexistent"):
        run(container(rootfs, ["nonexistent"]))
    with pytest.raises(ConfigError, match="needs args"):
        container_plan(container(rootfs, []))


@contextlib.contextmanager
def running(cfg: RuntimeConfig) -> Iterator[lowlevel.Child]:
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        cp = container_plan(cfg, fds=[(null, 0), (null, 1), (null, 2)])
        child = lowlevel.spawn(cp.plan)
    finally:
        os.close(null)
    with child:
        try:
            yield child
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()


def test_exec_joins_every_namespace_of_a_running_container(rootfs: str) -> None:
    need_root()
    cfg = container(rootfs, ["sleep", "1000"])
    with running(cfg) as first:
        fds = {k: os.open(f"/proc/{first.pid}/ns/{k.value}", os.O_RDONLY | os.O_CLOEXEC)
               for k in NamespaceKind if k is not NamespaceKind.TIME and k is not
               NamespaceKind.USER}
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = Process(args=["sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; "
                                 "echo; ls /etc; id -u"], env={"PATH": "/bin"},
                           capabilities=Capabilities.of(CapabilitySet.docker_default()))
            plan = exec_plan(container(rootfs, [], process=proc), fds,
                             fds=[(w, 1), (w, 2)], user=User(1000, 1000))
            child = lowlevel.spawn(plan)
        finally:
            os.close(w)
            for fd in fds.values():
                os.close(fd)
        with child, os.fdopen(r) as out:
            text = out.read()
            assert child.wait() == 0, text
    lines = text.splitlines()
    assert lines[0] == "ctr" and lines[1].strip() == "sleep 1000"
    assert "group" in lines and lines[-1] == "1000"


def test_the_host_root_is_not_written_by_a_readonly_container() -> None:
    need_root()
    cfg = RuntimeConfig(process=Process(args=["sh", "-c", "touch /etc/isolate-probe; echo $?"]),
                        root=Root(None, readonly=True),
                        mounts=standard_mounts(own_network=True), namespaces=ALL)
    status, out = run(cfg)
    assert status == 0 and out.strip() != "0"
    assert not os.path.exists("/etc/isolate-probe")


def test_a_shell_outside_sees_nothing_left(rootfs: str) -> None:
    need_root()
    before = subprocess.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True,
                            check=True).stdout.count("\n")
    run(container(rootfs, ["true"]))
    after = subprocess.run(["cat", "/proc/self/mountinfo"], capture_output=True, text=True,
                           check=True).stdout.count("\n")
    assert before == after


def test_a_new_top_level_mount_target_works_in_a_user_namespace() -> None:
    # The read-only host root then becomes a tmpfs with the host's top-level entries bound in;
    # in a user namespace the kernel mounts a fresh /proc only where a fully visible one is
    # (mount_too_revealing), so the host's is bound at /proc for it, as in an own root.
    need_root()
    cfg = RuntimeConfig(
        process=Process(args=["sh", "-c", "ls -d /newtop/doc; echo $$ $(cat /proc/1/comm)"],
                        env={"PATH": "/usr/bin:/bin"}),
        root=Root(None, readonly=True),
        mounts=[*standard_mounts(own_network=True),
                Mount("/newtop", "bind", "/usr/share", ["rbind", "ro"]),
                Mount("/newtmp", "tmpfs", "tmpfs", ["nosuid"])],
        namespaces=["user", *ALL], uid_mappings=[IdMap(0, 100000, 65536)],
        gid_mappings=[IdMap(0, 100000, 65536)])
    assert run(cfg) == (0, "/newtop/doc\n1 sh\n")


def test_process_and_device_ops_are_built_once_per_set_of_inputs(tmp_path: object) -> None:
    """Two containers that differ only in what each has of its own (hostname, its files)
    share the ops built from the same masks, sysctls and devices; a config that changes
    them gets ops of its own. The kept ops are what a fresh build gives."""
    from isolate.runtime import compiler
    from isolate.runtime.config import DEFAULT_DEVICES

    def cfg(hostname: str, **changes: object) -> RuntimeConfig:
        return container("/", ["/bin/true"], hostname=hostname, devices=DEFAULT_DEVICES,
                         **changes)

    a, b = cfg("one"), cfg("two")
    ops_a, ops_b = compiler.root_ops(a), compiler.root_ops(b)
    assert ops_a.own == ops_b.own and ops_a.own
    assert all(x is y for x, y in zip(ops_a.own, ops_b.own, strict=True)), "kept"
    fresh = compiler._build_process_ops(a.sysctl, (), a.masked_paths, a.readonly_paths)
    assert tuple(ops_a.own) == fresh
    dev_a = [op for op in ops_a.shared if op.kind.name in ("MOVE_MOUNT", "SYMLINK")]
    dev_b = [op for op in ops_b.shared if op.kind.name in ("MOVE_MOUNT", "SYMLINK")]
    assert dev_a == dev_b and dev_a
    # Different inputs, different ops: a sysctl, fewer masks.
    c = cfg("three", sysctl={"net.ipv4.ip_forward": "1"}, masked_paths=())
    own_c = compiler.root_ops(c).own
    assert any(op.kind.name == "WRITE_FILE" for op in own_c)
    assert not any(op.kind.name == "MASK" for op in own_c)
    assert any(op.kind.name == "MASK" for op in ops_a.own)
    # A per-process mount is built for each config (its binds look at the host's sources).
    private = cfg("four", mounts=[*standard_mounts(own_network=True),
                                  Mount("/tmp", "tmpfs", "tmpfs", per_process=True)])
    assert any(op.note == "mount a private /tmp" for op in compiler.root_ops(private).own)
