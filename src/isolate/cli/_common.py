"""What several commands share: flags written as data, acting on each of several objects,
``--filter`` values, the confirmation prompt of the prune commands, sizes written as Docker
writes them, ``-e`` and ``--env-file``."""

from __future__ import annotations

import os
import sys

from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError, IsolateError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, Final, TypeAlias

    #: A flag as data: its option strings (or a positional's name) and the keywords of
    #: ``ArgumentParser.add_argument``.
    Option: TypeAlias = tuple[tuple[str, ...], dict[str, Any]]

__all__ = ["REMAINDER", "STORE_OPTION", "SUPPRESS", "binary_size", "confirm", "decimal_size",
           "dest_of", "each", "env_items", "option", "parse_filters", "read_env_file",
           "tree_size"]

EXIT_ISOLATE = 125

#: argparse's ``SUPPRESS`` and ``REMAINDER``, by value: the flags written as data here are read
#: by the quick parser of a plain run too, which does without argparse (~7 ms of a start).
SUPPRESS: Final = "==SUPPRESS=="
REMAINDER: Final = "..."


def option(*flags: str, **kw: Any) -> Option:
    """A flag as data: ``option("-m", "--memory", metavar="SIZE")`` is what
    ``p.add_argument("-m", "--memory", metavar="SIZE")`` would add."""
    return flags, kw


#: ``--store DIR``, which every command that opens the store has.
STORE_OPTION: Final = option(
    "--store", metavar="DIR", default=None,
    help="image store (default: $ISOLATE_STORE, else /var/lib/isolate as root, "
    "$XDG_DATA_HOME/isolate otherwise)")


def dest_of(flags: Sequence[str], kw: dict[str, Any]) -> str:
    """The attribute a flag sets, as argparse names it: ``dest``, else its first long
    spelling (else its first), less its dashes, inner ones as underscores."""
    if "dest" in kw:
        return str(kw["dest"])
    if not flags[0].startswith("-"):
        return flags[0]
    name = next((f for f in flags if f.startswith("--")), flags[0])
    return name.lstrip("-").replace("-", "_")


def each(refs: Sequence[str], act: Callable[[str], object], *, echo: bool = True) -> int:
    """Do ``act`` for each of ``refs``, printing each one done (as Docker echoes them) and
    one line for each that failed; 125 if any failed (the others are still done)."""
    failed = False
    for ref in refs:
        try:
            act(ref)
        except IsolateError as exc:
            print(f"isolate: {exc}", file=sys.stderr)
            failed = True
            continue
        if echo:
            print(ref, flush=True)
    return EXIT_ISOLATE if failed else 0


def confirm(warning: str) -> bool:
    """Ask, as Docker's prune commands do; whether the answer (a line of stdin) is yes."""
    sys.stdout.write(f"{warning}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """``-f KEY=VALUE`` flags as {key: [values]}.

    Raises:
        ConfigError: an item without ``=`` (Docker's message).
    """
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def tree_size(path: str) -> int:
    """The bytes of the files under ``path`` (what Docker's SizeRw counts)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _human(n: float, base: int, units: Sequence[str], digits: int) -> str:
    i = 0
    value = float(n)
    while value >= base and i < len(units) - 1:
        value /= base
        i += 1
    return f"{value:.{digits}g}{units[i]}"


def decimal_size(n: float) -> str:
    """Docker's HumanSize: decimal units, 3 significant digits ("4.3MB", "0B")."""
    return _human(n, 1000, ("B", "kB", "MB", "GB", "TB", "PB"), 3)


def binary_size(n: float) -> str:
    """Docker's BytesSize: binary units, 4 significant digits ("1.5MiB", "23.44GiB")."""
    return _human(n, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), 4)


def read_env_file(path: str, what: str = "env") -> list[str]:
    """The ``K=V`` lines of a Docker env file: blank lines and ``#`` comments skipped, leading
    whitespace dropped, ``K`` alone taken from this environment (skipped when unset).

    Raises:
        ConfigError: the file cannot be read, or a name contains whitespace.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid utf8 bytes at line 1") from None
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise ConfigError(f"{path}:{number}: no variable name on line '{raw}'")
        if any(c.isspace() for c in key):
            raise ConfigError(f"variable '{key}' contains whitespaces")
        if sep:
            out.append(f"{key}={value}")
        elif what == "env" and key in os.environ:
            out.append(f"{key}={os.environ[key]}")
        elif what != "env":
            out.append(key)
    return out


def env_items(env: Sequence[str], env_files: Sequence[str]) -> list[str]:
    """``--env-file`` files, then ``-e`` values, as ``K=V`` items: ``-e K`` alone takes this
    environment's value (and is skipped where it has none), as Docker does.

    Raises:
        ConfigError: an empty name, or an env file that cannot be read.
    """
    items: list[str] = []
    for path in env_files:
        items.extend(read_env_file(path))
    for item in env:
        key, sep, _ = item.partition("=")
        if not key:
            raise ConfigError(f"invalid environment variable: {item}")
        if sep:
            items.append(item)
        elif key in os.environ:
            items.append(f"{key}={os.environ[key]}")
    return items


def command_group(sub: Any, name: str, help: str,
                  each_parser: Callable[[argparse.ArgumentParser], None]
                  ) -> Callable[..., argparse.ArgumentParser]:
    """Add ``isolate NAME COMMAND ...`` (``volume``, ``network``) to the subparsers ``sub``;
    returns ``add(command, help, handler, aliases=())``, which adds one command's parser
    (its description the help, ``each_parser`` applied to it) and returns it."""
    group = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:])
    commands = group.add_subparsers(dest=f"{name}_command", metavar="COMMAND",
                                    parser_class=type(group))
    commands.required = True

    def add(command: str, help: str, handler: Callable[[argparse.Namespace], int],
            aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(
            command, help=help, description=help[:1].upper() + help[1:],
            aliases=list(aliases))
        each_parser(p)
        p.set_defaults(handler=handler)
        return p
    return add
