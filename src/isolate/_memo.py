"""``functools.cache`` and ``lru_cache`` without :mod:`functools`.

``import functools`` loads collections (with keyword, operator, reprlib ...) and types: ~2
ms of every start of a short-lived process, which the modules of a run's start need only for
their caches. These are those caches: a dict keyed by the positional arguments (and the
keyword ones, in the order given), bounded where asked, oldest entry out first. To mypy they
*are* functools' (as :mod:`isolate._record` is attrs), so a cached function keeps its
signature. As with functools, every argument must be hashable (TypeError otherwise), and two
threads asking for the same missing key at once may both compute it. ``cached_property`` too,
as functools' has it since 3.12 (3.11's also takes a lock around the first computation).
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING

__all__ = ["cache", "cached_property", "lru_cache"]

if TYPE_CHECKING:
    from functools import cache, cached_property, lru_cache
else:
    _KEYWORDS = object()  # separates the keyword arguments in a key

    def lru_cache(maxsize=128):
        """A decorator caching a function's results, at most ``maxsize`` (None: all)."""
        if callable(maxsize):  # @lru_cache without parentheses
            return lru_cache()(maxsize)

        def decorate(function):
            memo = {}

            def cached(*args, **kwargs):
                key = (*args, _KEYWORDS, *kwargs.items()) if kwargs else args
                try:
                    return memo[key]
                except KeyError:
                    pass
                value = function(*args, **kwargs)
                if maxsize is not None and len(memo) >= maxsize:
                    try:
                        del memo[next(iter(memo))]
                    except (KeyError, StopIteration, RuntimeError):
                        pass  # (another thread changed it meanwhile)
                memo[key] = value
                return value

            for name in ("__module__", "__name__", "__qualname__", "__doc__"):
                setattr(cached, name, getattr(function, name))
            cached.__dict__.update(function.__dict__)
            cached.__wrapped__ = function
            cached.cache_clear = memo.clear
            return cached

        return decorate

    def cache(function):
        """A decorator caching every result of ``function``."""
        return lru_cache(None)(function)

    class cached_property:
        """A property computed on first use and then kept in the instance's ``__dict__``
        (as functools' is since Python 3.12: no lock)."""

        def __init__(self, function):
            self.func = function
            self.attrname = None
            self.__doc__ = function.__doc__
            self.__module__ = function.__module__

        def __set_name__(self, owner, name):
            self.attrname = name

        def __get__(self, instance, owner=None):
            if instance is None:
                return self
            if self.attrname is None:
                raise TypeError("cached_property used without __set_name__")
            value = self.func(instance)
            instance.__dict__[self.attrname] = value
            return value
