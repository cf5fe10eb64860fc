"""Safe by default, also for a root caller: each point of the default list tried from inside a
sandbox and refused, known container escapes tried and blocked, and the opt-outs
(``privileged=True``, explicit capabilities) shown to opt out."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from isolate import Bind, Sandbox, Tmpfs
from isolate.security import DEFAULT_MASKED_PATHS
from sandbox_helpers import busybox_rootfs, marker, mountinfo, need_root

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def sh(box: Sandbox, script: str) -> subprocess.CompletedProcess[str]:
    return box.run(["/bin/sh", "-c", script], capture_output=True, text=True)


def status_field(box: Sandbox, name: str) -> str:
    for line in sh(box, "cat /proc/self/status").stdout.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/self/status")


# -- no capabilities, no_new_privs ---------------------------------------------------------

def test_uid_0_inside_has_no_capabilities_and_no_new_privs(sb: Sandbox) -> None:
    assert sh(sb, "id -u").stdout.strip() == "0"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status_field(sb, field), 16) == 0, field
    assert status_field(sb, "NoNewPrivs") == "1"


def test_the_host_root_cannot_be_remounted_read_write(sb: Sandbox) -> None:
    result = sh(sb, "mount -o remount,rw / && touch /etc/isolate-escaped")
    assert result.returncode != 0
    assert not os.path.exists("/etc/isolate-escaped")


def test_nothing_can_be_mounted(sb: Sandbox) -> None:
    result = sh(sb, "mount -t tmpfs none /tmp && echo mounted")
    assert result.returncode != 0 and "mounted" not in result.stdout
    assert sh(sb, "mount --bind /tmp /mnt && echo mounted").returncode != 0


def write_sysctl() -> int:
    try:
        with open("/proc/sys/vm/overcommit_ratio", "w") as f:
            f.write("13")
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_host_sysctls_cannot_be_changed(sb: Sandbox) -> None:
    with open("/proc/sys/vm/overcommit_ratio") as f:
        before = f.read()
    assert sb.call(write_sysctl) in (errno.EROFS, errno.EACCES, errno.EPERM)
    with open("/proc/sys/vm/overcommit_ratio") as f:
        assert f.read() == before


def set_clock() -> int:
    try:
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME))
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_the_clock_cannot_be_set(sb: Sandbox) -> None:
    assert sb.call(set_clock) == errno.EPERM


def make_device() -> int:
    try:
        os.mknod("/tmp/isolate-null", 0o600 | 0o020000, os.makedev(1, 3))
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_device_nodes_cannot_be_created(sb: Sandbox) -> None:
    assert sb.call(make_device) == errno.EPERM


def load_module() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    finit_module = 313  # x86-64; seccomp or the missing CAP_SYS_MODULE must refuse it
    with open("/dev/null", "rb") as f:
        rc = libc.syscall(finit_module, f.fileno(), b"", 0)
    return ctypes.get_errno() if rc != 0 else 0


def test_kernel_modules_cannot_be_loaded(sb: Sandbox) -> None:
    if os.uname().machine != "x86_64":
        pytest.skip("the syscall number used is x86-64's")
    assert sb.call(load_module) == errno.EPERM


def test_a_nested_user_namespace_cannot_undo_the_read_only_root(sb: Sandbox) -> None:
    result = sh(sb, "unshare --user --map-root-user --mount sh -c "
                    "'mount -o remount,rw / && touch /etc/isolate-escaped' && echo escaped")
    assert result.returncode != 0 and "escaped" not in result.stdout
    assert not os.path.exists("/etc/isolate-escaped")


def test_kill_0_inside_does_not_reach_the_callers_process_group() -> None:
    # In a child of its own so that a failure kills that child, not the test run.
    code = ("from isolate import Sandbox\n"
            "with Sandbox() as sb:\n"
            "    sb.run(['sh', '-c', 'kill -TERM 0; kill -KILL 0'])\n"
            "print('alive')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, start_new_session=True, check=False)
    assert (proc.returncode, proc.stdout) == (0, "alive\n"), proc.stderr


# -- fds, /sys ------------------------------------------------------------------------------

def test_no_fd_of_the_caller_leaks_in_beyond_stdio_and_passed_fds(sb: Sandbox) -> None:
    opened = os.open("/etc/hostname", os.O_RDONLY)
    leaked = os.dup2(opened, 77)  # inheritable: a plain fork+exec would pass it on
    os.close(opened)
    passed_r, passed_w = os.pipe()
    try:
        result = sb.run(["ls", "/proc/self/fd"], capture_output=True, text=True,
                        pass_fds=[passed_w])
    finally:
        for fd in (leaked, passed_r, passed_w):
            os.close(fd)
    fds = {int(x) for x in result.stdout.split()}
    # stdio, the pipe passed on purpose, and the directory ls opened on the lowest free number.
    lowest_free = min(set(range(8)) - {0, 1, 2, passed_w})
    assert fds == {0, 1, 2, passed_w, lowest_free}
    assert leaked not in fds


def test_sys_is_read_only_and_shows_only_the_sandboxes_network_devices(sb: Sandbox) -> None:
    result = sh(sb, "echo 1 > /sys/kernel/mm/ksm/run; echo $?")
    assert "Read-only file system" in result.stderr
    assert sh(sb, "ls /sys/class/net").stdout.split() == ["lo"]
    assert " ro," in sh(sb, "grep ' /sys ' /proc/self/mountinfo").stdout


def masked_view(paths: tuple[str, ...]) -> dict[str, object]:
    """For each path: its directory listing or the first bytes it reads as, inside."""
    seen: dict[str, object] = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                seen[path] = os.listdir(path)
            else:
                with open(path, "rb") as f:
                    seen[path] = f.read(64)
        except OSError as exc:
            seen[path] = exc.errno
    return seen


def open_for_write(path: str) -> int:
    # Open only, never write: an unprotected /proc/sysrq-trigger would act on any byte.
    try:
        os.close(os.open(path, os.O_WRONLY))
    except OSError as exc:
        return exc.errno or -1
    return 0


def test_sensitive_proc_and_sys_paths_are_masked_or_read_only(sb: Sandbox) -> None:
    present = tuple(p for p in DEFAULT_MASKED_PATHS if os.path.exists(p))
    assert "/proc/interrupts" in present  # a masked file that has content on the host
    for path, seen in sb.call(masked_view, present).items():
        assert seen in ([], b""), (path, seen)
    writable_on_host = [p for p in ("/proc/sysrq-trigger", "/proc/sys/kernel/panic")
                        if os.path.exists(p)]
    assert writable_on_host
    for path in writable_on_host:
        assert sb.call(open_for_write, path) == errno.EROFS, path


# -- known escapes ----------------------------------------------------------------------------

def test_a_rootfs_symlink_at_a_tmpfs_target_does_not_redirect_it_to_the_host() -> None:
    with busybox_rootfs() as root:
        os.rmdir(os.path.join(root, "tmp"))
        os.symlink("/etc", os.path.join(root, "tmp"))  # rootfs/tmp -> /etc
        name = f"isolate-planted-{marker()}"
        host_mounts = mountinfo()
        with Sandbox(rootfs=root, readonly=False) as box:
            result = sh(box, f"echo x > /tmp/{name} && echo written")
            assert result.stdout.strip() == "written"
            assert not os.path.exists(f"/etc/{name}")
            assert mountinfo() == host_mounts
        assert not os.path.exists(f"/etc/{name}")


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
@pytest.mark.parametrize("below", ["", "/deeper/still"])  # one missing component, or three
def test_a_rootfs_symlink_to_slash_does_not_create_mount_points_on_the_host(
        kind: str, below: str) -> None:
    name = f"isolate-escape-{marker()}"
    with busybox_rootfs() as root, tempfile.TemporaryDirectory() as source:
        os.rmdir(os.path.join(root, "mnt"))
        os.symlink("/", os.path.join(root, "mnt"))  # rootfs/mnt -> /
        target = f"/mnt/{name}{below}"
        mounts = ({"tmpfs": [Tmpfs(target)]} if kind == "tmpfs"
                  else {"binds": [Bind(source, target, readonly=False)]})
        with Sandbox(rootfs=root, **mounts) as box:  # type: ignore[arg-type]
            result = sh(box, f"touch {target}/file && echo ok")
            assert result.stdout.strip() == "ok"
        assert not os.path.exists(f"/{name}")
        # Resolved inside the rootfs: the mount point was made there, not on the host.
        assert os.path.isdir(os.path.join(root, name + below))


@pytest.mark.parametrize("below", ["", "/deeper/still"])
def test_a_file_bind_makes_its_missing_target_a_file_inside_the_rootfs(below: str) -> None:
    name = f"isolate-file-{marker()}"
    with busybox_rootfs() as root, tempfile.TemporaryDirectory() as source:
        os.rmdir(os.path.join(root, "mnt"))
        os.symlink("/", os.path.join(root, "mnt"))  # rootfs/mnt -> /
        src = os.path.join(source, "data")
        with open(src, "w") as f:
            f.write("bound\n")
        target = f"/mnt/{name}{below}/data"
        with Sandbox(rootfs=root, binds=[Bind(src, target)]) as box:
            assert sh(box, f"cat {target}").stdout == "bound\n"
        assert not os.path.exists(f"/{name}")
        made = os.path.join(root, name + below, "data")
        assert os.path.isfile(made) and os.path.getsize(made) == 0


def _mount_points(lines: list[str]) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of a mountinfo."""
    out = []
    for line in lines:
        fields = line.split()
        out.append((fields[4], fields[fields.index("-") + 1]))
    return out


