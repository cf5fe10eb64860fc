"""isolate._json against the standard library's json: the same objects, text and errors."""

from __future__ import annotations

import io
import json
import math
import random
import subprocess
import sys

import pytest

from isolate import _json
from refusing import run_refusing

DOCS = [
    {}, [], "", "x", 0, -1, 1.5, 1e300, -0.0, True, False, None, 10**40,
    {"b": 1, "a": [1, 2, {"c": None}], "é": "ü\u2028\U0001f600", "\x00": "\ud800"},
    {"nested": [[[[[[{"k": "v"}]]]]]], "float": 0.1, "neg": -1e-7, "big": 2**70},
    [float("inf"), float("-inf")],
    {"1": 1, "10": 2, "2": 3},
]

TEXTS = [
    "{}", "[]", '""', "0", "-0", "-0.0", "1e5", "1E+5", "1.5e-3", "123456789012345678901234567890",
    " \t\n\r{\"a\" : [1 , 2]} \n", '"\\u00e9\\ud83d\\ude00\\n"', "true", "false", "null",
    "NaN", "Infinity", "-Infinity", '{"a":1,"a":2}', '"\\ud800"', "[1,[2,[3,[4]]]]",
    '{"x": "\u2028"}', "\ufeff{}", "", " ", "{", "}", "[1,]", '{"a":}', "01", "1 2", "[] x",
    '"\\x"', "nul", "tru", '{"a" 1}', "[1 2]", '"abc', "1.", ".5", "-", "+1", "[\n", "\x00",
    '"\t"', '{"a":1}  ,', "[1]\n\n]", "1e", "--1", "Infinityx", "[NaN]",
]


def _outcome(fn: object, *args: object, **kw: object) -> tuple[str, object]:
    try:
        return "ok", fn(*args, **kw)  # type: ignore[operator]
    except json.JSONDecodeError as exc:
        return "error", (type(exc), exc.msg, exc.pos, exc.lineno, exc.colno)
    except (TypeError, ValueError, RecursionError) as exc:
        return "error", (type(exc), str(exc))


def _same(a: tuple[str, object], b: tuple[str, object]) -> bool:
    # NaN is not equal to itself: compare the text json gives both.
    return a[0] == b[0] and (a == b or json.dumps(a[1]) == json.dumps(b[1]))


@pytest.mark.parametrize("text", TEXTS)
def test_loads_reads_as_json_does(text: str) -> None:
    for arg in (text, text.encode("utf-8", "surrogatepass")):
        assert _same(_outcome(_json.loads, arg), _outcome(json.loads, arg)), repr(arg)


def test_loads_takes_the_encodings_json_detects() -> None:
    for encoding in ("utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"):
        data = '{"k": ["\u00e9"]}'.encode(encoding)
        assert _json.loads(data) == json.loads(data) == {"k": ["\u00e9"]}
    assert _same(_outcome(_json.loads, b"\xff"), _outcome(json.loads, b"\xff"))
    assert _same(_outcome(_json.loads, 3), _outcome(json.loads, 3))


def test_a_decode_error_is_jsons_and_a_value_error() -> None:
    with pytest.raises(json.JSONDecodeError) as err:
        _json.loads('{"a": 1} x')
    assert isinstance(err.value, ValueError) and (err.value.msg, err.value.pos) == (
        "Extra data", 9)
    assert _json.JSONDecodeError is json.JSONDecodeError
    with pytest.raises(AttributeError):
        _json.no_such_name  # type: ignore[attr-defined]  # noqa: B018


@pytest.mark.parametrize("doc", DOCS, ids=range(len(DOCS)))
@pytest.mark.parametrize("kw", [{}, {"sort_keys": True}, {"separators": (",", ":")},
                                {"sort_keys": True, "separators": (",", ":")},
                                {"indent": 1, "sort_keys": True}, {"ensure_ascii": False}])
