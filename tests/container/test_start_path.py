"""What a container's start spares itself without changing what it gets: its first process
is born in the v2 group (CLONE_INTO_CGROUP) and joins v1 hierarchies through ``tasks``, and
one loaded device program serves every container with the same rules."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.sandbox_helpers import mountinfo, need_volatile_overlays, root_is_volatile

from isolate import _sys
from isolate.cgroups import host_layout
from isolate.cgroups.detect import V2_KEY
from isolate.cgroups.devices import forget_programs, kept_program_fds
from isolate.container import Container, ContainerConfig, ContainerStore

pytestmark = pytest.mark.root


@pytest.fixture
def sleepers(containers: ContainerStore) -> Iterator[list[Container]]:
    forget_programs()
    made: list[Container] = []
    try:
        for _ in range(2):
            c = containers.create(ContainerConfig("busybox", ["sleep", "60"]))
            c.start()
            made.append(c)
        yield made
    finally:
        for c in made:
            c.remove(force=True)
        forget_programs()


def _groups(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        return {line.split(":")[1]: line.split(":", 2)[2] for line in f.read().splitlines()}


def test_containers_are_born_in_their_v2_group_and_share_one_device_program(
        sleepers: list[Container]) -> None:
    layout = host_layout()
    if layout.v2 is None or not _sys.vfork_into_cgroup_works():
        pytest.skip("no cgroup v2 hierarchy here, or no clone into a cgroup")
    for c in sleepers:
        st = c.state
        assert st.cgroup is not None and st.pid
        groups = _groups(st.pid)
        v2 = st.cgroup[V2_KEY]
        assert v2.endswith(groups[""].rstrip("/")), (groups, v2)
        mem = st.cgroup.get("memory")
        if mem is not None:  # a v1 hierarchy, joined through its tasks file
            assert mem.endswith(groups["memory"]), (groups, mem)
        code, out, err = c.exec_run(["sh", "-c", "head -c1 /dev/zero | wc -c"])
        assert (code, out.strip()) == (0, b"1"), err
    # The device program (root, a v2 hierarchy) was loaded for the first container and
    # reused for the second: one kept.
    (fd,) = kept_program_fds()
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog"


def test_a_waiter_in_the_supervising_process_is_told_when_the_end_is_recorded(
        image_store: object) -> None:
    """With the in-process supervisor, the run's end is signalled to waiters in this process
    once exit.json is written (no polling for it); the signal is gone afterwards, and a
    forked child (which has no watching thread) falls back to reading the files."""
    from isolate.container import _inprocess

    cs = ContainerStore(image_store, supervisor="inprocess")  # type: ignore[arg-type]
    c = cs.create(ContainerConfig("busybox", ["sleep", "60"]))
    try:
        c.start()
        st = c.state
        recorded = _inprocess.end_recorded(c.dir, st.pid)
        assert recorded is not None and not recorded.is_set()
        assert _inprocess.end_recorded(c.dir, st.pid + 1) is None
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child exits at once)
            os._exit(0 if _inprocess.end_recorded(c.dir, st.pid) is None else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        c.kill()
        assert c.wait(timeout=60).exit_code == 137
        assert recorded.is_set()
        assert os.path.exists(os.path.join(c.dir, "exit.json"))
        assert _inprocess.end_recorded(c.dir, st.pid) is None
    finally:
        c.remove(force=True)


def test_the_mount_points_an_image_lacks_are_looked_up_once_per_image_and_points(
        containers: ContainerStore) -> None:
    """Containers of one image and the same mount points make the same mount-point layer
    from one lookup; another set of points (a tmpfs where the image has nothing) is looked
    up for itself and gets its point made."""
    from isolate.container import TmpfsMount
    from isolate.container import container as ctr

    ctr._MISSING_POINTS.clear()
    a = containers.create(ContainerConfig("busybox", ["true"]))
    b = containers.create(ContainerConfig("busybox", ["true"]))
    assert len(ctr._MISSING_POINTS) == 1

    def tree(c: Container) -> list[str]:
        top = os.path.join(c.dir, "mountpoints")
        return sorted(os.path.relpath(os.path.join(d, n), top)
                      for d, dirs, files in os.walk(top) for n in dirs + files)

    assert tree(a) == tree(b) and "etc/hostname" in tree(a)
    c = containers.create(ContainerConfig("busybox", ["true"],
                                          mounts=[TmpfsMount("/newdir/deep")]))
    assert len(ctr._MISSING_POINTS) == 2
    assert "newdir/deep" in tree(c) and "newdir" not in tree(a)
    c.start()
    assert c.wait(timeout=60).exit_code == 0


def test_a_first_start_in_the_creating_process_reuses_the_runtime_config_create_built(
        containers: ContainerStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create builds (and so validates) the runtime config; a start in the same process from
    the same facts takes it instead of building it again. A start with facts create did not
    have (a volume's directory), a second start, a start through another handle of the store:
    each builds its own, and every one of them runs the container as asked."""
    from isolate.container import VolumeMount, preset

    built: list[object] = []
    real = preset.runtime_config

    def counting(*args: object, **kwargs: object) -> object:
        built.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(preset, "runtime_config", counting)
    c = containers.create(ContainerConfig("busybox", ["sh", "-c", "hostname; exit 3"]))
    assert len(built) == 1
    c.start()
    assert len(built) == 1, "the start took create's"
    assert c.wait(timeout=60).exit_code == 3
    c.start()  # a second start builds its own
    assert len(built) == 2 and c.wait(timeout=60).exit_code == 3
    assert [r.text for r in c.logs()] == [c.hostname + "\n"] * 2
    v = containers.create(ContainerConfig("busybox", ["true"], mounts=[VolumeMount(None, "/v")]))
    v.start()
    assert len(built) == 4 and v.wait(timeout=60).exit_code == 0
    d = containers.create(ContainerConfig("busybox", ["true"]))
    ContainerStore(containers.images).get(d.id).start()  # another store: nothing kept there
    assert len(built) == 6 and d.wait(timeout=60).exit_code == 0
    for made in (c, v, d):
        made.remove(volumes=True)


