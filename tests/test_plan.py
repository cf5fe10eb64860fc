"""Tests of the spawn protocol's Python half (isolate._plan): its numbers agree with the C
header, and every plan survives encode -> decode unchanged, also through freeze()/extended()."""

from __future__ import annotations

import enum
import re
import stat
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isolate import _plan
from isolate._plan import Fd, Mode, Op, OpFlag, OpKind, Plan, Report, Step
from isolate.errors import ConfigError

HEADER = Path(_plan.__file__).parent / "_native" / "isolate.h"


def header_defines() -> dict[str, int]:
    """Every ``#define ISO_NAME <int>`` in isolate.h."""
    text = HEADER.read_text()
    found = re.findall(r"^#define\s+(ISO_\w+)\s+(-?\d+)\b", text, re.MULTILINE)
    return {name: int(value) for name, value in found}


@pytest.mark.parametrize(("enum_cls", "prefix"), [
    (OpKind, "ISO_OP_"), (Step, "ISO_STEP_"), (Report, "ISO_REPORT_"),
    (Mode, "ISO_MODE_"), (OpFlag, "ISO_F_"), (Fd, "ISO_FD_"),
])
def test_python_enums_match_the_c_header_numbers(enum_cls: type[enum.IntEnum],
                                                 prefix: str) -> None:
    defines = header_defines()
    in_c = {name[len(prefix):]: value for name, value in defines.items()
            if name.startswith(prefix) and not name.startswith(prefix + "_")}
    in_py = {m.name: int(m.value) for m in enum_cls if m.name != "NONE"}
    assert in_c, f"no {prefix}* defines found in {HEADER}"
    assert in_py == in_c


def test_op_kinds_are_exactly_those_below_the_c_maximum() -> None:
    defines = header_defines()
    assert sorted(int(k) for k in OpKind) == list(range(1, defines["ISO_OP__MAX"]))


def test_plan_magic_version_and_flags_match_the_c_header() -> None:
    defines = header_defines()
    assert defines["ISO_PLAN_MAGIC"] == _plan.PLAN_MAGIC
    assert defines["ISO_PLAN_VERSION"] == _plan.PLAN_VERSION
    assert defines["ISO_PLAN_RESET_SIGNALS"] == _plan.PLAN_RESET_SIGNALS
    assert defines["ISO_PLAN_SHARE_FILES"] == _plan.PLAN_SHARE_FILES


# -- encode/decode round trip ----------------------------------------------------------------

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
CSTR = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x"))
OPT_CSTR = st.none() | CSTR
FLAGS = st.integers(min_value=0, max_value=127).map(OpFlag)
NONEMPTY = CSTR.filter(bool)
CLONE_NEW = [_plan.CLONE_NEWNS, _plan.CLONE_NEWUTS, _plan.CLONE_NEWIPC, _plan.CLONE_NEWPID,
             _plan.CLONE_NEWNET, _plan.CLONE_NEWUSER, _plan.CLONE_NEWCGROUP, _plan.CLONE_NEWTIME]


@st.composite
def ops(draw: st.DrawFn) -> Op:
    kind = draw(st.sampled_from(list(OpKind)))
    flags = draw(FLAGS)
    a, b, c = draw(I64), draw(I64), draw(I64)
    s1, s2, s3, s4 = draw(OPT_CSTR), draw(OPT_CSTR), draw(OPT_CSTR), draw(OPT_CSTR)
    argv: tuple[bytes, ...] = ()
    envp: tuple[bytes, ...] = ()
    if kind is OpKind.EXEC:
        # argv/envp travel as offset tables in a and b; the decoder gives back 0 there.
        a = b = 0
        argv = tuple(draw(st.lists(CSTR, min_size=1, max_size=5)))
        envp = tuple(draw(st.lists(CSTR, max_size=5)))
    elif kind is OpKind.WRITE_FILE:
        s3 = draw(st.binary(max_size=64))  # file content: any bytes, NUL included
        a = len(s3)
    elif kind in (OpKind.SECCOMP, OpKind.FDS, OpKind.SETGROUPS, OpKind.KEEP_FDS):
        width = {OpKind.SECCOMP: 8, OpKind.FDS: 12, OpKind.SETGROUPS: 4, OpKind.KEEP_FDS: 4}[kind]
        a = draw(st.integers(min_value=1 if kind is OpKind.SECCOMP else 0, max_value=6))
        s1 = draw(st.binary(min_size=width * a, max_size=width * a))
    elif kind is OpKind.CAPS:
        s1 = draw(st.none() | st.binary(min_size=8, max_size=8))  # the effective mask
    elif kind is OpKind.OVERLAY:
        # NUL-separated lists whose lengths travel in a (lower dirs) and c (options).
        lowers = draw(st.lists(NONEMPTY, min_size=1, max_size=4))
        options = draw(st.lists(NONEMPTY, max_size=3))
        a, c = len(lowers), len(options)
        s1 = b"\0".join(lowers)
        s3 = draw(st.none() | st.tuples(NONEMPTY, NONEMPTY).map(lambda t: b"\0".join(t)))
        s4 = b"\0".join(options) if options else None
    return Op(kind, flags, a, b, c, s1, s2, s3, s4, argv, envp)