@pytest.mark.parametrize("network", ["none", True])
def test_the_host_mounts_a_sandbox_covers_are_not_in_its_mount_namespace(
        network: object) -> None:
    host = _mount_points(mountinfo())
    if not [p for p, _ in host if p.startswith(("/proc/", "/sys/", "/dev/"))]:
        pytest.skip("the host has no mounts below /proc, /sys or /dev to leave out")
    with Sandbox(network=network) as box:  # type: ignore[arg-type]
        inside = _mount_points(sh(box, "cat /proc/self/mountinfo").stdout.splitlines())
    # The sandbox's own mount at each of /proc, /dev and /sys takes the place of the host's
    # (a host mount stacked under another there cannot be reached to leave out: it stays).
    for point in ("/proc", "/dev", "/sys"):
        assert (len([m for m in inside if m[0] == point])
                == max(1, len([m for m in host if m[0] == point]))), (point, inside)
    assert ("/proc", "proc") in inside and ("/dev", "tmpfs") in inside
    # Below them, only what the sandbox mounts there itself: its device nodes and masks, and
    # on the host's network the host's /sys bound, with what is mounted there.
    host_cgroups = [m for m in host if m[0].startswith("/sys/fs/cgroup")]
    cgroups = [m for m in inside if m[0].startswith("/sys/fs/cgroup")]
    assert cgroups == ([] if network == "none" else host_cgroups)
    nodes = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
    assert not [m for m in inside if m[0].startswith("/dev/") and m[1] == "devtmpfs"
                and m[0] not in nodes]


