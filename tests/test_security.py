"""Tests of isolate.security: capability sets, seccomp compilation, the BPF interpreter, and
what the real kernel does with the compiled programs and dropped capabilities.

Kernel tests run a fresh Python (only the standard library, via ctypes) that applies the
filter or drops capabilities to itself, so the test process is never restricted.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isolate import _syscalls
from isolate.errors import ConfigError, IsolateOSError
from isolate.security import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    MAX_PROGRAM_INSTRUCTIONS,
    ArgCondition,
    ArgOp,
    Capability,
    CapabilitySet,
    SeccompAction,
    SeccompProfile,
    SeccompRule,
    audit_arch,
    host_arch,
    read_process_caps,
    simulate,
    syscall_number,
)

U64 = (1 << 64) - 1
A = SeccompAction
HOST = host_arch()
CONTAINERS_PROFILE = Path("/usr/share/containers/seccomp.json")


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (capabilities to drop, mounts to attempt)")


# ============================================================================================
# Capabilities
# ============================================================================================


def test_capability_numbers_match_the_kernel_header() -> None:
    header = Path("/usr/include/linux/capability.h")
    if not header.exists():
        pytest.skip("linux/capability.h not installed (linux-libc-dev)")
    found = dict(re.findall(r"#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", header.read_text(), re.M))
    found.pop("CAP_LAST_CAP", None)
    assert found, "no capability found in the header"
    for name, number in found.items():
        assert Capability[name] == int(number), name


@pytest.mark.parametrize("text", ["CAP_NET_ADMIN", "cap_net_admin", "net_admin", "Net_Admin"])
def test_capability_names_parse_case_insensitively_with_or_without_prefix(text: str) -> None:
    assert Capability.parse(text) is Capability.CAP_NET_ADMIN


@pytest.mark.parametrize("bad", ["CAP_FLY", "", "net admin", 41, -1, 3.0])
def test_unknown_capability_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        CapabilitySet.from_names([bad])


def test_capability_set_mask_has_one_bit_per_capability() -> None:
    caps = CapabilitySet.from_names(["chown", "CAP_CHECKPOINT_RESTORE", "kill"])
    assert caps.mask == 1 | 1 << 5 | 1 << 40
    assert caps.words == (1 | 1 << 5, 1 << 8)
    assert CapabilitySet.none().mask == 0
    assert "CAP_KILL" in caps and "sys_admin" not in caps and "no_such" not in caps


@given(st.integers(0, (1 << 41) - 1))
def test_capability_mask_round_trips(mask: int) -> None:
    assert CapabilitySet.from_mask(mask).mask == mask


def test_mask_with_bits_beyond_known_capabilities_is_rejected() -> None:
    with pytest.raises(ConfigError):
        CapabilitySet.from_mask(1 << 41)
    assert CapabilitySet.from_mask(1 << 41 | 1, strict=False).mask == 1


def test_all_capabilities_stop_at_the_kernels_last_cap() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert max(CapabilitySet.all()) == min(last, max(Capability))
    assert CapabilitySet.all(last_cap=5).mask == 0b111111


def test_docker_default_is_dockers_fourteen_capabilities() -> None:
    expected = {
        "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE",
    }
    assert set(CapabilitySet.docker_default().names()) == {"CAP_" + n for n in expected}


def test_set_operators_combine_sets() -> None:
    a = CapabilitySet.from_names(["chown", "kill"])
    b = CapabilitySet.from_names(["kill", "mknod"])
    assert (a | b).names() == ["CAP_CHOWN", "CAP_KILL", "CAP_MKNOD"]
    assert (a & b).names() == ["CAP_KILL"]
    assert (a - b).names() == ["CAP_CHOWN"]


def test_reading_own_caps_agrees_with_capget_and_capbset_read() -> None:
    # Independent sources: the capget(2) and prctl(PR_CAPBSET_READ) system calls.
    libc = ctypes.CDLL(None, use_errno=True)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    data = (Data * 2)()
    assert libc.capget(ctypes.byref(Header(0x20080522, 0)), data) == 0
    caps = read_process_caps()
    assert caps.effective.mask == data[0].effective | data[1].effective << 32
    assert caps.permitted.mask == data[0].permitted | data[1].permitted << 32
    assert caps.inheritable.mask == data[0].inheritable | data[1].inheritable << 32
    bounding = {c for c in Capability if libc.prctl(23, int(c), 0, 0, 0) == 1}
    assert caps.bounding.caps == bounding
    if os.geteuid() == 0:
        assert not caps.is_empty


def test_reading_caps_of_a_finished_process_is_esrch() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(IsolateOSError) as info:
        read_process_caps(proc.pid)
    assert info.value.errno == errno.ESRCH and info.value.pid == proc.pid


@pytest.mark.parametrize("bad", [0, -3, "1; rm", True])
def test_reading_caps_of_a_bad_pid_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        read_process_caps(bad)


# ============================================================================================
# Syscall tables and profile validation
# ============================================================================================


def test_x86_64_table_matches_the_installed_kernel_header() -> None:
    header = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not header.exists():
        pytest.skip("x86_64 asm/unistd_64.h not installed")
    found = {n: int(v) for n, v in re.findall(r"#define __NR_(\w+) (\d+)", header.read_text())}
    assert found
    for name, number in found.items():
        assert _syscalls.X86_64[name] == number, name


@pytest.mark.parametrize(
    ("name", "number"),
    [("write", 64), ("openat", 56), ("mount", 40), ("umount2", 39), ("unshare", 97),
     ("personality", 92), ("getpid", 172), ("keyctl", 219), ("clone", 220), ("clone3", 435),
     ("renameat", 38), ("fstat", 80), ("mmap", 222), ("io_uring_setup", 425)],
)
def test_aarch64_numbers_are_the_generic_ones(name: str, number: int) -> None:
    assert syscall_number(name, "aarch64") == number
    assert syscall_number("open", "aarch64") is None  # aarch64 only has openat


@pytest.mark.parametrize(
    "make",
    [
        lambda: SeccompRule("no_such_call", A.ALLOW),
        lambda: SeccompRule((), A.ALLOW),
        lambda: SeccompRule("read", "SCMP_ACT_FLY"),
        lambda: SeccompRule("read", A.USER_NOTIF),
        lambda: SeccompRule("read", A.ERRNO, errno=4096),
        lambda: ArgCondition(6, ArgOp.EQ, 0),
        lambda: ArgCondition(0, ArgOp.EQ, -1),
        lambda: ArgCondition(0, ArgOp.EQ, 1 << 64),
        lambda: ArgCondition(0, "between", 1),
        lambda: SeccompProfile(rules=["read"]),
        lambda: SeccompProfile(architectures=["mips"]),
    ],
)
def test_bad_profile_values_are_config_errors(make: Any) -> None:
    with pytest.raises(ConfigError):
        make()


def test_compile_for_an_unsupported_or_excluded_arch_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        SeccompProfile().compile("riscv64")
    with pytest.raises(ConfigError):
        SeccompProfile(architectures=["aarch64"]).compile("x86_64")


# ============================================================================================
# The compiled program, run by the interpreter
# ============================================================================================


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_program_from_another_architecture_gets_the_bad_arch_action(arch: str) -> None:
    program = SeccompProfile.default().compile(arch)
    i386 = 0x4000_0003
    assert simulate(program, 20, i386) == (A.KILL_PROCESS, 0)
    other = "aarch64" if arch == "x86_64" else "x86_64"
    assert simulate(program, 39, other) == (A.KILL_PROCESS, 0)
    assert simulate(program, syscall_number("getpid", arch) or 0, arch) == (A.ALLOW, 0)


def test_x32_syscalls_are_refused_on_x86_64_but_mean_nothing_on_aarch64() -> None:
    profile = SeccompProfile(bad_arch_action=A.ERRNO)
    x86 = profile.compile("x86_64")
    x32_getpid = 0x4000_0000 | 39
    assert simulate(x86, x32_getpid, "x86_64") == (A.ERRNO, 0)
    assert simulate(x86, -1, "x86_64") == (A.ERRNO, 0)
    assert simulate(profile.compile("aarch64"), x32_getpid, "aarch64") == (A.ALLOW, 0)


DEFAULT_EXPECTATIONS = [
    ("mount", (), (A.ERRNO, errno.EPERM)),
    ("umount2", (), (A.ERRNO, errno.EPERM)),
    ("unshare", (0x1000_0000,), (A.ERRNO, errno.EPERM)),
    ("unshare", (0,), (A.ERRNO, errno.EPERM)),
    ("setns", (3, 0), (A.ERRNO, errno.EPERM)),
    ("clone", (0x1000_0000 | 17,), (A.ERRNO, errno.EPERM)),  # CLONE_NEWUSER
    ("clone", (0x0002_0000 | 17,), (A.ERRNO, errno.EPERM)),  # CLONE_NEWNS
    ("clone", (0x0100_0000 | 0x0020_0000 | 17,), (A.ALLOW, 0)),  # fork-like flags
    ("clone", (0x0001_0000 | 0x0000_0100 | 0x0000_0200,), (A.ALLOW, 0)),  # thread-like
    ("clone3", (), (A.ERRNO, errno.ENOSYS)),
    ("keyctl", (), (A.ERRNO, errno.EPERM)),
    ("bpf", (), (A.ERRNO, errno.EPERM)),
    ("io_uring_setup", (), (A.ERRNO, errno.EPERM)),
    ("personality", (0,), (A.ALLOW, 0)),
    ("personality", (0xFFFF_FFFF,), (A.ALLOW, 0)),
    ("personality", (0x0040_0000,), (A.ERRNO, errno.EPERM)),  # READ_IMPLIES_EXEC
    ("personality", (0x1_0000_0000,), (A.ERRNO, errno.EPERM)),  # all 64 bits count
    ("ptrace", (), (A.ALLOW, 0)),
    ("getpid", (), (A.ALLOW, 0)),
    ("write", (1, 0, 0), (A.ALLOW, 0)),
    ("execve", (), (A.ALLOW, 0)),
]


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize(("name", "args", "expected"), DEFAULT_EXPECTATIONS)
def test_default_profile_decides_like_docker(
    arch: str, name: str, args: tuple[int, ...], expected: tuple[SeccompAction, int]
) -> None:
    profile = SeccompProfile.default()
    nr = syscall_number(name, arch)
    assert nr is not None
    assert profile.evaluate(name, args, arch) == expected
    assert simulate(profile.compile(arch), nr, arch, args) == expected


def test_default_profile_denies_what_the_docs_list() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "security.md").read_text()
    profile = SeccompProfile.default()
    denied = {
        name for rule in profile.rules if rule.action is A.ERRNO and not rule.args
        for name in rule.names
    }
    for name in denied:
        assert f"`{name}`" in docs, f"{name} is denied but not documented"


def test_compile_is_cached_per_profile_and_arch() -> None:
    profile = SeccompProfile.default()
    assert profile.compile("x86_64") is profile.compile("x86_64")
    same = SeccompProfile(rules=profile.rules)
    assert same.compile("x86_64") is profile.compile("x86_64")
    assert profile.compile("aarch64") != profile.compile("x86_64")


@pytest.fixture
def program_cache(tmp_path: Path) -> Iterator[Path]:
    """Programs kept in ``tmp_path/programs`` (and none of this process's compiles reused)."""
    from isolate import security

    directory = tmp_path / "programs"
    security._compile_cached.cache_clear()
    security.cache_programs(directory)
    try:
        yield directory
    finally:
        security.cache_programs(None)
        security._compile_cached.cache_clear()


def _clear_process_cache() -> None:
    from isolate import security

    security._compile_cached.cache_clear()  # as a new process would start


def test_a_compiled_program_is_kept_for_the_next_process(program_cache: Path) -> None:
    profile = SeccompProfile.default()
    program = profile.compile("x86_64")
    (kept,) = program_cache.iterdir()
    assert kept.read_bytes()[:-64] == program
    _clear_process_cache()
    kept.write_bytes(kept.read_bytes())  # (a file of its own: what is read must be this one)
    assert profile.compile("x86_64") == program
    assert list(program_cache.iterdir()) == [kept]
    # Another architecture, another profile: files of their own, never this one's program.
    assert profile.compile("aarch64") != program
    other = SeccompProfile(default_action="errno", rules=profile.rules)
    assert other.compile("x86_64") != program
    assert len(list(program_cache.iterdir())) == 3


@pytest.mark.parametrize("damage", ["torn", "flipped", "foreign", "empty"])
def test_a_damaged_or_foreign_cached_program_is_never_loaded(program_cache: Path,
                                                             damage: str) -> None:
    profile = SeccompProfile.default()
    program = profile.compile("x86_64")
    (kept,) = program_cache.iterdir()
    data = kept.read_bytes()
    if damage == "torn":
        kept.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":  # one instruction changed, the checksum kept
        kept.write_bytes(data[:16] + bytes([data[16] ^ 1]) + data[17:])
    elif damage == "foreign":  # another profile's program under this one's name
        _clear_process_cache()
        SeccompProfile(default_action="errno").compile("x86_64")
        (foreign,) = set(program_cache.iterdir()) - {kept}
        kept.write_bytes(foreign.read_bytes())
    else:
        kept.write_bytes(b"")
    _clear_process_cache()
    assert profile.compile("x86_64") == program
    assert kept.read_bytes() == data  # compiled and written again


def test_a_cache_that_cannot_be_written_still_compiles(tmp_path: Path) -> None:
    from isolate import security

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    _clear_process_cache()
    security.cache_programs(blocker / "programs")
    try:
        assert SeccompProfile.default().compile("x86_64") == \
            security._compile_program(SeccompProfile.default(), "x86_64")
    finally:
        security.cache_programs(None)
        _clear_process_cache()


def test_programs_are_little_endian_sock_filter_records() -> None:
    program = SeccompProfile.default().compile("x86_64")
    assert len(program) % 8 == 0
    code, _, _, k = struct.unpack_from("<HBBI", program, 0)
    assert (code, k) == (0x20, 4)  # BPF_LD|BPF_W|BPF_ABS of seccomp_data.arch
    code, _, _, k = struct.unpack_from("<HBBI", program, 8)
    assert (code, k) == (0x15, audit_arch("x86_64"))  # BPF_JMP|BPF_JEQ|BPF_K


# ---- property test of the compiler against the profile's own meaning ----------------------

COMMON_NAMES = sorted(set(_syscalls.X86_64) & set(_syscalls.AARCH64))
VALUES = st.one_of(
    st.integers(0, U64),
    st.integers(0, 16),
    st.sampled_from([0xFFFF_FFFF, 1 << 32, (1 << 32) + 1, U64, 0x7E02_0000, 1 << 63]),
)
ACTIONS = st.sampled_from(
    [A.ALLOW, A.ERRNO, A.KILL_PROCESS, A.KILL_THREAD, A.TRAP, A.LOG, A.TRACE]
)
CONDITIONS = st.builds(
    ArgCondition, index=st.integers(0, 5), op=st.sampled_from(list(ArgOp)), value=VALUES,
    mask=VALUES,
)


def rules(names: Sequence[str], max_args: int) -> st.SearchStrategy[SeccompRule]:
    return st.builds(
        SeccompRule,
        names=st.lists(st.sampled_from(names), min_size=1, max_size=3),
        action=ACTIONS,
        errno=st.integers(0, 4095),
        args=st.lists(CONDITIONS, max_size=max_args),
        arches=st.sampled_from([None, ["x86_64"], ["aarch64"]]),
    )


def profiles(names: Sequence[str], max_rules: int, max_args: int = 3
             ) -> st.SearchStrategy[SeccompProfile]:
    return st.builds(
        SeccompProfile,
        default_action=ACTIONS,
        default_errno=st.integers(0, 4095),
        rules=st.lists(rules(names, max_args), max_size=max_rules),
        bad_arch_action=ACTIONS,
    )


def arg_pool(profile: SeccompProfile) -> list[int]:
    """Values near every condition's edge, so that conditions both hold and fail."""
    pool = [0, U64]
    for rule in profile.rules:
        for c in rule.args:
            pool += [c.value, (c.value + 1) & U64, (c.value - 1) & U64, c.value & c.mask,
                     c.value | (~c.mask & U64), (c.value ^ 1 << 32) & U64]
    return pool


def check_calls(profile: SeccompProfile, calls: int, pick: Callable[[list[int]], int]) -> None:
    """Compare compiled program and profile on ``calls`` syscalls per arch; ``pick`` chooses."""
    for arch in ("x86_64", "aarch64"):
        program = profile.compile(arch)
        table = _syscalls.X86_64 if arch == "x86_64" else _syscalls.AARCH64
        named = [table[n] for r in profile.rules for n in r.names if n in table] or [0]
        pool = arg_pool(profile)
        for _ in range(calls):
            nr = pick([pick(named), pick(list(range(-2, 600))), 0x4000_0000 + pick(named),
                       pick([0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000])])
            args = [pick([pick(pool), pick(pool) ^ 1 << pick(list(range(64)))])
                    for _ in range(6)]
            assert simulate(program, nr, arch, args) == profile.evaluate(nr, args, arch)
        bad = simulate(program, named[0], 0x4000_0028)  # AUDIT_ARCH_ARM
        assert bad == (profile.bad_arch_action, 0)


@settings(max_examples=150, deadline=None)
@given(profiles(COMMON_NAMES[:40], max_rules=10), st.integers(0, 2**32))
def test_compiled_program_decides_as_the_profile_says(profile: SeccompProfile, seed: int
                                                      ) -> None:
    # The profile comes from hypothesis (so it shrinks); the calls from a seeded generator,
    # which is far cheaper than hundreds of draws per example.
    check_calls(profile, 30, random.Random(seed).choice)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example])
