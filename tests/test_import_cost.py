"""What importing isolate's modules costs, checked structurally (never timed; the timings are
benchmarks/bench_startup.py's): no import pays for work only some callers need."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import attrs

import isolate


def _modules() -> list[str]:
    return sorted(info.name for info in pkgutil.walk_packages(isolate.__path__, "isolate.")
                  if not info.name.endswith(("__main__", "_native.build")))


def test_no_attrs_class_has_a_builtin_as_converter() -> None:
    # attrs reads a converter's signature when it builds the class; a builtin's (tuple, int,
    # frozenset) is parsed from its text signature by tokenize, whose regexes compile then:
    # 1-7 ms of the start of every process that imports the module. A function does not.
    bad = []
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if not (isinstance(value, type) and attrs.has(value)
                    and value.__module__ == name):
                continue
            for field in attrs.fields(value):
                conv = field.converter
                conv = getattr(conv, "converter", conv)  # attrs.Converter wraps the callable
                if conv is not None and (inspect.isbuiltin(conv) or isinstance(conv, type)):
                    bad.append(f"{name}.{value.__name__}.{field.name}: {conv!r}")
    assert not bad, "converters that are builtins:\n" + "\n".join(bad)
