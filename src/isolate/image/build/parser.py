"""Dockerfile text -> instruction nodes: lines, continuations, comments, directives, heredocs.

Owns the file's syntax only: parser directives (``# syntax=``, ``# escape=``, ``# check=``) at
the top, comments, line continuations with the escape character, builder flags
(``--from=x``) split off each instruction, and heredoc bodies (``<<EOF``, ``<<-EOF``,
``<<"EOF"``) read after the instruction that names them. Every node and every error carries
its source location. What an instruction means is :mod:`isolate.image.build.instructions`'.
"""

from __future__ import annotations

import re

from isolate import _record
from isolate.image.build.errors import DockerfileError, SourceLocation
from isolate.image.build.shell import ShellError, ShellLexer

__all__ = ["Dockerfile", "Heredoc", "Node", "parse", "split_instruction"]

_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*\Z")
_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC = re.compile(r"(\d*)<<(-?)\s*([^<]*)\Z")
# Instructions whose (shell-form) arguments may name heredocs, directly or under ONBUILD.
_HEREDOC_INSTRUCTIONS = ("RUN", "COPY", "ADD")
_BOM = "\ufeff"


@_record.record
class Heredoc:
    """A here-document: its terminator ``name``, its ``content`` (every line up to the
    terminator, with newlines), whether variables in it are expanded (``expand``: the name
    was not quoted), whether leading tabs are stripped (``chomp``: ``<<-``) and the file
    descriptor it was written for (``3<<EOF``; None for the default)."""

    name: str
    content: str
    expand: bool = True
    chomp: bool = False
    fd: int | None = None

    @property
    def text(self) -> str:
        """The content as the instruction sees it (leading tabs removed for ``<<-``)."""
        if not self.chomp:
            return self.content
        return re.sub(r"(?m)^\t+", "", self.content)


@_record.record
class Node:
    """One instruction as written: ``keyword`` (upper case), builder ``flags`` (each
    ``--name[=value]`` with quotes and escapes processed), ``args`` (the rest of the joined
    line, stripped), ``original`` (the joined line), its heredocs and location."""

    keyword: str
    flags: tuple[str, ...]
    args: str
    original: str
    location: SourceLocation
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def is_json(self) -> bool:
        """Whether the arguments are written in exec (JSON array) form."""
        return self.args.lstrip().startswith("[")


@_record.record
class Dockerfile:
    """A parsed Dockerfile: its nodes in order, the escape character, the parser directives
    found (lower-case name -> value), the file name and non-fatal warnings."""

    nodes: tuple[Node, ...]
    escape: str = "\\"
    directives: dict[str, str] = _record.field(factory=dict, hash=False)
    filename: str = "Dockerfile"
    warnings: tuple[str, ...] = ()


def _continues(line: str, escape: str) -> str | None:
    """The line without its trailing escape if it continues on the next line, else None.

    As Docker reads it: the escape is the last non-blank character and is not itself escaped
    (a doubled escape at the end of a line is a literal one)."""
    body = line.rstrip(" \t")
    if not body.endswith(escape):
        return None
    if len(body) >= 2 and body[-2] == escape:
        return None
    return body[:-1]


