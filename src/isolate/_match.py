"""The grammars of names and ids, matched without :mod:`re`.

``import re`` loads enum, functools, the regex compiler and its parser, and each pattern is
compiled at its module's import: ~4 ms of every start of a short-lived process, which a
container's start paid for a dozen small grammars (image references, container and cgroup
names, ids). These are those grammars as plain string tests, each the whole-string match
(``re.fullmatch``) of the pattern in its docstring; tests/test_match.py holds every one to
its pattern on many thousands of strings. Imports nothing.
"""

from __future__ import annotations

__all__ = [
    "ALNUM",
    "DIGITS",
    "HEX",
    "LOWER_ALNUM",
    "cgroup_name",
    "container_name",
    "cpuset",
    "decimal_pair",
    "digest",
    "generated_cgroup",
    "hex_string",
    "holder_name",
    "hostname",
    "os_arch",
    "path_component",
    "registry_host",
    "sha256",
    "tag",
    "unlocked_cgroup_pid",
]

DIGITS = "0123456789"
HEX = "0123456789abcdef"
LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
ALNUM = LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _only(text: str, chars: str) -> bool:
    """Every character of ``text`` is one of ``chars`` (true of "")."""
    return not text.strip(chars)


def _headed(text: str, first: str, rest: str, lo: int = 1, hi: int | None = None) -> bool:
    """``[first][rest]{lo-1,hi-1}``."""
    n = len(text)
    return (lo <= n and (hi is None or n <= hi) and n > 0 and text[0] in first
            and _only(text[1:], rest))


def _runs(text: str, alnum: str, seps: tuple[str, ...], dashes: bool) -> bool:
    """``A+(?:SEP A+)*`` where A is ``alnum`` and SEP one of ``seps`` (or a run of '-')."""
    if not text or text[0] not in alnum or text[-1] not in alnum:
        return False
    i, n = 0, len(text)
    while i < n:
        if text[i] in alnum:
            i += 1
            continue
        j = i
        while text[j] not in alnum:  # ends: the last character is in alnum
            j += 1
        sep = text[i:j]
        if sep not in seps and not (dashes and not sep.strip("-")):
            return False
        i = j
    return True


def hex_string(text: str, lo: int = 1, hi: int | None = None) -> bool:
    """``[0-9a-f]{lo,hi}``."""
    n = len(text)
    return lo <= n and (hi is None or n <= hi) and _only(text, HEX)


def sha256(text: str) -> bool:
    """``sha256:[a-f0-9]{64}``."""
    return len(text) == 71 and text.startswith("sha256:") and _only(text[7:], HEX)


def path_component(text: str) -> bool:
    """``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``: one component of a repository path."""
    return _only(text, LOWER_ALNUM + "._-") and _runs(text, LOWER_ALNUM, (".", "_", "__"), True)


def _domain_component(text: str) -> bool:
    # (?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])
    return (bool(text) and text[0] in ALNUM and text[-1] in ALNUM
            and _only(text, ALNUM + "-"))


def registry_host(text: str) -> tuple[bool, str | None]:
    r"""``(?:C(?:\.C)*|\[[0-9a-fA-F:.]+\])(?::([0-9]+))?`` where C is a domain component
    (``[a-zA-Z0-9]`` or ``[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]``): (matched, the port's
    digits or None)."""
    if text.startswith("["):
        close = text.find("]")
        inner, rest = text[1:close], text[close + 1:]
        if close < 0 or not inner or not _only(inner, "0123456789abcdefABCDEF:."):
            return False, None
    else:
        colon = text.find(":")
        host, rest = (text, "") if colon < 0 else (text[:colon], text[colon:])
        if not all(_domain_component(c) for c in host.split(".")):
            return False, None
    if not rest:
        return True, None
    port = rest[1:]
    if rest[0] != ":" or not port or not _only(port, DIGITS):
        return False, None
    return True, port


def tag(text: str) -> bool:
    r"""``[\w][\w.-]{0,127}`` (``\w`` as :mod:`re` has it for str: alphanumeric or '_')."""
    if not 0 < len(text) <= 128:
        return False
    first, rest = text[0], text[1:].replace(".", "").replace("-", "").replace("_", "")
    return (first == "_" or first.isalnum()) and (not rest or rest.isalnum())


def digest(text: str) -> bool:
    """``[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}``."""
    algorithm, colon, encoded = text.partition(":")
    return (bool(colon) and len(encoded) >= 32 and _only(encoded, ALNUM + "=_-")
            and _only(algorithm, LOWER_ALNUM + ".+_-")
            and _runs(algorithm, LOWER_ALNUM, (".", "+", "_", "-"), False))


def os_arch(text: str) -> bool:
    """``[a-z0-9_.-]+``."""
    return bool(text) and _only(text, LOWER_ALNUM + "_.-")


def container_name(text: str) -> bool:
    """``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (Docker's: at least two characters)."""
    return _headed(text, ALNUM, ALNUM + "_.-", lo=2)


def holder_name(text: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9_.-]{0,127}``."""
    return _headed(text, ALNUM, ALNUM + "_.-", hi=128)


def hostname(text: str) -> bool:
    """``[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?``."""
    return bool(text) and text[0] in ALNUM and text[-1] in ALNUM and _only(text, ALNUM + ".-")


def cgroup_name(text: str) -> bool:
    """``[A-Za-z0-9_@:+-][A-Za-z0-9_.@:+-]*``."""
    return _headed(text, ALNUM + "_@:+-", ALNUM + "_.@:+-")


def cpuset(text: str) -> bool:
    r"""``\d+(-\d+)?(,\d+(-\d+)?)*`` (``\d``: a Unicode decimal digit, as :mod:`re` has it)."""
    for item in text.split(","):
        low, dash, high = item.partition("-")
        if not low.isdecimal() or (dash and not high.isdecimal()):
            return False
    return True


def decimal_pair(text: str) -> tuple[str, str] | None:
    r"""``(\d+):(\d+)``: the two numbers' digits, or None."""
    left, colon, right = text.partition(":")
    return (left, right) if colon and left.isdecimal() and right.isdecimal() else None


def _cgroup_generated(text: str, width: int) -> str | None:
    if not text.startswith("cg-"):
        return None
    pid, dash, suffix = text[3:].partition("-")
    if dash and pid.isdecimal() and len(suffix) == width and _only(suffix, HEX):
        return pid
    return None


def generated_cgroup(text: str) -> bool:
    r"""``cg-\d+-[0-9a-f]{16}``: a group name isolate generated."""
    return _cgroup_generated(text, 16) is not None


def unlocked_cgroup_pid(text: str) -> str | None:
    r"""``cg-(\d+)-[0-9a-f]{12}``: the pid's digits of an older generated name, or None."""
    return _cgroup_generated(text, 12)
