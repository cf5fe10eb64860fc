"""The shell-word lexer of Dockerfiles: quotes, escapes and ``$VAR`` substitution.

Owns the rules by which the builder (not the shell of a ``RUN``) turns ``ENV``, ``COPY``,
``WORKDIR``... arguments into words: ``'single'`` and ``"double"`` quotes, the escape character,
``$v``, ``${v}``, ``${v:-w}``, ``${v-w}``, ``${v:+w}``, ``${v+w}``, ``${v:?w}``, ``${v?w}``,
``${v#p}``/``${v%p}`` (and ``##``/``%%``) and ``${v/p/r}``. It knows nothing of which
instruction is being expanded: :mod:`isolate.image.build.plan` decides that.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from isolate import _record

__all__ = ["Expansion", "ShellError", "ShellLexer"]

_SPECIAL_PARAMS = "@*#?-$!0"


class ShellError(ValueError):
    """A word cannot be expanded (an unterminated quote, a bad ``${...}``, a ``${v:?}`` that
    fired). The caller adds the source location."""


@_record.record
class Expansion:
    """The result of expanding one text: the whole string (``text``, quotes removed, spaces
    kept), the text split into ``words`` after expansion, and the variable names that were
    looked up and set (``used``) or not set (``unset``)."""

    text: str
    words: tuple[str, ...]
    used: frozenset[str]
    unset: frozenset[str]


class _Words:
    """Collects words: unquoted whitespace splits them, quoted text never does."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf: list[str] = []

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.buf:
                self.words.append("".join(self.buf))
                self.buf = []
        else:
            self.buf.append(ch)

    def add_raw(self, text: str) -> None:
        self.buf.append(text)

    def add_text(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def finish(self) -> list[str]:
        if self.buf and "".join(self.buf):
            self.words.append("".join(self.buf))
        self.buf = []
        return self.words


class _Scan:
    def __init__(self, lexer: ShellLexer, text: str, env: Callable[[str], str | None]) -> None:
        self.lexer = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.used: set[str] = set()
        self.unset: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if ch:
            self.pos += 1
        return ch

    def get(self, name: str) -> str | None:
        value = self.env(name)
        (self.used if value is not None else self.unset).add(name)
        return value

    def until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Process up to (and past) ``stop`` ("" for the end of the text)."""
        lx = self.lexer
        result: list[str] = []
        words = _Words()
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.pos += 1
                return "".join(result), words.finish()
            if ch == "$":
                value = self.dollar()
                result.append(value)
                words.add_text(value)
            elif ch == "<":
                value = self.heredoc_start()
                result.append(value)
                words.add_raw(value)
            elif ch == "'" and not lx.skip_quotes:
                value = self.single_quoted()
                result.append(value)
                words.add_raw(value)
            elif ch == '"' and not lx.skip_quotes:
                value = self.double_quoted(raw_escapes)
                result.append(value)
                words.add_raw(value)
            else:
                self.pos += 1
                if ch == lx.escape:
                    if raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if not ch:
                        break  # an escape at the very end escapes nothing
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def single_quoted(self) -> str:
        # Everything up to the next ' is literal; a ' cannot be escaped inside.
        raw = self.lexer.raw_quotes
        first = self.next()
        out = [first] if raw else []
        while True:
            ch = self.next()
            if not ch:
                raise ShellError("unexpected end of statement while looking for matching "
                                 "single-quote")
            if ch == "'":
                if raw:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quoted(self, raw_escapes: bool) -> str:
        # Literal except $ (expanded) and the escape, which escapes only " $ and itself.
        esc = self.lexer.escape
        raw = self.lexer.raw_quotes
        first = self.next()
        out = [first] if raw else []
        while True:
            ch = self.peek()
            if not ch:
                raise ShellError("unexpected end of statement while looking for matching "
                                 "double-quote")
            if ch == '"':
                self.pos += 1
                if raw:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == esc:
                if raw_escapes:
                    out.append(ch)
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", esc):
                    ch = self.next()
            out.append(ch)

    def heredoc_start(self) -> str:
        self.pos += 1
        if self.peek() != "<":
            return "<"
        self.pos += 1
        # "<< EOF" stays one word, so a heredoc marker can be found in the word list.
        start = self.pos
        while self.peek() in (" ", "\t"):
            self.pos += 1
        return "<<" + self.text[start:self.pos]

    def name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch.isdigit():
            while self.peek().isdigit():
                self.pos += 1
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        while (c := self.peek()) and (c.isalnum() or c == "_"):
            self.pos += 1
        return self.text[start:self.pos]

    def dollar(self) -> str:
        self.pos += 1
        lx = self.lexer
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value = self.get(name)
            if value is None:
                return "$" + name if lx.skip_unset else ""
            return value
        self.pos += 1
        ch = self.peek()
        if not ch:
            raise ShellError("syntax error: missing '}'")
        if ch in "{}:":
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            value = self.get(name)
            if value is None:
                return "${" + name + "}" if lx.skip_unset else ""
            return value
        if not op:
            raise ShellError("syntax error: missing '}'")
        colon = op == ":"
        if colon:
            op = self.next()
            if not op:
                raise ShellError("syntax error: missing '}'")
        if op in "+-?#%":
            if colon and op in "#%":
                raise ShellError(f"unsupported modifier (:{op}) in substitution")
            try:
                word, _ = self.until("}", raw_escapes=op in "#%")
            except ShellError:
                if not self.peek():
                    raise ShellError("syntax error: missing '}'") from None
                raise
            value = self.get(name)
            if value is None and lx.skip_unset:
                return "${" + name + (":" if colon else "") + op + word + "}"
            empty = value is None or (colon and value == "")
            if op == "-":
                return word if empty else value or ""
            if op == "+":
                return "" if empty else word
            if op == "?":
                if value is None:
                    raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
                if colon and value == "":
                    raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            greedy = word.startswith(op)
            pattern = word[1:] if greedy else word
            return _trim(value or "", pattern, suffix=op == "%", greedy=greedy)
        if op == "/" and not colon:
            replace_all = self.peek() == "/"
            if replace_all:
                self.pos += 1
            try:
                pattern, _ = self.until("/", raw_escapes=True)
                replacement, _ = self.until("}", raw_escapes=True)
            except ShellError:
                raise ShellError("syntax error: missing '}' or '/' in ${...}") from None
            value = self.get(name)
            if value is None and lx.skip_unset:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            regex = _pattern_regex(pattern, greedy=True)
            return regex.sub(lambda _m: replacement, value or "", count=0 if replace_all else 1)
        raise ShellError(f"unsupported modifier ({':' if colon else ''}{op}) in substitution")


def _pattern_regex(pattern: str, *, greedy: bool) -> re.Pattern[str]:
    """A shell pattern (``?`` one character, ``*`` any string, ``\\x`` a literal x) as a
    regular expression (bracket expressions are not supported, as in Docker)."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.S)


def _trim(value: str, pattern: str, *, suffix: bool, greedy: bool) -> str:
    """``${v#p}`` (prefix) or ``${v%p}`` (suffix): remove the shortest (or, greedy, the
    longest) match of ``pattern``."""
    regex = _pattern_regex(pattern, greedy=True)
    n = len(value)
    cuts = range(n + 1) if not greedy else range(n, -1, -1)
    for cut in cuts:
        if suffix:
            start = n - cut
            if regex.fullmatch(value, start):
                return value[:start]
        elif regex.fullmatch(value[:cut]):
            return value[cut:]
    return value


@_record.record
class ShellLexer:
    """Expands and splits Dockerfile words as the builder does.

    ``escape`` is the file's escape character (``\\`` or a backtick, from ``# escape=``).
    ``raw_quotes``/``raw_escapes`` keep quote and escape characters in the result (used to
    find heredoc markers); ``skip_unset`` leaves ``$v`` of unset variables as written (used
    to show a command); ``skip_quotes`` treats quotes as ordinary characters.
    """

    escape: str = "\\"
    raw_quotes: bool = False
    raw_escapes: bool = False
    skip_unset: bool = False
    skip_quotes: bool = False

    def expand(self, text: str, env: Mapping[str, str] | Callable[[str], str | None]
               ) -> Expansion:
        """Expand ``text`` with ``env`` (a mapping or a lookup function returning None for
        an unset variable).

        Raises:
            ShellError: unterminated quotes or a malformed ``${...}``.
        """
        lookup = env.get if isinstance(env, Mapping) else env
        scan = _Scan(self, text, lookup)
        result, words = scan.until("", self.raw_escapes)
        return Expansion(result, tuple(words), frozenset(scan.used), frozenset(scan.unset))

    def word(self, text: str, env: Mapping[str, str] | Callable[[str], str | None]) -> str:
        """``text`` as one word: expanded, quotes removed, inner spaces kept. Raises as
        :meth:`expand`."""
        return self.expand(text, env).text

    def words(self, text: str, env: Mapping[str, str] | Callable[[str], str | None]
              ) -> list[str]:
        """``text`` expanded and split into words on unquoted whitespace. Raises as
        :meth:`expand`."""
        return list(self.expand(text, env).words)
