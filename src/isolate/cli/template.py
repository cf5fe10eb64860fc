"""Go's ``text/template``, the part of it that Docker's ``--format`` flags use.

Owns parsing and running a template over plain data (dicts, lists, str, int, float, bool,
None: what ``inspect`` and ``ps`` rows are made of) with Go's rules for field access, printing
(``map[k:v]``, ``[a b]``, ``<nil>``, ``<no value>``), truth and variables, the actions
``if``/``else if``/``else``, ``range`` (with ``$i, $v :=``, ``else``, ``break``, ``continue``),
``with``, comments and the ``{{-``/``-}}`` trim markers, Go's functions (``and or not len index
slice print printf println eq ne lt le gt ge``) and Docker's (``json join split title lower
upper pad truncate``). Pure: no I/O. Every error is a :class:`TemplateError` naming the
line and column, as Go's are ("template: :1:8: ...").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from isolate import _json as json
from isolate.errors import ConfigError

__all__ = ["NO_VALUE", "Template", "TemplateError", "go_print", "render"]


class TemplateError(ConfigError):
    """A template that cannot be parsed, or fails while it runs (Go's wording)."""


class _NoValue:
    """What a missing map key evaluates to (Go prints it as ``<no value>``)."""

    _instance: _NoValue | None = None

    def __new__(cls) -> _NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


#: The value of a missing map key.
NO_VALUE: Final = _NoValue()


# -- printing values the way Go's fmt does ----------------------------------------------------

def _go_float(value: float) -> str:
    """``%v`` of a float64 as Go's fmt writes it: the shortest digits that read back as the
    same number, in ``%e`` form when the exponent is below -4 or 6 and above."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0" if math.copysign(1, value) > 0 else "-0"
    import decimal  # (only here: ~5 ms of every command's start otherwise)

    number = decimal.Decimal(repr(abs(value))).normalize()
    _, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    exp = len(digits) + exponent - 1
    sign = "-" if value < 0 else ""
    if exp < -4 or exp >= 6:
        head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{head}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    return sign + format(number, "f")


def go_print(value: Any) -> str:
    """``value`` as Go's ``fmt.Sprint`` prints it (``{{.X}}`` in a template)."""
    if value is NO_VALUE:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: _sort_key(kv[0]))
        return "map[" + " ".join(f"{go_print(k)}:{go_print(v)}" for k, v in items) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_print(v) for v in value) + "]"
    return str(value)


def _sort_key(key: Any) -> tuple[int, Any]:
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return (0, key)
    return (1, str(key))


def _jsonable(value: Any) -> Any:
    if value is NO_VALUE:
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Docker's ``json`` function: compact JSON, no HTML escaping, no trailing newline."""
    return json.dumps(_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def _truth(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is NO_VALUE or value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, Mapping)):
        return bool(value)
    return True


# -- lexing -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<variable>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+
                       |(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<dot>\.)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<pipe>\|)
  | (?P<comma>,)
