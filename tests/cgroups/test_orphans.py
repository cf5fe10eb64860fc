"""A group whose creator was killed before deleting it is cleaned up by the next create, in
every hierarchy it has a directory in; a group whose creator lives is never touched, also when
the creator is in another pid namespace (where its pid names someone else, or no one)."""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from cgroup_helpers import layout_below, python_in

import isolate
from isolate._procs import pid_alive
from isolate.cgroups import BASE_NAME, CGroup
from isolate.cgroups import cgroup as cgroup_module

pytestmark = pytest.mark.root

SRC = os.path.dirname(os.path.dirname(isolate.__file__))


@pytest.fixture(autouse=True)
def sweep_on_every_create(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about what a sweep removes: let every create sweep (a process's
    creates sweep a base once per ``SWEEP_INTERVAL``; when is tested on its own below)."""
    monkeypatch.setattr(cgroup_module, "SWEEP_INTERVAL", 0.0)


def test_group_of_a_killed_creator_is_swept_by_the_next_create() -> None:
    code = textwrap.dedent("""
        import os
        from isolate.cgroups import CGroup
        cg = CGroup.create()
        print(cg.path, flush=True)
        os._exit(0)          # killed before delete: the group stays behind
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=SRC),
                         capture_output=True, text=True, check=True).stdout.strip()
    orphan = CGroup.open(out)
    assert orphan.exists()
    with CGroup.create() as mine:
        assert not orphan.exists(), "the orphan of a dead creator was not removed"
        assert mine.exists()


def test_a_dead_creators_group_is_swept_with_the_named_groups_below_it() -> None:
    # What tests/cgroups/conftest.py's parents are: a generated group holding groups with
    # names of their own. A session killed before its teardown leaves them; the next create
    # removes the whole tree, in every hierarchy (v1 memory sits below the caller's own).
    code = textwrap.dedent("""
        import json, os
        from isolate.cgroups import CGroup
        parent = CGroup.create()
        child = CGroup.create("named-child", parent=parent)
        CGroup.create("grandchild", parent=child)
        print(json.dumps(parent.dirs), flush=True)
        os._exit(0)          # killed before delete
    """)
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=SRC),
                         capture_output=True, text=True, check=True).stdout
    dirs: dict[str, str] = json.loads(out)
    assert all(os.path.isdir(os.path.join(d, "named-child", "grandchild"))
               for d in dirs.values())
    with CGroup.create():
        assert not [d for d in dirs.values() if os.path.exists(d)]


def test_group_of_a_live_creator_is_left_alone() -> None:
    with CGroup.create() as first, CGroup.create() as second:
        assert first.exists() and second.exists()


# -- sweeping every hierarchy, and telling live creators by their lock ------------------------

_CREATE_AND_DIE = textwrap.dedent("""
    import json, os
    from isolate.cgroups import CGroup
    cg = CGroup.create()
    print(json.dumps(cg.dirs), flush=True)
    os._exit(0)          # killed before delete: the group stays behind
""")


def _orphan_in(private: CGroup) -> dict[str, str]:
    out = subprocess.run(python_in(private, _CREATE_AND_DIE), env=dict(os.environ, PYTHONPATH=SRC),
                         capture_output=True, text=True, check=True).stdout
    dirs: dict[str, str] = json.loads(out)
    assert all(os.path.isdir(d) for d in dirs.values())
    return dirs


def test_an_orphan_is_found_in_every_hierarchy_even_after_a_sweep_from_elsewhere(
    private: CGroup,
) -> None:
    memory = private.layout.v1_for("memory")
    if memory is None:
        pytest.skip("no v1 memory hierarchy: every hierarchy places a process alike")
    orphan = _orphan_in(private)
    # A sweeper whose memory cgroup is another one (as for two sessions on this machine, each
    # in a memory cgroup of its own): it cannot see the orphan's memory directory.
    elsewhere = CGroup.create("another-memory-cgroup", parent=private)
    away = {memory.key: elsewhere.dirs[memory.key]}
    CGroup.create(layout=layout_below(private, away)).delete()
    # The next create of a process placed as the orphan's creator was finds what is left.
    CGroup.create(layout=layout_below(private)).delete()
    left = [d for d in orphan.values() if os.path.exists(d)]
    assert not left, f"the orphan is left for good in {left}"


def _free_pid() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        top = int(f.read())
    for _ in range(1000):
        pid = random.randrange(1000, top)
        if not pid_alive(pid):
            return pid
    pytest.skip("found no free pid to give the creator")


