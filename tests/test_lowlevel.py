"""Tests of isolate.lowlevel.spawn on the real kernel: plans run in order, a failing step comes
back as a typed error naming itself, parent steps run while the child waits, and nothing of a
failed child is left behind."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence

import pytest

from isolate import _plan, lowlevel
from isolate._plan import Mode, Op, OpKind, Plan
from isolate.errors import ConfigError, MountError, NamespaceError, SpawnError
from isolate.fs.mounts import MS_REC, MS_SLAVE

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("spawning into new namespaces needs root")


@pytest.fixture
def tmp_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="isolate-lowlevel-")
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", path], check=True)


def exec_op(*argv: str) -> Op:
    return _plan.exec_(argv[0], list(argv), {"PATH": "/usr/bin:/bin"})


def output_of(p: Plan, tail: list[Op],
              more_fds: Sequence[tuple[int, int, bool]] = ()) -> tuple[int, bytes]:
    """Spawn ``p`` + an fd op giving it a pipe as stdout (and ``more_fds``) + ``tail``; return
    (status, output)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        full = Plan(p.clone_flags, p.mode).extend(p.ops)
        full.add(_plan.fds([(w, 1, False), (2, 2, False), *more_fds]))
        full.extend(tail)
        with lowlevel.spawn(full) as child:
            os.close(w)
            w = -1
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
            return child.wait(), b"".join(chunks)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_spawn_runs_the_program_and_its_pidfd_turns_readable_at_exit() -> None:
    p = Plan().add(exec_op("/bin/sh", "-c", "exit 7"))
    with lowlevel.spawn(p) as child:
        ready, _, _ = select.select([child.fileno()], [], [], 30)
        assert ready == [child.fileno()]
        assert child.wait() == 7
        assert child.poll() == 7


def test_a_new_pid_namespace_makes_the_child_pid_1() -> None:
    p = Plan(_plan.CLONE_NEWPID | _plan.CLONE_NEWNS)
    status, out = output_of(p, [exec_op("/bin/sh", "-c", "echo $$")])
    assert (status, out) == (0, b"1\n")


def test_fork_into_pidns_reports_the_grandchild_pid_and_it_is_pid_1_inside() -> None:
    p = Plan(0, Mode.FORK).add(Op(OpKind.FORK_INTO_PIDNS, a=-1))
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        p.add(_plan.fds([(w, 1, False)]))
        p.add(exec_op("/bin/sh", "-c", "echo $$; exec /bin/sleep 1000"))
        with lowlevel.spawn(p) as child:
            os.close(w)
            w = -1
            assert os.read(r, 100) == b"1\n"
            # The pid we hold is the grandchild (the program itself), not the helper.
            with open(f"/proc/{child.pid}/status") as f:
                nspid = [line.split()[1:] for line in f if line.startswith("NSpid:")]
            assert nspid == [[str(child.pid), "1"]]
            child.kill()
            assert child.wait() == -9
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def init_plan(mode: Mode) -> Plan:
    """A plan whose child makes a pid namespace, mounts its /proc and runs an INIT."""
    flags = _plan.CLONE_NEWNS | (_plan.CLONE_NEWPID if mode is Mode.FORK else 0)
    p = Plan(flags, mode).add(_plan.mount(None, "/", None, MS_REC | MS_SLAVE))
    if mode is Mode.VFORK:
        p.add(Op(OpKind.FORK_INTO_PIDNS, a=-1))
    return p.extend([_plan.mount("proc", "/proc", "proc"), _plan.init()])


@pytest.mark.parametrize("mode", [Mode.FORK, Mode.VFORK], ids=["fork", "vfork"])
def test_init_makes_the_program_pid_2_under_pid_1_and_passes_its_status_on(
        mode: Mode) -> None:
    script = "echo $$ $PPID $(cat /proc/1/comm); exit 7"
    assert output_of(init_plan(mode), [exec_op("/bin/sh", "-c", script)]) == (
        7, b"2 1 isolate-init\n")
    # Killed by a signal: the init exits 128 + N, its report says which signal it was.
    status, _ = output_of(init_plan(mode), [exec_op("/bin/sh", "-c", "kill -TERM $$")])
    assert status == -signal.SIGTERM