@given(profiles(COMMON_NAMES, max_rules=2, max_args=1), st.integers(0, 2**32))
def test_long_programs_with_far_jumps_decide_as_the_profile_says(
    small: SeccompProfile, seed: int
) -> None:
    rnd = random.Random(seed)
    # Many syscalls with several conditional rules each push rule blocks far past 255
    # instructions from the dispatch code that jumps to them.
    ops = list(ArgOp)
    actions = [A.ALLOW, A.ERRNO, A.KILL_PROCESS, A.TRAP, A.LOG]
    edges = [0, 1, 0xFFFF_FFFF, 1 << 32, U64]

    def value() -> int:
        return rnd.choice([rnd.getrandbits(64), rnd.choice(edges), rnd.randrange(16)])

    extra = [
        SeccompRule(name, rnd.choice(actions), errno=rnd.randrange(4096), args=[
            ArgCondition(rnd.randrange(6), rnd.choice(ops), value(), mask=value())
            for _ in range(rnd.randint(1, 2))
        ])
        for name in rnd.sample(COMMON_NAMES, rnd.randint(80, 120)) for _ in range(2)
    ]
    profile = SeccompProfile(
        default_action=small.default_action, rules=(*extra, *small.rules),
        bad_arch_action=small.bad_arch_action,
    )
    assert len(profile.compile("x86_64")) // 8 > 600
    check_calls(profile, 40, rnd.choice)


