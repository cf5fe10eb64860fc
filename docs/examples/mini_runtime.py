"""A mini container runtime, built from isolate's documented lower layers only.

Run it as root (``sudo python3 docs/examples/mini_runtime.py``): it builds a two-layer
busybox image in a temporary store (Debian's ``busybox-static`` provides ``/bin/busybox``),
or runs ``IMAGE`` from the store at ``STORE`` when given both (``mini_runtime.py STORE IMAGE``),
and does what runc does with one documented building block per step:

* the image's layers, extracted and stacked by an overlay with an upper dir of its own
  (:meth:`isolate.image.Store.layer_dirs`, :func:`isolate.lowlevel.plan.overlay`);
* namespaces: new mnt, uts, pid and cgroup ones, and a net and ipc namespace made beforehand
  and joined, as a runtime joins a pod's (:meth:`isolate.namespaces.Namespace.create`,
  :func:`~isolate.namespaces.join_ops`);
* a cgroup with a memory limit, joined before anything else runs
  (:class:`isolate.cgroups.CGroup`, :func:`~isolate.lowlevel.plan.cgroup_join`);
* pid 1 with its own hostname, /proc, /dev and /tmp, after ``pivot_root`` into the image;
* the bounding set emptied, ids changed, no capabilities, ``no_new_privs``, an rlimit, death
  with the runtime, and Docker's seccomp profile (:mod:`isolate.security`);
* an ``exec`` of a second command into the running container
  (:func:`~isolate.namespaces.spawn_in`), then wait: exit status and peak memory;
* everything removed at the end: the container's mounts go with its mount namespace, the
  cgroup, the namespaces, the image hold and the scratch dirs are cleaned up by the code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from isolate import lowlevel
from isolate.cgroups import CGroup, Limits
from isolate.image import Image, ImageConfig, Store
from isolate.lowlevel import Op, Plan
from isolate.lowlevel import plan as P
from isolate.namespaces import Namespace, NamespaceKind, join_ops, spawn_in
from isolate.security import CapabilitySet, SeccompProfile

HOSTNAME = "mini"
USER = 1000  # the container's uid and gid
MEMORY_LIMIT = "64M"
ENV = {"PATH": "/bin", "HOME": "/tmp"}
DEVICES = ("null", "zero", "full", "random", "urandom")  # bound from the host's /dev
# The container's command: report what it is, use 8 MB of memory, wait for a line on stdin.
SCRIPT = r"""
echo "pid=$$ host=$(hostname) uid=$(id -u) gid=$(id -g) groups=$(id -G)"
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
echo "nofile=$(ulimit -n)"
cat /etc/motd
x=$(head -c 8000000 /dev/zero | tr '\0' a)
echo "held ${#x} bytes"
echo ready
read line
exit 3
"""


@dataclass(frozen=True)
class Result:
    """What the container did: its exit status, what it and the exec printed, its peak
    memory use (None where the host's cgroups cannot tell)."""

    status: int
    output: str
    exec_output: str
    memory_peak: int | None


def build_image(store: Store, work: str) -> Image:
    """A two-layer image: a static busybox with its applets, then a layer adding /etc/motd."""
    base = os.path.join(work, "base")
    os.makedirs(os.path.join(base, "bin"))
    shutil.copy("/bin/busybox", os.path.join(base, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in set(applets) - {"busybox"}:
        os.symlink("busybox", os.path.join(base, "bin", applet))
    first = store.from_directory(base, "mini/busybox:base", config=ImageConfig(cmd=["sh"]))
    change = os.path.join(work, "change")
    os.makedirs(os.path.join(change, "etc"))
    with open(os.path.join(change, "etc", "motd"), "w") as f:
        f.write("hello from the top layer\n")
    return store.commit(first, change, "mini/busybox:1")


def container_plan(lowers: Sequence[str], rootfs: str, upper: str, work: str,
                   joins: Sequence[Op], cgroup_fds: Sequence[int], runtime_pidfd: int,
                   stdio: tuple[int, int], argv: Sequence[str]) -> Plan:
    """The set-up of one container process, in the order the kernel needs it."""
    return Plan(P.CLONE_NEWNS | P.CLONE_NEWUTS | P.CLONE_NEWPID).extend([
        # Into the cgroup first: nothing the container runs escapes its limits.
        *(P.cgroup_join(fd) for fd in cgroup_fds),
        *joins,  # the net and ipc namespaces made beforehand
        P.loopback_up(),
        # After the cgroup join, so that the container's cgroup is its cgroup namespace's root.
        P.unshare(P.CLONE_NEWCGROUP),
        P.mount(None, "/", flags=P.MS_REC | P.MS_PRIVATE),  # nothing propagates out
        # The host's device nodes, taken before the root changes (slot i for DEVICES[i]).
        *(P.open_tree(f"/dev/{dev}", i, recursive=False) for i, dev in enumerate(DEVICES)),
        P.overlay(lowers, rootfs, upper, work),
        P.root(rootfs),  # in-root paths below resolve inside the image's tree
        P.mount("proc", "/proc", "proc", P.MS_NOSUID | P.MS_NODEV | P.MS_NOEXEC,
                in_root=True, mkdir=True),
        P.mount("tmpfs", "/dev", "tmpfs", P.MS_NOSUID, "mode=755", in_root=True, mkdir=True),
        *(P.move_mount(i, f"/dev/{dev}", is_file=True) for i, dev in enumerate(DEVICES)),
        P.mount("tmpfs", "/tmp", "tmpfs", P.MS_NOSUID | P.MS_NODEV, "mode=1777",
                in_root=True, mkdir=True),
        P.mask("/proc/kcore"),
        P.pivot_root(),
        P.sethostname(HOSTNAME),
        P.chdir("/"),
        P.rlimit("nofile", 256),
        # Privileges: empty the bounding set while we may, then change ids, then no caps.
        P.bounding_set(CapabilitySet.none()),
        P.setgroups([USER]),
        P.setresgid(USER),
        P.setresuid(USER),
        P.capabilities(CapabilitySet.none()),
        P.no_new_privs(),
        # After the id change, which clears it; the pidfd works from a new pid namespace.
        P.pdeathsig(parent_pidfd=runtime_pidfd),
        P.fds([(stdio[0], 0, False), (stdio[1], 1, False), (stdio[1], 2, False)]),
        P.seccomp(SeccompProfile.default().compile()),  # last: it filters what follows
        P.exec_(argv[0], argv, ENV),
    ])


def read_until(fd: int, marker: bytes) -> bytes:
    """Read ``fd`` until ``marker`` has come (or end of file)."""
    data = b""
    while marker not in data:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data


def run_container(store: Store, image: Image, argv: Sequence[str]) -> Result:
    """Run ``argv`` in a container of ``image``; everything it made is gone on return."""
    scratch = tempfile.mkdtemp(prefix="mini-runtime-")
    holder = f"mini-runtime-{os.getpid()}"
    store.hold(image, holder, for_process=True)  # gc and rmi leave its layers alone
    fds: list[int] = []
    try:
        lowers = store.layer_dirs(image)
        rootfs, upper, work = (os.path.join(scratch, d) for d in ("rootfs", "upper", "work"))
        for d in (rootfs, upper, work):
            os.mkdir(d)
        in_r, in_w = os.pipe2(os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        me = os.pidfd_open(os.getpid())
        fds += [in_r, in_w, out_r, out_w, me]
        with CGroup.create(limits=Limits(memory_max=MEMORY_LIMIT)) as cg, \
                Namespace.create(["net", "ipc"]) as pod:
            procs = [os.open(path, os.O_WRONLY | os.O_CLOEXEC) for path in cg.procs_files()]
            fds += procs
            joins, _ = join_ops(pod)
            p = container_plan(lowers, rootfs, upper, work, joins, procs, me, (in_r, out_w),
                               argv)
            with lowlevel.spawn(p) as child:
                for fd in (in_r, out_w, *procs):  # the child has its own copies now
                    fds.remove(fd)
                    os.close(fd)
                output = read_until(out_r, b"ready\n")
                # docker exec: a second process in the container's namespaces.
                exec_r, exec_w = os.pipe2(os.O_CLOEXEC)
                kinds = (NamespaceKind.MNT, NamespaceKind.UTS, NamespaceKind.PID)
                handles = [Namespace.of_pid(child.pid, k) for k in kinds]
                try:
                    with spawn_in(handles, ["hostname"], ENV, uid=USER, gid=USER,
                                  stdout=exec_w) as ex:
                        os.close(exec_w)
                        exec_output = read_until(exec_r, b"\0")
                        ex.wait()
                finally:
                    os.close(exec_r)
                    for h in handles:
                        h.close()
                os.write(in_w, b"go\n")
                output += read_until(out_r, b"\0")
                status = child.wait()
            peak = cg.stats().memory_peak
        return Result(status, output.decode(), exec_output.decode(), peak)
    finally:
        for fd in fds:
            os.close(fd)
        store.release(holder)
        shutil.rmtree(scratch)


def main(args: Sequence[str]) -> int:
    """Build (or take) an image, run a container of it, check and print what it did."""
    if os.geteuid() != 0:
        print("mini_runtime: run it as root (it mounts, and makes cgroups)", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="mini-store-")
    try:
        if len(args) == 2:
            store = Store(args[0])
            image = store.get(args[1])
        else:
            store = Store(os.path.join(work, "store"))
            image = build_image(store, work)
        result = run_container(store, image, ["sh", "-c", SCRIPT])
    finally:
        shutil.rmtree(work)
    print(result.output, end="")
    print(f"exec in the container: {result.exec_output.strip()}")
    print(f"exit status {result.status}, memory peak {result.memory_peak} bytes "
          f"(limit {MEMORY_LIMIT})")
    lines = result.output.splitlines()
    assert lines[0] == f"pid=1 host={HOSTNAME} uid={USER} gid={USER} groups={USER}", lines
    assert {"CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1",
            "Seccomp:\t2", "nofile=256", "hello from the top layer", "held 8000000 bytes"
            } <= set(lines), lines
    assert result.exec_output == f"{HOSTNAME}\n"
    assert result.status == 3
    assert result.memory_peak is None or result.memory_peak >= 8_000_000
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