def test_init_in_a_vfork_child_is_refused_as_it_would_hold_us_suspended() -> None:
    p = Plan(_plan.CLONE_NEWPID, Mode.VFORK).extend([_plan.init(), exec_op("/bin/true")])
    with pytest.raises(ConfigError, match="INIT outlives the exec"):
        lowlevel.spawn(p)


def test_an_init_killed_itself_reports_its_own_status() -> None:
    p = init_plan(Mode.FORK).add(exec_op("/bin/sleep", "1000"))
    with lowlevel.spawn(p) as child:
        child.kill()
        assert child.wait() == -signal.SIGKILL


def test_a_failing_mount_step_is_a_mount_error_naming_the_step_and_target(
        tmp_dir: str) -> None:
    bad = _plan.mount("none", tmp_dir, "no-such-filesystem-type")
    p = Plan(_plan.CLONE_NEWNS).extend([Op(OpKind.CHDIR, s2=b"/"), bad, exec_op("/bin/true")])
    with pytest.raises(MountError) as info:
        lowlevel.spawn(p)
    err = info.value
    assert err.errno == errno.ENODEV
    assert err.step == "mount"
    assert err.op_index == 1
    assert err.filename == tmp_dir
    assert "no-such-filesystem-type" in str(err)
    assert err.pid is not None and not alive(err.pid)
    assert os.listdir(tmp_dir) == []


def test_a_failing_setns_is_a_namespace_error() -> None:
    p = Plan().extend([Op(OpKind.SETNS, a=-1, b=0, s2=b"/proc/self/no-such-ns"),
                       exec_op("/bin/true")])
    with pytest.raises(NamespaceError) as info:
        lowlevel.spawn(p)
    assert info.value.step == "setns"
    assert info.value.op_index == 0


@pytest.mark.parametrize(("argv", "code"), [
    (["/no/such/program"], errno.ENOENT),
    (["/proc/self/stat"], errno.EACCES),
])
def test_an_exec_failure_is_a_spawn_error_with_step_exec(argv: list[str], code: int) -> None:
    with pytest.raises(SpawnError) as info:
        lowlevel.spawn(Plan().add(exec_op(*argv)))
    assert (info.value.errno, info.value.step) == (code, "exec")
    assert info.value.filename == argv[0]
    assert info.value.pid is not None and not alive(info.value.pid)


