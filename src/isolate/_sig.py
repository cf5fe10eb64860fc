"""``signal``: the standard library's :mod:`signal` to the type checker, and at run time the
``_signal`` module under it, which has the same numbers and calls (they take and give plain
ints). :mod:`signal` adds its enum classes (``Signals``, ``Handlers``, ``Sigmasks``), and making
them loads :mod:`enum`: ~2 ms of a start, which the modules a plain ``isolate run`` loads take
their signals from here to save. Where a name is wanted (``Signals(n).name``), import
:mod:`signal` there."""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING

__all__ = ["signal"]

if TYPE_CHECKING:
    import signal as signal
else:
    import _signal as signal
