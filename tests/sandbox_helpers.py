"""Helpers shared by the sandbox, CLI and stress tests: a busybox root filesystem, finding
processes by a unique argv marker, and snapshots of what a process holds (fds, mounts)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

BUSYBOX = "/bin/busybox"


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("sandbox tests as root need root")


@contextlib.contextmanager
def busybox_rootfs() -> Iterator[str]:
    """A temp directory holding a static busybox and a symlink per applet in /bin."""
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed (/bin/busybox)")
    root = tempfile.mkdtemp(prefix="isolate-rootfs-")
    try:
        os.chmod(root, 0o755)
        for d in ("bin", "etc", "tmp", "proc", "dev", "sys", "root", "mnt"):
            os.mkdir(os.path.join(root, d))
        shutil.copy(BUSYBOX, os.path.join(root, "bin", "busybox"))
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for applet in applets:
            link = os.path.join(root, "bin", applet)
            if not os.path.lexists(link):
                os.symlink("busybox", link)
        with open(os.path.join(root, "etc", "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def marker() -> str:
    """A number unlikely to be any other process's argument (for ``sleep MARKER``)."""
    return str(100000 + uuid.uuid4().int % 800000)


def pids_with_argv(*argv: str) -> list[int]:
    """Live (non-zombie) processes whose argv starts with ``argv``."""
    want = [a.encode() for a in argv]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args[:len(want)] == want:
            found.append(int(entry))
    return found


def started_with_argv(*argv: str, timeout: float = 30.0) -> list[int]:
    """:func:`pids_with_argv`, waiting for the first: a spawn returns once the exec is past its
    point of no return, a moment before the kernel shows the new command line. The timeout
    (generous: the machine may be busy) only bounds a process that never comes."""
    deadline = time.monotonic() + timeout
    while not (found := pids_with_argv(*argv)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (zombies included: they are not yet reaped)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def open_fds() -> dict[int, str]:
    """This process's fds and what they point at (but the device programs isolate keeps
    loaded for the next cgroup and the spare network namespace made for the next sandbox:
    caches, not leaks)."""
    from isolate import _spare_netns
    from isolate.cgroups.devices import kept_program_fds

    kept = {str(fd) for fd in (*kept_program_fds(), *_spare_netns.held_fds())}
    out = {}
    for name in os.listdir("/proc/self/fd"):
        if name in kept:
            continue
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd listdir itself used
    return out


def mountinfo(pid: int | str = "self") -> list[str]:
    with open(f"/proc/{pid}/mountinfo") as f:
        return f.read().splitlines()


def root_is_volatile(lines: str | list[str]) -> bool:
    """Whether the root mount in ``lines`` (of a ``/proc/PID/mountinfo``, as that process
    sees its root: :func:`mountinfo` or the file's text) is an overlay that skips syncs:
    ``volatile``, which Linux 6.x and later show as ``fsync=volatile``."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    roots = [line.split() for line in lines if line.split()[4] == "/"]
    fields = roots[-1]
    options = set(fields[fields.index("-") + 3].split(","))
    return bool(options & {"volatile", "fsync=volatile"})


def need_volatile_overlays() -> None:
    from isolate import _sys

    if not _sys.overlay_volatile():
        pytest.skip("overlayfs takes no 'volatile' before Linux 5.10")