def _dumpable() -> int:
    import ctypes

    return int(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE


@pytest.mark.parametrize("grandchild", [False, True], ids=["child", "pidns-grandchild"])
def test_a_vfork_child_that_changes_its_uid_leaves_the_caller_dumpable(grandchild: bool
                                                                       ) -> None:
    # It runs in our memory, which the kernel makes non-dumpable at its setresuid; once it has
    # exec'd, ours is ours again. (Otherwise, unprivileged, our later FORK children could not
    # be mapped by newuidmap, nor their namespaces opened.)
    assert _dumpable() == 1
    p = Plan(0, Mode.VFORK)
    if grandchild:
        p.add(_plan.unshare(_plan.CLONE_NEWNS))
        p.add(_plan.fork_into_pidns())
    p.extend([_plan.setresgid(1000), _plan.setresuid(1000), exec_op("true")])
    with lowlevel.spawn(p) as child:
        assert child.wait() == 0
    assert _dumpable() == 1


def test_parent_step_runs_while_the_child_waits(tmp_dir: str) -> None:
    path = os.path.join(tmp_dir, "written-by-parent")
    seen: list[int] = []

    def step(pid: int) -> None:
        seen.append(pid)
        assert alive(pid)  # waiting at WAIT_PARENT, not yet exec'd
        with open(path, "w") as f:
            f.write("hello")

    p = Plan(0, Mode.FORK).add(Op(OpKind.WAIT_PARENT))
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        p.add(_plan.fds([(w, 1, False)]))
        p.add(exec_op("/bin/cat", path))
        with lowlevel.spawn(p, parent_step=step) as child:
            os.close(w)
            w = -1
            assert os.read(r, 100) == b"hello"
            assert child.wait() == 0
            assert seen == [child.pid]
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_a_parent_step_that_raises_kills_and_reaps_the_child() -> None:
    pids: list[int] = []

    def step(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("parent step failed on purpose")

    p = Plan(0, Mode.FORK).extend([Op(OpKind.WAIT_PARENT), exec_op("/bin/sleep", "1000")])
    with pytest.raises(RuntimeError, match="on purpose"):
        lowlevel.spawn(p, parent_step=step)
    assert pids and not alive(pids[0])
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)


def test_wait_parent_needs_fork_mode_and_a_parent_step() -> None:
    with pytest.raises(ConfigError, match=r"Mode\.FORK"):
        lowlevel.spawn(Plan(0, Mode.VFORK).add(Op(OpKind.WAIT_PARENT)))
    with pytest.raises(ConfigError, match="parent_step"):
        lowlevel.spawn(Plan(0, Mode.FORK).add(Op(OpKind.WAIT_PARENT)))


def test_the_fds_op_closes_every_fd_not_listed_even_inheritable_ones() -> None:
    leaked = os.open("/etc/hostname", os.O_RDONLY)  # inheritable on purpose
    os.set_inheritable(leaked, True)
    try:
        status, out = output_of(Plan(), [exec_op("/bin/ls", "/proc/self/fd")])
    finally:
        os.close(leaked)
    assert status == 0
    seen = sorted(int(x) for x in out.split())
    # stdout, stderr, and the directory ls opened on the lowest free number; nothing else.
    assert len(seen) == 3 and {1, 2} <= set(seen)
    assert leaked not in seen


def test_a_moved_fd_lands_on_its_target_number() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"payload")
        f.flush()
        os.lseek(f.fileno(), 0, os.SEEK_SET)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            p = Plan().extend([_plan.fds([(w, 1, False), (f.fileno(), 7, False)]),
                               exec_op("/bin/sh", "-c", "cat <&7")])
            with lowlevel.spawn(p) as child:
                os.close(w)
                w = -1
                assert os.read(r, 100) == b"payload"
                assert child.wait() == 0
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)


def test_userns_probe_is_true_where_user_namespaces_work() -> None:
    probe = subprocess.run(["unshare", "--user", "true"], check=False)
    assert lowlevel.userns_available() is (probe.returncode == 0)


def test_lowlevel_spawn_creates_a_user_namespace_as_an_unprivileged_uid() -> None:
    from rootless import run_unprivileged

    code = (
        "import os\n"
        "from isolate import _plan, lowlevel\n"
        "from isolate._plan import Mode, Op, OpKind, Plan\n"
        "uid = os.getuid()\n"
        "def maps(pid):\n"
        "    open(f'/proc/{pid}/setgroups', 'w').write('deny')\n"
        "    open(f'/proc/{pid}/uid_map', 'w').write(f'0 {uid} 1')\n"
        "    open(f'/proc/{pid}/gid_map', 'w').write(f'0 {os.getgid()} 1')\n"
        "r, w = os.pipe2(os.O_CLOEXEC)\n"
        "p = Plan(_plan.CLONE_NEWUSER | _plan.CLONE_NEWNS | _plan.CLONE_NEWPID, Mode.FORK)\n"
        "p.extend([Op(OpKind.WAIT_PARENT), _plan.fds([(w, 1, False)]),\n"
        "          _plan.exec_('/bin/sh', ['/bin/sh', '-c', 'echo $(id -u) $$'], {})])\n"
        "with lowlevel.spawn(p, parent_step=maps) as child:\n"
        "    os.close(w)\n"
        "    print(os.read(r, 100).decode().strip(), child.wait(), uid)\n"
    )
    out = run_unprivileged(code).stdout.split()
    assert out == ["0", "1", "0", "65534"]


def test_feature_probes_answer_for_this_kernel() -> None:
    # Linux 6.18 here: clone3 exists; as root a user namespace can always be made.
    assert lowlevel.clone3_works() is True
    assert lowlevel.userns_available() is True


