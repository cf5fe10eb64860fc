"""What a test could leave behind on the machine, as a comparable snapshot.

Used by the session-wide check in conftest.py and by tests that loop many sandboxes.
"""

from __future__ import annotations

import os
import re
import sys

import attrs


def _mounts() -> frozenset[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.add(f"{fields[4]} ({fields[sep + 1]} {fields[sep + 2]})")
    return frozenset(out)


def _own_cgroup_dirs() -> list[str]:
    """This process's cgroup directory in every mounted hierarchy: everything isolate makes by
    default lives below it (``<own>/isolate/...``), and what other sessions on the machine make
    at the same time lives elsewhere."""
    root = "/sys/fs/cgroup"
    dirs = []
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return dirs
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers.startswith("name="):
            continue
        if not controllers:  # the unified hierarchy
            candidates = [os.path.join(root, "unified"), root]
        else:
            candidates = [os.path.join(root, c) for c in controllers.split(",")]
            candidates.append(os.path.join(root, controllers))
        for base in candidates:
            d = os.path.join(base, path.lstrip("/"))
            if os.path.isdir(d) and d not in dirs:
                dirs.append(d)
                break
    return dirs


def _cgroups() -> frozenset[str]:
    found = set()
    for base in _own_cgroup_dirs():
        for dirpath, dirnames, _ in os.walk(base):
            depth = dirpath[len(base):].count("/")
            if depth >= 4:
                dirnames[:] = []
            for d in dirnames:
                if "isolate" not in d.lower():
                    continue
                path = os.path.join(dirpath, d)
                # The shared ``isolate`` base goes when its last group goes; while it holds
                # groups (ours are listed on their own; others' belong to other sessions on
                # the machine) it is not a trace of ours.
                if d == "isolate" and _has_subdirs(path):
                    continue
                found.add(path)
    return frozenset(found)


def _has_subdirs(path: str) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(e.is_dir(follow_symlinks=False) for e in entries)
    except OSError:
        return False


def _children() -> frozenset[str]:
    me = os.getpid()
    kids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat.rsplit(")", 1)[1].split()
        if int(rest[1]) == me:
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            kids.add(f"pid {entry} ({comm}, state {rest[0]})")
    return frozenset(kids)


def _fds() -> frozenset[str]:
    from isolate import _spare_netns
    from isolate.cgroups.devices import kept_program_fds

    # isolate's own caches, not leaks: the device programs, the next sandbox's net namespace
    kept = {str(fd) for fd in (*kept_program_fds(), *_spare_netns.held_fds())}
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        if fd in kept:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        out.add(f"fd {fd} -> {target}")
    return frozenset(out)


def _netns() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/run/netns"))
    except OSError:
        return frozenset()


#: Where tests and the programs they run make temporary files and directories.
_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
#: What of theirs counts: Python's ``tempfile`` names (``tmp`` + 8 characters), isolate's
#: ``isolate-*`` prefixes, and anything in /dev/shm (podman's ``libpod_lock`` segment, say).
#: Not pytest's own ``pytest-of-<user>`` base, which pytest manages. (Who made an entry is
#: not known: a second test session running beside this one, whose names look the same, is
#: reported too. CI runs one at a time.)
_TEMP_NAME = re.compile(r"tmp[a-z0-9_]{8}|isolate-.*")


def _temp_entries() -> frozenset[str]:
    out = set()
    for top in _TEMP_DIRS:
        try:
            names = os.listdir(top)
        except OSError:
            continue
        out.update(os.path.join(top, name) for name in names
                   if top == "/dev/shm" or _TEMP_NAME.fullmatch(name))
    return frozenset(out)


def _links() -> frozenset[str]:
    try:
        return frozenset(os.listdir("/sys/class/net"))
    except OSError:
        return frozenset()


@attrs.frozen
class Snapshot:
    mounts: frozenset[str]
    cgroups: frozenset[str]
    children: frozenset[str]
    fds: frozenset[str]
    netns: frozenset[str]
    links: frozenset[str]
    temp: frozenset[str]

    def left_since(self, before: Snapshot) -> list[str]:
        """Descriptions of everything present now that was not there ``before``."""
        out = []
        for name in ("mounts", "cgroups", "children", "fds", "netns", "links", "temp"):
            new = getattr(self, name) - getattr(before, name)
            out += [f"{name}: {item}" for item in sorted(new)]
        return out


def _drain_pools() -> None:
    """isolate keeps cgroups given back empty for the next sandbox until the process ends
    (``isolate.cgroups.pool``): remove them first, so that what is left is a leak."""
    pool = sys.modules.get("isolate.cgroups.pool")
    if pool is not None:
        pool.default_pool().drain()


def snapshot() -> Snapshot:
    _drain_pools()
    return Snapshot(_mounts(), _cgroups(), _children(), _fds(), _netns(), _links(),
                    _temp_entries())
