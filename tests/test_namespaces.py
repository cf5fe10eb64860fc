"""Namespace handles, creation, persistence, entering, joining and id maps, on the real kernel."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import isolate
import rootless
from isolate import _plan
from isolate._plan import Mode, OpKind
from isolate.errors import ConfigError, NamespaceError, UnsupportedError
from isolate.namespaces import (
    IdMap,
    IdMaps,
    Namespace,
    NamespaceKind,
    join_ops,
    parse_id_map,
    spawn_in,
    subordinate_ranges,
)

ALL_KINDS = [k.value for k in NamespaceKind]
# The directory the isolate under test was imported from (site-packages when installed, src/
# in a development checkout): subprocesses must import that same build.
SRC = str(Path(isolate.__file__).resolve().parents[1])

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# -- leave no trace -------------------------------------------------------------------------------

def _children() -> set[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [" ".join(line.split()[3:5]) for line in f]


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    """Every fd closed, every child reaped, every mount gone when a test ends."""
    fds, mounts, children = set(os.listdir("/proc/self/fd")), _mounts(), _children()
    yield
    gc.collect()
    assert set(os.listdir("/proc/self/fd")) == fds, "a test left file descriptors open"
    assert _mounts() == mounts, "a test left mounts behind"
    assert _children() == children, "a test left child processes (or zombies) behind"


@pytest.fixture
def nsdir(tmp_path: Path) -> Iterator[Path]:
    """A directory for persisted namespaces; anything still mounted there is unmounted."""
    d = tmp_path / "ns"
    d.mkdir()
    yield d
    for entry in d.iterdir():
        subprocess.run(["umount", "-l", str(entry)], capture_output=True, check=False)


def _ns_inode(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _run_capture(namespaces: object, argv: list[str], **kw: object) -> str:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with spawn_in(namespaces, argv, stdout=w, **kw) as child:  # type: ignore[arg-type]
            os.close(w)
            w = -1
            chunks = []
            while chunk := os.read(r, 65536):
                chunks.append(chunk)
            assert child.wait() == 0
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    return b"".join(chunks).decode()


def _run_root_python(code: str, *, wrapper: list[str] | None = None) -> str:
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run([*(wrapper or []), sys.executable, "-c", textwrap.dedent(code)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# -- kinds and id maps (no privileges needed) -----------------------------------------------------

def test_kinds_know_their_flag_and_proc_file() -> None:
    assert NamespaceKind.parse("network") is NamespaceKind.NET
    assert NamespaceKind.parse("mount") is NamespaceKind.MNT
    assert NamespaceKind.NET.flag == _plan.CLONE_NEWNET
    assert NamespaceKind.from_flag(_plan.CLONE_NEWTIME) is NamespaceKind.TIME
    assert NamespaceKind.PID.for_children == "pid_for_children"
    assert NamespaceKind.TIME.for_children == "time_for_children"
    assert NamespaceKind.NET.for_children is None
    assert len(ALL_KINDS) == 8
    for kind in NamespaceKind:
        assert kind.available() == os.path.exists(f"/proc/self/ns/{kind.value}")


def test_unknown_kind_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'nett'"):
        NamespaceKind.parse("nett")


def test_id_map_parses_both_spellings() -> None:
    assert IdMap.parse("0:1000:1") == IdMap(0, 1000, 1)
    assert IdMap.parse("0 100000 65536") == IdMap(0, 100000, 65536)
    assert IdMap.parse("5:6") == IdMap(5, 6, 1)
    assert parse_id_map("0:1000:1, 1:100000:65536") == (IdMap(0, 1000, 1),
                                                       IdMap(1, 100000, 65536))


@pytest.mark.parametrize("bad", ["0:1000:0", "x:1:1", "0:1:2:3", "0:4294967295:1"])
def test_bad_id_map_lines_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        IdMap.parse(bad)


def test_overlapping_id_map_ranges_are_rejected() -> None:
    with pytest.raises(ConfigError, match="inside ranges"):
        parse_id_map(["0:1000:10", "5:2000:1"])
    with pytest.raises(ConfigError, match="outside ranges"):
        parse_id_map(["0:1000:10", "20:1005:1"])


def test_id_map_longer_than_the_kernel_takes_is_rejected() -> None:
    lines = [IdMap(i, 100000 + i, 1) for i in range(341)]
    with pytest.raises(ConfigError, match="340"):
        parse_id_map(lines)
    assert len(parse_id_map(lines[:340])) == 340


def test_self_map_maps_our_own_ids_to_root() -> None:
    assert IdMap.self_map("uid") == IdMap(0, os.geteuid(), 1)
    assert IdMap.self_map("gid", inside=7) == IdMap(7, os.getegid(), 1)


def test_subordinate_ranges_match_by_name_and_by_uid(tmp_path: Path) -> None:
    f = tmp_path / "subuid"
    f.write_text("root:100000:65536\nother:300000:10\n0:500000:5\nbroken line\nroot:1:0\n")
    assert subordinate_ranges("uid", 0, path=f) == [range(100000, 165536), range(500000, 500005)]
    assert subordinate_ranges("uid", "root", path=f) == subordinate_ranges("uid", 0, path=f)
    assert subordinate_ranges("uid", "other", path=f) == [range(300000, 300010)]
    assert subordinate_ranges("uid", 0, path=tmp_path / "missing") == []


def test_subordinate_map_puts_our_id_at_root_and_ranges_after(tmp_path: Path) -> None:
    f = tmp_path / "subgid"
    f.write_text("root:100000:65536\nroot:500000:5\n")
    assert IdMap.subordinate_map("gid", "root", path=f) == (
        IdMap(0, 0, 1), IdMap(1, 100000, 65536), IdMap(65537, 500000, 5))
    with pytest.raises(UnsupportedError, match="no subordinate gids"):
        IdMap.subordinate_map("gid", "nobody", path=f)


def test_id_maps_are_named_by_their_lines_and_say_what_they_do_not_map() -> None:
    ranged = IdMaps("0:1000:1,1:100000:65536", [IdMap(0, 1000), IdMap(1, 100000, 65536)])
    same = IdMaps([IdMap(0, 1000), IdMap(1, 100000, 65536)], "0 1000 1\n1 100000 65536",
                  fallback="a note is not part of the maps")
    assert ranged == same and ranged.key == same.key and len(ranged.key) == 16
    assert IdMaps("0:1000:1", "0:1000:1").key != ranged.key
    assert ranged.subordinate and not IdMaps("0:1000:1", "0:1000:1").subordinate
    assert ranged.maps(1000, 65536) and not ranged.maps(gid=65537)
    ranged.check(65536, 0)
    with pytest.raises(UnsupportedError, match=r"^its process runs as gid 65537, which this "
                       r"rootless user namespace does not map \(it maps gids 0-65536\); ask "
                       r"the administrator for a larger range in /etc/subgid"):
        ranged.check(0, 65537, "its process")
    single = IdMaps("0:1000:1", "0:1000:1", fallback="only your own ids are mapped")
    with pytest.raises(UnsupportedError, match=r"maps uids 0\): only your own ids are mapped; "
                       r"or run as uid 0 \(--user 0"):
        single.check(5, None)
    with pytest.raises(ConfigError, match="at least one line"):
        IdMaps([], "0:1000:1")


def test_options_for_kinds_not_created_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="user namespace"):
        Namespace.create("net", uid_map="0:0:1")
    with pytest.raises(ConfigError, match="time namespace"):
        Namespace.create("net", offsets={"monotonic": 1})
    with pytest.raises(ConfigError, match="'realtime'"):
        Namespace.create("time", offsets={"realtime": 1})
    with pytest.raises(ConfigError, match="twice"):
        Namespace.create(["net", "network"])


# -- opening and identity -------------------------------------------------------------------------

def test_handles_of_the_same_namespace_are_equal() -> None:
    with Namespace.of_pid(os.getpid(), "net") as a, Namespace.current("net") as b, \
            Namespace.from_path("/proc/self/ns/net") as c:
        assert a == b == c and hash(a) == hash(c)
        assert a.inode == os.stat("/proc/self/ns/net").st_ino
        assert a.kind is NamespaceKind.NET
        assert f"net:[{a.inode}]" in repr(a)


def test_from_path_refuses_a_file_that_is_no_namespace(tmp_path: Path) -> None:
    f = tmp_path / "plain"
    f.write_text("")
    with pytest.raises(NamespaceError, match="not a namespace file"):
        Namespace.from_path(f)
    with pytest.raises(NamespaceError, match="is a uts namespace, not net"):
        Namespace.from_path("/proc/self/ns/uts", "net")


def test_of_pid_of_a_missing_process_is_a_namespace_error() -> None:
    with pytest.raises(NamespaceError) as info:
        Namespace.of_pid(2**22 + 12345, "net")
    assert info.value.errno is not None


def test_unclosed_handle_warns() -> None:
    ns = Namespace.current("uts")
    with pytest.warns(ResourceWarning, match="not closed"):
        del ns
        gc.collect()


# -- creating and joining, as root ----------------------------------------------------------------

@needs_root
@pytest.mark.root
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_created_namespace_is_new_and_a_spawned_child_joins_it(kind: str) -> None:
    with Namespace.create(kind) as ns, Namespace.current(kind) as ours:
        assert ns.kind is NamespaceKind(kind)
        assert ns != ours
        with spawn_in([ns], ["sleep", "1000"]) as child:
            assert _ns_inode(child.pid, kind) == ns.inode


@needs_root
@pytest.mark.root
def test_all_kinds_created_together_belong_to_the_new_user_namespace() -> None:
    with Namespace.create(ALL_KINDS) as nss:
        user = nss["user"]
        with Namespace.current("user") as ours, user.owner() as owner, \
                user.parent() as parent:
            assert owner == ours and parent == ours
        for kind in ALL_KINDS:
            if kind != "user":
                with nss[kind].owner() as owner:
                    assert owner == user, kind
        with spawn_in(nss, ["sleep", "1000"]) as child:
            for kind in ALL_KINDS:
                assert _ns_inode(child.pid, kind) == nss[kind].inode, kind


@needs_root
@pytest.mark.root
def test_first_process_in_a_created_pid_namespace_is_not_pid_1() -> None:
    with Namespace.create("pid") as ns:
        out = _run_capture([ns], ["sh", "-c", "echo $$"])
    assert int(out) > 1  # pid 1 is the namespace's own init, kept by the handle


@needs_root
@pytest.mark.root
def test_closing_a_created_pid_namespace_ends_it() -> None:
    ns = Namespace.create("pid")
    keeper = ns._keeper
    assert keeper is not None
    pid = keeper.child.pid
    ns.close()
    assert not os.path.exists(f"/proc/{pid}")


@needs_root
@pytest.mark.root
def test_root_writes_an_arbitrary_uid_map() -> None:
    with Namespace.create("user", uid_map="0:100000:65536", gid_map="0:100000:65536") as ns, \
            spawn_in([ns], ["sleep", "1000"]) as child:
        assert Path(f"/proc/{child.pid}/uid_map").read_text().split() == ["0", "100000",
                                                                         "65536"]
        assert Path(f"/proc/{child.pid}/gid_map").read_text().split() == ["0", "100000",
                                                                         "65536"]


@needs_root
@pytest.mark.root
def test_spawn_in_can_become_root_of_a_joined_user_namespace() -> None:
    with Namespace.create("user", uid_map="0:100000:10", gid_map="0:100000:10") as ns:
        out = _run_capture([ns], ["sh", "-c", "id -u; id -g"], uid=0, gid=0)
    assert out.split() == ["0", "0"]


@needs_root
@pytest.mark.root
def test_time_namespace_offsets_shift_the_childs_monotonic_clock() -> None:
    offset = 10 * 365 * 86400
    with Namespace.create("time", offsets={"monotonic": offset, "boottime": offset}) as ns:
        before = time.monotonic()
        with open("/proc/uptime") as f:
            uptime_before = float(f.read().split()[0])
        out = _run_capture([ns], [sys.executable, "-S", "-c",
                                  "import time; print(time.monotonic());"
                                  "print(open('/proc/uptime').read().split()[0])"])
    monotonic, uptime = (float(v) for v in out.split())
    assert monotonic >= before + offset
    assert uptime >= uptime_before + offset


@needs_root
@pytest.mark.root
def test_join_ops_order_user_first_pid_last_time_needs_fork() -> None:
    with Namespace.create(ALL_KINDS) as nss:
        ops, mode = join_ops(list(nss.values())[::-1])
        assert mode is Mode.FORK
        assert ops[0].kind is OpKind.SETNS and ops[0].b == _plan.CLONE_NEWUSER
        assert ops[-1].kind is OpKind.FORK_INTO_PIDNS and ops[-1].a == nss["pid"].fileno()
        assert [op.b for op in ops[:-1]].index(_plan.CLONE_NEWNS) < \
            [op.b for op in ops[:-1]].index(_plan.CLONE_NEWTIME)
        ops, mode = join_ops([nss["net"], nss["uts"]])
        assert mode is Mode.VFORK and len(ops) == 2


def test_join_ops_skips_our_own_user_namespace() -> None:
    with Namespace.current("user") as ours:
        assert join_ops([ours]) == ([], Mode.VFORK)


@needs_root
@pytest.mark.root
def test_join_ops_refuses_two_different_namespaces_of_a_kind() -> None:
    with Namespace.current("uts") as a, Namespace.create("uts") as b:
        assert len(join_ops([a, a])[0]) == 1
        with pytest.raises(ConfigError, match="two different uts"):
            join_ops([a, b])


def test_join_ops_refuses_a_closed_handle() -> None:
    ns = Namespace.current("uts")
    ns.close()
    with pytest.raises(ConfigError, match="closed"):
        join_ops([ns])


# -- entering from a thread -----------------------------------------------------------------------

@needs_root
@pytest.mark.root
@pytest.mark.parametrize("kind", ["net", "uts", "ipc", "cgroup"])
def test_enter_moves_only_the_calling_thread_and_restores_it(kind: str) -> None:
    result: dict[str, object] = {}
    main_tid = threading.get_native_id()

    def worker() -> None:
        try:
            with Namespace.current(kind) as before:
                with ns.enter():
                    with Namespace.current(kind) as inside:
                        result["inside"] = inside == ns
                    result["main_untouched"] = (
                        os.stat(f"/proc/self/task/{main_tid}/ns/{kind}").st_ino == before.inode)
                with Namespace.current(kind) as after:
                    result["restored"] = after == before
        except BaseException as exc:  # reported to the test below
            result["error"] = exc

    with Namespace.create(kind) as ns:
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert "error" not in result, result.get("error")
    assert result == {"inside": True, "main_untouched": True, "restored": True}


@needs_root
@pytest.mark.root
def test_entered_uts_namespace_has_its_own_hostname() -> None:
    import socket
    ours = socket.gethostname()
    seen: list[str] = []
    with Namespace.create("uts") as ns:
        def worker() -> None:
            with ns.enter():
                from isolate import _sys
                _sys.sethostname("isolate-test-uts")
                seen.append(socket.gethostname())
            seen.append(socket.gethostname())
        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert seen == ["isolate-test-uts", ours]
    assert socket.gethostname() == ours


def test_enter_refuses_user_and_pid_namespaces() -> None:
    for kind in ("user", "pid"):
        with Namespace.current(kind) as ns, \
                pytest.raises(UnsupportedError, match="spawn_in"), ns.enter():
            pass  # pragma: no cover


def test_enter_refuses_mount_and_time_namespaces_in_a_threaded_process() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        for kind in ("mnt", "time"):
            with Namespace.current(kind) as ns, \
                    pytest.raises(UnsupportedError, match="single-threaded"), ns.enter():
                pass  # pragma: no cover
    finally:
        stop.set()
        t.join()


# -- persisting -----------------------------------------------------------------------------------

@needs_root
@pytest.mark.root
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_persisted_namespace_outlives_its_creator_and_is_removed(kind: str, nsdir: Path) -> None:
    path = nsdir / kind
    # The creator is another process that exits right away: only the bind mount keeps it.
    inode = int(_run_root_python(f"""
        from isolate.namespaces import Namespace
        ns = Namespace.create({kind!r}, persist={str(path)!r})
        print(ns.inode)
        ns.close()
    """))
    assert any(line.endswith(f" {path}") for line in _mounts())
    assert os.stat(path).st_ino == inode
    with Namespace.from_path(path) as ns:
        assert ns.kind is NamespaceKind(kind) and ns.inode == inode
        with spawn_in([ns], ["sleep", "1000"]) as child:
            assert _ns_inode(child.pid, kind) == inode
    Namespace.remove(path)
    assert not path.exists()
    assert not any(line.endswith(f" {path}") for line in _mounts())


@needs_root
@pytest.mark.root
@pytest.mark.skipif(shutil.which("nsenter") is None, reason="nsenter is not installed")
def test_persisted_net_namespace_can_be_entered_like_ip_netns(nsdir: Path) -> None:
    path = nsdir / "testnet"
    with Namespace.create("net", persist=path) as ns:
        inode = ns.inode
    out = subprocess.run(["nsenter", f"--net={path}", "readlink", "/proc/self/ns/net"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"net:[{inode}]"
    Namespace.remove(path)


@needs_root
@pytest.mark.root
def test_namespace_set_persists_one_file_per_kind(nsdir: Path) -> None:
    with Namespace.create(["uts", "ipc"], persist=nsdir) as nss:
        inodes = {k.value: h.inode for k, h in nss.items()}
    assert sorted(os.listdir(nsdir)) == ["ipc", "uts"]
    for kind, inode in inodes.items():
        assert os.stat(nsdir / kind).st_ino == inode
        Namespace.remove(nsdir / kind)
    assert os.listdir(nsdir) == []


@needs_root
@pytest.mark.root
def test_persisting_on_an_existing_file_fails_and_keeps_it(nsdir: Path) -> None:
    f = nsdir / "taken"
    f.write_text("keep me")
    with pytest.raises(NamespaceError) as info, Namespace.create("uts", persist=f):
        pass  # pragma: no cover
    assert info.value.errno == 17
    assert f.read_text() == "keep me"


def test_remove_refuses_a_file_that_is_no_persisted_namespace(tmp_path: Path) -> None:
    f = tmp_path / "data"
    f.write_text("precious")
    with pytest.raises(NamespaceError, match="not a persisted namespace"):
        Namespace.remove(f)
    assert f.read_text() == "precious"
    with pytest.raises(NamespaceError):
        Namespace.remove(tmp_path / "missing")


@needs_root
@pytest.mark.root
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to run on")
def test_mount_namespace_persists_when_this_cpu_numbers_namespaces_below_ours(
    tmp_path: Path,
) -> None:
    # Since Linux 6.18 namespace ids come from per-CPU batches, and the kernel binds a mount
    # namespace only on a file of a namespace numbered below it. Here the caller's namespace is
    # made on the CPU with the highest batch, then create() starts on the lowest one.
    out = _run_root_python(f"""
        import ctypes, os
        from isolate import namespaces
        from isolate.namespaces import Namespace
        libc = ctypes.CDLL(None, use_errno=True)
        if namespaces._mnt_ns_id(os.open("/proc/self/ns/mnt", os.O_RDONLY)) is None:
            print("same batch")  # no NS_GET_MNTNS_ID before 6.10: ids are one sequence
            raise SystemExit
        def new_id(cpu):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.sched_setaffinity(0, {{cpu}})
                os._exit(libc.unshare(0x20000) or
                         os.write(w, namespaces._mnt_ns_id(os.open("/proc/self/ns/mnt", 0))
                                  .to_bytes(8, "little")) and 0)
            os.close(w)
            got = int.from_bytes(os.read(r, 8), "little")
            os.waitpid(pid, 0)
            return got
        cpus = sorted(os.sched_getaffinity(0))
        ids = {{cpu: new_id(cpu) for cpu in cpus}}
        top, low = max(cpus, key=ids.get), min(cpus, key=ids.get)
        if ids[top] // 4096 == ids[low] // 4096:
            print("same batch")
            raise SystemExit
        os.sched_setaffinity(0, {{top}})
        assert libc.unshare(0x20000) == 0
        assert libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0
        os.sched_setaffinity(0, {{low}})
        path = {str(tmp_path / "mnt")!r}
        ns = Namespace.create("mnt", persist=path)
        print(os.sched_getaffinity(0) == {{low}}, ns.inode == os.stat(path).st_ino)
        ns.close()
        Namespace.remove(path)
    """)
    if out.strip() == "same batch":
        pytest.skip("the CPUs' namespace ids are in one batch: the kernel numbers them in order")
    assert out.split() == ["True", "True"]


@needs_root
@pytest.mark.root
def test_mount_namespace_persists_below_a_shared_mount(tmp_path: Path) -> None:
    # In a throwaway mount namespace: a shared tmpfs, where the kernel refuses to bind a mount
    # namespace file until the directory is a private mount of its own.
    _persist_below_a_shared_mount(tmp_path / "shared")


def _persist_below_a_shared_mount(base: Path) -> None:
    base.mkdir()
    out = _run_root_python(f"""
        import os
        from isolate.namespaces import Namespace
        d = os.path.join({str(base)!r}, "sub")
        os.mkdir(d)
        before = os.path.join(d, "mnt")
        # "unchanged": the new namespace's copy of the shared tmpfs is a peer of ours.
        ns = Namespace.create("mnt", persist=before, propagation="unchanged")
        with Namespace.from_path(before) as again:
            print(again == ns)
        ns.close()
        Namespace.remove(before)
        info = open("/proc/self/mountinfo").read()
        print(any(line.split()[4] == d and "shared:" not in line
                  for line in info.splitlines()))
    """, wrapper=["unshare", "--mount", "--propagation", "unchanged", "sh", "-c",
                  f'mount -t tmpfs none {base} && mount --make-shared {base} && exec "$@"',
                  "sh"])
    assert out.split() == ["True", "True"]


@needs_root
@pytest.mark.root
def test_persisting_our_own_mount_namespace_is_refused_with_the_reason(nsdir: Path) -> None:
    with Namespace.current("mnt") as ours, pytest.raises(NamespaceError, match="numbers below it"):
        ours.persist(nsdir / "self")
    assert not (nsdir / "self").exists()


# -- host without user namespaces -----------------------------------------------------------------

@needs_root
@pytest.mark.userns
def test_forbidden_user_namespaces_give_a_clear_unsupported_error() -> None:
    # user.max_user_namespaces=0 inside a user namespace of our own: the host stays untouched.
    out = _run_root_python("""
        from isolate.errors import UnsupportedError
        from isolate.namespaces import Namespace
        try:
            Namespace.create(["user", "net"])
        except UnsupportedError as exc:
            print("unsupported:", exc.missing, "|", exc)
    """, wrapper=["unshare", "--user", "--map-root-user", "sh", "-c",
                  'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"])
    assert out.startswith("unsupported: user namespaces |")
    assert "max_user_namespaces" in out


# -- rootless, as an unprivileged uid -------------------------------------------------------------

@pytest.mark.userns
def test_rootless_user_creates_and_joins_all_kinds_mapped_to_root() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        import json, os
        from isolate.namespaces import Namespace, NamespaceKind, spawn_in
        res = {"uid": os.getuid()}
        with Namespace.create([k.value for k in NamespaceKind]) as nss:
            for kind, ns in nss.items():
                with Namespace.current(kind) as ours:
                    res[kind.value] = [ns != ours]
            with spawn_in(nss, ["sleep", "1000"]) as child:
                for kind, ns in nss.items():
                    res[kind.value].append(
                        os.stat(f"/proc/{child.pid}/ns/{kind.value}").st_ino == ns.inode)
                res["uid_map"] = open(f"/proc/{child.pid}/uid_map").read().split()
        print(json.dumps(res))
    """)).stdout
    res = json.loads(out)
    assert res.pop("uid") == 65534
    assert res.pop("uid_map") == ["0", "65534", "1"]
    assert res == {kind: [True, True] for kind in ALL_KINDS}