_UNSTACKED_PROC = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
while os.path.ismount("/proc"):  # (a test runner's --mount-proc stacks one on the host's)
    assert libc.umount2(b"/proc", 2) == 0, ctypes.get_errno()
assert libc.mount(b"proc", b"/proc", b"proc", 0, None) == 0, ctypes.get_errno()
from isolate import Sandbox
with Sandbox(privileged=True) as box:
    result = box.run(["/bin/sh", "-c", "umount -l /proc && ls -A /proc | wc -l"],
                     capture_output=True, text=True, check=True)
print(result.stdout.strip())
"""


def test_a_privileged_sandbox_that_unmounts_its_proc_finds_no_host_proc_under_it() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a mount namespace with one /proc")
    # In a mount namespace of its own (private: nothing of it reaches the host's), with one
    # /proc: what lies under the sandbox's own /proc is the root's empty directory.
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                          "-c", _UNSTACKED_PROC], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"]


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def overwrite_exes() -> list[tuple[str, int]]:
    """Try to open every /proc/*/exe visible inside for writing; report each errno."""
    results = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        path = f"/proc/{entry}/exe"
        try:
            with open(path, "r+b") as f:
                f.write(b"\0")
            results.append((os.readlink(path), 0))
        except OSError as exc:
            results.append((path, exc.errno or -1))
    return results


@pytest.mark.parametrize("readonly", [True, False])
def test_proc_self_exe_cannot_be_opened_to_overwrite_the_host_binary(readonly: bool) -> None:
    exe = os.path.realpath(sys.executable)
    before = sha256(exe)
    with Sandbox(readonly=readonly) as box:
        results = box.call(overwrite_exes)
        assert results, "no /proc/*/exe was visible"
        assert all(err != 0 for _, err in results), results
        script = "echo x > /proc/self/exe; echo x > /proc/1/exe"
        assert box.run(["/bin/sh", "-c", script], capture_output=True).returncode != 0
    assert sha256(exe) == before


def test_host_processes_are_not_reachable_through_proc(sb: Sandbox) -> None:
    host_pid = os.getpid()
    cmdline = sh(sb, f"cat /proc/{host_pid}/cmdline 2>/dev/null | tr '\\0' ' '").stdout
    assert "pytest" not in cmdline


# -- opting out -------------------------------------------------------------------------------

def test_privileged_sandbox_keeps_capabilities_and_may_mount() -> None:
    host_mounts = mountinfo()
    with Sandbox(privileged=True) as box:
        assert int(status_field(box, "CapEff"), 16) != 0
        assert status_field(box, "NoNewPrivs") == "0"
        assert sh(box, "mount -t tmpfs none /mnt && echo mounted").stdout.strip() == "mounted"
    assert mountinfo() == host_mounts  # its mounts stayed in its own namespace


def test_explicit_capabilities_keep_exactly_those() -> None:
    with Sandbox(capabilities=["CAP_NET_RAW", "CAP_CHOWN"]) as box:
        eff = int(status_field(box, "CapEff"), 16)
        assert eff == (1 << 13) | (1 << 0)
        assert status_field(box, "NoNewPrivs") == "1"
        assert sh(box, "mount -t tmpfs none /mnt").returncode != 0
    with Sandbox(capabilities=["CAP_CHOWN"], uid=1000) as box:
        assert int(status_field(box, "CapEff"), 16) == 1
