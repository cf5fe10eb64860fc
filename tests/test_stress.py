"""Stress tests: many sandboxes leave nothing behind (fds, mounts, namespaces, processes,
cgroups), and spawning stays deadlock-free while other Python threads hold locks and allocate."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import isolate
from isolate import Limits, Sandbox
from isolate.errors import UnsupportedError
from sandbox_helpers import children_of, mountinfo, need_root, open_fds

pytestmark = [pytest.mark.root, pytest.mark.slow]

ROUNDS = 200


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


def netns_names() -> list[str]:
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def sandbox_namespaces() -> set[str]:
    """Namespaces held by any fd of this process (the sandbox keeps its shared ones so)."""
    return {target for target in open_fds().values()
            if target.split(":", 1)[0] in ("net", "uts", "ipc", "user", "mnt", "pid")}


def test_200_sandboxes_in_a_loop_leave_no_mount_namespace_fd_or_process() -> None:
    fds, mounts, netns = open_fds(), mountinfo(), netns_names()
    children = children_of(os.getpid())
    cgroup_dirs: list[str] = []
    limits_work = True
    for i in range(ROUNDS):
        options = {}
        if i % 20 == 0 and limits_work:
            options["limits"] = Limits(pids_max=64)
        try:
            box = Sandbox(**options)
            box.__enter__()
        except UnsupportedError:
            limits_work = False
            box = Sandbox().__enter__()
        try:
            if box.cgroup is not None:
                cgroup_dirs.extend(box.cgroup.dirs.values())
            # A tree that outlives its pid 1, a popen left running, and a call helper.
            result = box.run(["sh", "-c", "sleep 1000 & echo $$"], capture_output=True)
            assert result.stdout == b"1\n"
            running = box.popen(["sleep", "1000"])  # still running when the block ends
            if i % 50 == 0:
                assert box.call(os.getpid) > 1
        finally:
            box.close()
        assert running.returncode is not None
    assert open_fds() == fds
    assert sandbox_namespaces() == set()
    assert mountinfo() == mounts
    assert children_of(os.getpid()) == children
    assert netns_names() == netns
    assert [d for d in cgroup_dirs if os.path.exists(d)] == []


CHURN = textwrap.dedent("""
    import os, sys, threading, time, logging
    from isolate import Sandbox

    stop = threading.Event()
    shared = threading.Lock()
    log = logging.getLogger("churn")
    log.addHandler(logging.NullHandler())

    def churn(seed):
        junk = []
        while not stop.is_set():
            with shared:  # hold a lock while allocating, as busy programs do
                junk.append([dict(a=i, b=str(i) * 8) for i in range(200)])
                log.warning("holding %d", seed)
            if len(junk) > 50:
                junk.clear()
            bytearray(1 << 16)

    threads = [threading.Thread(target=churn, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    for i in range({rounds}):
        with Sandbox() as sb:
            r = sb.run(["true"])
            assert r.returncode == 0, r
            if i % 40 == 0:
                assert sb.call(sum, [1, 2, 3]) == 6
    stop.set()
    for t in threads:
        t.join()
    print("done", {rounds})
""")


def test_200_sandboxes_while_threads_hold_locks_and_allocate_do_not_deadlock() -> None:
    code = CHURN.format(rounds=ROUNDS)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(isolate.__file__)))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=240, check=False, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"spawning deadlocked (no end after {exc.timeout} s)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done", str(ROUNDS)]
