"""Device policy of a cgroup: the v1 devices controller, a v2 device program, both on hybrid.

Each layout is driven for real: processes in the group open and create device nodes and the
kernel answers. On this hybrid host the v2 view is the real unified mount, where the kernel
runs a task's v2 device program whatever controllers the hierarchy has.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from isolate.cgroups import DEFAULT_RULES, CGroup, DeviceRule, devices
from isolate.cgroups.devices import compile_program, rule_for_node
from isolate.errors import ConfigError

NODES = {  # name: (type, major, minor)
    "null": ("c", 1, 3), "zero": ("c", 1, 5), "tty": ("c", 5, 0), "pts7": ("c", 136, 7),
    "kvm": ("c", 10, 232), "fuse": ("c", 10, 229), "loop0": ("b", 7, 0),
}

PROBE = """
import errno, json, os
out = {{}}
for path, how in {tries!r}:
    try:
        if how in ("mc", "mb"):  # mknod a character or block node
            os.mknod(path, 0o600 | (0o20000 if how == "mc" else 0o60000), os.makedev(10, 232))
        else:
            flags = os.O_RDONLY if how == "r" else os.O_WRONLY
            os.close(os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY))
        out[os.path.basename(path) + ":" + how] = "ok"
    except OSError as exc:
        out[os.path.basename(path) + ":" + how] = errno.errorcode[exc.errno]
