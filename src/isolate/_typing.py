"""``TYPE_CHECKING`` without importing :mod:`typing`.

``import typing`` is 2-4 ms of every start (its own classes, and the rest of the standard
library it loads first), and isolate's modules need it only for their annotations, which
``from __future__ import annotations`` leaves as strings. The modules a sandbox's or a
container's start loads take ``TYPE_CHECKING`` from here and import their ``typing`` names
under it (``tests/cli/test_startup.py`` checks that the run commands load no typing). mypy
reads ``TYPE_CHECKING`` as true whatever module it comes from, and ruff knows this module as a
typing module (``lint.typing-modules`` in pyproject.toml), so its checks of type-only imports
apply.
"""

TYPE_CHECKING = False