def long_profile(count: int, conditions: int) -> SeccompProfile:
    return SeccompProfile(rules=[
        SeccompRule(name, A.ERRNO, errno=7, args=[
            ArgCondition(i % 6, ArgOp.EQ, 0xDEAD_0000 + i) for i in range(conditions)
        ])
        for name in COMMON_NAMES[:count]
    ])


def test_far_branches_go_through_trampoline_jumps() -> None:
    program = long_profile(200, 3).compile("x86_64")
    records = list(struct.iter_unpack("<HBBI", program))
    far = [k for code, _, _, k in records if code == 0x05]  # BPF_JMP|BPF_JA
    assert far and max(far) > 255


def test_program_longer_than_the_kernel_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="4096"):
        long_profile(300, 6).compile("x86_64")
    assert MAX_PROGRAM_INSTRUCTIONS == 4096


# ---- the interpreter itself ----------------------------------------------------------------


def insn(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (b"", "empty"),
        (insn(0x06, 0x7FFF_0000)[:7], "multiple of 8"),
        (insn(0x20, 0), "return"),
        (insn(0x20, 2) + insn(0x06), "outside"),
        (insn(0x20, 64) + insn(0x06), "outside"),
        (insn(0x28, 0) + insn(0x06), "not allowed"),  # BPF_LD|BPF_H: not for seccomp
        (insn(0x15, 0, jt=5) + insn(0x06), "past the end"),
        (insn(0x06) * 4097, "more than"),
    ],
    ids=["empty", "partial", "no-return", "unaligned", "beyond-data", "bpf_h", "far-jump",
         "too-long"],
)
def test_interpreter_rejects_what_the_kernel_rejects(program: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(program, 0, "x86_64")


def test_interpreter_runs_alu_scratch_memory_and_register_instructions() -> None:
    # A = nr * 3 + 1; M[2] = A; X = A; A = X & 0xff; A |= ERRNO; return A
    program = b"".join([
        insn(0x20, 0), insn(0x24, 3), insn(0x04, 1), insn(0x02, 2), insn(0x07),
        insn(0x87), insn(0x54, 0xFF), insn(0x44, 0x0005_0000), insn(0x16),
    ])
    assert simulate(program, 100, "x86_64") == (A.ERRNO, 301 & 0xFF)
    # Division by a zero X register ends the program with 0: KILL_THREAD.
    assert simulate(insn(0x01, 0) + insn(0x3C) + insn(0x06, 0x7FFF_0000), 1) == (A.KILL_THREAD, 0)


# ============================================================================================
# Docker / OCI JSON profiles
# ============================================================================================

DOCKER_STYLE = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64",
         "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["mount", "umount2", "arm_fadvise64_64"], "action": "SCMP_ACT_ERRNO",
         "errnoRet": 1},
        {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0x7E02_0000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["unshare"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
         "includes": {"minKernel": "99.0"}},
        {"names": ["getpgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 43,
         "includes": {"arches": ["arm64"]}},
        {"names": ["getsid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 44,
         "args": [{"index": 0, "value": 77, "op": "SCMP_CMP_GE"}]},
    ],
}


def test_docker_json_entries_resolve_caps_kernel_and_arches() -> None:
    profile = SeccompProfile.from_docker_json(json.dumps(DOCKER_STYLE))
    assert profile.architectures == frozenset({"x86_64", "aarch64"})
    for arch in ("x86_64", "aarch64"):
        assert profile.evaluate("mount", (), arch) == (A.ERRNO, 1)
        assert profile.evaluate("keyctl", (), arch) == (A.ERRNO, 13)
        assert profile.evaluate("clone", (0x1000_0011,), arch) == (A.ERRNO, 1)
        assert profile.evaluate("clone", (0x11,), arch) == (A.ALLOW, 0)
        assert profile.evaluate("unshare", (0,), arch) == (A.ERRNO, 1)
        assert profile.evaluate("getppid", (), arch) == (A.ALLOW, 0)  # minKernel 99 not met
        assert profile.evaluate("getsid", (77,), arch) == (A.ERRNO, 44)
        assert profile.evaluate("getsid", (76,), arch) == (A.ALLOW, 0)
    assert profile.evaluate("getpgid", (), "aarch64") == (A.ERRNO, 43)
    assert profile.evaluate("getpgid", (), "x86_64") == (A.ALLOW, 0)

    admin = SeccompProfile.from_docker_json(
        DOCKER_STYLE, capabilities=CapabilitySet.docker_default() | CapabilitySet(["sys_admin"]),
        kernel_version=(100, 0),
    )
    assert admin.evaluate("unshare", (0,), HOST) == (A.ALLOW, 0)
    assert admin.evaluate("clone", (0x1000_0011,), HOST) == (A.ALLOW, 0)
    assert admin.evaluate("getppid", (), HOST) == (A.ERRNO, 42)


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        "[]",
        {"syscalls": []},
        {"defaultAction": "SCMP_ACT_NOTIFY"},
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": []}},
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                       "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]},
        {"defaultAction": "SCMP_ACT_ALLOW",
         "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                       "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
        {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": "EPERM"},
    ],
)
def test_malformed_docker_json_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        SeccompProfile.from_docker_json(bad)


def test_distribution_container_profile_compiles_for_both_arches() -> None:
    if not CONTAINERS_PROFILE.exists():
        pytest.skip(f"{CONTAINERS_PROFILE} missing (Debian golang-github-containers-common)")
    profile = SeccompProfile.from_docker_json(CONTAINERS_PROFILE.read_bytes())
    for arch in ("x86_64", "aarch64"):
        program = profile.compile(arch)
        assert 100 < len(program) // 8 <= MAX_PROGRAM_INSTRUCTIONS
        assert simulate(program, syscall_number("read", arch) or 0, arch) == (A.ALLOW, 0)
        nr = syscall_number("mount", arch) or 0
        assert simulate(program, nr, arch) == profile.evaluate(nr, (), arch)


def test_masked_and_readonly_paths_are_dockers() -> None:
    assert "/proc/kcore" in DEFAULT_MASKED_PATHS and "/sys/firmware" in DEFAULT_MASKED_PATHS
    assert "/proc/sys" in DEFAULT_READONLY_PATHS and "/proc/sysrq-trigger" in DEFAULT_READONLY_PATHS
    assert not set(DEFAULT_MASKED_PATHS) & set(DEFAULT_READONLY_PATHS)
    assert all(p.startswith(("/proc/", "/sys/")) for p in DEFAULT_MASKED_PATHS)


# ============================================================================================
# The real kernel
# ============================================================================================

# Runs in a fresh interpreter: optionally enters a private mount namespace (so that a filter
# that failed to deny mount could not touch the host), loads the filter, then makes each probe
# syscall and prints {probe: [return value, errno]}.
SECCOMP_CHILD = r"""
import ctypes, json, os, sys
cfg = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                       ctypes.c_ulong]
def check(ok, what):
    if not ok:
        sys.exit(f"{what}: {os.strerror(ctypes.get_errno())}")
if cfg["private_mounts"]:
    check(libc.unshare(0x20000) == 0, "unshare(CLONE_NEWNS)")
    check(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0, "make / rprivate")
if cfg["program"] is not None:
    prog = bytes.fromhex(cfg["program"])
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    check(libc.prctl(38, 1, None, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS")
    check(libc.prctl(22, 2, ctypes.cast(ctypes.byref(fprog), ctypes.c_void_p), 0, 0) == 0,
          "PR_SET_SECCOMP")
results = {}
for name, nr, args in cfg["probes"]:
    cargs = [ctypes.c_char_p(a.encode()) if isinstance(a, str) else ctypes.c_ulong(a)
             for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *cargs)
    if r == 0 and name.startswith("clone"):
        os._exit(0)  # a clone the filter should have refused: the child leaves at once
    if r > 0 and name.startswith("clone"):
        os.waitpid(r, 0)
    results[name] = [r, ctypes.get_errno() if r == -1 else 0]
if cfg["spawn"]:
    pid = os.posix_spawn("/bin/true", ["true"], {})
    results["posix_spawn"] = [os.waitpid(pid, 0)[1], 0]
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    results["fork"] = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), 0]
print(json.dumps(results))
"""


@pytest.fixture
def scratch_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="isolate-sec-") as path:
        yield path


