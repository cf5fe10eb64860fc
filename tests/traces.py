"""What a test could leave behind on the machine, as a comparable snapshot.

Used by the session-wide check in conftest.py and by tests that loop many sandboxes.
"""

from __future__ import annotations

import os

import attrs


def _mounts() -> frozenset[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.add(f"{fields[4]} ({fields[sep + 1]} {fields[sep + 2]})")
    return frozenset(out)


def _cgroups() -> frozenset[str]:
    found = set()
    root = "/sys/fs/cgroup"
    for top in os.listdir(root) if os.path.isdir(root) else ():
        base = os.path.join(root, top)
        for dirpath, dirnames, _ in os.walk(base):
            depth = dirpath[len(base):].count("/")
            if depth >= 4:
                dirnames[:] = []
            for d in dirnames:
                if "isolate" in d.lower():
                    found.add(os.path.join(dirpath, d))
    return frozenset(found)


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
    out = set()
    for fd in os.listdir("/proc/self/fd"):
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

    def left_since(self, before: Snapshot) -> list[str]:
        """Descriptions of everything present now that was not there ``before``."""
        out = []
        for name in ("mounts", "cgroups", "children", "fds", "netns", "links"):
            new = getattr(self, name) - getattr(before, name)
            out += [f"{name}: {item}" for item in sorted(new)]
        return out


def snapshot() -> Snapshot:
    return Snapshot(_mounts(), _cgroups(), _children(), _fds(), _netns(), _links())
