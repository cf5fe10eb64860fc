"""The quick parser of a plain ``isolate run``: the command line argparse would parse, read from
the same flags written as data (:data:`isolate.cli.run.SANDBOX_OPTIONS` and the container
flags), without loading argparse (which, with the gettext, locale and re it loads, is ~7 ms of a
start that is ~30 ms in all).

It takes only what it can read exactly as argparse does: long flags with ``=VALUE`` or a
separate value, short flags alone and a separate value, ``--``, and the first other word,
which starts the command (argparse's ``REMAINDER``). Anything else -- ``--help``, an
abbreviated or unknown flag, ``-it`` or ``-m64M``, a value that starts with ``-``, a value not
among a flag's choices, a flag given a value it does not take -- is left to argparse, which
then gives the same result or its own error. ``tests/cli/test_quick.py`` holds the two to the
same answers.
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING
from isolate.cli._common import SUPPRESS, dest_of

if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Sequence
    from typing import Any

    from isolate.cli._common import Option
else:
    # The handlers read attributes only, which argparse's Namespace and this have alike.
    import sys

    Namespace = type(sys.implementation)  # types.SimpleNamespace (types is ~0.3 ms to load)

__all__ = ["parse"]

# What a flag does with its value, for the actions it reads (argparse's defaults with them).
_TAKES_VALUE = {"store": True, "append": True, "store_true": False, "store_false": False}
_IMPLICIT_DEFAULT = {"store": None, "append": None, "store_true": False, "store_false": True}


def parse(options: Sequence[Option], command: Option, words: Sequence[str]
          ) -> Namespace | None:
    """``words`` parsed as argparse would parse them against ``options`` and the positional
    ``command`` (a ``REMAINDER``), or None where argparse must decide (see the module's doc).
    Returns a namespace of every flag's ``dest``, as argparse's has them."""
    flags: dict[str, tuple[str, str, Any]] = {}
    values: dict[str, Any] = {}
    for spellings, kw in options:
        action = kw.get("action", "store")
        if action not in _TAKES_VALUE or kw.keys() & {"type", "nargs", "const", "required"}:
            return None  # a flag this parser does not read like argparse: all to argparse
        dest = dest_of(spellings, kw)
        default = kw.get("default", _IMPLICIT_DEFAULT[action])
        if default != SUPPRESS and dest not in values:
            values[dest] = default
        for spelling in spellings:
            flags[spelling] = (dest, action, kw.get("choices"))
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" or not word.startswith("-") or word == "-":
            break  # the command (with its '--', as argparse's REMAINDER keeps it)
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        found = flags.get(name)
        if found is None:
            return None  # unknown, abbreviated, clustered (-it) or attached (-m64M)
        dest, action, choices = found
        if not _TAKES_VALUE[action]:
            if eq:
                return None  # argparse: "ignored explicit argument"
            values[dest] = action == "store_true"
            i += 1
            continue
        if not eq:
            i += 1
            if i == len(words) or words[i].startswith("-"):
                return None  # missing, or argparse's rules for values that look like flags
            value = words[i]
        if choices is not None and value not in choices:
            return None
        if action == "append":
            # (argparse copies the default list, never appends to it)
            values[dest] = [*(values.get(dest) or ()), value]
        else:
            values[dest] = value
        i += 1
    values[dest_of(*command)] = list(words[i:])
    return Namespace(**values)
