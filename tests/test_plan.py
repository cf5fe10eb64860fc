"""Tests of the spawn protocol's Python half (isolate._plan): its numbers agree with the C
header, and every plan survives encode -> decode unchanged, also through freeze()/extended()."""

from __future__ import annotations

import enum
import re
import struct
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
    elif kind in (OpKind.SECCOMP, OpKind.FDS, OpKind.SETGROUPS):
        width = {OpKind.SECCOMP: 8, OpKind.FDS: 12, OpKind.SETGROUPS: 4}[kind]
        a = draw(st.integers(min_value=0, max_value=6))
        s1 = draw(st.binary(min_size=width * a, max_size=width * a))
    elif kind is OpKind.OVERLAY:
        # NUL-separated lists whose lengths travel in a (lower dirs) and c (options).
        lowers = draw(st.lists(NONEMPTY, min_size=1, max_size=4))
        options = draw(st.lists(NONEMPTY, max_size=3))
        a, c = len(lowers), len(options)
        s1 = b"\0".join(lowers)
        s3 = draw(st.none() | st.tuples(NONEMPTY, NONEMPTY).map(lambda t: b"\0".join(t)))
        s4 = b"\0".join(options) if options else None
    return Op(kind, flags, a, b, c, s1, s2, s3, s4, argv, envp)


def without_notes(items: list[Op]) -> list[Op]:
    return [Op(o.kind, o.flags, o.a, o.b, o.c, o.s1, o.s2, o.s3, o.s4, o.argv, o.envp)
            for o in items]


PLAN_ARGS = dict(
    clone_flags=st.integers(min_value=0, max_value=2**64 - 1),
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
@given(prefix=st.lists(ops(), max_size=8), tail=st.lists(ops(), max_size=8),
       tail2=st.lists(ops(), max_size=4))
def test_frozen_prefix_encodes_byte_for_byte_like_a_plain_plan(
        prefix: list[Op], tail: list[Op], tail2: list[Op]) -> None:
    base = Plan(_plan.CLONE_NEWNS, Mode.VFORK).extend(prefix).freeze()
    for extra in (tail, tail2):  # one frozen base serves many plans
        extended = base.extended(extra)
        plain = Plan(_plan.CLONE_NEWNS, Mode.VFORK).extend([*prefix, *extra])
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
