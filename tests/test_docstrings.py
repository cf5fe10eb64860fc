"""What ``help()`` shows for the friendly API is documentation: every public method of the
handles a user holds (and their ``with`` protocol) has a docstring, and no class of
``isolate.__all__`` shows a source comment (``# -- lifetime ---``) where a method's
docstring belongs (pydoc falls back to the comment above a function without one)."""

from __future__ import annotations

import inspect
import pydoc
from collections.abc import Iterator
from typing import Any

import pytest

import isolate
from isolate.namespaces import NamespaceSet


def _methods(cls: type) -> Iterator[tuple[str, Any]]:
    for name, value in vars(cls).items():
        func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if inspect.isfunction(func):
            yield name, func


HANDLES = [isolate.Sandbox, isolate.CGroup, isolate.Namespace, NamespaceSet]


@pytest.mark.parametrize("cls", HANDLES, ids=lambda c: c.__name__)
def test_every_public_method_and_the_with_protocol_are_documented(cls: type) -> None:
    missing = [name for name, func in _methods(cls)
               if (not name.startswith("_") or name in ("__enter__", "__exit__", "__iter__"))
               and not (func.__doc__ or "").strip()]
    assert not missing, f"{cls.__name__} has no docstring for {missing}"


@pytest.mark.parametrize("name", [n for n in isolate.__all__
                                  if inspect.isclass(getattr(isolate, n))])
def test_help_never_shows_a_section_comment_as_a_methods_doc(name: str) -> None:
    cls = getattr(isolate, name)
    shown = [attr for attr, func in _methods(cls)
             if not (func.__doc__ or "").strip() and (inspect.getcomments(func) or "").strip()]
    assert not shown, f"help({name}) shows source comments as the docs of {shown}"


def test_help_of_sandbox_documents_enter_with_its_docstring() -> None:
    text = pydoc.render_doc(isolate.Sandbox, renderer=pydoc.plaintext)
    enter = text[text.index("__enter__"):]
    assert "# --" not in enter.split("__exit__")[0]
    assert "Start the sandbox" in enter
