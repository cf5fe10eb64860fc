"""The ``isolate`` command line: a thin adapter over the public API.

Owns argument parsing, exit codes and turning errors into one line on stderr. It must not hold
isolation logic of its own: every command calls the library as a user program would.
Exit codes follow ``docker run``: 125 when isolate itself fails, 126 when the command cannot be
executed, 127 when it is not found, otherwise the command's own status (128+N for signal N).
"""

from __future__ import annotations

import argparse
import errno
import functools
import gc
import sys
from collections.abc import Sequence

from isolate._typing import TYPE_CHECKING
from isolate.errors import IsolateError, IsolateOSError

if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["main"]

EXIT_ISOLATE = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


class UsageError(Exception):
    """Bad command-line input: one line, exit 125."""


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
# the 'run' of run and the 'inspect' of images).
_MODULES = ("run", "images", "login", "version", "build", "containers", "network")
_IMAGE_COMMANDS = ("pull", "push", "images", "rmi", "tag", "import", "save", "load")  # + "image"
_CONTAINER_COMMANDS = ("create", "start", "stop", "kill", "restart", "pause", "unpause", "wait",
                       "rm", "rename", "exec", "attach", "logs", "ps", "top", "stats", "port",
                       "cp", "diff", "commit", "export", "container", "volume")
# Which modules a command needs, so that starting one imports no other command's module
# (run.py imports the sandbox: 40 ms a 'ps' need not pay). A command not listed here gets
# every module.
_NEEDS: dict[str, tuple[str, ...]] = {
    "run": ("run", "containers"), "inspect": ("images", "containers"),
    "login": ("login",), "logout": ("login",), "version": ("version",),
    "build": ("build",), "history": ("build",), "builder": ("build",),
    "image": ("images", "build"), "network": ("network",),
    **{c: ("images",) for c in _IMAGE_COMMANDS},
    **{c: ("containers",) for c in _CONTAINER_COMMANDS},
}


# Commands of a group (``isolate image history``) that another module than the group's defines:
# group -> {command: module}.
_GROUPED: dict[str, dict[str, str]] = {"image": {"history": "build"}}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
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
        return build_parser()  # not a command: the whole parser says so (and lists them)
    return parser


def exit_code_for(exc: IsolateError) -> int:
    """The exit status for an error, as ``docker run`` picks it."""
    if isinstance(exc, IsolateOSError) and exc.step == "exec":
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return EXIT_NOT_FOUND
        return EXIT_CANNOT_EXEC
    return EXIT_ISOLATE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``isolate`` command; returns the exit status (never raises for bad
    input or an isolate error: they are one line on stderr)."""
    try:
        words = list(sys.argv[1:] if argv is None else argv)
        first = words[0] if words and not words[0].startswith("-") else None
        parser = build_parser(first)
        args = parser.parse_args(words)
        status: int = args.handler(args)
        return status
    except UsageError as exc:
        print(f"{exc}", file=sys.stderr)
        return EXIT_ISOLATE
    except IsolateError as exc:
        print(f"isolate: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except SystemExit as exc:  # --help, --version: argparse has printed and is done
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141
    except OSError as exc:  # what the host refused outside the library (a file of ours)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"isolate: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ISOLATE


#: Allocations between collections of the youngest generation while the command runs (the
#: interpreter's default is 700). Start-up allocates mostly what lives until exit (modules,
#: classes, functions): at 700 it runs some twenty collections that free nothing, ~3 ms of
#: 'isolate run -- /bin/true'. A long-running command (logs -f, stats) is still collected.
_GC_YOUNG = 100_000


def entry() -> NoReturn:
    """The ``isolate`` console script: :func:`main` with ``sys.argv``, then exit."""
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])
    status = main()
    # The process ends now: what it made lives until then anyway, so the collector need not
    # walk it at exit (for 'isolate run' that walk costs more than the sandbox did). Exit is
    # otherwise the usual one: threads are joined, atexit handlers and finalizers run.
    gc.freeze()
    sys.exit(status)