def run_child(
    program: bytes | None, probes: list[tuple[str, int, list[Any]]], *,
    private_mounts: bool = False, spawn: bool = False,
) -> subprocess.CompletedProcess[str]:
    cfg = {"program": None if program is None else program.hex(), "probes": probes,
           "private_mounts": private_mounts, "spawn": spawn}
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", SECCOMP_CHILD, json.dumps(cfg)],
        capture_output=True, text=True, timeout=60, check=False,
    )


def results_of(proc: subprocess.CompletedProcess[str]) -> dict[str, list[int]]:
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[int]] = json.loads(proc.stdout)
    return result


def nr(name: str) -> int:
    number = syscall_number(name, HOST)
    assert number is not None
    return number


CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x1000_0000, 0x0002_0000, 17


def default_probes(target: str) -> list[tuple[str, int, list[Any]]]:
    return [
        ("mount", nr("mount"), ["none", target, "tmpfs", 0, 0]),
        ("unshare_user", nr("unshare"), [CLONE_NEWUSER]),
        ("clone3", nr("clone3"), [0, 0]),
        ("keyctl", nr("keyctl"), [0, 0, 0, 0, 0]),  # KEYCTL_GET_KEYRING_ID of nothing
        ("getpid", nr("getpid"), []),
        ("write", nr("write"), [1, "", 0]),
    ]


