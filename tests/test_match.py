"""isolate._match against the regular expressions it replaces: the same answer on every string
of a corpus of edge cases and on many thousands of random ones over each grammar's alphabet
(with the characters around it: Unicode letters and digits, separators, whitespace, a newline
at the end, which ``$`` would have let through)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest

from isolate import _match
from refusing import run_refusing

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"

#: name -> (the pattern, the function, what the function's answer is as the pattern's)
GRAMMARS: dict[str, tuple[str, Callable[[str], object], Callable[[object], object]]] = {
    "hex 64": (r"[0-9a-f]{64}", lambda s: _match.hex_string(s, 64, 64), bool),
    "hex 1-": (r"[0-9a-f]+", _match.hex_string, bool),
    "hex 4-64": (r"[0-9a-f]{4,64}", lambda s: _match.hex_string(s, 4, 64), bool),
    "hex 12-64": (r"[0-9a-f]{12,64}", lambda s: _match.hex_string(s, 12, 64), bool),
    "sha256": (r"sha256:[a-f0-9]{64}", _match.sha256, bool),
    "path component": (r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", _match.path_component, bool),
    "registry host": (
        rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::([0-9]+))?",
        _match.registry_host, lambda m: (True, m.group(1)) if m else (False, None)),
    "tag": (r"[\w][\w.-]{0,127}", _match.tag, bool),
    "digest": (r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}", _match.digest, bool),
    "os/arch": (r"[a-z0-9_.-]+", _match.os_arch, bool),
    "container name": (r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", _match.container_name, bool),
    "holder": (r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", _match.holder_name, bool),
    "hostname": (r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", _match.hostname, bool),
    "cgroup name": (r"[A-Za-z0-9_@:+-][A-Za-z0-9_.@:+-]*", _match.cgroup_name, bool),
    "cpuset": (r"\d+(-\d+)?(,\d+(-\d+)?)*", _match.cpuset, bool),
    "device": (r"(\d+):(\d+)", _match.decimal_pair, lambda m: m.groups() if m else None),
    "generated cgroup": (r"cg-\d+-[0-9a-f]{16}", _match.generated_cgroup, bool),
    "unlocked cgroup": (r"cg-(\d+)-[0-9a-f]{12}", _match.unlocked_cgroup_pid,
                        lambda m: m.group(1) if m else None),
}

CORPUS = [
    "", "a", "A", "0", "-", ".", "_", "__", "a-b", "a--b", "a__b", "a___b", "a._b", "a.b", "a..b",
    "a.", ".a", "-a", "a-", "_a", "a_", "é", "ab\n", "a\n", "\n", " a", "a ", "a\tb",
    "\u0663", "\u0661\u0662",
    "x" * 128, "x" * 129, "a" * 64, "0" * 63, "f" * 64 + "\n", "sha256:" + "a" * 64,
    "sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 64 + "\n", "sha512:" + "a" * 128,
    "sha256+b64u:" + "A" * 43, "a.+b:" + "x" * 32, "a:" + "=" * 32, ":" + "x" * 32,
    "localhost", "localhost:5000", "localhost:", "localhost:65536", ":5000", "a.b.c:1", "a..b",
    "[::1]", "[::1]:5000", "[]", "[::1", "[::1]]", "[g::1]", "[::1]:", "[::1]:x", "a:1:2",
    "exa-mple.com", "-a.com", "a-.com", "a.com-", "xn--bcher-kva.example", "A.B", "a.b:0",
    "1-3", "0,2-5,7", "1-", "-1", "1,,2", "1-2-3", "1,", ",1", "\u0663-\u0664", "8:0",
    "8:", ":0", "a:b",
    "8:0:1", "cg-1-" + "a" * 16, "cg-12-" + "a" * 12, "cg--" + "a" * 16, "cg-1-" + "A" * 16,
    "cg-x-" + "a" * 16, "cg-1-" + "a" * 17, "cg-\u0661-" + "a" * 12, "@x", ":x", "+x", "x.y@z:w+q-",
    "web", "web.1", "web-1_a", "1", "v1.2.3-rc1", "_tag", "ünïcödé", "tag\u00b2", "ta\u0663g",
]

ALPHABETS = {
    "ascii": "abcxyz019ABCXYZ._-:+=@[]/ ",
    "hex": "0123456789abcdefABCDEF:-",
    "unicode": "aA0_.-é\u00b2\u0663\u2167\u3007\u00aa\n\t :",
    "cgroup": "cg-0123456789abcdef",
    "cpuset": "0123456789,-\u0663: ",
}


def _answer(pattern: str, fn: Callable[[str], object], as_fn: Callable[[object], object],
            text: str) -> tuple[object, object]:
    return as_fn(re.fullmatch(pattern, text)), fn(text)


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_each_grammar_answers_as_its_pattern_on_the_corpus(name: str) -> None:
    pattern, fn, as_fn = GRAMMARS[name]
    for text in CORPUS:
        expected, got = _answer(pattern, fn, as_fn, text)
        assert expected == got, (name, text)


def _random_text(rng: random.Random, alphabet: str, corpus: list[str]) -> str:
    if rng.random() < 0.3:  # a corpus string spoilt at one place
        base = list(rng.choice(corpus) or "a")
        base[rng.randrange(len(base))] = rng.choice(alphabet)
        return "".join(base)
    return "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 2, 3, 5, 8, 13, 40, 70])))


@pytest.mark.parametrize("name", list(GRAMMARS))
def test_each_grammar_answers_as_its_pattern_on_random_strings(name: str) -> None:
    pattern, fn, as_fn = GRAMMARS[name]
    rng = random.Random(f"{name}-20261202")
    matched = 0
    for alphabet in ALPHABETS.values():
        for _ in range(4000):
            text = _random_text(rng, alphabet, CORPUS)
            expected, got = _answer(pattern, fn, as_fn, text)
            assert expected == got, (name, text)
            matched += expected not in (False, None, (False, None))
    assert matched, f"{name}: no random string matched; the test would not see a difference"


def test_importing_it_loads_no_re() -> None:
    out = run_refusing({"re"}, "import isolate._match as m\n"
                               "print(m.sha256('sha256:' + 'a' * 64))\n")
    assert out == "True\n"
