"""isolate._ctx and isolate._memo.cached_property against contextlib's and functools': the
same results, exceptions and tracebacks' ends in every way a block and a generator can end."""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from isolate import _ctx, _memo
from refusing import run_refusing

# A generator's behaviours: what it does around its yield.


def plain(log: list[str]) -> Iterator[str]:
    log.append("enter")
    yield "value"
    log.append("exit")


def cleanup(log: list[str]) -> Iterator[str]:
    try:
        yield "value"
    finally:
        log.append("finally")


def swallow(log: list[str]) -> Iterator[str]:
    try:
        yield "value"
    except ValueError as exc:
        log.append(f"swallowed {exc}")


def reraise_other(log: list[str]) -> Iterator[str]:
    try:
        yield "value"
    except ValueError as exc:
        raise KeyError("other") from exc


def twice(log: list[str]) -> Iterator[str]:
    yield "one"
    yield "two"


def never(log: list[str]) -> Iterator[str]:
    if log is not None:
        return
    yield "unreachable"


def yield_again_on_error(log: list[str]) -> Iterator[str]:
    try:
        yield "value"
    except Exception:
        yield "again"


GENERATORS = [plain, cleanup, swallow, reraise_other, twice, never, yield_again_on_error]


def _raise(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc


BLOCK_ERRORS: list[Callable[[], BaseException | None]] = [
    lambda: None, lambda: ValueError("v"), lambda: KeyError("k"), lambda: StopIteration(7),
    lambda: KeyboardInterrupt(), lambda: GeneratorExit(), lambda: RuntimeError("r"),
]


def _run(decorator: Callable[..., Any], gen: Callable[[list[str]], Iterator[str]],
         error: BaseException | None) -> tuple[object, ...]:
    log: list[str] = []
    manager = decorator(gen)
    try:
        with manager(log) as got:
            log.append(f"got {got}")
            _raise(error)
        outcome: tuple[object, ...] = ("ok",)
    except BaseException as exc:
        cause = exc.__cause__
        outcome = ("raised", type(exc), str(exc), exc is error,
                   type(cause), cause is error, traceback.extract_tb(exc.__traceback__)[-1].name)
    return (*outcome, tuple(log))


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.__name__)
@pytest.mark.parametrize("make_error", BLOCK_ERRORS, ids=range(len(BLOCK_ERRORS)))
def test_contextmanager_ends_as_contextlibs(gen: Callable[[list[str]], Iterator[str]],
                                            make_error: Callable[[], BaseException | None]
                                            ) -> None:
    assert _run(_ctx.contextmanager, gen, make_error()) == \
        _run(contextlib.contextmanager, gen, make_error())


def test_contextmanager_keeps_the_functions_name_and_docs() -> None:
    made = _ctx.contextmanager(cleanup)
    assert (made.__name__, made.__doc__, made.__wrapped__) == ("cleanup", None, cleanup)  # type: ignore[attr-defined]


@pytest.mark.parametrize("make_error", BLOCK_ERRORS, ids=range(len(BLOCK_ERRORS)))
@pytest.mark.parametrize("caught", [(ValueError,), (LookupError, RuntimeError), (), (Exception,)])
def test_suppress_swallows_as_contextlibs(make_error: Callable[[], BaseException | None],
                                          caught: tuple[type[BaseException], ...]) -> None:
    def run(suppress: Callable[..., Any]) -> tuple[object, ...]:
        try:
            with suppress(*caught):
                _raise(make_error())
        except BaseException as exc:
            return ("raised", type(exc))
        return ("ok",)
    assert run(_ctx.suppress) == run(contextlib.suppress)


def test_nullcontext_gives_its_argument_and_passes_errors() -> None:
    sentinel = object()
    with _ctx.nullcontext(sentinel) as got:
        assert got is sentinel
    with _ctx.nullcontext() as none:
        assert none is None
    with pytest.raises(KeyError), _ctx.nullcontext():
        raise KeyError


def test_other_names_are_contextlibs() -> None:
    assert _ctx.ExitStack is contextlib.ExitStack
    with pytest.raises(AttributeError, match="no_such"):
        _ctx.no_such  # type: ignore[attr-defined]  # noqa: B018


def test_cached_property_computes_once_per_instance() -> None:
    calls: list[int] = []

    class Thing:
        def __init__(self, n: int) -> None:
            self.n = n

        @_memo.cached_property
        def double(self) -> int:
            """Twice n."""
            calls.append(self.n)
            return self.n * 2

        @functools.cached_property
        def reference(self) -> int:
            return self.n * 2

    a, b = Thing(1), Thing(2)
    assert (a.double, a.double, b.double) == (2, 2, 4) and calls == [1, 2]
    assert a.__dict__["double"] == 2 and Thing.double.__doc__ == "Twice n."
    a.double = 10  # type: ignore[misc]  # a plain attribute now, as functools' is
    assert a.double == 10 and (a.reference, b.reference) == (2, 4)
    assert isinstance(Thing.__dict__["double"], _memo.cached_property)


def test_importing_them_loads_no_contextlib_or_functools() -> None:
    run_refusing({"contextlib", "functools", "collections"},
                 "import isolate._ctx, isolate._memo\n"
                 "with isolate._ctx.suppress(KeyError):\n"
                 "    raise KeyError\n")