# -- a child that did not run never looks like one that did -----------------------------------

def exited_pidfd() -> int:
    """A pidfd of a process that has exited (and been reaped)."""
    child = subprocess.Popen(["/bin/true"])
    fd = os.pidfd_open(child.pid)
    child.wait()
    return fd


def test_pdeathsig_with_a_parent_that_already_died_is_an_error_not_an_exec() -> None:
    dead = exited_pidfd()
    try:
        p = Plan().extend([_plan.pdeathsig(signal.SIGKILL, parent_pidfd=dead),
                           exec_op("/bin/true")])
        with pytest.raises(SpawnError) as info:
            lowlevel.spawn(p)
    finally:
        os.close(dead)
    err = info.value
    assert (err.errno, err.step, err.op_index) == (errno.ESRCH, "pdeathsig", 0)
    assert "the parent had already exited" in str(err)
    assert err.pid is not None and not alive(err.pid)


def test_a_raw_pdeathsig_op_with_b_left_at_0_says_fd_0_is_not_a_pidfd() -> None:
    # b=0 is fd 0: stdin, never a pidfd. It used to _exit(137) and look like an exec.
    with pytest.raises(SpawnError) as info:
        lowlevel.spawn(Plan().extend([Op(OpKind.PDEATHSIG, a=signal.SIGKILL),
                                      exec_op("/bin/true")]))
    assert (info.value.errno, info.value.step) == (errno.EBADF, "pdeathsig")
    assert "not a pidfd" in str(info.value)


@pytest.mark.parametrize("how", ["clone", "fork_into_pidns"])
def test_pdeathsig_without_a_pidfd_in_a_new_pid_namespace_says_it_cannot_tell(
        how: str) -> None:
    # There getppid() is 0, so the old check always "found" the parent dead.
    if how == "clone":
        p = Plan(_plan.CLONE_NEWPID)
    else:
        p = Plan(0, Mode.FORK).add(_plan.fork_into_pidns())
    p.extend([_plan.pdeathsig(), exec_op("/bin/true")])
    with pytest.raises(SpawnError) as info:
        lowlevel.spawn(p)
    assert (info.value.errno, info.value.step) == (errno.EINVAL, "pdeathsig")
    assert "pass parent_pidfd" in str(info.value)


def test_pdeathsig_with_a_live_parent_runs_the_program_in_and_out_of_a_pid_namespace() -> None:
    me = os.pidfd_open(os.getpid())
    try:
        for p in (Plan().add(_plan.pdeathsig()),
                  Plan(_plan.CLONE_NEWPID).add(_plan.pdeathsig(parent_pidfd=me))):
            p.add(exec_op("/bin/sh", "-c", "exit 5"))
            with lowlevel.spawn(p) as child:
                assert child.wait() == 5
    finally:
        os.close(me)


@pytest.mark.parametrize("mode", [Mode.FORK, Mode.VFORK], ids=["fork", "vfork"])
def test_a_failure_after_fork_into_pidns_or_under_an_init_is_reported(mode: Mode) -> None:
    for p in (Plan(0, mode).add(_plan.fork_into_pidns()), init_plan(mode)):
        p.add(exec_op("/no/such/program"))
        with pytest.raises(SpawnError) as info:
            lowlevel.spawn(p)
        # The index is the caller's: spawn's own KEEP_FDS op before the exec is not counted.
        assert (info.value.errno, info.value.step, info.value.op_index) == (
            errno.ENOENT, "exec", len(p.ops) - 1)
        assert info.value.pid is not None and not alive(info.value.pid)


def test_a_hand_made_op_with_a_wrong_field_is_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match=r"op 0: CHDIR op: chdir does not use s1"):
        lowlevel.spawn(Plan().extend([Op(OpKind.CHDIR, s1=b"/"), exec_op("/bin/true")]))


# -- the caller's fds stay with the caller unless passed ----------------------------------------

