"""isolate._enum against the standard library's enum: the same answers for what isolate and
its callers do with enumerations, and none of enum loaded by the modules that use it."""

from __future__ import annotations

import copy
import enum
import pickle
import types

import pytest

from isolate import _enum
from isolate._plan import OpFlag, OpKind
from isolate.container.state import Status
from isolate.namespaces import NamespaceKind
from isolate.security import Capability, SeccompAction
from refusing import run_refusing


def _pair(base: str) -> tuple[type, type]:
    """The same enumeration made by enum and by isolate._enum."""
    def body(namespace: dict[str, object]) -> None:
        values: dict[str, object] = {"A": 1, "B": 2, "ALIAS": 2, "Z": 0}
        if base == "Enum":
            values = {"A": "a", "B": "b", "ALIAS": "b", "Z": "z"}
        if base == "IntFlag":
            values["C"] = 4
        for key, value in values.items():
            namespace[key] = value
        namespace["_private"] = 5
        namespace["double"] = lambda self: self.value * 2
        namespace["named"] = classmethod(lambda cls, n: cls[n])
        namespace["upper"] = property(lambda self: self.name.upper() + "!")
    made = [types.new_class("Kind", (getattr(module, base),), exec_body=body)
            for module in (enum, _enum)]
    return made[0], made[1]


@pytest.mark.parametrize("base", ["Enum", "IntEnum", "IntFlag"])
def test_members_behave_as_enums_do(base: str) -> None:
    real, ours = _pair(base)
    assert [m.name for m in ours] == [m.name for m in real]
    assert [m.value for m in ours] == [m.value for m in real]
    assert len(ours) == len(real)
    assert list(ours.__members__) == list(real.__members__)
    assert ours.ALIAS is ours.B and ours["ALIAS"] is ours.B
    assert list(ours._value2member_map_) == list(real._value2member_map_)
    for r, o in zip(real, ours, strict=True):
        assert repr(o) == repr(r)
        assert str(o) == str(r)
        assert f"{o}" == f"{r}" and f"{o:>6}" == f"{r:>6}"
        assert isinstance(o, ours) and type(o) is ours
        assert ours(o.value) is o and ours(o) is o and ours[o.name] is o
        assert (o == o.value) == (r == r.value)
        assert (hash(o) == hash(o.value)) == (hash(r) == hash(r.value))
        assert bool(o) == bool(r)
        assert o.double() == r.double() and o.upper == r.upper
        assert ours.named(o.name) is o
        assert copy.copy(o) is o and copy.deepcopy(o) is o
        assert (o in ours) and (o.value in ours)
    assert ours._private.value == real._private.value == 5  # (a member, as enum has it)
    with pytest.raises(ValueError, match="is not a valid Kind") as caught:
        ours(99 if base == "IntEnum" else "nope")
    with pytest.raises(ValueError) as real_caught:
        real(99 if base == "IntEnum" else "nope")
    assert str(caught.value) == str(real_caught.value)
    with pytest.raises(KeyError):
        ours["NOPE"]
    with pytest.raises(AttributeError):
        ours.A = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        ours.A.extra = 1  # type: ignore[attr-defined]
    assert repr(ours) == repr(real)


def test_int_members_are_ints() -> None:
    _, ours = _pair("IntEnum")
    assert ours.A + 1 == 2 and isinstance(ours.A, int) and sorted([ours.B, ours.A]) == [1, 2]
    assert {ours.A: "x"}[1] == "x" and {1: "x"}[ours.A] == "x"
    assert int.to_bytes(ours.B, 1, "little") == b"\x02"
    assert f"{ours.B:d}" == "2" and f"{ours.B:#x}" == "0x2"


def test_flags_combine_as_intflag_does() -> None:
    real, ours = _pair("IntFlag")
    for a, b in [("A", "B"), ("A", "C"), ("B", "C"), ("Z", "A")]:
        for op in ("__or__", "__and__", "__xor__"):
            r = getattr(real[a], op)(real[b])
            o = getattr(ours[a], op)(ours[b])
            assert int(o) == int(r) and type(o) is ours
            assert (o.name or "") == (r.name or "") or "|" in (o.name or "")
        assert (ours[a] in (ours[a] | ours[b])) and (real[a] in (real[a] | real[b]))
    assert repr(ours.A | ours.C) == repr(real.A | real.C)
    assert int(~ours.A) == int(~real.A)
    assert ours(5) == real(5) == 5 and type(ours(5)) is ours
    assert ours.A | 2 == 3 and 2 | ours.A == 3


def test_isolates_enumerations_keep_their_values_and_methods() -> None:
    assert OpKind(35) is OpKind.EXEC and OpKind.EXEC.name == "EXEC"
    assert OpFlag(3) == OpFlag.IN_ROOT | OpFlag.MKDIR
    assert NamespaceKind.parse("network") is NamespaceKind.NET
    assert NamespaceKind.PID.for_children == "pid_for_children"
    assert NamespaceKind("mnt").flag != 0
    assert Capability.CAP_SYS_ADMIN == 21 and Capability["CAP_CHOWN"] == 0
    assert SeccompAction.parse("allow") is SeccompAction.ALLOW
    assert Status("running").can_stop() and not Status.EXITED.can_stop()
    assert pickle.loads(pickle.dumps(NamespaceKind.NET)) is NamespaceKind.NET
    assert pickle.loads(pickle.dumps(Capability.CAP_KILL)) is Capability.CAP_KILL


def test_the_modules_that_use_them_load_no_enum() -> None:
    out = run_refusing({"enum"}, "import isolate._plan, isolate.namespaces, isolate.security\n"
                                 "print(isolate.namespaces.NamespaceKind.NET.name)\n")
    assert out == "NET\n"