@pytest.mark.parametrize("supervisor", ["inprocess", "shim"])
def test_a_container_joins_the_network_namespace_made_ahead_and_finds_only_lo_up(
        image_store: object, supervisor: str) -> None:
    """A process starting containers one after another gives each the spare network
    namespace a thread made ahead (isolate._spare_netns), as its sandboxes: what a clone
    would have made, one per container; a container with a restart policy takes none."""
    import time

    from isolate import _spare_netns
    from isolate.container import RestartPolicy

    cs = ContainerStore(image_store, supervisor=supervisor)  # type: ignore[arg-type]
    made: list[Container] = []
    script = ("readlink /proc/self/ns/net; cat /sys/class/net/lo/flags; ls /sys/class/net; "
              "cat /proc/net/route /proc/net/tcp /proc/net/unix | wc -l")
    try:
        for _ in range(2):  # the second take asks the thread for a spare
            made.append(cs.create(ContainerConfig("busybox", ["true"])))
            made[-1].start()
        deadline = time.monotonic() + 10
        while not _spare_netns.held_fds() and time.monotonic() < deadline:
            time.sleep(0.005)
        (fd,) = _spare_netns.held_fds()
        spare = os.readlink(f"/proc/self/fd/{fd}")
        c = cs.create(ContainerConfig("busybox", ["sleep", "60"]))
        made.append(c)
        c.start()
        assert os.readlink(f"/proc/{c.state.pid}/ns/net") == spare
        code, out, err = c.exec_run(["sh", "-c", script])
        assert code == 0, err
        ns, flags, *devices, lines = out.split()
        assert ns.decode() == spare
        assert int(flags, 16) & 1 and devices == [b"lo"] and lines == b"3"
        # Each container gets one of its own: the next spare is another namespace.
        other = cs.create(ContainerConfig("busybox", ["sleep", "60"]))
        made.append(other)
        other.start()
        assert os.readlink(f"/proc/{other.state.pid}/ns/net") != spare
        # A restart policy: every run gets a namespace the clone makes (none is taken).
        deadline = time.monotonic() + 10
        while not _spare_netns.held_fds() and time.monotonic() < deadline:
            time.sleep(0.005)
        if supervisor == "shim":
            (kept,) = _spare_netns.held_fds()
            before = os.readlink(f"/proc/self/fd/{kept}")
            restarting = cs.create(ContainerConfig("busybox", ["sleep", "60"],
                                                   restart=RestartPolicy("on-failure", 3)))
            made.append(restarting)
            restarting.start()
            assert os.readlink(f"/proc/{restarting.state.pid}/ns/net") != before
            assert os.readlink(f"/proc/self/fd/{kept}") == before
    finally:
        for m in made:
            m.remove(force=True)