def test_dumps_writes_what_json_writes(doc: object, kw: dict[str, object]) -> None:
    assert _json.dumps(doc, **kw) == json.dumps(doc, **kw)  # type: ignore[arg-type]
    out = io.StringIO()
    _json.dump(doc, out, **kw)  # type: ignore[arg-type]
    assert out.getvalue() == json.dumps(doc, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("doc", [{1: "int key"}, {(1, 2): "tuple key"}, {"s": {1, 2}},
                                 [b"bytes"], object()])
def test_dumps_refuses_what_json_refuses(doc: object) -> None:
    assert _same(_outcome(_json.dumps, doc), _outcome(json.dumps, doc))
    assert _same(_outcome(_json.dumps, doc, sort_keys=True),
                 _outcome(json.dumps, doc, sort_keys=True))


def test_circular_and_deep_structures_fail_as_in_json() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert _same(_outcome(_json.dumps, loop), _outcome(json.dumps, loop))
    deep = "[" * 100_000 + "]" * 100_000
    assert _outcome(_json.loads, deep)[0] == _outcome(json.loads, deep)[0] == "error"


def _random_doc(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randrange(-2**70, 2**70)
    if kind == 2:
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10 ** rng.randrange(-300, 300),
                           math.inf, -math.inf, 0.0, -0.0])
    if kind in (3, 4, 5):
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 32),
                                       rng.randrange(0x80, 0x10FFFF)]))
                       for _ in range(rng.randrange(12)))
    if kind in (6, 7):
        return [_random_doc(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {str(_random_doc(rng, depth + 1)): _random_doc(rng, depth + 1)
            for _ in range(rng.randrange(5))}


def test_random_documents_round_trip_as_through_json() -> None:
    rng = random.Random(20261202)
    for _ in range(3000):
        doc = _random_doc(rng)
        for kw in ({}, {"sort_keys": True, "separators": (",", ":")}):
            text = _json.dumps(doc, **kw)  # type: ignore[arg-type]
            assert text == json.dumps(doc, **kw)  # type: ignore[arg-type]
            assert _same(("ok", _json.loads(text)), ("ok", json.loads(text)))
        # and text cut or spoilt somewhere: the same answer, value or error
        text = json.dumps(doc, indent=rng.choice([None, 1]))
        cut = rng.randrange(len(text) + 1)
        for spoilt in (text[:cut], text[:cut] + rng.choice(["x", "]", "}", ",", " ", "\n"])
                       + text[cut:]):
            assert _same(_outcome(_json.loads, spoilt), _outcome(json.loads, spoilt)), spoilt


# Errors past the first value, which the accelerator of 3.11 reports only once json is loaded.
BROKEN = ['{"id": "abc", "na', "[1,]", '{"a" 1}', "[1 2]", '"\\x"', "[] x", '{"a":}']


@pytest.mark.parametrize("text", BROKEN)
def test_an_error_is_jsons_before_json_is_loaded(text: str) -> None:
    # The first error of a process that never imported json (as the resolver's, reading a
    # torn record): json's JSONDecodeError, from str and from bytes, never a SystemError.
    code = ("import sys\n"
            "from isolate import _json\n"
            f"for arg in ({text!r}, {text.encode()!r}):\n"
            "    for name in [m for m in sys.modules if m.partition('.')[0] == 'json']:\n"
            "        del sys.modules[name]  # (a site hook may have loaded it)\n"
            "    try:\n"
            "        _json.loads(arg)\n"
            "    except ValueError as exc:\n"
            "        print(type(exc).__name__, exc.msg, exc.pos)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    with pytest.raises(json.JSONDecodeError) as want:
        json.loads(text)
    line = f"JSONDecodeError {want.value.msg} {want.value.pos}"
    assert out.stdout.splitlines() == [line, line]


def test_importing_it_loads_neither_json_nor_re() -> None:
    out = run_refusing({"json", "re", "enum"},
                       "import isolate._json as j\n"
                       "print(j.loads(j.dumps({'a': [1.5, None]})))\n")
    assert out == "{'a': [1.5, None]}\n"