""", re.VERBOSE)


class _Tok(NamedTuple):
    kind: str
    text: str
    pos: int  # offset in the template
    end: int


_KEYWORDS: Final = {"if", "else", "end", "range", "with", "break", "continue", "define",
                    "template", "block", "nil", "true", "false"}


def _line_col(source: str, pos: int) -> tuple[int, int]:
    line = source.count("\n", 0, pos) + 1
    col = pos - (source.rfind("\n", 0, pos) + 1)
    return line, col


class _Segment(NamedTuple):
    """Text, or an action's tokens (``pos``: where the action's ``{{`` is)."""

    text: str | None
    tokens: tuple[_Tok, ...] = ()
    pos: int = 0


def _segments(source: str) -> list[_Segment]:
    out: list[_Segment] = []
    i = 0
    trim_next = False
    while True:
        start = source.find("{{", i)
        text = source[i:] if start < 0 else source[i:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        # "{{- " trims: the dash must be followed by a space ("{{-3}}" is a number).
        trim_before = start >= 0 and source[start + 2:start + 3] == "-" and \
            source[start + 3:start + 4] in (" ", "\t", "\n", "\r")
        if trim_before:
            text = text.rstrip(" \t\r\n")
        if text:
            out.append(_Segment(text))
        if start < 0:
            return out
        body_start = start + (3 if trim_before else 2)
        # A comment runs to "*/}}" whatever it contains.
        stripped = source[body_start:].lstrip(" \t\r\n") if trim_before else \
            source[body_start:]
        if stripped.startswith("/*"):
            close = source.find("*/", body_start)
            if close < 0:
                raise _error(source, start, "unclosed comment")
            after = close + 2
            m = re.match(r"\s+-}}|}}", source[after:])
            if m is None:
                raise _error(source, start, "comment ends before closing delimiter")
            trim_next = m.group(0) != "}}"
            i = after + m.end()
            continue
        tokens, i, trim_next = _lex_action(source, body_start, start)
        out.append(_Segment(None, tuple(tokens), start))


def _lex_action(source: str, pos: int, action_start: int) -> tuple[list[_Tok], int, bool]:
    tokens: list[_Tok] = []
    while True:
        if pos >= len(source):
            raise _error(source, action_start, "unclosed action")
        if source.startswith("}}", pos):
            return tokens, pos + 2, False
        m = re.match(r"\s+-}}", source[pos:])
        if m is not None:
            return tokens, pos + m.end(), True
        m = _TOKEN.match(source, pos)
        if m is None or m.end() == pos:
            if source.startswith("\n", pos) or source.startswith("}", pos):
                raise _error(source, pos, "unexpected character in action")
            raise _error(source, pos, f"unexpected {source[pos]!r} in command")
        kind = m.lastgroup or ""
        if kind != "space":
            tokens.append(_Tok(kind, m.group(0), pos, m.end()))
        pos = m.end()


def _error(source: str, pos: int, message: str) -> TemplateError:
    line, col = _line_col(source, pos)
    return TemplateError(f"template: :{line}:{col}: {message}")


# -- the tree ---------------------------------------------------------------------------------

class _Field(NamedTuple):
    names: tuple[str, ...]
    pos: int


class _Dot(NamedTuple):
    pos: int


class _Var(NamedTuple):
    name: str
    names: tuple[str, ...]
    pos: int


class _Lit(NamedTuple):
    value: Any
    pos: int


class _Func(NamedTuple):
    name: str
    pos: int


class _Sub(NamedTuple):
    pipe: _Pipe
    names: tuple[str, ...]
    pos: int


_Operand = _Field | _Dot | _Var | _Lit | _Func | _Sub


class _Cmd(NamedTuple):
    args: tuple[_Operand, ...]
    pos: int


class _Pipe(NamedTuple):
    decl: tuple[str, ...]
    assign: bool  # "=" rather than ":="
    cmds: tuple[_Cmd, ...]
    pos: int


class _Text(NamedTuple):
    text: str


class _Action(NamedTuple):
    pipe: _Pipe


class _Branch(NamedTuple):
    kind: str  # "if", "range", "with"
    pipe: _Pipe
    body: tuple[_Node, ...]
    orelse: tuple[_Node, ...]


class _Loop(NamedTuple):
    kind: str  # "break" or "continue"
    pos: int


_Node = _Text | _Action | _Branch | _Loop


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.segments = _segments(source)
        self.i = 0
        self.loops = 0

    def error(self, pos: int, message: str) -> TemplateError:
        return _error(self.source, pos, message)

    def parse(self) -> tuple[_Node, ...]:
        nodes, stop = self.nodes()
        if stop is not None:
            raise self.error(stop.pos, f"unexpected {{{{{stop.tokens[0].text}}}}}")
        return nodes

    def nodes(self) -> tuple[tuple[_Node, ...], _Segment | None]:
        """Nodes until an ``else`` or ``end`` (returned) or the end of the template."""
        out: list[_Node] = []
        while self.i < len(self.segments):
            seg = self.segments[self.i]
            self.i += 1
            if seg.text is not None:
                out.append(_Text(seg.text))
                continue
            toks = seg.tokens
            if not toks:
                raise self.error(seg.pos, "missing value for command")
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                return tuple(out), seg
            if head.kind == "ident" and head.text in ("if", "range", "with"):
                out.append(self.branch(head.text, seg, toks[1:]))
            elif head.kind == "ident" and head.text in ("break", "continue"):
                if len(toks) > 1:
                    raise self.error(toks[1].pos, f"unexpected {toks[1].text!r} in "
                                     f"{head.text}")
                if not self.loops:
                    raise self.error(head.pos, f"{{{{{head.text}}}}} outside {{{{range}}}}")
                out.append(_Loop(head.text, head.pos))
            elif head.kind == "ident" and head.text in ("define", "template", "block"):
                raise self.error(head.pos, f"{{{{{head.text}}}}} is not supported here")
            else:
                out.append(_Action(self.pipeline(list(toks), seg.pos, decl_ok=True)))
        return tuple(out), None

    def branch(self, kind: str, seg: _Segment, toks: Sequence[_Tok]) -> _Branch:
        if not toks:
            raise self.error(seg.pos, f"missing value for {kind}")
        pipe = self.pipeline(list(toks), seg.pos, decl_ok=True, range_decl=kind == "range")
        if kind == "range":
            self.loops += 1
        body, stop = self.nodes()
        if kind == "range":
            self.loops -= 1
        if stop is None:
            raise self.error(seg.pos, f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}")
        orelse: tuple[_Node, ...] = ()
        if stop.tokens[0].text == "else":
            rest = stop.tokens[1:]
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with") \
                    and kind in ("if", "with") and rest[0].text == kind:
                # "else if" / "else with": a nested branch that shares our {{end}}.
                orelse = (self.branch(kind, stop, rest[1:]),)
                return _Branch(kind, pipe, body, orelse)
            if rest:
                raise self.error(rest[0].pos, f"unexpected {rest[0].text!r} in else")
            orelse, stop = self.nodes()
            if stop is None or stop.tokens[0].text != "end":
                raise self.error(seg.pos, f"unexpected EOF: {{{{{kind}}}}} has no {{{{end}}}}")
        if len(stop.tokens) > 1:
            raise self.error(stop.tokens[1].pos, f"unexpected {stop.tokens[1].text!r} in end")
        return _Branch(kind, pipe, body, orelse)

    def pipeline(self, toks: list[_Tok], pos: int, *, decl_ok: bool = False,
                 range_decl: bool = False) -> _Pipe:
        decl: tuple[str, ...] = ()
        assign = False
        if decl_ok and toks and toks[0].kind == "variable" and "." not in toks[0].text:
            # $x := ..., $x = ..., and for range: $i, $v := ...
            if len(toks) > 1 and toks[1].kind in ("declare", "assign"):
                decl, assign = (toks[0].text,), toks[1].kind == "assign"
                toks = toks[2:]
            elif (range_decl and len(toks) > 3 and toks[1].kind == "comma"
                  and toks[2].kind == "variable" and toks[3].kind == "declare"):
                decl = (toks[0].text, toks[2].text)
                toks = toks[4:]
        if not toks:
            raise self.error(pos, "missing value for command")
        cmds: list[_Cmd] = []
        current: list[_Tok] = []
        depth = 0
        for t in toks:
            if t.kind == "lparen":
                depth += 1
            elif t.kind == "rparen":
                depth -= 1
                if depth < 0:
                    raise self.error(t.pos, "unexpected right paren")
            if t.kind == "pipe" and depth == 0:
                if not current:
                    raise self.error(t.pos, "missing command before |")
                cmds.append(self.command(current))
                current = []
            else:
                current.append(t)
        if depth:
            raise self.error(toks[-1].pos, "unclosed left paren")
        if not current:
            raise self.error(toks[-1].pos, "missing command after |")
        cmds.append(self.command(current))
        return _Pipe(decl, assign, tuple(cmds), pos)

    def command(self, toks: list[_Tok]) -> _Cmd:
        args: list[_Operand] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "lparen":
                depth, j = 1, i + 1
                while j < len(toks) and depth:
                    depth += {"lparen": 1, "rparen": -1}.get(toks[j].kind, 0)
                    j += 1
                inner = toks[i + 1:j - 1]
                if not inner:
                    raise self.error(t.pos, "missing value in parenthesized pipeline")
                pipe = self.pipeline(list(inner), t.pos)
                names: tuple[str, ...] = ()
                # (pipeline).Field: a field right after the paren, no space between.
                if j < len(toks) and toks[j].kind == "field" and toks[j].pos == toks[j - 1].end:
                    names = tuple(toks[j].text[1:].split("."))
                    j += 1
                args.append(_Sub(pipe, names, t.pos))
                i = j
                continue
            args.append(self.operand(t))
            i += 1
        if not args:
            raise self.error(toks[0].pos if toks else 0, "empty command")
        for a in args[1:]:
            if isinstance(a, _Func) and a.name in _KEYWORDS:
                raise self.error(a.pos, f"unexpected {a.name!r} in operand")
        return _Cmd(tuple(args), args[0].pos)

    def operand(self, t: _Tok) -> _Operand:
        if t.kind == "field":
            return _Field(tuple(t.text[1:].split(".")), t.pos)
        if t.kind == "dot":
            return _Dot(t.pos)
        if t.kind == "variable":
            name, *names = t.text.split(".")
            return _Var(name, tuple(names), t.pos)
        if t.kind in ("string", "raw", "char"):
            return _Lit(self.string(t), t.pos)
        if t.kind == "number":
            return _Lit(self.number(t), t.pos)
        if t.kind == "ident":
            if t.text == "true":
                return _Lit(True, t.pos)
            if t.text == "false":
                return _Lit(False, t.pos)
            if t.text == "nil":
                return _Lit(None, t.pos)
            if t.text in _KEYWORDS:
                raise self.error(t.pos, f"unexpected {t.text!r} in command")
            if t.text not in _FUNCS:
                raise self.error(t.pos, f"function {t.text!r} not defined")
            return _Func(t.text, t.pos)
        raise self.error(t.pos, f"unexpected {t.text!r} in operand")

    def string(self, t: _Tok) -> Any:
        if t.kind == "raw":
            return t.text[1:-1]
        try:
            if t.kind == "char":
                value = json.loads('"' + t.text[1:-1].replace('"', '\\"') + '"')
                if len(value) != 1:
                    raise ValueError(value)
                return ord(value)
            return _unquote(t.text)
        except ValueError:
            raise self.error(t.pos, f"bad quoted string {t.text}") from None

    def number(self, t: _Tok) -> int | float:
        text = t.text.replace("_", "")
        try:
            if re.fullmatch(r"[+-]?0[xXoObB].*", text):
                return int(text, 0)
            if re.fullmatch(r"[+-]?\d+", text):
                return int(text)
            return float(text)
        except ValueError:
            raise self.error(t.pos, f"bad number syntax: {t.text!r}") from None


_ESCAPES: Final = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\", '"': '"', "'": "'"}


def _unquote(text: str) -> str:
    """A Go interpreted string literal's value."""
    body = text[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "x":
            out.append(chr(int(body[i + 2:i + 4], 16)))
            i += 4
        elif nxt == "u":
            out.append(chr(int(body[i + 2:i + 6], 16)))
            i += 6
        elif nxt == "U":
            out.append(chr(int(body[i + 2:i + 10], 16)))
            i += 10
        elif nxt in "01234567":
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise ValueError(text)
    return "".join(out)


# -- functions --------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    if value is None or value is NO_VALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__


def _len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    raise _Fail(f"error calling len: len of type {_type_name(value)}")


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key, NO_VALUE)
        elif isinstance(value, (list, tuple, str)):
            if isinstance(key, bool) or not isinstance(key, int):
                raise _Fail(f"error calling index: cannot index slice/array with type "
                            f"{_type_name(key)}")
            if not 0 <= key < len(value):
                raise _Fail(f"error calling index: index out of range: {key}")
            value = value[key] if not isinstance(value, str) else ord(value[key])
        elif value is None or value is NO_VALUE:
            raise _Fail("error calling index: index of untyped nil")
        else:
            raise _Fail(f"error calling index: can't index item of type {_type_name(value)}")
    return value


def _slice(value: Any, *bounds: Any) -> Any:
    if not isinstance(value, (str, list, tuple)):
        raise _Fail(f"error calling slice: can't slice item of type {_type_name(value)}")
    if len(bounds) > 2 or not all(isinstance(b, int) and not isinstance(b, bool)
                                  for b in bounds):
        raise _Fail("error calling slice: bad indexes")
    lo = bounds[0] if bounds else 0
    hi = bounds[1] if len(bounds) > 1 else len(value)
    if not 0 <= lo <= hi <= len(value):
        raise _Fail(f"error calling slice: index out of range: {lo}:{hi}")
    return value[lo:hi]


def _sprint(*args: Any) -> str:
    """fmt.Sprint: a space between operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_print(a))
    return "".join(out)


def _sprintln(*args: Any) -> str:
    return " ".join(go_print(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?([a-zA-Z%])")


def _go_quote(text: str) -> str:
    out = ['"']
    for c in text:
        if c in ('"', "\\"):
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7f:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _sprintf(fmt: Any, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %q %d %x %X %o %b %f %e %g %t %c %%,
    with flags, width and precision; a mismatch is written as Go writes it (``%!d(string=x)``)."""
    if not isinstance(fmt, str):
        raise _Fail(f"error calling printf: wrong type for value; expected string; got "
                    f"{_type_name(fmt)}")
    out: list[str] = []
    pos = 0
    it = iter(args)
    used = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        try:
            value = next(it)
            used += 1
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        out.append(_format_one(value, flags, width, prec, verb))
    out.append(fmt[pos:])
    extra = list(it)
    if extra:
        out.append("%!(EXTRA " + ", ".join(f"{_type_name(v)}={go_print(v)}"
                                            for v in extra) + ")")
    return "".join(out)


def _format_one(value: Any, flags: str, width: str | None, prec: str | None,
                verb: str) -> str:
    bad = f"%!{verb}({_type_name(value)}={go_print(value)})"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if verb in "vs":
        text = go_print(value)
        if prec is not None and prec != "*" and verb == "s":
            text = text[:int(prec or 0)]
        if verb == "s" and not isinstance(value, str) and number:
            return bad
    elif verb == "q":
        if not isinstance(value, str):
            return bad
        text = _go_quote(value)
    elif verb == "t":
        if not isinstance(value, bool):
            return bad
        text = "true" if value else "false"
    elif verb in "dxXob":
        if not isinstance(value, int) or isinstance(value, bool):
            if verb in "xX" and isinstance(value, str):
                text = value.encode().hex()
                text = text.upper() if verb == "X" else text
            else:
                return bad
        else:
            spec = {"d": "d", "x": "x", "X": "X", "o": "o", "b": "b"}[verb]
            text = format(value, ("+" if "+" in flags else "") + spec)
    elif verb in "feEgG":
        if not number:
            return bad
        p = int(prec) if prec not in (None, "*", "") else (None if prec is None else 0)
        if verb == "f":
            text = f"{float(value):{'+' if '+' in flags else ''}.{6 if p is None else p}f}"
        elif verb in "eE":
            text = f"{float(value):.{6 if p is None else p}{verb}}"
            text = re.sub(r"e([+-])(\d)$", r"e\g<1>0\2", text)
        else:
            text = _go_float(float(value)) if p is None else f"{float(value):.{p}{verb}}"
    elif verb == "c":
        if not isinstance(value, int) or isinstance(value, bool):
            return bad
        text = chr(value)
    else:
        return f"%!{verb}({_type_name(value)}={go_print(value)})"
    if width is not None and width != "*":
        w = int(width)
        if "-" in flags:
            text = text.ljust(w)
        elif "0" in flags and verb in "dxXobfeEgG":
            sign = text[0] if text[:1] in "+-" else ""
            text = sign + text[len(sign):].rjust(w - len(sign), "0")
        else:
            text = text.rjust(w)
    return text


def _compare(op: str) -> Callable[..., bool]:
    def check(a: Any, b: Any) -> None:
        ok_types = (int, float, str)
        if not isinstance(a, ok_types) or not isinstance(b, ok_types) or \
                isinstance(a, bool) or isinstance(b, bool) or \
                isinstance(a, str) != isinstance(b, str):
            raise _Fail(f"error calling {op}: incompatible types for comparison")

    def fn(a: Any, b: Any) -> bool:
        check(a, b)
        return bool({"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op])
    return fn


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise _Fail("error calling eq: missing argument for comparison")
    for b in others:
        if isinstance(a, bool) != isinstance(b, bool) and not (a is None or b is None):
            raise _Fail("error calling eq: incompatible types for comparison")
        if a == b:
            return True
    return False


def _ne(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _str_arg(fn: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Fail(f"error calling {fn}: wrong type for value; expected string; got "
                    f"{_type_name(value)}")
    return value


def _join(values: Any, sep: Any) -> str:
    if not isinstance(values, (list, tuple)):
        raise _Fail(f"error calling join: wrong type for value; expected []string; got "
                    f"{_type_name(values)}")
    return _str_arg("join", sep).join(go_print(v) for v in values)


def _split(text: Any, sep: Any) -> list[str]:
    text, sep = _str_arg("split", text), _str_arg("split", sep)
    if sep == "":
        return list(text)
    parts: list[str] = text.split(sep)
    return parts


def _title(text: Any) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(),
                  _str_arg("title", text))


def _pad(text: Any, prefix: Any, suffix: Any) -> str:
    return " " * int(prefix) + go_print(text) + " " * int(suffix)


def _truncate(text: Any, length: Any) -> str:
    s = _str_arg("truncate", text)
    n = int(length)
    return s[:n] if len(s) > n else s


# Filled below; and/or are special forms (they stop at the first deciding operand).
_FUNCS: dict[str, Callable[..., Any]] = {
    "and": lambda *a: a[-1], "or": lambda *a: a[-1], "not": lambda a: not _truth(a),
    "len": _len, "index": _index, "slice": _slice,
    "print": _sprint, "printf": _sprintf, "println": _sprintln,
    "eq": _eq, "ne": _ne, "lt": _compare("lt"), "le": _compare("le"),
    "gt": _compare("gt"), "ge": _compare("ge"),
    "json": to_json, "join": _join, "split": _split, "title": _title,
    "lower": lambda s: _str_arg("lower", s).lower(),
    "upper": lambda s: _str_arg("upper", s).upper(),
    "pad": _pad, "truncate": _truncate,
}
# Docker's header functions: a table's header is the template run over the column names,
# where the string functions pass their text through unchanged.
_HEADER_FUNCS: dict[str, Callable[..., Any]] = {
    **_FUNCS,
    "json": lambda v: go_print(v), "join": lambda v, *_: go_print(v),
    "split": lambda v, *_: go_print(v), "title": lambda v: go_print(v),
    "lower": lambda v: go_print(v), "upper": lambda v: go_print(v),
    "pad": lambda v, *_: go_print(v), "truncate": lambda v, *_: go_print(v),
}
_ARITY: Final = {"not": (1, 1), "len": (1, 1), "index": (1, None), "slice": (1, 3),
                 "json": (1, 1), "join": (2, 2), "split": (2, 2), "title": (1, 1),
                 "lower": (1, 1), "upper": (1, 1), "pad": (3, 3), "truncate": (2, 2),
                 "eq": (1, None), "ne": (2, 2), "lt": (2, 2), "le": (2, 2), "gt": (2, 2),
                 "ge": (2, 2), "printf": (1, None), "and": (1, None), "or": (1, None)}


class _Fail(Exception):
    """A failure while running, positioned by the node that raised it."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# -- running ----------------------------------------------------------------------------------

class _Run:
    def __init__(self, source: str, root: Any, header: bool) -> None:
        self.source = source
        self.root = root
        self.funcs = _HEADER_FUNCS if header else _FUNCS
        self.vars: list[dict[str, Any]] = [{"$": root}]
        self.out: list[str] = []

    def error(self, pos: int, message: str) -> TemplateError:
        return _error(self.source, pos, f"executing \"\" at <{self.snippet(pos)}>: {message}")

    def snippet(self, pos: int) -> str:
        end = self.source.find("}}", pos)
        text = self.source[pos:end if end >= 0 else len(self.source)]
        return text.split("|")[0].strip().removesuffix("-").strip()

    def lookup(self, name: str, pos: int) -> Any:
        for scope in reversed(self.vars):
            if name in scope:
                return scope[name]
        raise self.error(pos, f"undefined variable: {name}")

    def assign(self, name: str, value: Any, pos: int) -> None:
        for scope in reversed(self.vars):
            if name in scope:
                scope[name] = value
                return
        raise self.error(pos, f"undefined variable: {name}")

    def walk(self, nodes: Sequence[_Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_print(value))
            elif isinstance(node, _Branch):
                self.branch(node, dot)
            elif isinstance(node, _Loop):
                raise _Break() if node.kind == "break" else _Continue()

    def scoped(self, nodes: Sequence[_Node], dot: Any,
               bind: Mapping[str, Any] | None = None) -> None:
        self.vars.append(dict(bind or {}))
        try:
            self.walk(nodes, dot)
        finally:
            self.vars.pop()

    def branch(self, node: _Branch, dot: Any) -> None:
        if node.kind == "range":
            self.range(node, dot)
            return
        self.vars.append({})
        try:
            value = self.pipe(node.pipe, dot)
            if _truth(value):
                self.walk(node.body, value if node.kind == "with" else dot)
            else:
                self.walk(node.orelse, dot)
        finally:
            self.vars.pop()

    def range(self, node: _Branch, dot: Any) -> None:
        self.vars.append({})
        try:
            value = self.pipe(_Pipe((), False, node.pipe.cmds, node.pipe.pos), dot)
            items: list[tuple[Any, Any]]
            if isinstance(value, Mapping):
                items = [(k, value[k]) for k in sorted(value, key=_sort_key)]
            elif isinstance(value, (list, tuple)):
                items = list(enumerate(value))
            elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                items = [(i, i) for i in range(value)]
            elif value is None or value is NO_VALUE:
                items = []
            else:
                raise self.error(node.pipe.pos, f"range can't iterate over {go_print(value)}")
            if not items:
                self.walk(node.orelse, dot)
                return
            for key, elem in items:
                bind: dict[str, Any] = {}
                if len(node.pipe.decl) == 1:
                    bind[node.pipe.decl[0]] = elem
                elif len(node.pipe.decl) == 2:
                    bind[node.pipe.decl[0]] = key
                    bind[node.pipe.decl[1]] = elem
                try:
                    self.scoped(node.body, elem, bind)
                except _Continue:
                    continue
                except _Break:
                    break
        finally:
            self.vars.pop()

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = _NOTHING
        for cmd in pipe.cmds:
            value = self.command(cmd, dot, value)
        if pipe.decl:
            if pipe.assign:
                self.assign(pipe.decl[0], value, pipe.pos)
            else:
                self.vars[-1][pipe.decl[0]] = value
        return value

    def command(self, cmd: _Cmd, dot: Any, piped: Any) -> Any:
        head = cmd.args[0]
        if isinstance(head, _Func):
            return self.call(head, cmd.args[1:], dot, piped)
        if len(cmd.args) > 1 or piped is not _NOTHING:
            raise self.error(cmd.pos, f"can't give argument to non-function "
                             f"{self.snippet(head.pos)}")
        return self.operand(head, dot)

    def call(self, fn: _Func, args: Sequence[_Operand], dot: Any, piped: Any) -> Any:
        count = len(args) + (piped is not _NOTHING)
        lo, hi = _ARITY.get(fn.name, (0, None))
        if count < lo or (hi is not None and count > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}" if hi is None else f"{lo} to {hi}"
            raise self.error(fn.pos, f"error calling {fn.name}: wrong number of args for "
                             f"{fn.name}: want {want} got {count}")
        if fn.name in ("and", "or"):
            result: Any = None
            for arg in [*args, None] if piped is not _NOTHING else args:
                result = piped if arg is None else self.operand(arg, dot)
                if _truth(result) != (fn.name == "and"):
                    return result
            return result
        values = [self.operand(a, dot) for a in args]
        if piped is not _NOTHING:
            values.append(piped)
        try:
            return self.funcs[fn.name](*values)
        except _Fail as exc:
            raise self.error(fn.pos, str(exc)) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise self.error(fn.pos, f"error calling {fn.name}: {exc}") from None

    def operand(self, op: _Operand, dot: Any) -> Any:
        if isinstance(op, _Lit):
            return op.value
        if isinstance(op, _Dot):
            return dot
        if isinstance(op, _Field):
            return self.fields(dot, op.names, op.pos)
        if isinstance(op, _Var):
            return self.fields(self.lookup(op.name, op.pos), op.names, op.pos)
        if isinstance(op, _Sub):
            return self.fields(self.pipe(op.pipe, dot), op.names, op.pos)
        if isinstance(op, _Func):
            return self.call(op, (), dot, _NOTHING)
        raise AssertionError(op)

    def fields(self, value: Any, names: Sequence[str], pos: int) -> Any:
        for name in names:
            if isinstance(value, Mapping):
                value = value.get(name, NO_VALUE)
            elif value is None or value is NO_VALUE:
                raise self.error(pos, f"nil pointer evaluating interface {{}}.{name}")
            else:
                raise self.error(pos, f"can't evaluate field {name} in type "
                                 f"{_type_name(value)}")
        return value


_NOTHING: Final = object()


class Template:
    """A parsed template; :meth:`render` runs it over data.

    Raises:
        TemplateError: the text is not a valid template.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._nodes = _Parser(source).parse()

    def render(self, data: Any, *, header: bool = False) -> str:
        """The template's output for ``data`` (``header``: Docker's header mode, where the
        string functions pass their argument through).

        Raises:
            TemplateError: it failed while running (a field of nil, a bad function call).
        """
        run = _Run(self.source, data, header)
        try:
            run.walk(self._nodes, data)
        except (_Break, _Continue):  # pragma: no cover - the parser refuses them outside range
            pass
        except RecursionError:
            raise TemplateError("template: too deeply nested") from None
        return "".join(run.out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def render(source: str, data: Any) -> str:
    """Parse ``source`` and run it over ``data``.

    Raises:
        TemplateError: it cannot be parsed or fails while it runs.
    """
    return Template(source).render(data)