@st.composite
def valid_ops(draw: st.DrawFn) -> Op:
    """An op whose fields fit its kind (what Op.check accepts), other values arbitrary."""
    op = draw(ops())
    uses = _plan._USES[op.kind]
    fields = {name: getattr(op, name) for name in _plan._FIELDS if name in uses}
    k = op.kind
    if k in (OpKind.OPEN_TREE, OpKind.MOVE_MOUNT):
        fields["a"] = draw(st.integers(min_value=0, max_value=63))
    elif k is OpKind.SETNS:
        fields["a"] = draw(st.integers(min_value=-1, max_value=2**31 - 1))
        fields["s2"] = draw(NONEMPTY) if fields["a"] < 0 else None
    elif k is OpKind.UNSHARE:
        fields["a"] = draw(st.lists(st.sampled_from(CLONE_NEW), min_size=1, unique=True)
                           .map(sum))
    elif k is OpKind.PDEATHSIG:
        fields["a"] = draw(st.integers(min_value=1, max_value=64))
        fields["b"] = draw(st.integers(min_value=-1, max_value=2**31 - 1))
    elif k is OpKind.EXEC:
        fields["c"] = draw(st.integers(min_value=0, max_value=2**31 - 1))
    elif k is OpKind.MKNOD:
        fields["a"] = draw(st.sampled_from([stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO])) | \
            draw(st.integers(min_value=0, max_value=0o7777))
    for name in _plan._NEEDS.get(k, ()):
        if fields.get(name) is None:
            fields[name] = draw(NONEMPTY)
    return Op(k, op.flags, **fields).check()


def without_notes(items: list[Op]) -> list[Op]:
    return [Op(o.kind, o.flags, o.a, o.b, o.c, o.s1, o.s2, o.s3, o.s4, o.argv, o.envp)
            for o in items]


PLAN_ARGS = dict(
    clone_flags=st.lists(st.sampled_from(CLONE_NEW), unique=True).map(sum),
    mode=st.sampled_from(list(Mode)),
    reset=st.booleans(),
    status_fd=st.integers(min_value=-1, max_value=2**31 - 1),
    sync_fd=st.integers(min_value=-1, max_value=2**31 - 1),
    exit_fd=st.integers(min_value=-1, max_value=2**31 - 1),
)


@settings(max_examples=60, deadline=None)
@given(items=st.lists(ops(), max_size=12), **PLAN_ARGS)
def test_encode_then_decode_gives_back_every_op_and_header_field(
        items: list[Op], clone_flags: int, mode: Mode, reset: bool, status_fd: int,
        sync_fd: int, exit_fd: int) -> None:
    p = Plan(clone_flags, mode, reset_signals=reset).extend(items)
    buf = p.encode(status_fd, sync_fd, exit_fd)
    header, decoded = _plan.decode(buf)
    assert decoded == without_notes(items)
    assert header["magic"] == _plan.PLAN_MAGIC
    assert header["version"] == _plan.PLAN_VERSION
    assert header["clone_flags"] == clone_flags
    assert header["mode"] == mode
    assert header["flags"] == (_plan.PLAN_RESET_SIGNALS if reset else 0)
    assert (header["status_fd"], header["sync_fd"], header["cgroup_fd"]) == (
        status_fd, sync_fd, -1)
    assert header["exit_fd"] == exit_fd
    assert header["n_ops"] == len(items)
    assert header["size"] == len(buf)
    assert header["ops_offset"] % 8 == 0  # the C side reads op records in place