def test_without_a_filter_the_probes_succeed_so_the_filtered_failures_mean_something(
    scratch_dir: str,
) -> None:
    need_root()
    got = results_of(run_child(None, default_probes(scratch_dir), private_mounts=True))
    assert got["mount"] == [0, 0]
    assert got["unshare_user"] == [0, 0]
    assert got["clone3"][1] != errno.ENOSYS
    assert got["keyctl"][1] != errno.EPERM
    assert got["getpid"][0] > 0


def test_default_profile_in_the_kernel_refuses_mount_unshare_clone3_keyctl(
    scratch_dir: str,
) -> None:
    need_root()
    program = SeccompProfile.default().compile()
    probes = [*default_probes(scratch_dir),
              ("clone_newns", nr("clone"), [CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0])]
    proc = run_child(program, probes, private_mounts=True, spawn=True)
    got = results_of(proc)
    assert got["mount"] == [-1, errno.EPERM]
    assert got["unshare_user"] == [-1, errno.EPERM]
    assert got["clone_newns"] == [-1, errno.EPERM]
    assert got["clone3"] == [-1, errno.ENOSYS]
    assert got["keyctl"] == [-1, errno.EPERM]
    assert got["getpid"][0] > 0 and got["write"] == [0, 0]
    # libc falls back from clone3 to clone, and plain fork-style clone is allowed.
    assert got["posix_spawn"] == [0, 0]
    assert got["fork"] == [3, 0]


