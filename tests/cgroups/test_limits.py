"""Limits: parsing of human units and validation before any I/O; the v2 file formats checked
against real files in a fixture directory."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from isolate.cgroups import BackendKind, IoDeviceLimit, Limits, parse_size
from isolate.cgroups._backend import V2Backend, weight_to_blkio, weight_to_shares
from isolate.cgroups.detect import Hierarchy, Layout
from isolate.errors import ConfigError, UnsupportedError


@pytest.mark.parametrize(("text", "expected"), [
    ("512M", 512 << 20), ("1G", 1 << 30), ("1.5G", 3 << 29), ("64KiB", 64 << 10),
    ("100", 100), (4096, 4096), ("2t", 2 << 40), ("10 MB", 10 << 20), (0, 0),
])
def test_parse_size_accepts_human_units(text: int | str, expected: int) -> None:
    assert parse_size(text) == expected
    assert Limits.parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "12X", "-1", "M", -5, True, 1.5, "1e3", "1_000", "\u0663",
                                 "5\u212a", "8E", 2**63, "99999999999999999999999T", "9" * 5000])
def test_parse_size_rejects_garbage_and_sizes_beyond_the_kernels(bad: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(bad)  # type: ignore[arg-type]


def test_parse_size_is_exact_up_to_the_largest_size() -> None:
    assert parse_size("7.5E") == 15 << 59
    assert parse_size(str(2**63 - 1)) == 2**63 - 1
    assert parse_size("0.5K") == 512 and parse_size("0.0001K") == 0


@pytest.mark.parametrize(("limits", "message"), [
    (dict(memory_max=0), "below the smallest memory limit, 6M"),
    (dict(memory_max="4096"), "below the smallest memory limit, 6M"),
    (dict(memory_max="6M", memory_swap_max=2**63 - 1), "kernel's largest size"),
    (dict(cpus=1e308), "largest cpu quota"),
    (dict(cpus=10**400), "cpus: must be a positive number"),
    (dict(cpus=20_000_000, cpu_period=1_000_000), "17592186 cpus at a period of 1000000"),
    (dict(cpus="1_0"), "expected a number of cpus"),
    (dict(cpus="nan"), "expected a number of cpus"),
    (dict(cpu_quota=2**44), "between 1000 and 17592186044415"),
    (dict(pids_max=2**22 + 1), "between 1 and 4194304"),
])
def test_limits_beyond_what_the_kernel_takes_are_config_errors(
    limits: dict[str, object], message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        Limits(**limits)  # type: ignore[arg-type]
    assert Limits(memory_max="6M").memory_max == 6 << 20


def test_errors_name_the_attribute_and_value() -> None:
    with pytest.raises(ConfigError, match=r"memory_max.*'lots'"):
        Limits(memory_max="lots")
    with pytest.raises(ConfigError, match=r"pids_max.*0"):
        Limits(pids_max=0)
    with pytest.raises(ConfigError, match=r"cpu_weight.*20000"):
        Limits(cpu_weight=20000)
    with pytest.raises(ConfigError, match=r"cpuset_cpus.*'3-1'"):
        Limits(cpuset_cpus="3-1")
    with pytest.raises(ConfigError, match=r"cpus.*-1"):
        Limits(cpus=-1)


def test_cpus_becomes_quota_over_period() -> None:
    assert Limits(cpus=1.5).quota_period() == (150_000, 100_000)
    assert Limits(cpus="0.5", cpu_period=200_000).quota_period() == (100_000, 200_000)
    assert Limits(cpu_quota=20_000).quota_period() == (20_000, 100_000)
    assert Limits(cpu_period=50_000).quota_period() == (None, 50_000)


def test_conflicting_or_incomplete_limits_are_rejected() -> None:
    with pytest.raises(ConfigError, match="not both"):
        Limits(cpus=1, cpu_quota=50_000)
    with pytest.raises(ConfigError, match="kernel minimum"):
        Limits(cpus=0.001)
    with pytest.raises(ConfigError, match="needs memory_max"):
        Limits(memory_swap_max="1G")
    with pytest.raises(ConfigError, match="above memory_max"):
        Limits(memory_max="8M", memory_high="9M")
    with pytest.raises(ConfigError, match="more than once"):
        Limits(io_devices=[IoDeviceLimit("8:0"), IoDeviceLimit((8, 0))])
    with pytest.raises(ConfigError, match="MAJOR:MINOR"):
        IoDeviceLimit("sda")


def test_limits_are_frozen() -> None:
    limits = Limits(memory_max="1G")
    with pytest.raises(AttributeError, match="frozen Limits"):  # attrs's is one too
        limits.memory_max = 5  # type: ignore[misc]
    assert attrs.evolve(limits, pids_max=3).pids_max == 3


def test_io_device_for_path_reads_the_device_numbers(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a block device"):
        IoDeviceLimit.for_path(str(tmp_path))
    with pytest.raises(ConfigError, match="cannot stat"):
        IoDeviceLimit.for_path(str(tmp_path / "missing"))


def test_weights_map_onto_v1_ranges_end_to_end() -> None:
    assert (weight_to_shares(1), weight_to_shares(10_000)) == (2, 262_144)
    assert (weight_to_blkio(1), weight_to_blkio(10_000)) == (10, 1000)


def _v2_fixture(tmp_path: Path, controllers: str, files: list[str]) -> V2Backend:
    """A directory of real files shaped like a v2 cgroup (for formats the host cannot
    exercise: its v2 mount has no controllers)."""
    d = tmp_path / "grp"
    d.mkdir()
    (tmp_path / "cgroup.controllers").write_text(controllers + "\n")
    (d / "cgroup.controllers").write_text(controllers + "\n")
    for name in files:
        (d / name).write_text("")
    h = Hierarchy("unified", 2, str(tmp_path), "/", frozenset(), "/")
    layout = Layout(BackendKind.V2, h, (), frozenset(controllers.split()))
    return V2Backend(layout, {"unified": str(d)})


def test_v2_limits_are_written_in_the_kernel_formats(tmp_path: Path) -> None:
    names = ["memory.max", "memory.high", "memory.swap.max", "cpu.max", "cpu.weight",
             "cpuset.cpus", "cpuset.mems", "pids.max", "io.weight", "io.max"]
    backend = _v2_fixture(tmp_path, "cpuset cpu io memory pids", names)
    backend.apply(Limits(
        memory_max="512M", memory_high="256M", memory_swap_max=0, cpus=1.5, cpu_weight=200,
        cpuset_cpus="0-1", cpuset_mems="0", pids_max=64, io_weight=300,
        io_devices=[IoDeviceLimit("8:0", read_bps="1M", write_iops=100)]), best_effort=False)
    got = {n: (tmp_path / "grp" / n).read_text() for n in names}
    assert got == {
        "memory.max": str(512 << 20), "memory.high": str(256 << 20), "memory.swap.max": "0",
        "cpu.max": "150000 100000", "cpu.weight": "200", "cpuset.cpus": "0-1",
        "cpuset.mems": "0", "pids.max": "64", "io.weight": "default 300",
        "io.max": f"8:0 rbps={1 << 20} wiops=100",
    }


def test_v2_period_alone_keeps_quota_unlimited(tmp_path: Path) -> None:
    backend = _v2_fixture(tmp_path, "cpu", ["cpu.max"])
    backend.apply(Limits(cpu_period=50_000), best_effort=False)
    assert (tmp_path / "grp" / "cpu.max").read_text() == "max 50000"


def test_v2_missing_controller_or_file_is_unsupported_and_named(tmp_path: Path) -> None:
    backend = _v2_fixture(tmp_path, "memory", ["memory.max"])
    with pytest.raises(UnsupportedError) as err:
        backend.apply(Limits(pids_max=3), best_effort=False)
    assert err.value.missing == "pids" and "not delegated" in str(err.value)
    with pytest.raises(UnsupportedError) as err:
        backend.apply(Limits(memory_max="1G", memory_swap_max=0), best_effort=False)
    assert err.value.missing == "memory.swap.max"
    skipped = backend.apply(Limits(memory_max="1G", memory_swap_max=0, pids_max=3),
                            best_effort=True)
    assert [s.split(":")[0] for s in skipped] == ["memory_swap_max", "pids_max"]
    assert (tmp_path / "grp" / "memory.max").read_text() == str(1 << 30)
