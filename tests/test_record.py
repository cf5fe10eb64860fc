"""isolate._record: the frozen records of the start path behave as the attrs classes they
replace (fields, converters, validators, equality, hashing, copies), and attrs's own
functions work on them."""

from __future__ import annotations

import copy
import inspect
import pickle
import subprocess
import sys
from typing import Any

import attrs
import pytest

from isolate import _record


def _positive(_inst: object, f: Any, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{f.name} must be positive, not {value}")


def _words(value: str | tuple[str, ...]) -> tuple[str, ...]:
    return tuple(value.split()) if isinstance(value, str) else tuple(value)


seen: list[tuple[str, object]] = []


@_record.record(cache_hash=True)
class Point:
    x: int = _record.field(validator=_positive)
    y: int = 0
    tags: tuple[str, ...] = _record.field(default="a b", converter=_words)
    note: str = _record.field(default="", eq=False)


@_record.record
class Checked:
    low: int
    high: int = _record.field(validator=[_positive])

    def __attrs_post_init__(self) -> None:
        seen.append(("post", (self.low, self.high)))
        if self.low > self.high:
            raise ValueError("low above high")


@_record.mutable
class Bag:
    items: list[int] = _record.field(factory=list)


class Sub(Point):
    pass


@_record.record
class Login:
    user: str
    password: str = _record.field(default="", repr=False)


@_record.record(eq=False)
class Handle:
    kind: str = _record.field(validator=_record.in_(("a", "b")))


def test_fields_come_in_order_with_defaults_converters_and_validators() -> None:
    p = Point(3)
    assert (p.x, p.y, p.tags, p.note) == (3, 0, ("a", "b"), "")  # the default converted
    assert Point(1, 2, "c d", "n") == Point(x=1, y=2, tags=("c", "d"), note="other")
    assert [f.name for f in _record.fields(Point)] == ["x", "y", "tags", "note"]
    assert _record.fields(Point).tags.default == "a b"
    assert repr(p) == "Point(x=3, y=0, tags=('a', 'b'), note='')"
    with pytest.raises(ValueError, match="x must be positive, not 0"):
        Point(0)


def test_validators_run_after_every_field_is_set_then_the_post_init() -> None:
    seen.clear()
    assert Checked(1, 2).high == 2
    assert seen == [("post", (1, 2))]
    with pytest.raises(ValueError, match="high must be positive"):
        Checked(1, -1)
    with pytest.raises(ValueError, match="low above high"):
        Checked(5, 2)


@pytest.mark.parametrize("call, message", [
    (lambda: Point(), r"missing 1 required argument: 'x'"),
    (lambda: Point(1, 2, "a", "b", 5), r"takes 4 positional arguments but 5 were given"),
    (lambda: Point(1, x=2), r"got multiple values for argument 'x'"),
    (lambda: Point(1, z=2), r"got an unexpected keyword argument 'z'"),
])
def test_bad_calls_are_type_errors_that_name_the_argument(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_a_record_is_frozen_and_hashes_by_its_compared_fields() -> None:
    p = Point(1, note="a")
    with pytest.raises(_record.FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p == Point(1, note="b") and hash(p) == hash(Point(1, note="b"))  # note: eq=False
    assert p != Point(2) and p != (1, 0)
    assert len({p, Point(1), Point(2)}) == 2


def test_a_mandatory_field_after_a_defaulted_one_is_refused_at_class_creation() -> None:
    with pytest.raises(ValueError, match="no mandatory field \\('b'\\) is allowed after"):
        @_record.record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_a_mutable_record_takes_assignments_and_is_not_hashable() -> None:
    b = Bag()
    b.items.append(1)
    b.items = [2]
    assert b == Bag([2]) and Bag().items is not Bag().items  # a new list per instance
    with pytest.raises(TypeError):
        hash(b)


def test_a_field_left_out_of_the_repr_is_not_shown() -> None:
    assert repr(Login("me", "s3cret")) == "Login(user='me')"
    from isolate.image.credentials import Credentials
    assert "hunter2" not in repr(Credentials(username="u", password="hunter2"))


def test_a_record_without_eq_is_compared_and_hashed_as_itself() -> None:
    h = Handle("a")
    assert h == h and h != Handle("a") and len({h, Handle("a")}) == 2
    with pytest.raises(AttributeError):
        h.kind = "b"  # type: ignore[misc]
    with pytest.raises(ValueError, match="'kind' must be in \\('a', 'b'\\) \\(got 'c'\\)"):
        Handle("c")


def test_methods_a_record_writes_itself_stay() -> None:
    @_record.record
    class Named:
        name: str
        extra: int = 0

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and self.name == other.name

        def __hash__(self) -> int:
            return hash(self.name)

    assert repr(Named("a")) == "<a>" and Named("a", 1) == Named("a", 2)
    assert hash(Named("a", 1)) == hash("a")
    with pytest.raises(AttributeError):
        Named("a").name = "b"  # type: ignore[misc]

    @_record.mutable
    class Loose:
        n: int = _record.field(default=0, eq=False)

    @_record.mutable
    class Counter:
        n: int = 0
    c = Counter()
    c.n += 1  # a mutable record stays assignable, whatever its eq
    assert c.n == 1 and Loose() == Loose(5)


def test_a_subclass_keeps_the_fields() -> None:
    assert Sub(2).tags == ("a", "b") and Sub(2) != Point(2)  # another class: not equal


def test_attrs_functions_work_on_records() -> None:
    p = Point(1, tags="x")
    assert attrs.has(Point) and attrs.fields(Point) == _record.fields(Point)
    assert attrs.evolve(p, y=5) == Point(1, 5, "x")
    assert _record.evolve(p, y=5) == Point(1, 5, "x")
    assert attrs.asdict(p) == {"x": 1, "y": 0, "tags": ("x",), "note": ""}
    with pytest.raises(ValueError):
        attrs.evolve(p, x=-1)  # evolve validates as a new instance does
    # _record.evolve also takes attrs classes (the rest of isolate uses it for both).
    @attrs.frozen
    class A:
        a: int
    assert _record.evolve(A(1), a=2) == A(2)


def test_copies_and_pickles_hash_anew() -> None:
    p = Point(4, tags="a")
    hash(p)  # cached on the instance
    for q in (copy.copy(p), copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert q == p and hash(q) == hash(p)
    assert "__record_hash" not in pickle.loads(pickle.dumps(p)).__dict__


def test_the_signature_is_the_fields() -> None:
    params = inspect.signature(Point).parameters
    assert list(params) == ["x", "y", "tags", "note"]
    assert params["x"].default is inspect.Parameter.empty and params["tags"].default == "a b"


def test_making_records_loads_neither_attrs_nor_inspect() -> None:
    code = ("import sys\n"
            "from isolate import _record\n"
            "@_record.record\n"
            "class P:\n"
            "    x: int = _record.field(default=1)\n"
            "assert _record.evolve(P(), x=2) == P(2)\n"
            "print(sorted({'attr', 'attrs', 'inspect'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out == "[]\n"