def _asleep(pid: int) -> bool:
    """Whether ``pid`` waits in nanosleep or clock_nanosleep (its /proc/PID/syscall)."""
    import platform

    from isolate._syscalls import AARCH64, X86_64

    table = {"x86_64": X86_64, "aarch64": AARCH64}.get(platform.machine())
    if table is None:
        pytest.skip(f"no system call table for {platform.machine()}")
    with open(f"/proc/{pid}/syscall") as f:
        first = f.read().split(maxsplit=1)[:1]
    return bool(first) and first[0].isdigit() and int(first[0]) in (
        table["nanosleep"], table["clock_nanosleep"])


def fds_seen(**spawn_args: object) -> set[int]:
    """The fds a spawned program has open once it runs (read from its /proc/PID/fd)."""
    p = Plan().add(exec_op("/bin/sleep", "1000"))  # sleep opens nothing of its own
    with lowlevel.spawn(p, **spawn_args) as child:  # type: ignore[arg-type]
        try:
            # Until the exec has happened the child may still hold its close-on-exec fds, and
            # right after it the dynamic loader holds the libraries it maps (a loaded machine
            # shows both): read them once sleep sleeps, in its (clock_)nanosleep call.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _asleep(child.pid):
                time.sleep(0.01)
            return {int(fd) for fd in os.listdir(f"/proc/{child.pid}/fd")}
        finally:
            child.kill()
            child.wait()


def test_spawn_closes_the_callers_inheritable_fds_unless_passed() -> None:
    leaked = os.open("/etc/hostname", os.O_RDONLY)
    os.set_inheritable(leaked, True)
    passed = os.open("/etc/hostname", os.O_RDONLY)  # not inheritable: pass_fds makes it so
    try:
        assert fds_seen(pass_fds=[passed]) == {0, 1, 2, passed}
        assert fds_seen() == {0, 1, 2}
        assert leaked in fds_seen(close_fds=False)
    finally:
        os.close(leaked)
        os.close(passed)


def test_pass_fds_is_refused_where_the_plan_decides_itself() -> None:
    with pytest.raises(ConfigError, match="its own FDS or KEEP_FDS op"):
        lowlevel.spawn(Plan().extend([_plan.fds([(1, 1, False)]), exec_op("/bin/true")]),
                       pass_fds=[1])
    with pytest.raises(ConfigError, match="pass_fds needs close_fds=True"):
        lowlevel.spawn(Plan().add(exec_op("/bin/true")), pass_fds=[1], close_fds=False)


def test_an_fd_to_keep_that_is_not_open_is_an_error_naming_pass_fds() -> None:
    closed = 987
    with pytest.raises(OSError):
        os.fstat(closed)
    with pytest.raises(SpawnError) as info:
        lowlevel.spawn(Plan().add(exec_op("/bin/true")), pass_fds=[closed])
    assert (info.value.errno, info.value.step, info.value.op_index) == (
        errno.EBADF, "keep_fds", None)
    assert "pass_fds" in str(info.value)


# -- the builders on the real kernel ----------------------------------------------------------

def test_umount_removes_a_mount_made_earlier_in_the_plan(tmp_dir: str) -> None:
    def plan(unmount: bool) -> Plan:
        p = Plan(_plan.CLONE_NEWNS).extend([
            _plan.mount(None, "/", flags=_plan.MS_REC | _plan.MS_PRIVATE),
            _plan.mount("tmpfs", tmp_dir, "tmpfs"),
            _plan.write_file(f"{tmp_dir}/on-tmpfs", b"x", create=True)])
        if unmount:
            p.add(_plan.umount(tmp_dir))
        return p.add(exec_op("/bin/sh", "-c", f"test -e {tmp_dir}/on-tmpfs"))

    for unmount, status in ((False, 0), (True, 1)):
        with lowlevel.spawn(plan(unmount)) as child:
            assert child.wait() == status
    assert os.listdir(tmp_dir) == []


