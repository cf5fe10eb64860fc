"""Human input: sizes (``"512M"``), durations in seconds and decimal ids, one parser each for
every layer that takes them, so the library and the command line accept the same things; and
the human output Docker prints for sizes and durations, and ranges of ids said back to people.

Imports nothing from isolate but its errors; makes no system calls.
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING
from isolate.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["MAX_SECONDS", "MAX_SIZE", "human_duration", "human_size", "id_spans",
           "parse_decimal", "parse_number", "parse_seconds", "parse_size"]

#: The largest size the kernel takes: it counts bytes in a signed 64-bit number (and reads a
#: larger value modulo 2**64, so 16E would become a limit of 0).
MAX_SIZE = 2**63 - 1
#: The longest duration taken, about 31 years (threads cannot wait much longer: TIMEOUT_MAX).
MAX_SECONDS = 1e9

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50,
          "e": 1 << 60}
# More digits than any size up to MAX_SIZE needs (and well below int()'s digit limit).
_MAX_DIGITS = 40
# The white space around a number (ASCII's: str.strip() alone takes other scripts' too).
# Sizes and numbers are read by hand, not by regular expressions: re (and the enum it loads)
# is ~2 ms of a start that parses a --stop-timeout.
_SPACE = " \t\n\r\x0b\x0c"


def _digits(text: str) -> bool:
    """Whether ``text`` is one or more ASCII digits."""
    return text.isascii() and text.isdigit()


def _size_parts(value: str) -> tuple[str, str, str] | None:
    """(whole, fraction, unit) of a size written ``DIGITS[.DIGITS][ ][k|m|g|t|p|e][i][b]``
    (any case, ASCII only, white space around), or None for anything else."""
    text = value.strip(_SPACE)
    if not text.isascii():
        return None
    text = text.lower()
    text = text[:-2] if text.endswith("ib") else text[:-1] if text.endswith("b") else text
    unit = text[-1:] if text[-1:] in ("k", "m", "g", "t", "p", "e") else ""
    number = text[:len(text) - len(unit)].rstrip(_SPACE)
    whole, dot, fraction = number.partition(".")
    if not _digits(whole) or (dot and not _digits(fraction)):
        return None
    return whole, fraction, unit


def _is_number(value: str) -> bool:
    """Whether ``value`` is a number float() takes, in ASCII only: ``[+-]`` digits with a
    decimal point anywhere, an exponent (float() also takes "1_0", other scripts' digits,
    "nan" and "inf")."""
    text = value.strip(_SPACE)
    if not text.isascii():
        return False
    text = text.lower()
    if text[:1] in ("+", "-"):
        text = text[1:]
    mantissa, e, exponent = text.partition("e")
    if e and not _digits(exponent[1:] if exponent[:1] in ("+", "-") else exponent):
        return False
    whole, dot, fraction = mantissa.partition(".")
    if whole:
        return _digits(whole) and (not fraction or _digits(fraction))
    return bool(dot) and _digits(fraction)


def _shown(value: object) -> str:
    """``repr(value)``, cut short when it is long (a 400-digit number in an error message)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def _too_large(name: str, value: object) -> ConfigError:
    return ConfigError(f"{name}: {_shown(value)} is more than the kernel's largest size, "
                       f"{MAX_SIZE} bytes (8E - 1)")


def human_duration(seconds: float) -> str:
    """A duration as Docker writes it in ``ps`` ("Less than a second", "5 minutes",
    "About an hour", "3 days"...)."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 47:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    days = hours // 24
    if days < 14:
        return f"{days} days"
    if days < 90:
        return f"{days // 7} weeks"
    if days < 730:
        return f"{days // 30} months"
    return f"{days // 365} years"


def human_size(n: int) -> str:
    """``n`` bytes in the largest binary unit that divides it: ``"6M"``, ``"1536K"``."""
    for unit in "EPTGMK":
        scale = _UNITS[unit.lower()]
        if n and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def id_spans(ranges: Iterable[tuple[int, int]]) -> str:
    """Ranges of ids ``(first, count)`` as people read them, adjacent ones joined:
    ``[(0, 1), (1, 65536)]`` is ``"0-65536"``, ``[(0, 1), (5, 1)]`` is ``"0, 5"``."""
    spans: list[list[int]] = []
    for first, count in sorted(ranges):
        if spans and spans[-1][1] + 1 == first:
            spans[-1][1] = first + count - 1
        else:
            spans.append([first, first + count - 1])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def parse_size(value: int | str, *, name: str = "size") -> int:
    """Parse a byte count: an int, or a string such as ``"512M"``, ``"1.5G"``, ``"64KiB"``.

    Units are binary (K = 1024, up to E); a fraction is exact and rounded down to whole bytes.
    Raises :class:`ConfigError` naming ``name`` when the value is not a size from 0 to
    :data:`MAX_SIZE`.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (parts := _size_parts(value)) is not None:
        whole, fraction, unit = parts
        if len(whole) + len(fraction) > _MAX_DIGITS:
            raise _too_large(name, value)
        scale = _UNITS[unit]
        size = int(whole) * scale + int(fraction or "0") * scale // 10 ** len(fraction)
    else:
        raise ConfigError(f"{name}: expected a size like 512M or 1G, got {_shown(value)}")
    if size < 0:
        raise ConfigError(f"{name}: size must not be negative, got {_shown(value)}")
    if size > MAX_SIZE:
        raise _too_large(name, value)
    return size


def parse_number(value: float | str, *, name: str, what: str) -> float:
    """An int, a float or an ASCII decimal string (``"1.5"``, ``"2e3"``) as a float; NaN and
    infinities are kept for the caller to judge. Raises :class:`ConfigError` naming ``name``
    (expected "a number of ``what``") for anything else, bools included."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (
            isinstance(value, str) and not _is_number(value)):
        raise ConfigError(f"{name}: expected a number of {what}, got {_shown(value)}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return float("inf")


def parse_seconds(value: float | str, *, name: str = "timeout", minimum: float = 0.001,
                  zero: bool = False) -> float:
    """Parse a duration in seconds (see :func:`parse_number`).

    It must be finite, at least ``minimum`` (default 1 ms: no timer is finer) or exactly 0
    where ``zero`` allows it, and at most :data:`MAX_SECONDS`. Raises :class:`ConfigError`
    naming ``name`` otherwise.
    """
    seconds = parse_number(value, name=name, what="seconds")
    if seconds != seconds:  # NaN (math is a library of its own to load)
        raise ConfigError(f"{name}: expected a number of seconds, got {_shown(value)}")
    if zero and seconds == 0:
        return 0.0
    if seconds < minimum:
        least = "0 or at least" if zero else "at least"
        raise ConfigError(f"{name}: must be {least} {minimum:g} seconds, got {_shown(value)}")
    if seconds > MAX_SECONDS:
        raise ConfigError(f"{name}: must be at most {MAX_SECONDS:g} seconds (about 31 years), "
                          f"got {_shown(value)}")
    return seconds


def parse_decimal(text: str, *, name: str, maximum: int) -> int:
    """Parse a non-negative decimal number of ASCII digits only (no sign, ``_``, spaces or
    other scripts' digits, which ``int()`` would take), from 0 to ``maximum``.

    Raises :class:`ConfigError` naming ``name`` otherwise.
    """
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise ConfigError(f"{name}: expected a number of digits 0-9, got {_shown(text)}")
    if len(text.lstrip("0")) > len(str(maximum)) or int(text) > maximum:
        raise ConfigError(f"{name}: must be at most {maximum}, got {_shown(text)}")
    return int(text)
