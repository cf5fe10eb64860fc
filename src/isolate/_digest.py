"""SHA-256 of small records without loading OpenSSL.

``hashlib`` loads OpenSSL's ``_hashlib`` (~3 ms of a process's start); CPython's own SHA-256
(``_sha256``, ``_sha2`` since 3.12) costs nothing to load and is as fast on the small records
every command hashes (image manifests and configs, cached seccomp programs). OpenSSL's is faster
on large data (layers), so that still goes through hashlib, as does everything once hashlib is
loaded anyway. Imports nothing of isolate (any layer may use it).
"""

from __future__ import annotations

import sys

__all__ = ["sha256_hex"]

#: Up to this many bytes, :func:`sha256_hex` may hash without hashlib.
SMALL = 1 << 20


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data``, as 64 hex digits."""
    if len(data) <= SMALL and "hashlib" not in sys.modules:
        for name in ("_sha256", "_sha2"):
            try:
                builtin = __import__(name)  # (not importlib: it loads warnings too)
            except ImportError:
                continue
            return str(builtin.sha256(data).hexdigest())
    import hashlib

    return hashlib.sha256(data).hexdigest()