def test_an_effective_set_without_setuid_makes_the_id_change_fail() -> None:
    from isolate import security

    every = security.read_process_caps().permitted
    without = every - security.CapabilitySet(["CAP_SETUID"])
    for effective, error in ((None, None), (without, errno.EPERM)):
        p = Plan().extend([_plan.capabilities(every, effective=effective),
                           _plan.setresuid(65534), exec_op("/bin/true")])
        if error is None:
            with lowlevel.spawn(p) as child:
                assert child.wait() == 0
        else:
            with pytest.raises(SpawnError) as info:
                lowlevel.spawn(p)
            assert (info.value.errno, info.value.step, info.value.op_index) == (
                error, "setresuid", 1)


def test_ids_capabilities_rlimits_and_no_new_privs_reach_the_program() -> None:
    from isolate import security

    chown = security.CapabilitySet(["CAP_CHOWN"])
    p = Plan().extend([
        _plan.rlimit("nofile", 64, 128),
        _plan.bounding_set(chown),
        _plan.keep_caps(),
        _plan.setgroups([65533]),
        _plan.setresgid(65534),
        _plan.setresuid(65534),
        _plan.capabilities(chown, ambient=chown),
        _plan.no_new_privs(),
    ])
    script = ("echo $(id -u) $(id -g) $(id -G) $(ulimit -n) $(ulimit -Hn); "
              "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status")
    status, out = output_of(p, [exec_op("/bin/sh", "-c", script)])
    assert status == 0, out
    lines = out.decode().splitlines()
    assert lines[0] == "65534 65534 65534 65533 64 128"  # id -G: the gid, then the groups
    fields = dict(line.split(":\t") for line in lines[1:])
    assert fields == {"CapEff": "0000000000000001", "CapBnd": "0000000000000001",
                      "CapAmb": "0000000000000001", "NoNewPrivs": "1"}


def test_a_nofile_limit_below_the_callers_fd_numbers_still_gives_the_program_its_fds() -> None:
    # The child arranges its fds (the FDS op at the exec) after the RLIMIT op, moving them
    # above the highest number it names: under the new limit that move would fail (EINVAL).
    filler = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(80)]
    data_r = -1
    try:
        data_r, data_w = os.pipe2(os.O_CLOEXEC)
        os.write(data_w, b"given")
        os.close(data_w)
        assert data_r > 64  # and so is the stdout pipe output_of makes next
        p = Plan().extend([
            _plan.rlimit("nofile", 64, 64),
            _plan.setresuid(65534),  # lowering needs no privilege: after the ids change too
        ])
        script = "echo $(ulimit -n) $(ulimit -Hn) $(cat <&3); ls /proc/self/fd"
        status, out = output_of(p, [exec_op("/bin/sh", "-c", script)], [(data_r, 3, False)])
    finally:
        for fd in (*filler, data_r):
            if fd >= 0:
                os.close(fd)
    lines = out.decode().splitlines()
    assert status == 0, lines
    assert lines[0] == "64 64 given"
    # ls's own fds: stdout, stderr, fd 3, and the directory it opened; nothing of the caller's.
    seen = sorted(int(x) for x in lines[1:])
    assert len(seen) == 4 and {1, 2, 3} <= set(seen) and max(seen) < 64, seen


def test_mknod_makes_a_working_device_node_with_its_mode_and_owner(tmp_dir: str) -> None:
    node = f"{tmp_dir}/null"
    p = Plan(_plan.CLONE_NEWNS).extend([
        _plan.mount(None, "/", flags=_plan.MS_REC | _plan.MS_PRIVATE),
        # Not the tmpfs default 1777: the kernel refuses O_CREAT opens of another user's
        # device node in a sticky world-writable directory.
        _plan.mount("tmpfs", tmp_dir, "tmpfs", 0, "mode=755"),
        _plan.umask(0o077),  # does not apply: the mode is set exactly
        _plan.mknod(node, "c", 1, 3, mode=0o666, uid=65534, gid=65533, in_root=False),
    ])
    script = f"stat -c '%t:%T %a %u:%g %F' {node} && echo data > {node}"
    status, out = output_of(p, [exec_op("/bin/sh", "-c", script)])
    assert (status, out) == (0, b"1:3 666 65534:65533 character special file\n")
    assert os.listdir(tmp_dir) == []  # it was made on the child's own tmpfs
