"""isolate._memo: functools' caches without functools, held to functools' answers."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from isolate import _memo


def _counted() -> tuple[list[tuple[object, ...]], Any]:
    calls: list[tuple[object, ...]] = []

    def f(a: object, b: object = 0, *, c: object = 0) -> tuple[object, ...]:
        """f's doc."""
        calls.append((a, b, c))
        return (a, b, c)

    return calls, f


@pytest.mark.parametrize("make", [_memo.lru_cache(2), functools.lru_cache(2)],
                         ids=["memo", "functools"])
def test_a_bounded_cache_computes_once_per_key_and_forgets_the_oldest(make: Any) -> None:
    calls, f = _counted()
    g = make(f)
    assert g(1) == (1, 0, 0) and g(1) == (1, 0, 0)
    assert g(2, c=3) == (2, 0, 3) and g(2, c=3) == (2, 0, 3)
    assert calls == [(1, 0, 0), (2, 0, 3)]
    g(3)  # a third key: one of the first two is forgotten, and computed again when asked
    g(1)
    g(2, c=3)
    assert len(calls) == 5
    g.cache_clear()
    g(3)
    assert len(calls) == 6
    assert g.__name__ == "f" and g.__doc__ == "f's doc." and g.__wrapped__ is f
    with pytest.raises(TypeError):
        g([])  # unhashable, as with functools


def test_an_unbounded_cache_keeps_everything_and_takes_no_parentheses() -> None:
    calls, f = _counted()
    g = _memo.cache(f)
    for i in range(1000):
        g(i)
    for i in range(1000):
        g(i)
    assert len(calls) == 1000
    h = _memo.lru_cache(f)  # (as @functools.lru_cache, without parentheses)
    h(1), h(1)
    assert len(calls) == 1001


def test_positional_and_keyword_calls_are_different_keys_as_in_functools() -> None:
    calls, f = _counted()
    g = _memo.cache(f)
    g(1, 2)
    g(1, b=2)
    g(a=1, b=2)
    assert len(calls) == 3
    g(a=1, b=2)
    assert len(calls) == 3
