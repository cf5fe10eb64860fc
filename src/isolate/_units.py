"""Human units for sizes (``"512M"``): one parser for every layer that takes a size.

Imports nothing from isolate but its errors; makes no system calls.
"""

from __future__ import annotations

import re

from isolate.errors import ConfigError

__all__ = ["parse_size"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(value: int | str, *, name: str = "size") -> int:
    """Parse a byte count: an int, or a string such as ``"512M"``, ``"1.5G"``, ``"64KiB"``.

    Units are binary (K = 1024). Raises :class:`ConfigError` naming ``name`` when the value is
    not a non-negative size.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{name}: size must not be negative, got {value!r}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise ConfigError(f"{name}: expected a size like 512M or 1G, got {value!r}")
