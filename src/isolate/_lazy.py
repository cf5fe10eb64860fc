"""Lazy re-exports (PEP 562): a package's names load from their modules when first used.

The packages whose ``__init__`` re-exports the names of their modules (``isolate``,
``isolate.fs``, ``isolate.image``, ``isolate.container``, ``isolate.net``) describe them as one
table, module -> names, and take the module's ``__getattr__`` and ``__dir__`` from
:func:`exports`::

    __getattr__, __dir__ = _lazy.exports(globals(), {"isolate.fs.layers": ("extract", ...)})

so that importing the package costs only the package, and ``from isolate.fs import extract``,
``isolate.fs.extract`` and ``help(isolate.fs)`` work as if the names were imported at the top.
Imports nothing of isolate (any layer may use it).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: this module is imported by ``import isolate``
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__all__ = ["exports", "import_module"]


def exports(namespace: dict[str, Any], modules: Mapping[str, Iterable[str]], *,
            submodules: Iterable[str] = ()
            ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module whose globals are ``namespace``.

    ``modules`` maps a module's full name to the names it exports; ``submodules`` are the
    package's own submodules that load as attributes (``isolate.fs`` of ``isolate``). A name,
    once loaded, is stored in ``namespace``: the next use is an ordinary global.
    """
    package = str(namespace["__name__"])
    home = {name: module for module, names in modules.items() for name in names}
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        """Load a re-exported name (or a submodule) when it is first used.

        Raises AttributeError for a name the module does not have.
        """
        if name in subs:  # the import binds the submodule as an attribute of the package
            return import_module(f"{package}.{name}")
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        """The module's names, the lazy ones among them (what ``help()`` lists)."""
        return sorted({*namespace, *home, *subs})

    return __getattr__, __dir__


def import_module(name: str) -> Any:
    """The module ``name``, imported (as ``importlib.import_module`` would, for an absolute
    name: ``import importlib`` loads warnings too, ~0.5 ms of a start)."""
    __import__(name)
    return sys.modules[name]
