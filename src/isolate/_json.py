"""``json.loads``/``dumps`` without importing :mod:`json`.

``import json`` loads re (with enum, functools, the regex compiler and its parser) because the
pure-Python scanner it falls back to matches numbers and whitespace by patterns: ~4 ms of every
start of a short-lived process under the interpreters here, which the modules of a container's
start need only to read and write their small records. CPython's accelerator, ``_json``, does
the work itself and needs none of it; these functions call it as :mod:`json` does. What they
return and raise is :mod:`json`'s: the same objects and text for the same arguments, and
:class:`json.JSONDecodeError` (a ValueError) for text that is not JSON, whose path imports
json then. Where the accelerator is missing (another Python), or for the arguments it does not
take in every version (``indent``), they are :mod:`json`'s own functions.

To mypy this *is* :mod:`json` (as :mod:`isolate._record` is attrs). Use it as
``from isolate import _json as json``.
"""

from __future__ import annotations

from isolate._typing import TYPE_CHECKING

if TYPE_CHECKING:
    from json import JSONDecodeError, dump, dumps, load, loads
else:
    try:
        from _json import encode_basestring_ascii as _ascii
        from _json import make_encoder as _make_encoder
        from _json import make_scanner as _make_scanner
    except ImportError:  # no accelerator: json's own functions
        from json import JSONDecodeError, dump, dumps, load, loads
    else:
        import sys as _sys

        _WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE
        _INF = float("inf")

        class _Context:
            """What ``_json.make_scanner`` reads of a ``json.JSONDecoder()`` with defaults."""

            strict = True
            object_hook = None
            object_pairs_hook = None
            parse_float = float
            parse_int = int
            parse_constant = {"-Infinity": -_INF, "Infinity": _INF,
                              "NaN": _INF - _INF}.__getitem__

        _scan = _make_scanner(_Context())

        def _json():
            import json

            return json

        def __getattr__(name):
            """``JSONDecodeError`` (json's), loaded when an except clause first asks for it."""
            if name == "JSONDecodeError":
                return _json().JSONDecodeError
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

        def loads(s, **kw):
            """``json.loads(s)``: a str, or bytes in UTF-8 (other encodings go to json)."""
            if kw:
                return _json().loads(s, **kw)
            if not isinstance(s, str):
                if (not isinstance(s, (bytes, bytearray)) or 0 in s[:4]
                        or s[:3] == b"\xef\xbb\xbf" or s[:2] in (b"\xff\xfe", b"\xfe\xff")):
                    return _json().loads(s)  # json's errors, json's encoding detection
                s = s.decode("utf-8", "surrogatepass")
            elif s.startswith("\ufeff"):
                return _json().loads(s)  # json's "Unexpected UTF-8 BOM" error
            start = len(s) - len(s.lstrip(_WHITESPACE))
            try:
                obj, end = _scan(s, start)
            except StopIteration as err:
                raise _json().JSONDecodeError("Expecting value", s, err.value) from None
            except SystemError:
                # 3.11's accelerator raises json.decoder's JSONDecodeError for an error past
                # the first value, looked up in sys.modules only: before json is imported it
                # finds none and returns NULL with no exception set. json's own loads then
                # raises the right error.
                if "json.decoder" in _sys.modules:
                    raise
                return _json().loads(s)
            rest = s[end:]
            if rest and rest.lstrip(_WHITESPACE):
                end += len(rest) - len(rest.lstrip(_WHITESPACE))
                raise _json().JSONDecodeError("Extra data", s, end)
            return obj

        def load(fp, **kw):
            """``json.load(fp)``."""
            return loads(fp.read(), **kw)

        def _default(o):
            raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")

        def dumps(obj, *, sort_keys=False, separators=None, indent=None, **kw):
            """``json.dumps(obj, sort_keys=..., separators=...)``; with ``indent`` or any other
            argument, json's own."""
            if indent is not None or kw:
                return _json().dumps(obj, sort_keys=sort_keys, separators=separators,
                                     indent=indent, **kw)
            if isinstance(obj, str):
                return _ascii(obj)
            item_sep, key_sep = separators if separators is not None else (", ", ": ")
            chunks = _make_encoder({}, _default, _ascii, None, key_sep, item_sep,
                                   bool(sort_keys), False, True)(obj, 0)
            return "".join(chunks)

        def dump(obj, fp, **kw):
            """``json.dump(obj, fp, ...)``: the text of :func:`dumps`, written at once."""
            fp.write(dumps(obj, **kw))

__all__ = ["JSONDecodeError", "dump", "dumps", "load", "loads"]
