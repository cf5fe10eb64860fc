"""The ``isolate`` command line: a thin adapter over the public API.

Owns argument parsing, exit codes and turning errors into one line on stderr. It must not hold
isolation logic of its own: every command calls the library as a user program would.
Exit codes follow ``docker run``: 125 when isolate itself fails, 126 when the command cannot be
executed, 127 when it is not found, otherwise the command's own status (128+N for signal N).
"""

from __future__ import annotations

import errno
import gc
import os
import sys

from isolate._typing import TYPE_CHECKING
from isolate.errors import IsolateError, IsolateOSError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import NoReturn

__all__ = ["main"]

EXIT_ISOLATE = 125
EXIT_CANNOT_EXEC = 126
EXIT_NOT_FOUND = 127


class UsageError(Exception):
    """Bad command-line input: one line, exit 125."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``isolate`` argument parser with every subcommand registered (only ``command``'s,
    when it is given: the one about to run)."""
    from isolate.cli._parser import build

    return build(command)


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
        if words[:1] == ["run"]:
            from isolate.cli import _quick, run

            quick = _quick.parse(run.run_options(), run.COMMAND, words[1:])
            if quick is not None:  # (else argparse decides, and says what is wrong)
                quick.handler = run.run_command
                return run.run_command(quick)
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
    _exit(main())


def _exit(status: int) -> NoReturn:
    """End the process the way the interpreter's own exit does -- threads joined, atexit
    handlers run (the cgroup pool gives its groups back there), stdout and stderr flushed --
    but without the interpreter's teardown of every module and object it made: ~7 ms of an
    'isolate run' that frees memory the kernel frees anyway when the process ends."""
    import atexit

    run_atexit = getattr(atexit, "_run_exitfuncs", None)
    if run_atexit is None:  # an interpreter without it: the usual exit
        sys.exit(status)
    threading = sys.modules.get("threading")  # (not loaded: no thread of it runs)
    if threading is not None:
        for thread in threading.enumerate():
            if not thread.daemon and thread is not threading.current_thread():
                thread.join()
    run_atexit()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            if stream is sys.stdout and status == 0:
                status = 120  # what the interpreter exits with when stdout cannot be flushed
    os._exit(status)