def test_x32_syscall_kills_the_process_in_the_kernel() -> None:
    if HOST != "x86_64":
        pytest.skip("x32 exists only on x86_64")
    program = SeccompProfile.default().compile()
    proc = run_child(program, [("x32_getpid", 0x4000_0000 | nr("getpid"), [])])
    assert proc.returncode == -signal.SIGSYS, proc.stderr


def test_docker_json_profile_works_in_the_kernel(scratch_dir: str) -> None:
    need_root()
    profile = SeccompProfile.from_docker_json(DOCKER_STYLE)
    probes = [*default_probes(scratch_dir), ("getsid_77", nr("getsid"), [77]),
              ("getsid_0", nr("getsid"), [0])]
    got = results_of(run_child(profile.compile(), probes, private_mounts=True, spawn=True))
    assert got["mount"] == [-1, errno.EPERM]
    assert got["unshare_user"] == [-1, errno.EPERM]
    assert got["keyctl"] == [-1, errno.EACCES]
    assert got["clone3"] == [-1, errno.ENOSYS]
    assert got["getsid_77"] == [-1, 44]
    # Allowed, so it answers as it does here: the child shares this process's session (whose
    # id reads as 0 where the session leader lives in an ancestor pid namespace, as in CI).
    assert got["getsid_0"] == [os.getsid(0), 0]
    assert got["getpid"][0] > 0 and got["posix_spawn"] == [0, 0]