@settings(max_examples=60, deadline=None)
@given(prefix=st.lists(valid_ops(), max_size=8), tail=st.lists(ops(), max_size=8),
       tail2=st.lists(ops(), max_size=4))
def test_frozen_prefix_encodes_byte_for_byte_like_a_plain_plan(
        prefix: list[Op], tail: list[Op], tail2: list[Op]) -> None:
    base = Plan(_plan.CLONE_NEWNS, Mode.FORK).extend(prefix).freeze()
    for extra in (tail, tail2):  # one frozen base serves many plans
        extended = base.extended(extra)
        plain = Plan(_plan.CLONE_NEWNS, Mode.FORK).extend([*prefix, *extra])
        buf = extended.encode(5, 6)
        assert buf == plain.encode(5, 6)
        assert _plan.decode(buf)[1] == without_notes([*prefix, *extra])
    assert base.ops == prefix  # extended() never changes the base


def test_ops_added_to_a_frozen_plan_after_freeze_are_encoded_too() -> None:
    p = Plan().add(Op(OpKind.CHDIR, s2=b"/a")).freeze()
    p.add(Op(OpKind.CHDIR, s2=b"/b"))
    assert [o.s2 for o in _plan.decode(p.encode(3))[1]] == [b"/a", b"/b"]


# -- builders refuse what cannot be encoded --------------------------------------------------

@given(st.text(max_size=20), st.text(max_size=20))
def test_a_nul_byte_in_any_builder_string_is_a_config_error(left: str, right: str) -> None:
    bad = left + "\0" + right
    for make in (
        lambda: _plan.mount(bad, "/mnt"),
        lambda: _plan.mount("tmpfs", bad),
        lambda: _plan.mount("tmpfs", "/mnt", "tmpfs", 0, bad),
        lambda: _plan.mkdir(bad),
        lambda: _plan.symlink(bad, "/x"),
        lambda: _plan.write_file(bad, b"ok"),
        lambda: _plan.exec_("/bin/true", ["/bin/true", bad], {}),
        lambda: _plan.exec_("/bin/true", ["/bin/true"], {"K": bad}),
        lambda: _plan.exec_(bad, ["x"], {}),
    ):
        with pytest.raises(ConfigError, match="NUL"):
            make()


@pytest.mark.parametrize("name", ["", "A=B"])
def test_an_invalid_environment_name_is_a_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="environment variable name"):
        _plan.exec_("/bin/true", ["/bin/true"], {name: "v"})


def test_builders_refuse_empty_argv_too_many_fds_and_ragged_seccomp() -> None:
    with pytest.raises(ConfigError, match="argv"):
        _plan.exec_("/bin/true", [], {})
    with pytest.raises(ConfigError, match="257"):
        _plan.fds([(i, i, False) for i in range(257)])
    with pytest.raises(ConfigError, match="seccomp"):
        _plan.seccomp(b"1234567")
    with pytest.raises(ConfigError, match="seccomp"):
        _plan.seccomp(b"")


# -- every op kind has a documented, validating builder ----------------------------------------

BUILDER_OF = {kind: kind.name.lower() for kind in OpKind} | {
    OpKind.CAPBSET: "bounding_set", OpKind.CAPS: "capabilities", OpKind.KEEPCAPS: "keep_caps",
    OpKind.MOUNT_SETATTR: "mount_setattr", OpKind.PDEATHSIG: "pdeathsig",
    OpKind.EXEC: "exec_", OpKind.OPEN: "open_", OpKind.SOCKET: "socket_",
}


@pytest.mark.parametrize("kind", list(OpKind), ids=lambda k: k.name)
def test_every_op_kind_has_a_public_documented_builder(kind: OpKind) -> None:
    name = BUILDER_OF[kind]
    builder = getattr(_plan, name)
    assert name in _plan.__all__
    doc = " ".join((builder.__doc__ or "").split())
    assert len(doc) > 40, f"{name} needs a docstring saying what it does"
    if "ConfigError" not in doc:
        assert "Raises nothing" in doc, f"{name}'s docstring says which errors it raises"
    assert kind.name in OpKind.__doc__ or name == kind.name.lower()