def split_instruction(line: str, escape: str, location: SourceLocation
                      ) -> tuple[str, tuple[str, ...], str]:
    """Split a joined instruction line into (keyword, builder flags, arguments).

    Flags are the leading words that start with ``--`` (quotes and escapes inside them are
    processed, ``--`` alone ends them).

    Raises:
        DockerfileError: unterminated quote in a flag.
    """
    text = line.strip()
    parts = re.split(r"[\t\v\f\r ]+", text, maxsplit=1)
    keyword = parts[0]
    rest = parts[1] if len(parts) > 1 else ""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            break
        word: list[str] = []
        quote = ""
        while pos < len(rest):
            ch = rest[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == escape and quote == '"' and pos + 1 < len(rest):
                    pos += 1
                    word.append(rest[pos])
                else:
                    word.append(ch)
            elif ch.isspace():
                break
            elif ch in "'\"":
                quote = ch
            elif ch == escape and pos + 1 < len(rest):
                pos += 1
                word.append(rest[pos])
            elif ch != escape:
                word.append(ch)
            pos += 1
        if quote:
            raise DockerfileError(f"unterminated quote in flag of {keyword.upper()}",
                                  location)
        flag = "".join(word)
        if flag == "--":
            break
        flags.append(flag)
    return keyword, tuple(flags), rest[pos:].strip()


def _heredoc_words(args: str, escape: str) -> list[Heredoc]:
    """The heredoc markers among the words of ``args`` (in order), without content yet."""
    raw = ShellLexer(escape, raw_quotes=True, raw_escapes=True, skip_unset=True)
    plain = ShellLexer(escape, skip_unset=True)
    try:
        words = raw.words(args, {})
    except ShellError:
        return []
    found = []
    for word in words:
        m = _HEREDOC.match(word)
        if m is None or not m.group(3):
            continue
        rest = m.group(3)
        try:
            unquoted = plain.words(rest, {})
            kept = raw.words(rest, {})
        except ShellError:
            continue
        if len(unquoted) != 1:
            continue
        quotes = sum(w.count("'") + w.count('"') for w in unquoted)
        raw_quotes = sum(w.count("'") + w.count('"') for w in kept)
        found.append(Heredoc(unquoted[0], "", expand=quotes == raw_quotes,
                             chomp=m.group(2) == "-",
                             fd=int(m.group(1)) if m.group(1) else None))
    return found


def _may_have_heredocs(keyword: str, args: str, escape: str, location: SourceLocation
                       ) -> bool:
    kw = keyword.upper()
    if kw == "ONBUILD":
        inner, _, inner_args = split_instruction(args, escape, location)
        kw, args = inner.upper(), inner_args
    return kw in _HEREDOC_INSTRUCTIONS and not args.lstrip().startswith("[") and "<<" in args


def parse(source: str | bytes, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text into nodes.

    Raises:
        DockerfileError: an invalid escape directive, a repeated directive, an unterminated
            heredoc or quote, or a file with no instructions; the message names
            ``file:line:column``.
    """
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DockerfileError(f"{filename} is not UTF-8 text: {exc}") from None
    else:
        text = source
    text = text.removeprefix(_BOM)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    escape = "\\"
    directives: dict[str, str] = {}
    in_directives = True
    warnings: list[str] = []
    nodes: list[Node] = []
    i = 0

    def where(line: int, column: int = 1, end: int | None = None) -> SourceLocation:
        return SourceLocation(filename, line, column, end if end is not None else line)

    while i < len(lines):
        raw = lines[i].rstrip("\r")
        i += 1
        start = i
        stripped = raw.lstrip()
        if in_directives:
            m = _DIRECTIVE.match(stripped)
            if m is not None and m.group(1).lower() in _DIRECTIVES:
                key, value = m.group(1).lower(), m.group(2)
                if key in directives:
                    raise DockerfileError(f"only one {key} parser directive can be used",
                                          where(start))
                if key == "escape":
                    if value not in ("\\", "`"):
                        raise DockerfileError(
                            f"invalid escape token {value!r} does not match ` or \\",
                            where(start, raw.index(value) + 1))
                    escape = value
                directives[key] = value
                continue
            in_directives = False
        if not stripped or stripped.startswith("#"):
            continue
        column = len(raw) - len(stripped) + 1
        joined = stripped
        empty_continuation = False
        body = _continues(joined, escape)
        if body is not None:
            parts = [body]
            while i < len(lines):
                nxt = lines[i].rstrip("\r")
                i += 1
                if nxt.lstrip().startswith("#"):
                    continue  # a comment inside a continuation is dropped
                if not nxt.strip():
                    empty_continuation = True
                    continue
                more = _continues(nxt, escape)
                if more is None:
                    parts.append(nxt)
                    break
                parts.append(more)
            joined = "".join(parts)
        location = where(start, column, i)
        if empty_continuation:
            warnings.append(f"{location}: empty continuation line (Docker will make it an "
                            "error)")
        keyword, flags, args = split_instruction(joined, escape, location)
        heredocs: list[Heredoc] = []
        if _may_have_heredocs(keyword, args, escape, location):
            for doc in _heredoc_words(args, escape):
                content: list[str] = []
                while True:
                    if i >= len(lines):
                        raise DockerfileError(f"unterminated heredoc {doc.name!r}",
                                              where(start, column, i))
                    line = lines[i]
                    i += 1
                    candidate = line.rstrip("\r")
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        break
                    content.append(line + "\n")
                heredocs.append(_record.evolve(doc, content="".join(content)))
            location = where(start, column, i)
        nodes.append(Node(keyword.upper(), flags, args, joined, location, tuple(heredocs)))
    if not nodes:
        raise DockerfileError("the Dockerfile has no instructions",
                              where(max(len(lines), 1)))
    return Dockerfile(tuple(nodes), escape, directives, filename, tuple(warnings))
