"""``contextlib``'s ``suppress``, ``nullcontext`` and ``contextmanager`` without :mod:`contextlib`.

``import contextlib`` loads collections (with keyword, operator, reprlib, itertools),
functools and types: ~2-3 ms of every start of a short-lived process, which the modules of a
container's start needed for these three. Their behaviour is contextlib's: ``suppress``
swallows the exceptions named (and their subclasses), ``nullcontext`` gives its argument,
and a ``contextmanager`` generator runs to its ``yield`` on enter and on from there on exit,
with the block's exception raised at the ``yield`` (swallowed if the generator does not
re-raise it); a generator that yields twice, or not at all, is a RuntimeError. Every other
name (``ExitStack``, ``AbstractContextManager`` ...) is contextlib's own, loaded when first
used. To mypy this *is* contextlib (as :mod:`isolate._record` is attrs). Use it as
``from isolate import _ctx as contextlib``.
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import *  # noqa: F403
    from contextlib import contextmanager, nullcontext, suppress
else:
    class suppress:
        """Swallow the exceptions of ``exceptions`` raised in the block."""

        def __init__(self, *exceptions):
            self._exceptions = exceptions

        def __enter__(self):
            return None

        def __exit__(self, typ, value, tb):
            return typ is not None and issubclass(typ, self._exceptions)

    class nullcontext:
        """A context manager that does nothing; ``with`` gives ``enter_result``."""

        def __init__(self, enter_result=None):
            self.enter_result = enter_result

        def __enter__(self):
            return self.enter_result

        def __exit__(self, *exc):
            return None

    class _GeneratorContext:
        __slots__ = ("gen",)

        def __init__(self, gen):
            self.gen = gen

        def __enter__(self):
            try:
                return next(self.gen)
            except StopIteration:
                raise RuntimeError("generator didn't yield") from None

        def __exit__(self, typ, value, tb):
            if typ is None:
                try:
                    next(self.gen)
                except StopIteration:
                    return False
                raise RuntimeError("generator didn't stop")
            if value is None:
                value = typ()
            try:
                self.gen.throw(value)
            except StopIteration as exc:
                # Swallowed by the generator (unless it is the very exception, a StopIteration
                # raised in the block).
                return exc is not value
            except RuntimeError as exc:
                # A StopIteration thrown in, turned into RuntimeError by PEP 479: the original.
                if exc is value or (isinstance(value, StopIteration) and exc.__cause__ is value):
                    value.__traceback__ = tb
                    return False
                raise
            except BaseException as exc:
                if exc is not value:
                    raise
                exc.__traceback__ = tb
                return False
            raise RuntimeError("generator didn't stop after throw()")

    def contextmanager(function):
        """A decorator making a generator function into a context manager factory."""

        def helper(*args, **kwargs):
            return _GeneratorContext(function(*args, **kwargs))

        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(helper, name, getattr(function, name))
        helper.__wrapped__ = function
        return helper

    def __getattr__(name):
        """contextlib's other names, loaded when first used."""
        import contextlib

        try:
            return getattr(contextlib, name)
        except AttributeError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None

__all__ = ["contextmanager", "nullcontext", "suppress"]