def test_a_plan_of_one_op_of_each_kind_from_the_builders_passes_check_and_decodes() -> None:
    from isolate import security

    made = [
        _plan.wait_parent(), _plan.setns(3, _plan.CLONE_NEWNET), _plan.unshare(_plan.CLONE_NEWNS),
        _plan.sethostname("box"), _plan.setdomainname("dom"),
        _plan.mount("tmpfs", "/tmp", "tmpfs", _plan.MS_NOSUID, "mode=755", in_root=True),
        _plan.mount_setattr("/", _plan.MOUNT_ATTR_RDONLY, recursive=True),
        _plan.open_tree("/usr", 3), _plan.move_mount(3, "/usr"), _plan.mkdir("/x"),
        _plan.symlink("a", "/b"), _plan.write_file("/f", b"\0data"), _plan.mask("/proc/kcore"),
        _plan.root("/new"), _plan.pivot_root(), _plan.chroot("/"), _plan.chdir("/tmp"),
        _plan.rlimit("nofile", 64), _plan.setgroups([1, 2]), _plan.setresgid(5),
        _plan.setresuid(5), _plan.bounding_set(security.CapabilitySet(["chown"])),
        _plan.capabilities(security.CapabilitySet.all(), effective=0,
                           ambient=security.CapabilitySet(["chown"])),
        _plan.keep_caps(), _plan.no_new_privs(), _plan.seccomp(b"\6\0\0\0\0\0\xff\x7f"),
        _plan.fds([(5, 1, False)]), _plan.keep_fds([9, 7]), _plan.setsid(), _plan.ctty(0),
        _plan.loopback_up(), _plan.cgroup_join(9), _plan.umask(0o22),
        _plan.pdeathsig(parent_pidfd=4), _plan.fork_into_pidns(), _plan.init(),
        _plan.overlay(["/l1", "/l2"], "/merged", "/u", "/w"), _plan.open_("/proc/self/ns/net"),
        _plan.umount("/mnt"), _plan.mknod("/dev/null", "c", 1, 3, uid=0, gid=5),
        _plan.socket_(16, 2), _plan.console(rows=24, cols=80),
        _plan.reroot(), _plan.exec_("sh", ["sh", "-c", "x"], {}),
    ]
    assert {op.kind for op in made} == set(OpKind)
    p = Plan(0, Mode.FORK).extend(made).check()
    assert _plan.decode(p.encode(3))[1] == without_notes(made)
    described = p.describe().splitlines()
    assert len(described) == len(made) + 1 and not any("invalid" in line for line in described)


def test_describe_says_what_an_op_does_with_its_arguments() -> None:
    assert _plan.chdir("/srv").describe() == "change the working directory to /srv"
    text = _plan.mount("tmpfs", "/dev", "tmpfs", _plan.MS_NOSUID | _plan.MS_STRICTATIME,
                       "mode=755", in_root=True, mkdir=True).describe()
    assert text == ("mount tmpfs 'tmpfs' on /dev inside the root, creating it "
                    "(flags MS_NOSUID|MS_STRICTATIME, data 'mode=755')")
    assert _plan.rlimit("RLIMIT_NOFILE", 64, _plan.RLIM_INFINITY).describe() == (
        "set RLIMIT_NOFILE to soft 64, hard unlimited")
    assert _plan.rlimit("RLIMIT_NOFILE", 64).describe() == (
        "set RLIMIT_NOFILE to soft 64, hard 64")
    assert _plan.setresuid(1000).describe() == "set the real, effective and saved uid to 1000"
    assert "slot 2" in _plan.overlay(["/l"], slot=2).describe()
    assert _plan.mknod("/dev/tty", "c", 5, 0, mode=0o620, gid=5).describe() == (
        "create the character device 5:0 /dev/tty inside the root, mode 0620, owned by -:5")


@settings(max_examples=100, deadline=None)
@given(op=ops())
def test_describe_never_raises_whatever_the_fields(op: Op) -> None:
    assert op.describe()