@pytest.mark.userns
def test_rootless_namespace_without_a_user_namespace_says_how_to_do_it() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        from isolate.errors import NamespaceError
        from isolate.namespaces import Namespace
        try:
            Namespace.create("net")
        except NamespaceError as exc:
            print(exc.errno, exc)
    """)).stdout
    assert out.startswith("1 ") and "new user namespace" in out


@pytest.mark.userns
def test_rootless_map_of_other_ids_without_subuid_ranges_is_refused() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        from isolate.errors import IsolateError
        from isolate.namespaces import Namespace
        try:
            Namespace.create("user", uid_map="0:200000:10")
        except IsolateError as exc:
            print(type(exc).__name__, exc)
    """), keep_bounding_set=True).stdout
    assert out.startswith(("NamespaceError newuidmap", "UnsupportedError"))


@pytest.mark.userns
def test_rootless_subordinate_ids_are_mapped_with_newuidmap() -> None:
    # The range is the run's own (bound over /etc/subuid and /etc/subgid in its mount
    # namespace); nothing of the machine's is changed.
    out = rootless.run_unprivileged(textwrap.dedent("""
        import json
        from isolate.namespaces import IdMap, Namespace, spawn_in
        uids, gids = IdMap.subordinate_map("uid"), IdMap.subordinate_map("gid")
        with Namespace.create("user", uid_map=uids, gid_map=gids) as ns, \\
                spawn_in([ns], ["sleep", "1000"]) as child:
            print(json.dumps([open(f"/proc/{child.pid}/{m}").read().split()
                              for m in ("uid_map", "gid_map")]))
    """), subids=True).stdout
    expected = ["0", "65534", "1", "1", str(rootless.SUBID_START), str(rootless.SUBID_COUNT)]
    assert json.loads(out) == [expected, expected]



@pytest.mark.userns
def test_rootless_persist_and_enter_on_the_host_fail_with_the_reason() -> None:
    out = rootless.run_unprivileged(textwrap.dedent("""
        import os, tempfile, threading
        from isolate.errors import NamespaceError
        from isolate.namespaces import Namespace
        target = os.path.join(tempfile.mkdtemp(), "net")
        with Namespace.create(["user", "net"]) as nss:
            try:
                nss["net"].persist(target)
            except NamespaceError as exc:
                print("persist", exc.errno, "CAP_SYS_ADMIN" in str(exc), os.path.exists(target))
            def enter():
                try:
                    with nss["net"].enter():
                        pass
                except NamespaceError as exc:
                    print("enter", exc.errno, "CAP_SYS_ADMIN" in str(exc))
            t = threading.Thread(target=enter)
            t.start()
            t.join()
        os.rmdir(os.path.dirname(target))
    """)).stdout
    assert out.split("\n")[:2] == ["persist 1 True False", "enter 1 True"]