print(json.dumps(out))
"""


@pytest.fixture
def nodes(tmp_path: Path) -> Path:
    """Device nodes of our own (the host's /dev is not ours to rely on)."""
    for name, (kind, major, minor) in NODES.items():
        mode = (stat.S_IFCHR if kind == "c" else stat.S_IFBLK) | 0o600
        os.mknod(tmp_path / name, mode, os.makedev(major, minor))
    return tmp_path


def _try(spawn: Callable[..., subprocess.Popen[bytes]], cg: CGroup, tries: list[tuple[str, str]]
         ) -> dict[str, str]:
    proc = spawn(cg, PROBE.format(tries=tries), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    return dict(json.loads(out))


def _allowed(answer: str) -> bool:
    # EPERM is the policy; anything else (ok, ENXIO for a device without a driver, EIO for a
    # pty no one opened) got past it.
    return answer != "EPERM"


def test_dockers_default_list_allows_its_devices_and_nothing_else(
        layout_name: str, make_cgroup: Callable[..., CGroup],
        spawn: Callable[..., subprocess.Popen[bytes]], nodes: Path) -> None:
    cg = make_cgroup(layout_name)
    cg.set_devices(DEFAULT_RULES)
    got = _try(spawn, cg, [(str(nodes / n), "r") for n in NODES] + [(str(nodes / "zero"), "w")])
    assert {k: _allowed(v) for k, v in got.items()} == {
        "null:r": True, "zero:r": True, "zero:w": True, "tty:r": True, "pts7:r": True,
        "kvm:r": False, "fuse:r": False, "loop0:r": False}, got
    assert got["null:r"] == "ok"


def test_an_added_rule_allows_that_device_only(layout_name: str,
                                               make_cgroup: Callable[..., CGroup],
                                               spawn: Callable[..., subprocess.Popen[bytes]],
                                               nodes: Path) -> None:
    cg = make_cgroup(layout_name)
    cg.set_devices([*DEFAULT_RULES, rule_for_node(str(nodes / "kvm"))])
    got = _try(spawn, cg, [(str(nodes / "kvm"), "r"), (str(nodes / "fuse"), "r")])
    assert _allowed(got["kvm:r"]) and got["fuse:r"] == "EPERM", got


def test_access_letters_are_enforced(layout_name: str, make_cgroup: Callable[..., CGroup],
                                     spawn: Callable[..., subprocess.Popen[bytes]],
                                     nodes: Path) -> None:
    cg = make_cgroup(layout_name)
    cg.set_devices([DeviceRule("c", 1, 5, "r"), DeviceRule("b", None, None, "m")])
    got = _try(spawn, cg, [(str(nodes / "zero"), "r"), (str(nodes / "zero"), "w"),
                           (str(nodes / "null"), "r"), (str(nodes / "new-c"), "mc"),
                           (str(nodes / "new-b"), "mb")])
    assert got == {"zero:r": "ok", "zero:w": "EPERM", "null:r": "EPERM", "new-c:mc": "EPERM",
                   "new-b:mb": "ok"}, got


def test_the_default_list_lets_nodes_be_made_but_not_opened(
        layout_name: str, make_cgroup: Callable[..., CGroup],
        spawn: Callable[..., subprocess.Popen[bytes]], nodes: Path) -> None:
    cg = make_cgroup(layout_name)
    cg.set_devices(DEFAULT_RULES)
    made = str(nodes / "made-c")
    got = _try(spawn, cg, [(made, "mc"), (made, "r")])
    assert got == {"made-c:mc": "ok", "made-c:r": "EPERM"}, got


def test_rules_are_validated() -> None:
    for bad in (dict(kind="x"), dict(kind="c", access=""), dict(kind="c", access="rr"),
                dict(kind="c", access="rwx"), dict(kind="c", major=-1),
                dict(kind="c", minor=True)):
        with pytest.raises(ConfigError):
            DeviceRule(**bad)  # type: ignore[arg-type]
    assert DeviceRule("c", 136, None).v1() == "c 136:* rwm"
    assert DeviceRule("a", None, None, "m").v1() == "a *:* m"
    with pytest.raises(ConfigError, match="not a character or block device"):
        rule_for_node("/")
    # One block per rule, each at most four tests, a move and an exit, around a fixed frame.
    assert len(compile_program(DEFAULT_RULES)) // 8 <= 7 + 6 * len(DEFAULT_RULES) + 2


# -- the loaded program is kept per rule set --------------------------------------------------

@pytest.fixture
def v2_layout(parents: dict[str, CGroup]) -> Iterator[str]:
    """The v2 view (device programs only), with the program cache empty before and after."""
    if "v2" not in parents:
        pytest.skip("this host has no v2 hierarchy, where device programs live")
    devices.forget_programs()
    yield "v2"
    devices.forget_programs()


def _program_fd_target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def test_a_kept_program_serves_a_second_cgroup_and_still_enforces_the_list(
        v2_layout: str, make_cgroup: Callable[..., CGroup],
        spawn: Callable[..., subprocess.Popen[bytes]], nodes: Path) -> None:
    first = make_cgroup(v2_layout)
    first.set_devices(DEFAULT_RULES)
    kept = devices.kept_program_fds()
    assert len(kept) == 1 and _program_fd_target(next(iter(kept))) == "anon_inode:bpf-prog"
    second = make_cgroup(v2_layout)
    second.set_devices(list(DEFAULT_RULES))  # equal rules, another sequence: the same program
    assert devices.kept_program_fds() == kept
    first.delete()  # the first group's attachment goes; the kept program serves on
    tries = [(str(nodes / "null"), "r"), (str(nodes / "zero"), "w"), (str(nodes / "kvm"), "r"),
             (str(nodes / "loop0"), "r")]
    got = _try(spawn, second, tries)
    assert {k: _allowed(v) for k, v in got.items()} == {
        "null:r": True, "zero:w": True, "kvm:r": False, "loop0:r": False}, got
    third = make_cgroup(v2_layout)
    third.set_devices(DEFAULT_RULES)
    assert devices.kept_program_fds() == kept
    assert _try(spawn, third, tries) == got


def test_other_rules_get_their_own_program_and_the_oldest_is_dropped(
        v2_layout: str, make_cgroup: Callable[..., CGroup],
        spawn: Callable[..., subprocess.Popen[bytes]], nodes: Path) -> None:
    plain = make_cgroup(v2_layout)
    plain.set_devices(DEFAULT_RULES)
    (default_fd,) = devices.kept_program_fds()
    kvm = make_cgroup(v2_layout)
    kvm.set_devices([*DEFAULT_RULES, rule_for_node(str(nodes / "kvm"))])
    assert len(devices.kept_program_fds()) == 2
    assert default_fd in devices.kept_program_fds()
    tries = [(str(nodes / "kvm"), "r"), (str(nodes / "fuse"), "r")]
    assert {k: _allowed(v) for k, v in _try(spawn, kvm, tries).items()} == \
        {"kvm:r": True, "fuse:r": False}
    assert {k: _allowed(v) for k, v in _try(spawn, plain, tries).items()} == \
        {"kvm:r": False, "fuse:r": False}
    # More rule sets than are kept: the least recently used (the default list) is closed.
    for minor in range(devices._KEEP - 1):
        make_cgroup(v2_layout).set_devices([DeviceRule("c", 10, 100 + minor)])
    assert len(devices.kept_program_fds()) == devices._KEEP
    assert default_fd not in devices.kept_program_fds()
    again = make_cgroup(v2_layout)
    again.set_devices(DEFAULT_RULES)  # loaded anew
    assert {k: _allowed(v) for k, v in _try(spawn, again, tries).items()} == \
        {"kvm:r": False, "fuse:r": False}
    devices.forget_programs()
    assert devices.kept_program_fds() == frozenset()


def test_a_kept_program_closed_behind_its_back_is_loaded_anew(
        v2_layout: str, make_cgroup: Callable[..., CGroup],
        spawn: Callable[..., subprocess.Popen[bytes]], nodes: Path) -> None:
    make_cgroup(v2_layout).set_devices(DEFAULT_RULES)
    (fd,) = devices.kept_program_fds()
    os.close(fd)
    placeholder = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # takes the number, maybe
    try:
        cg = make_cgroup(v2_layout)
        cg.set_devices(DEFAULT_RULES)
        assert os.readlink(f"/proc/self/fd/{placeholder}") == "/dev/null"  # not closed by us
        (now,) = devices.kept_program_fds()
        assert now != placeholder and _program_fd_target(now) == "anon_inode:bpf-prog"
        got = _try(spawn, cg, [(str(nodes / "null"), "r"), (str(nodes / "kvm"), "r")])
        assert got["null:r"] == "ok" and got["kvm:r"] == "EPERM", got
    finally:
        os.close(placeholder)


def test_a_forked_child_loads_its_own_program_and_leaves_the_parents(
        v2_layout: str, make_cgroup: Callable[..., CGroup],
        spawn: Callable[..., subprocess.Popen[bytes]], nodes: Path) -> None:
    make_cgroup(v2_layout).set_devices(DEFAULT_RULES)
    (mine,) = devices.kept_program_fds()
    theirs = make_cgroup(v2_layout)
    pid = os.fork()
    if pid == 0:  # the child: the kept fd is a copy of ours, never reused nor trusted here
        code = 1
        try:
            if devices.kept_program_fds() == frozenset():
                theirs.set_devices(DEFAULT_RULES)  # loads one of its own
                code = 0 if len(devices.kept_program_fds()) == 1 else 2
                devices.forget_programs()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert devices.kept_program_fds() == {mine}
    assert os.readlink(f"/proc/self/fd/{mine}") == "anon_inode:bpf-prog"
    got = _try(spawn, theirs, [(str(nodes / "null"), "r"), (str(nodes / "kvm"), "r")])
    assert got["null:r"] == "ok" and got["kvm:r"] == "EPERM", got