def test_distribution_container_profile_in_the_kernel_matches_its_evaluation(
    scratch_dir: str,
) -> None:
    need_root()
    if not CONTAINERS_PROFILE.exists():
        pytest.skip(f"{CONTAINERS_PROFILE} missing (Debian golang-github-containers-common)")
    profile = SeccompProfile.from_docker_json(CONTAINERS_PROFILE.read_bytes())
    probes = default_probes(scratch_dir)
    got = results_of(run_child(profile.compile(), probes, private_mounts=True))
    for name, number, args in probes:
        action, data = profile.evaluate(number, [0 if isinstance(a, str) else a for a in args])
        if action is A.ERRNO:
            assert got[name] == [-1, data], name
        else:
            assert action is A.ALLOW and got[name][1] not in (errno.EPERM, errno.ENOSYS), name


def test_far_jumps_work_in_the_kernel() -> None:
    # Rule blocks are laid out by syscall number after the dispatch code: with ~100 lower
    # numbers before it, getppid's block is thousands of instructions from its jump.
    table = _syscalls.X86_64 if HOST == "x86_64" else _syscalls.AARCH64
    names = sorted((n for n in COMMON_NAMES if n != "getppid"), key=table.__getitem__)[:120]
    names.append("getppid")
    assert sum(table[n] < table["getppid"] for n in names) > 80
    profile = SeccompProfile(rules=[
        SeccompRule(name, A.ERRNO, errno=40 + k,
                    args=[ArgCondition(0, ArgOp.EQ, 0xDEAD_BEEF_0000 + k),
                          ArgCondition(1, ArgOp.MASKED_EQ, 0x10, mask=0xF0)])
        for name in names for k in range(2)
    ])
    program = profile.compile()
    assert len(program) // 8 > 1000
    probes = [
        ("hit", nr("getppid"), [0xDEAD_BEEF_0001, 0x1234_5619]),
        ("miss_mask", nr("getppid"), [0xDEAD_BEEF_0001, 0x20]),
        ("miss_high", nr("getppid"), [0xBEEF_0001, 0x10]),
        ("plain", nr("getppid"), []),
    ]
    got = results_of(run_child(program, probes))
    assert got["hit"] == [-1, 41]
    assert got["miss_mask"][0] > 0 and got["miss_high"][0] > 0 and got["plain"][0] > 0


