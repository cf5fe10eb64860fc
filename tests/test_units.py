"""The parsers every layer shares for human input: durations and decimal ids (sizes are tested
with Limits in tests/cgroups/test_limits.py)."""

from __future__ import annotations

import pytest

from isolate._units import MAX_SECONDS, human_size, id_spans, parse_decimal, parse_seconds
from isolate.errors import ConfigError


@pytest.mark.parametrize(("value", "expected"), [
    ("1.5", 1.5), (2, 2.0), (0.001, 0.001), (" 30 ", 30.0), ("1e3", 1000.0), (MAX_SECONDS, 1e9),
])
def test_parse_seconds_takes_plain_numbers(value: float | str, expected: float) -> None:
    assert parse_seconds(value) == expected


@pytest.mark.parametrize(("value", "message"), [
    ("nan", "expected a number of seconds"), (float("nan"), "expected a number of seconds"),
    ("inf", "expected a number of seconds"), (float("inf"), "at most 1e+09 seconds"),
    (10**400, "at most 1e+09 seconds"), ("-1", "at least 0.001"), (0, "at least 0.001"),
    ("1e-300", "at least 0.001"), ("1_000", "expected a number"), ("\u0663", "expected a number"),
    (True, "expected a number"), ("", "expected a number"), ([1], "expected a number"),
])
def test_parse_seconds_refuses_what_no_timer_can_wait(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_seconds(value, name="--timeout")  # type: ignore[arg-type]
    assert str(err.value).startswith("--timeout: ") and message in str(err.value), err.value


def test_zero_seconds_only_where_allowed() -> None:
    assert parse_seconds("0", zero=True) == 0.0
    with pytest.raises(ConfigError, match=r"0 or at least 0\.001"):
        parse_seconds("0.0000001", zero=True)


@pytest.mark.parametrize("text", ["", "-1", "+1", "1_000", "\u0663", " 1", "1.0", "0x10"])
def test_parse_decimal_takes_ascii_digits_only(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^uid: expected a number of digits 0-9"):
        parse_decimal(text, name="uid", maximum=10)


def test_parse_decimal_bounds_and_long_values_stay_short_in_messages() -> None:
    assert parse_decimal("0010", name="n", maximum=10) == 10
    with pytest.raises(ConfigError, match="at most 10, got '11'"):
        parse_decimal("11", name="n", maximum=10)
    with pytest.raises(ConfigError) as err:
        parse_decimal("9" * 5000, name="n", maximum=10)
    assert len(str(err.value)) < 120


def test_human_size_picks_the_largest_whole_unit() -> None:
    assert [human_size(n) for n in (6 << 20, 1536 << 10, 1 << 60, 1000, 0)] == \
        ["6M", "1536K", "1E", "1000B", "0B"]


@pytest.mark.parametrize(("ranges", "text"), [
    ([(0, 1), (1, 65536)], "0-65536"),          # root and a subordinate range: one span
    ([(1, 65536), (0, 1)], "0-65536"),          # in any order
    ([(0, 1), (5, 1), (7, 3)], "0, 5, 7-9"),
    ([], ""),
])
def test_id_spans_join_adjacent_ranges(ranges: list[tuple[int, int]], text: str) -> None:
    assert id_spans(ranges) == text


def test_sizes_and_numbers_are_read_as_their_regular_expressions_say() -> None:
    """The hand-written readers (no re on a start's path) against the patterns they replace,
    on every short string of the characters that matter and many longer random ones."""
    import itertools
    import random
    import re

    from isolate import _units

    size = re.compile(r"^\s*([0-9]+)(?:\.([0-9]+))?\s*([kmgtpe]?)(?:i?b)?\s*$",
                      re.IGNORECASE | re.ASCII)
    number = re.compile(r"^\s*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*$",
                        re.ASCII)
    chars = ["0", "7", ".", "k", "K", "m", "G", "e", "E", "i", "I", "b", "B", "+", "-", " ",
             "\t", "\n", "x", "_", "\u0663", "\u212a", "\u00a0"]
    cases = {"".join(t) for n in range(4) for t in itertools.product(chars, repeat=n)}
    rng = random.Random(3)
    cases |= {"".join(rng.choices(chars, k=rng.randint(4, 9))) for _ in range(50_000)}
    for text in cases:
        m = size.match(text)
        expected = None if m is None else (m.group(1), m.group(2) or "", m.group(3).lower())
        assert _units._size_parts(text) == expected, repr(text)
        assert _units._is_number(text) == bool(number.match(text)), repr(text)
