"""The ``isolate`` argument parser (argparse): every command's flags, their help and errors.
Loaded when a command is parsed by argparse; a plain ``isolate run`` is parsed without it
(:mod:`isolate.cli._quick`)."""

from __future__ import annotations

import argparse
import functools
import sys

from isolate._typing import TYPE_CHECKING
from isolate.cli import UsageError

if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["build"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse makes a formatter for every add_argument, and its default width comes from
        # shutil.get_terminal_size: importing shutil (bz2, lzma, fnmatch) is ~1.3 ms of each
        # start. The same width, from the same sources ($COLUMNS, else the terminal's).
        return self.formatter_class(prog=self.prog, width=_help_width())  # type: ignore[call-arg]


@functools.cache
def _help_width() -> int:
    """What argparse's formatter takes by default: the terminal's columns less 2."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _Unused:
    """Stands in for the parser of a command that is not being run: takes every call and
    builds nothing (building every command's parser would slow down each start)."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def __getitem__(self, key: object) -> Any:
        return self

    def __iter__(self) -> Any:
        return iter(())

    def __contains__(self, key: object) -> bool:
        return False


class _OneCommand:
    """Subparsers that build only ``wanted``'s parser (and pass the rest through)."""

    def __init__(self, sub: Any, wanted: str) -> None:
        self._sub = sub
        self._wanted = wanted

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name == self._wanted or self._wanted in kwargs.get("aliases", ()):
            return self._sub.add_parser(name, **kwargs)
        return _Unused()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sub, name)


# The modules that register commands, in the order they must register (containers extends
# the 'inspect' of images; run's flags, the container ones too, are all run's own).
_MODULES = ("run", "images", "login", "version", "build", "containers", "network")
_IMAGE_COMMANDS = ("pull", "push", "images", "rmi", "tag", "import", "save", "load")  # + "image"
_CONTAINER_COMMANDS = ("create", "start", "stop", "kill", "restart", "pause", "unpause", "wait",
                       "rm", "rename", "exec", "attach", "logs", "ps", "top", "stats", "port",
                       "cp", "diff", "commit", "export", "container", "volume")
# Which modules a command needs, so that starting one imports no other command's module
# (run.py imports the sandbox: 40 ms a 'ps' need not pay). A command not listed here gets
# every module.
_NEEDS: dict[str, tuple[str, ...]] = {
    "run": ("run",), "inspect": ("images", "containers"),
    "login": ("login",), "logout": ("login",), "version": ("version",),
    "build": ("build",), "history": ("build",), "builder": ("build",),
    "image": ("images", "build"), "network": ("network",),
    **{c: ("images",) for c in _IMAGE_COMMANDS},
    **{c: ("containers",) for c in _CONTAINER_COMMANDS},
}


# Commands of a group (``isolate image history``) that another module than the group's defines:
# group -> {command: module}.
_GROUPED: dict[str, dict[str, str]] = {"image": {"history": "build"}}


def build(command: str | None = None) -> argparse.ArgumentParser:
    """The ``isolate`` argument parser with every subcommand registered (only ``command``'s,
    when it is given: the one about to run)."""
    import importlib

    import isolate

    parser = _Parser(prog="isolate", description="Run commands in isolation.")
    # (Not from cli.version: it loads platform and json, which most commands never need.)
    parser.add_argument("--version", action="version",
                        version=f"isolate version {isolate.__version__}",
                        help="print isolate's version and exit (more: isolate version)")
    real = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    real.required = True
    sub: Any = real if command is None else _OneCommand(real, command)
    needed = _NEEDS.get(command or "", _MODULES)
    for name in _MODULES:
        if name in needed:
            importlib.import_module(f"isolate.cli.{name}").register(sub)
    for group, commands in _GROUPED.items():  # a group's commands that other modules define
        group_parser = real.choices.get(group)
        if group_parser is None:
            continue
        (group_sub,) = (a for a in group_parser._actions
                        if isinstance(a, argparse._SubParsersAction))
        for name, module in commands.items():
            importlib.import_module(f"isolate.cli.{module}").register(
                _OneCommand(group_sub, name))
    if command is not None and command not in real.choices:
        return build()  # not a command: the whole parser says so (and lists them)
    return parser