# Drops capabilities in itself: bounding set, ambient set, then capset(eff=prm=keep, inh=0);
# reports "ready" and waits for stdin to close so the parent can read /proc/PID/status.
CAPS_CHILD = r"""
import ctypes, sys
keep = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
def check(ok, what):
    if not ok:
        sys.exit(f"{what} failed: errno {ctypes.get_errno()}")
last = int(open("/proc/sys/kernel/cap_last_cap").read())
for cap in range(last + 1):
    if not keep >> cap & 1:
        check(libc.prctl(24, cap, 0, 0, 0) == 0, f"PR_CAPBSET_DROP {cap}")
check(libc.prctl(47, 4, 0, 0, 0) == 0, "PR_CAP_AMBIENT_CLEAR_ALL")
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]
header = Header(0x20080522, 0)
data = (Data * 2)(Data(keep & 0xFFFFFFFF, keep & 0xFFFFFFFF, 0),
                  Data(keep >> 32, keep >> 32, 0))
check(libc.capset(ctypes.byref(header), data) == 0, "capset")
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def caps_child() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(keep: CapabilitySet) -> int:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", CAPS_CHILD, str(keep.mask)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line == "ready\n", proc.communicate()[1]
        return proc.pid

    try:
        yield start
    finally:
        for proc in procs:
            proc.communicate(timeout=60)  # closes stdin: the child exits


def test_child_that_dropped_everything_holds_no_capability(caps_child: Any) -> None:
    need_root()
    before = read_process_caps()
    assert not before.is_empty  # root here: there is something to drop
    caps = read_process_caps(caps_child(CapabilitySet.none()))
    assert caps.is_empty
    assert caps.effective.mask == caps.permitted.mask == caps.bounding.mask == 0
    assert caps.inheritable.mask == caps.ambient.mask == 0


def test_child_keeping_dockers_set_holds_exactly_that(caps_child: Any) -> None:
    need_root()
    keep = CapabilitySet.docker_default()
    caps = read_process_caps(caps_child(keep))
    assert caps.effective == caps.permitted == caps.bounding == keep
    assert not caps.inheritable and not caps.ambient
    assert not caps.is_empty