@pytest.mark.parametrize("supervisor", ["inprocess", "shim"])
def test_an_auto_remove_containers_root_skips_the_sync_at_its_end_and_a_kept_ones_does_not(
        containers: ContainerStore, supervisor: str) -> None:
    """As podman mounts a ``--rm`` container's root: its writes end with its run, so the
    overlay's unmount need not sync the store's filesystem. A container that is kept keeps
    Docker's durable root. A second run of the same root (a restart) mounts again, which a
    volatile overlay's work dir refuses until its mark is gone."""
    need_volatile_overlays()
    cs = ContainerStore(containers.images, supervisor=supervisor)
    made = []
    try:
        gone = cs.create(ContainerConfig("busybox", ["sleep", "60"], auto_remove=True))
        kept = cs.create(ContainerConfig("busybox", ["sleep", "60"]))
        made += [gone, kept]
        for c in made:
            c.start()
        assert root_is_volatile(mountinfo(gone.state.pid))
        assert not root_is_volatile(mountinfo(kept.state.pid))
        assert gone.exec_run(["sh", "-c", "echo kept > /written"])[0] == 0
        mark = os.path.join(gone.dir, "work", "work", "incompat", "volatile")
        assert os.path.isdir(mark)
        first = gone.state.pid
        gone.restart(timeout=0)
        st = gone.state
        assert st.status.value == "running" and st.pid != first
        assert root_is_volatile(mountinfo(st.pid))
        code, out, _ = gone.exec_run(["cat", "/written"])
        assert (code, out) == (0, b"kept\n")
    finally:
        for c in made:
            c.remove(force=True)


def test_a_volatile_overlays_work_dir_mounts_again_once_its_mark_is_cleared(
        tmp_path: Path) -> None:
    """The mark is what makes a second mount fail (EINVAL, "incompat feature 'volatile'");
    clear_volatile removes it and nothing else."""
    need_volatile_overlays()
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    (tmp_path / "lower" / "f").write_text("from below\n")
    opts = f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work"
    merged = tmp_path / "merged"

    def mount_write_unmount(extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             f"mount -t overlay overlay -o {opts}{extra} {merged} && echo up > {merged}/g"
             f" && cat {merged}/f {merged}/g && umount {merged}"],
            capture_output=True, text=True, check=False)

    first = mount_write_unmount(",volatile")
    assert first.returncode == 0 and first.stdout == "from below\nup\n", first.stderr
    again = mount_write_unmount("")
    assert again.returncode != 0  # the mark refuses any mount of this work dir
    _sys.clear_volatile(str(tmp_path / "work"))
    assert not (tmp_path / "work" / "work" / "incompat" / "volatile").exists()
    for extra in ("", ",volatile"):
        _sys.clear_volatile(str(tmp_path / "work"))
        done = mount_write_unmount(extra)
        assert done.returncode == 0 and done.stdout == "from below\nup\n", done.stderr
    _sys.clear_volatile(str(tmp_path / "nothing-here"))  # raises nothing


def test_a_containers_group_is_made_only_where_its_processes_go(
        containers: ContainerStore) -> None:
    # A v1 group the container's processes never join would be made and removed at every
    # run for nothing: cpuset is joined for a cpuset limit alone, devices unless privileged.
    from isolate.cgroups import Limits
    from isolate.cgroups.cgroup import _base_of

    layout = host_layout()
    cpuset = layout.v1_for("cpuset")
    if cpuset is None:
        pytest.skip("this host has no v1 cpuset hierarchy")
    for limits, privileged, joins_cpuset in ((None, False, False),
                                             (Limits(cpuset_cpus="0"), False, True),
                                             (None, True, False)):
        c = containers.create(ContainerConfig("busybox", ["sleep", "60"], limits=limits,
                                              privileged=privileged))
        try:
            c.start()
            st = c.state
            assert st.cgroup is not None and st.pid
            groups = {frozenset(k.split(",")): v for k, v in _groups(st.pid).items()}
            for h in layout.v1:
                made = os.path.isdir(os.path.join(_base_of(h), c.id))
                joined = groups.get(frozenset(h.controllers), "").rstrip("/").endswith(c.id)
                assert (h.key in st.cgroup) == made == joined, (h.key, limits, privileged)
            assert (cpuset.key in st.cgroup) is joins_cpuset
            devices = layout.v1_for("devices")
            if devices is not None:
                assert (devices.key in st.cgroup) is not privileged
            # Everything that reads the group back works on the hierarchies it has.
            assert c.stats(interval=0.05).pids >= 1
            c.pause()
            c.unpause()
            assert c.exec_run(["true"])[0] == 0
        finally:
            c.remove(force=True)
        assert not any(os.path.isdir(d) for d in (st.cgroup or {}).values())
