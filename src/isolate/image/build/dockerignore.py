"""``.dockerignore``: which files of the build context a build may see.

Owns Docker's pattern language (``*`` and ``?`` within one path component, ``**`` across any
number, ``[...]`` classes, ``\\`` escapes, ``!`` exceptions where the last matching line
wins, a pattern that matches a directory excluding all below it) and the choice of file:
``<Dockerfile>.dockerignore`` next to the Dockerfile wins over the context's
``.dockerignore``. It reads no directory trees: :mod:`isolate.image.build.context` walks them.
"""

from __future__ import annotations

import os
import posixpath
import re

from isolate import _record
from isolate.image.build.errors import DockerfileError

__all__ = ["IgnorePattern", "Ignores", "find_ignore_file", "read_patterns"]

_ESCAPED = set(".+()|{}$")


def _clean(path: str) -> str:
    """Go's ``filepath.Clean`` for slash paths."""
    if not path:
        return "."
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/") if out.startswith("//") else out


def read_patterns(text: str) -> list[str]:
    """The patterns of an ignore file's ``text``, as Docker reads them: a BOM and lines
    starting with ``#`` dropped, each line stripped, cleaned and made relative (a leading
    ``/`` removed), ``!`` kept in front of exceptions."""
    out = []
    for number, line in enumerate(text.split("\n")):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out


@_record.record
class IgnorePattern:
    """One compiled pattern. ``kind`` is how it matches a slash path relative to the context:
    ``"exact"``, ``"prefix"`` (``dir/**``), ``"suffix"`` (``**/name``) or ``"regex"``."""

    text: str
    exclusion: bool
    kind: str
    regex: re.Pattern[str] | None = None

    @classmethod
    def compile(cls, text: str) -> IgnorePattern:
        """Compile one pattern (``!`` in front makes it an exception).

        Raises:
            DockerfileError: ``!`` alone, or a malformed ``[...]`` class.
        """
        pattern = _clean(text.strip())
        exclusion = pattern.startswith("!")
        if exclusion:
            pattern = pattern[1:]
            if not pattern:
                raise DockerfileError('.dockerignore: illegal exclusion pattern: "!"')
        out: list[str] = []
        kind = "exact"
        i = 0
        n = len(pattern)
        in_class = False
        step = 0
        while i < n:
            ch = pattern[i]
            if in_class:
                if ch == "]":
                    in_class = False
                if ch == "\\" and i + 1 < n:
                    out.append("\\" + pattern[i + 1])
                    i += 2
                    continue
                out.append(ch)
            elif ch == "*":
                if i + 1 < n and pattern[i + 1] == "*":
                    i += 1
                    if i + 1 < n and pattern[i + 1] == "/":
                        i += 1
                    if i + 1 >= n:
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            out.append(".*")
                            kind = "regex"
                    else:
                        out.append("(?:.*/)?")
                        kind = "regex"
                    if step == 0:
                        kind = "suffix"
                else:
                    out.append("[^/]*")
                    kind = "regex"
            elif ch == "?":
                out.append("[^/]")
                kind = "regex"
            elif ch == "\\":
                if i + 1 < n:
                    i += 1
                    out.append(re.escape(pattern[i]))
                    kind = "regex"
                else:
                    out.append(re.escape("\\"))
            elif ch == "[":
                in_class = True
                out.append("[")
                kind = "regex"
                if i + 1 < n and pattern[i + 1] == "^":
                    out.append("^")
                    i += 1
            elif ch == "]":
                out.append(re.escape(ch))
            else:
                out.append(re.escape(ch) if ch in _ESCAPED or not ch.isalnum() else ch)
            i += 1
            step += 1
        if in_class:
            raise DockerfileError(f".dockerignore: syntax error in pattern {text!r}: "
                                  "unterminated [ class")
        regex = None
        if kind == "regex":
            try:
                regex = re.compile("".join(out), re.S)
            except re.error as exc:
                raise DockerfileError(f".dockerignore: syntax error in pattern {text!r}: "
                                      f"{exc}") from None
        return cls(pattern, exclusion, kind, regex)

    def matches(self, path: str) -> bool:
        """Whether this pattern matches ``path`` itself (not its parents)."""
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.fullmatch(path) is not None


class Ignores:
    """A compiled ignore list. :meth:`excluded` answers for one context path."""

    def __init__(self, patterns: list[str] | tuple[str, ...] = ()) -> None:
        """Compile ``patterns`` (as :func:`read_patterns` returns them).

        Raises:
            DockerfileError: a malformed pattern.
        """
        self.patterns = tuple(IgnorePattern.compile(p) for p in patterns if p.strip())
        #: Whether some pattern is an exception (then an excluded directory may still hold
        #: files that are not excluded, and must be looked into).
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """Whether the context path ``path`` (slash-separated, relative) is excluded: the last
        pattern that matches it or one of its parent directories decides."""
        path = _clean(path)
        if path == "." or not self.patterns:
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue  # cannot change the answer
            hit = pattern.matches(path)
            if not hit:
                for i in range(1, len(parents) + 1):
                    if pattern.matches("/".join(parents[:i])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched


def find_ignore_file(context_dir: str, dockerfile: str | None) -> str | None:
    """The ignore file that applies: ``<dockerfile>.dockerignore`` (next to the Dockerfile)
    if it exists, else ``<context>/.dockerignore``, else None."""
    if dockerfile is not None:
        specific = dockerfile + ".dockerignore"
        if os.path.isfile(specific):
            return specific
    general = os.path.join(context_dir, ".dockerignore")
    return general if os.path.isfile(general) else None