def test_a_live_creator_in_another_pid_namespace_keeps_its_empty_group(
    private: CGroup,
) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    pid = _free_pid()  # the creator gets this pid in its own namespace; here it is nobody's
    code = textwrap.dedent("""
        import json, os, sys
        from isolate.cgroups import CGroup
        cg = CGroup.create()
        print(os.getpid(), json.dumps(cg.dirs), flush=True)
        sys.stdin.read()
        os._exit(0)          # gone without delete: an orphan now
    """)
    # A background job's stdin is /dev/null unless redirected: give it ours (fd 3).
    script = (f'exec 3<&0; echo {pid - 1} > /proc/sys/kernel/ns_last_pid; "$@" 0<&3 & '
              'exec 3<&-; wait')
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "sh", "-c", script,
            "sh", *python_in(private, code)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, PYTHONPATH=SRC)) as creator:
        assert creator.stdin is not None and creator.stdout is not None
        try:
            line = creator.stdout.readline()
            assert line, "the creator died"
            their_pid, dirs_json = line.split(" ", 1)
            if int(their_pid) != pid:
                pytest.skip(f"the creator got pid {their_pid}, not {pid}, in its namespace")
            dirs = json.loads(dirs_json)
            CGroup.create(layout=layout_below(private)).delete()
            if pid_alive(pid):
                pytest.skip(f"pid {pid} came into use here meanwhile")
            assert all(os.path.isdir(d) for d in dirs.values()), \
                "a live creator's group was swept because its pid means nothing here"
            creator.stdin.close()
            assert creator.wait(timeout=60) == 0
        finally:
            if creator.poll() is None:
                creator.kill()
                creator.wait()
    CGroup.create(layout=layout_below(private)).delete()
    assert not any(os.path.exists(d) for d in dirs.values()), "the dead creator's group stayed"


def test_groups_named_before_the_lock_are_judged_by_their_creators_pid(private: CGroup) -> None:
    layout = layout_below(private)
    bases = {h.key: os.path.join(private.dirs[h.key], BASE_NAME) for h in layout.hierarchies}
    dead, live = f"cg-{_free_pid()}-{secrets.token_hex(6)}", f"cg-{os.getpid()}-0123456789ab"
    made = []
    with CGroup.create(layout=layout):  # the base exists now
        for name in (dead, live):
            for base in bases.values():
                made.append(os.path.join(base, name))
                os.mkdir(made[-1])
        # A remnant of an old sweep: only the memory (or last) part of a dead creator's group.
        last = layout.hierarchies[-1].key
        remnant = os.path.join(bases[last], f"cg-{_free_pid()}-{secrets.token_hex(6)}")
        os.mkdir(remnant)
        made.append(remnant)
        try:
            CGroup.create(layout=layout).delete()
            assert not any(os.path.exists(os.path.join(b, dead)) for b in bases.values())
            assert not os.path.exists(remnant)
            assert all(os.path.isdir(os.path.join(b, live)) for b in bases.values())
        finally:
            for d in made:
                if os.path.isdir(d):
                    os.rmdir(d)


def test_an_orphan_holding_a_live_creators_group_stays_until_that_group_is_deleted(
    private: CGroup,
) -> None:
    orphan = _orphan_in(private)
    name = os.path.basename(next(iter(orphan.values())))
    layout = layout_below(private)
    inner = CGroup.create(parent=CGroup.open(f"{BASE_NAME}/{name}", parent=private,
                                             layout=layout))
    try:
        CGroup.create(layout=layout).delete()
        assert inner.exists(), "a sweep removed a group its live creator holds"
        assert all(os.path.isdir(d) for d in orphan.values())
    finally:
        inner.delete()
    CGroup.create(layout=layout).delete()
    assert not any(os.path.exists(d) for d in orphan.values())


def test_an_id_group_is_swept_once_no_one_holds_it_and_no_process_is_in_it(
    private: CGroup,
) -> None:
    # How a container's group lives: its creator hands the lock to the supervisor (here a
    # process given the fds), and a container joins only some hierarchies.
    layout = layout_below(private)
    cg = CGroup.create(secrets.token_hex(32), layout=layout)
    holder = member = None
    try:
        fds = cg.hold_fds()
        assert len(fds) == len(set(cg.dirs.values()))
        holder = subprocess.Popen(["/bin/sleep", "100000"], pass_fds=fds)
        cg.let_go()
        assert cg.hold_fds() == []
        CGroup.create(layout=layout).delete()
        assert cg.exists(), "a sweep removed a group that another process holds"
        member = subprocess.Popen(["/bin/sleep", "100000"])
        with open(os.path.join(cg.dirs[layout.hierarchies[-1].key], "cgroup.procs"), "w") as f:
            f.write(str(member.pid))
        holder.kill()
        holder.wait()
        CGroup.create(layout=layout).delete()
        assert cg.exists(), "a sweep removed a group with a process in one of its hierarchies"
        member.kill()
        member.wait()
        deadline = time.monotonic() + 10
        while any(os.path.exists(d) for d in cg.dirs.values()) and time.monotonic() < deadline:
            CGroup.create(layout=layout).delete()  # (the killed task may linger a moment)
            time.sleep(0.01)
        assert not any(os.path.exists(d) for d in cg.dirs.values()), "the orphan stayed"
    finally:
        for p in (holder, member):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        cg.delete()
