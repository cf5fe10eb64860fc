"""The ``isolate`` command line: a thin adapter over the public API.

Owns argument parsing, exit codes and turning errors into one line on stderr. It must not hold
isolation logic of its own: every command calls the library as a user program would.
Exit codes follow ``docker run``: 125 when isolate itself fails, 126 when the command cannot be
executed, 127 when it is not found, otherwise the command's own status (128+N for signal N).
"""

from __future__ import annotations

import argparse
import errno
import gc
import sys
from collections.abc import Sequence
from typing import NoReturn

from isolate.errors import IsolateError, IsolateOSError

__all__ = ["main"]

EXIT_ISOLATE = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


class UsageError(Exception):
    """Bad command-line input: one line, exit 125."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The ``isolate`` argument parser with every subcommand registered."""
    from isolate.cli import images, login, run, version

    parser = _Parser(prog="isolate", description="Run commands in isolation.")
    parser.add_argument("--version", action="version", version=version.version_line(),
                        help="print isolate's version and exit (more: isolate version)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    run.register(sub)
    images.register(sub)
    login.register(sub)
    version.register(sub)
    __import__("isolate.cli.build", fromlist=["register"]).register(sub)  # build, history
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
        parser = build_parser()
        args = parser.parse_args(argv)
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


def entry() -> NoReturn:
    """The ``isolate`` console script: :func:`main` with ``sys.argv``, then exit."""
    status = main()
    # The process ends now: what it made lives until then anyway, so the collector need not
    # walk it at exit (for 'isolate run' that walk costs more than the sandbox did). Exit is
    # otherwise the usual one: threads are joined, atexit handlers and finalizers run.
    gc.freeze()
    sys.exit(status)
