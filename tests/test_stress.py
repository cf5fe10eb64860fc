"""Stress tests: many sandboxes leave nothing behind (fds, mounts, namespaces, processes,
cgroups), and spawning stays deadlock-free while other Python threads hold locks and allocate."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import isolate
from sandbox_helpers import need_root

pytestmark = [pytest.mark.root, pytest.mark.slow]

ROUNDS = 200


@pytest.fixture(autouse=True)
def _root() -> None:
    need_root()


LOOP = textwrap.dedent("""
    import os
    from sandbox_helpers import children_of, mountinfo, open_fds
    from isolate import Limits, Sandbox
    from isolate.errors import UnsupportedError

    def netns_names():
        try:
            return sorted(os.listdir("/run/netns"))
        except FileNotFoundError:
            return []

    def namespaces_held():
        return {{t for t in open_fds().values()
                 if t.split(":", 1)[0] in ("net", "uts", "ipc", "user", "mnt", "pid")}}

    fds, mounts, netns = open_fds(), mountinfo(), netns_names()
    children = children_of(os.getpid())
    cgroup_dirs = []
    limits_work = True
    for i in range({rounds}):
        options = {{}}
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
            # A tree that outlives its pid 1, a popen still running at the end, a call helper.
            result = box.run(["sh", "-c", "sleep 1000 & echo $$"], capture_output=True)
            assert result.stdout == b"1\\n", result
            running = box.popen(["sleep", "1000"])
            if i % 50 == 0:
                assert box.call(os.getpid) > 1
        finally:
            box.close()
        assert running.returncode is not None
    from isolate.cgroups.pool import default_pool
    default_pool().drain()  # (the empty groups kept for the next sandbox)
    assert open_fds() == fds, (fds, open_fds())
    assert namespaces_held() == set()
    assert mountinfo() == mounts, set(mountinfo()) ^ set(mounts)
    assert children_of(os.getpid()) == children
    assert netns_names() == netns
    assert [d for d in cgroup_dirs if os.path.exists(d)] == []
    print("clean", {rounds})
""")


def run_script(code: str, *, private_mounts: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (own session); a hang fails as a deadlock."""
    tests = os.path.dirname(os.path.abspath(__file__))
    src = os.path.dirname(os.path.dirname(isolate.__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, tests]))
    argv = [sys.executable, "-c", code]
    if private_mounts:
        # Other test runs on this machine mount things; a private copy of the mount table
        # sees only what this run does.
        argv = ["unshare", "--mount", "--propagation", "private", *argv]
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240,
                              check=False, start_new_session=True)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"no end after {exc.timeout} s: spawning deadlocked")


def test_200_sandboxes_in_a_loop_leave_no_mount_namespace_fd_or_process() -> None:
    proc = run_script(LOOP.format(rounds=ROUNDS), private_mounts=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["clean", str(ROUNDS)]


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
    proc = run_script(CHURN.format(rounds=ROUNDS))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["done", str(ROUNDS)]
