"""Variable substitution as the builder does it (not the shell of a RUN)."""

from __future__ import annotations

import pytest

from isolate.image.build import ShellLexer
from isolate.image.build.shell import ShellError

ENV = {"a": "x y", "empty": "", "n": "3", "path": "/usr/local/bin:/usr/bin", "f": "a.tar.gz"}


@pytest.mark.parametrize(("text", "word", "words"), [
    ("$a", "x y", ["x", "y"]),                 # unquoted expansion splits into words
    ('"$a"', "x y", ["x y"]),                  # quoted does not
    ("${a}z", "x yz", ["x", "yz"]),
    ("$a_b", "", []),                          # the name is a_b, which is unset
    ("${a}_b", "x y_b", ["x", "y_b"]),
    ("$unset", "", []),
    ("pre${unset}post", "prepost", ["prepost"]),
    ("${unset:-def}", "def", ["def"]),
    ("${empty:-def}", "def", ["def"]),         # :- treats empty as unset
    ("${empty-def}", "", []),                  # - does not
    ("${unset-def}", "def", ["def"]),
    ("${a:+set}", "set", ["set"]),
    ("${empty:+set}", "", []),
    ("${empty+set}", "set", ["set"]),
    ("${unset+set}", "", []),
    ("${unset:-$a}", "x y", ["x", "y"]),       # the word is expanded too
    ('${unset:-"q w"}', "q w", ["q", "w"]),   # as Docker: the result is split again
    ("\\$a", "$a", ["$a"]),                    # escaped dollar is literal
    ("\\${a}", "${a}", ["${a}"]),
    ("'$a'", "$a", ["$a"]),                    # single quotes are literal
    ('"\\$a"', "$a", ["$a"]),
    ('"a\\b"', "a\\b", ["a\\b"]),              # in double quotes \ escapes only " $ \
    ('"a\\"b"', 'a"b', ['a"b']),
    ("a\\ b c", "a b c", ["a b", "c"]),        # escaped space joins a word
    ("$", "$", ["$"]),
    ("a$", "a$", ["a$"]),
    ("$1", "", []),
    ("${f%.gz}", "a.tar", ["a.tar"]),
    ("${f%%.*}", "a", ["a"]),
    ("${f#*.}", "tar.gz", ["tar.gz"]),
    ("${f##*.}", "gz", ["gz"]),
    ("${path/:/ }", "/usr/local/bin /usr/bin", ["/usr/local/bin", "/usr/bin"]),
    ("${path//\\//_}", "_usr_local_bin:_usr_bin", ["_usr_local_bin:_usr_bin"]),
    ("${n}${n}", "33", ["33"]),
])
def test_substitution(text: str, word: str, words: list[str]) -> None:
    lexer = ShellLexer()
    assert lexer.word(text, ENV) == word
    assert lexer.words(text, ENV) == words


def test_the_used_and_unset_names_are_reported() -> None:
    e = ShellLexer().expand("$a ${unset:-x} ${n}", ENV)
    assert e.used == {"a", "n"} and e.unset == {"unset"}


def test_backtick_escape() -> None:
    lexer = ShellLexer("`")
    assert lexer.word("`$a", ENV) == "$a"
    assert lexer.word("c:\\path", ENV) == "c:\\path"


def test_skip_unset_keeps_what_it_cannot_expand() -> None:
    lexer = ShellLexer(skip_unset=True)
    assert lexer.word("$a $unset ${unset} ${unset:-x}", ENV) == "x y $unset ${unset} ${unset:-x}"


@pytest.mark.parametrize(("text", "message"), [
    ("${a", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:a}", "bad substitution"),
    ("${a:#x}", "unsupported modifier"),
    ("${a!x}", "unsupported modifier"),
    ("'abc", "single-quote"),
    ('"abc', "double-quote"),
    ("${unset?must be set}", "unset: must be set"),
    ("${empty:?}", "empty: is not allowed to be empty"),
])
def test_malformed_substitutions_are_errors(text: str, message: str) -> None:
    with pytest.raises(ShellError, match=message):
        ShellLexer().word(text, ENV)


def test_lookup_function_and_mapping_agree() -> None:
    lexer = ShellLexer()
    assert lexer.word("$a-$n", ENV.get) == lexer.word("$a-$n", ENV)