@settings(max_examples=100, deadline=None)
@given(op=valid_ops())
def test_ops_whose_fields_fit_their_kind_pass_check(op: Op) -> None:
    assert op.check() is op
    assert "invalid" not in op.describe()


def test_a_field_the_kind_does_not_use_is_refused_naming_the_field_it_reads() -> None:
    # The guess that used to fail in the child as "chdir: EFAULT (Bad address)".
    bad = Op(OpKind.CHDIR, s1=b"/srv")
    with pytest.raises(ConfigError, match=r"chdir does not use s1 .* takes s2 = directory"):
        bad.check()
    assert "invalid: chdir does not use s1" in bad.describe()
    with pytest.raises(ConfigError, match=r"op 1: CHDIR op"):
        Plan().extend([_plan.chdir("/"), bad]).check()
    with pytest.raises(ConfigError, match=r"mount needs s2 \(target\)"):
        Op(OpKind.MOUNT, a=_plan.MS_BIND, s1=b"/a").check()
    with pytest.raises(ConfigError, match="SETGROUPS op: s1 must hold a=2 records"):
        Op(OpKind.SETGROUPS, a=2, s1=b"\0\0\0\0").check()  # two gids announced, one given


@pytest.mark.parametrize(("make", "message"), [
    (lambda: _plan.chdir(""), "working directory must not be empty"),
    (lambda: _plan.chdir(7), "working directory must be a str, bytes or path, not 7"),  # type: ignore[arg-type]
    (lambda: _plan.setresuid(-1), r"uid must be in \[0, 4294967294\], not -1"),
    (lambda: _plan.setresgid(2**32 - 1), r"gid must be in \[0, 4294967294\]"),
    (lambda: _plan.setresuid(True), "uid must be an integer, not True"),
    (lambda: _plan.setgroups([0, -2]), r"gid must be in .*not -2"),
    (lambda: _plan.rlimit("nofiles", 1), "unknown rlimit resource 'nofiles'"),
    (lambda: _plan.rlimit(99, 1), r"rlimit resource must be in \[0, 15\], not 99"),
    (lambda: _plan.rlimit("nofile", 10, 5), "soft limit 10 is above the hard limit 5"),
    (lambda: _plan.rlimit("nofile", -5), r"soft limit must be in \[0, .*not -5"),
    (lambda: _plan.capabilities(1, effective=2), "effective capabilities 0x2 are not within"),
    (lambda: _plan.capabilities(1, ambient=3), "ambient capabilities 0x3 are not within"),
    (lambda: _plan.bounding_set(2**64), "bounding set must be in"),
    (lambda: _plan.pdeathsig(0), r"pdeathsig signal must be in \[1, 64\], not 0"),
    (lambda: _plan.pdeathsig(parent_pidfd=-3), "parent_pidfd must be in .*not -3"),
    (lambda: _plan.setns(-1), r"setns fd must be in \[0, .*not -1"),
    (lambda: _plan.setns(3, 123), "setns nstype must be 0 or one CLONE_NEW"),
    (lambda: _plan.unshare(0), r"unshare flags must be in \[1"),
    (lambda: _plan.unshare(0x100), "unshare flags must be CLONE_NEW.*0x100"),
    (lambda: _plan.sethostname("h" * 65), "hostname must be 1 to 64 bytes"),
    (lambda: _plan.sethostname(""), "hostname must be 1 to 64 bytes"),
    (lambda: _plan.umask(0o1000), r"umask must be in \[0, 511\]"),
    (lambda: _plan.umount("/m", 0, in_root=True), "umount in_root needs MNT_DETACH"),
    (lambda: _plan.umount("/m", 0x10), r"umount flags must be in \[0, 15\]"),
    (lambda: _plan.open_tree("/a", 64), r"slot must be in \[0, 63\], not 64"),
    (lambda: _plan.move_mount(-1, "/a"), r"slot must be in \[0, 63\], not -1"),
    (lambda: _plan.setattr_("/", propagation=_plan.MS_REC), "propagation must be 0, MS_PRIVATE"),
    (lambda: _plan.mount("tmpfs", "/t", "tmpfs", -1), r"mount flags must be in \[0"),
    (lambda: _plan.write_file("/f", "text"), "write_file content must be bytes, not str"),  # type: ignore[arg-type]
    (lambda: _plan.write_file("/f", b"", mode=0o10000), r"file mode must be in \[0, 4095\]"),
    (lambda: _plan.fds([(3, 1, False), (4, 1, False)]), "fd 1 is a target twice"),
    (lambda: _plan.fds([(3, 1)]), r"an fd mapping is \(source, target, cloexec\)"),  # type: ignore[list-item]
    (lambda: _plan.keep_fds([5, -1]), r"fd to keep must be in \[0, .*not -1"),
    (lambda: _plan.seccomp(b"\0" * 8 * 4097), "at most 4096 instructions"),
    (lambda: _plan.overlay("/lower", "/t"), "a list of lower directories, not '/lower'"),  # type: ignore[arg-type]
    (lambda: _plan.exec_("sh", "sh -c x", {}), "argv must be a non-empty list"),
    (lambda: _plan.exec_("", ["x"], {}), "program must not be empty"),
    (lambda: _plan.mknod("/dev/x", "s"), "mknod kind must be 'c', 'u', 'b' or 'p', not 's'"),
    (lambda: _plan.mknod("/dev/x", mode=0o10000), r"device mode must be in \[0, 4095\]"),
    (lambda: _plan.mknod("/dev/x", major=-1), r"device major must be in \[0"),
])
def test_builders_refuse_bad_arguments_naming_the_argument_and_value(
        make: Callable[[], Op], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_builders_take_namespace_handles_capability_sets_and_resource_names() -> None:
    from isolate import security

    class Handle:
        def fileno(self) -> int:
            return 42

    assert _plan.setns(Handle(), _plan.CLONE_NEWNET).a == 42
    assert _plan.fork_into_pidns(Handle()).a == 42
    caps = security.CapabilitySet(["CAP_NET_BIND_SERVICE", "chown"])
    op = _plan.capabilities(caps, ambient=caps)
    assert (op.a, op.b, op.c, op.s1) == (caps.mask, 0, caps.mask, None)
    assert _plan.capabilities(caps, effective=security.CapabilitySet(["chown"])).s1 == (
        struct.pack("=Q", 1))
    full = security.CapabilitySet.all()
    assert _plan.bounding_set(full).a == full.mask
    import resource
    assert _plan.rlimit(resource.RLIMIT_NOFILE, 8).a == _plan.rlimit("nofile", 8).a == 7
    inf = _plan.rlimit("core", resource.RLIM_INFINITY)
    assert (inf.b, inf.c) == (-1, -1)
    assert _plan.keep_fds([9, 3, 9, 1]).s1 == struct.pack("=2i", 3, 9)  # stdio is always kept


def test_plan_check_refuses_combinations_the_kernel_or_the_child_would() -> None:
    with pytest.raises(ConfigError, match="op 0: an INIT outlives the exec"):
        Plan(0, Mode.VFORK).add(_plan.init()).check()
    Plan(0, Mode.VFORK).extend([_plan.fork_into_pidns(), _plan.init()]).check()
    Plan(0, Mode.FORK).add(_plan.init()).check()
    with pytest.raises(ConfigError, match="unshare a user namespace while memory is shared"):
        Plan(0, Mode.VFORK).add(_plan.unshare(_plan.CLONE_NEWUSER)).check()
    with pytest.raises(ConfigError, match=r"share_files plan .* KEEP_FDS"):
        Plan(0, Mode.VFORK, share_files=True).add(_plan.keep_fds()).check()
    with pytest.raises(ConfigError, match=r"share_files needs Mode\.VFORK"):
        Plan(0, Mode.FORK, share_files=True)
    with pytest.raises(ConfigError, match="clone_flags must be CLONE_NEW"):
        Plan(0x100)
    with pytest.raises(ConfigError, match="a plan holds Op records"):
        Plan().add("chdir /")  # type: ignore[arg-type]


def _header_constants(path: Path, prefix: str) -> dict[str, int]:
    found = {}
    for name, value in re.findall(rf"^#define\s+({prefix}\w+)\s+(\S+)", path.read_text(), re.M):
        value = value.strip("()")
        shift = re.fullmatch(r"1<<(\d+)", value.replace(" ", ""))
        try:
            found[name] = 1 << int(shift.group(1)) if shift else int(value, 0)
        except ValueError:
            continue  # an expression of other names
    return found


def test_mount_constants_match_the_kernel_headers() -> None:
    header = Path("/usr/include/linux/mount.h")
    if not header.exists():
        pytest.skip("no kernel headers (/usr/include/linux/mount.h; Debian: linux-libc-dev)")
    for prefix in ("MS_", "MOUNT_ATTR_"):
        ours = {name: getattr(_plan, name) for name in _plan.__all__ if name.startswith(prefix)}
        theirs = _header_constants(header, prefix)
        assert ours and {name: theirs.get(name) for name in ours} == ours


# -- placeholders, exec_tail, console ---------------------------------------------------------

def fds_sources(buf: bytes | bytearray) -> list[int]:
    (op,) = [o for o in _plan.decode(buf)[1] if o.kind is OpKind.FDS]
    return [src for src, _, _ in struct.iter_unpack("=iii", op.s1 or b"")]


def test_placeholder_fds_are_filled_in_by_encode_or_left_for_the_shim() -> None:
    p = Plan().extend([_plan.fds([(Fd.STATUS, 5, False), (Fd.EXIT, 6, False), (7, 7, False),
                                  (Fd.PARENT, 8, False)])])
    assert p.reports_exit and not p.has_init
    assert fds_sources(p.encode(10, 11, 12)) == [10, 12, 7, Fd.PARENT]
    # Encoded with the placeholders themselves (the shim's plan file), they stay.
    assert fds_sources(p.encode(Fd.STATUS, Fd.SYNC, Fd.EXIT)) == [Fd.STATUS, Fd.EXIT, 7,
                                                                  Fd.PARENT]
    # In a frozen prefix too.
    frozen = p.freeze().extended([_plan.exec_("true", ["true"], {})])
    assert frozen.reports_exit
    assert fds_sources(frozen.encode(20, 21, 22)) == [20, 22, 7, Fd.PARENT]
    assert not Plan().extend([_plan.fds([(3, 3, False)])]).reports_exit


def test_exec_tail_with_an_init_runs_the_command_under_it_and_names_its_op() -> None:
    command = _plan.exec_("sh", ["sh", "-c", "exit 3"], {"PATH": "/bin"})
    seccomp = _plan.seccomp(b"\x06\0\0\0\0\0\xff\x7f")
    plain = _plan.exec_tail(command, [(0, 0, False), (4, 9, False)], seccomp)
    assert [o.kind for o in plain] == [OpKind.FDS, OpKind.SECCOMP, OpKind.EXEC]
    ops = _plan.exec_tail(command, [(0, 0, False), (4, 9, False)], seccomp, init_fd=30,
                          index=7)
    assert [o.kind for o in ops] == [OpKind.FDS, OpKind.SECCOMP, OpKind.EXEC, OpKind.EXEC]
    fds_op, _, init, last = ops
    # The init's fds go above the highest target: status 10, exit 11, the program 12.
    triples = list(struct.iter_unpack("=iii", fds_op.s1 or b""))
    assert triples[2:] == [(Fd.STATUS, 10, 0), (Fd.EXIT, 11, 0), (30, 12, 1)]
    assert init.flags & OpFlag.EXEC_FD and init.c == 12 and init.envp == command.envp
    # The command's own op (index 7 + 3) is what the init's report names.
    assert init.argv == (b"isolate-init", b"--status-fd", b"10", b"--exit-fd", b"11",
                         b"--report-op", b"10", b"--", b"sh", b"-c", b"exit 3")
    assert last is command
    with pytest.raises(ConfigError):
        _plan.exec_tail(_plan.exec_("/bin/sh", ["sh"], {}), [], init_fd=3)


def test_console_takes_a_size_and_refuses_a_bad_one() -> None:
    op = _plan.console(rows=24, cols=80)
    assert (op.kind, op.a, op.b, op.s2) == (OpKind.CONSOLE, Fd.CONSOLE, 24 << 16 | 80,
                                            b"/dev/pts/ptmx")
    with pytest.raises(ConfigError):
        _plan.console(rows=70000)
