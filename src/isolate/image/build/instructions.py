"""Parser nodes -> typed, frozen instruction records, grouped into stages.

Owns what each Dockerfile instruction and flag may say: argument counts and forms (exec/JSON
or shell), the flags each instruction takes (an unknown or repeated flag is an error naming
``file:line:column``), ``RUN --mount`` specs, ``HEALTHCHECK`` options, ``ONBUILD`` triggers.
Values stay as written (``$VAR`` unexpanded): :mod:`isolate.image.build.plan` expands them
with the environment of the moment, in exactly the instructions where Docker does.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from isolate import _json as json
from isolate import _record
from isolate.image.build.errors import DockerfileError, SourceLocation
from isolate.image.build.parser import Dockerfile, Heredoc, Node, split_instruction

__all__ = [
    "Add",
    "Arg",
    "Cmd",
    "Copy",
    "Entrypoint",
    "Env",
    "Expose",
    "From",
    "Healthcheck",
    "Instruction",
    "Label",
    "Maintainer",
    "Onbuild",
    "ParsedFile",
    "Run",
    "RunMount",
    "Shell",
    "Stage",
    "StopSignal",
    "User",
    "Volume",
    "Workdir",
    "parse_duration",
    "parse_instruction",
    "parse_stages",
]

_WS = re.compile(r"[\t\v\f\r ]+")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*\Z")


@_record.record
class Instruction:
    """What every instruction has: where it is and how it was written (``original``, the
    joined line as the history and the progress output show it)."""

    location: SourceLocation
    original: str

    @property
    def keyword(self) -> str:
        """The instruction's name, upper case (``RUN``)."""
        return type(self).__name__.upper()


@_record.record
class From(Instruction):
    """``FROM [--platform=P] image [AS name]``: ``image`` and ``platform`` as written
    (they may use ARGs declared before the first FROM); ``name`` lower-cased."""

    image: str
    name: str | None = None
    platform: str | None = None


@_record.record
class RunMount:
    """One ``RUN --mount=...``. ``options`` keeps every ``key=value`` (lower-case keys, values
    as written, so they can be expanded later); ``kind`` is ``bind``, ``cache``, ``tmpfs``
    or ``secret``."""

    kind: str
    options: tuple[tuple[str, str], ...]
    spec: str

    def get(self, *keys: str) -> str | None:
        """The value of the first of ``keys`` that is set."""
        for key, value in self.options:
            if key in keys:
                return value
        return None


@_record.record
class Run(Instruction):
    """``RUN``: ``command`` is a string (shell form: run by the SHELL) or a tuple (exec
    form). ``heredocs`` holds the here-documents the command names."""

    command: str | tuple[str, ...]
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[RunMount, ...] = ()
    network: str | None = None
    security: str | None = None


@_record.record
class Cmd(Instruction):
    """``CMD``: shell form (a string) or exec form (a tuple)."""

    command: str | tuple[str, ...]


@_record.record
class Entrypoint(Instruction):
    """``ENTRYPOINT``: shell form (a string) or exec form (a tuple; empty clears it)."""

    command: str | tuple[str, ...]


@_record.record
class Env(Instruction):
    """``ENV k=v ...`` (or the old ``ENV k v``): pairs as written."""

    pairs: tuple[tuple[str, str], ...]


@_record.record
class Arg(Instruction):
    """``ARG name[=default] ...``: (name, default or None) as written."""

    args: tuple[tuple[str, str | None], ...]


@_record.record
class Label(Instruction):
    """``LABEL k=v ...``: pairs as written."""

    pairs: tuple[tuple[str, str], ...]


@_record.record
class Expose(Instruction):
    """``EXPOSE port[/proto] ...`` as written (ranges allowed: ``8000-8010/udp``)."""

    ports: tuple[str, ...]


@_record.record
class Volume(Instruction):
    """``VOLUME /a /b`` or ``VOLUME ["/a"]``: paths as written."""

    paths: tuple[str, ...]


@_record.record
class User(Instruction):
    """``USER name[:group]`` as written."""

    user: str


@_record.record
class Workdir(Instruction):
    """``WORKDIR path`` as written (relative paths join the previous WORKDIR)."""

    path: str


@_record.record
class Copy(Instruction):
    """``COPY [--from=] [--chown=] [--chmod=] [--link] src... dest``. ``sources`` are the
    paths as written; ``inline`` are heredoc sources (``COPY <<EOF /path``)."""

    sources: tuple[str, ...]
    dest: str
    inline: tuple[Heredoc, ...] = ()
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()
    parents: bool = False


@_record.record
class Add(Instruction):
    """``ADD [--chown=] [--chmod=] [--checksum=] [--link] src... dest``: like COPY, and a
    local tar is unpacked, a URL is downloaded (checked against ``checksum``)."""

    sources: tuple[str, ...]
    dest: str
    inline: tuple[Heredoc, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    checksum: str | None = None
    link: bool = False
    keep_git_dir: bool = False
    unpack: bool | None = None
    excludes: tuple[str, ...] = ()


@_record.record
class StopSignal(Instruction):
    """``STOPSIGNAL signal`` as written."""

    signal: str


@_record.record
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` (``test == ("NONE",)``) or ``HEALTHCHECK [options] CMD ...``:
    ``test`` as the image config stores it (``CMD`` + exec args, or ``CMD-SHELL`` + one
    string), durations in nanoseconds (0: the default)."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@_record.record
class Onbuild(Instruction):
    """``ONBUILD <instruction>``: ``expression`` is the trigger as stored in the image
    config, ``trigger`` the instruction it parses to (checked now, run by a child build)."""

    expression: str
    trigger: Instruction


@_record.record
class Maintainer(Instruction):
    """``MAINTAINER name`` (deprecated): the image's author."""

    name: str


@_record.record
class Shell(Instruction):
    """``SHELL ["exe", "arg"...]``: the shell of later shell-form instructions."""

    shell: tuple[str, ...]


@_record.record
class Stage:
    """One build stage: its ``FROM``, position, name (lower case, or None) and the
    instructions after it."""

    index: int
    from_: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        """The stage's ``AS`` name."""
        return self.from_.name

    @property
    def label(self) -> str:
        """How progress output names the stage: its name, else ``stage-N``."""
        return self.name or f"stage-{self.index}"


@_record.record
class ParsedFile:
    """A Dockerfile as stages: the ``ARG``s before the first ``FROM`` (``meta_args``), the
    stages in order, and the parse result they came from."""

    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    dockerfile: Dockerfile


# -- flags ----------------------------------------------------------------------------------

class _Flags:
    """Builder flags of one instruction: declared with their kind, then parsed once."""

    def __init__(self, node_flags: Sequence[str], keyword: str, location: SourceLocation,
                 text: str) -> None:
        self.raw = node_flags
        self.keyword = keyword
        self.location = location
        self.line = text
        self.kinds: dict[str, str] = {}
        self.values: dict[str, list[str]] = {}

    def declare(self, name: str, kind: str) -> None:
        self.kinds[name] = kind  # "str", "bool" or "list"

    def error(self, message: str, flag: str | None = None) -> DockerfileError:
        loc = self.location
        if flag is not None:
            col = loc.column
            # Point at the flag on the instruction's first line where we can find it.
            idx = self.line.find("--" + flag)
            if idx >= 0:
                col = loc.column + idx
            loc = loc.at_column(col)
        return DockerfileError(f"{self.keyword}: {message}", loc)

    def parse(self) -> None:
        for arg in self.raw:
            if not arg.startswith("--"):
                raise self.error(f"arg should start with -- : {arg}")
            name, eq, value = arg[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                hint = difflib.get_close_matches(name, list(self.kinds), n=1)
                more = f" (did you mean --{hint[0]}?)" if hint else ""
                raise self.error(f"unknown flag: --{name}{more}", name)
            if name in self.values and kind != "list":
                raise self.error(f"duplicate flag specified: --{name}", name)
            if kind == "bool":
                if eq and value.lower() not in ("true", "false"):
                    raise self.error(f"expecting boolean value for flag --{name}, not: "
                                     f"{value}", name)
                value = value.lower() if eq else "true"
            elif not eq:
                raise self.error(f"missing a value on flag: --{name}", name)
            self.values.setdefault(name, []).append(value)

    def text(self, name: str) -> str | None:
        vals = self.values.get(name)
        return vals[-1] if vals else None

    def flag(self, name: str) -> bool:
        vals = self.values.get(name) or []
        return bool(vals) and vals[-1] == "true"

    def many(self, name: str) -> tuple[str, ...]:
        return tuple(self.values.get(name, ()))


def _flags(node: Node, keyword: str, **kinds: str) -> _Flags:
    flags = _Flags(node.flags, keyword, node.location, node.original)
    for name, kind in kinds.items():
        flags.declare(name.rstrip("_").replace("_", "-"), kind)
    flags.parse()
    return flags


# -- argument forms -------------------------------------------------------------------------

def _json_array(args: str, location: SourceLocation, keyword: str) -> tuple[str, ...] | None:
    """The exec-form array if ``args`` is one, None for shell form.

    Raises:
        DockerfileError: a JSON array with something other than strings in it.
    """
    text = args.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # not JSON: shell form, as Docker reads it
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"{keyword}: when using JSON array syntax, arrays must be "
                              "comprised of strings only", location)
    return tuple(value)


def _maybe_json(node: Node) -> str | tuple[str, ...]:
    array = _json_array(node.args, node.location, node.keyword)
    return array if array is not None else node.args


def _json_or_words(node: Node) -> tuple[str, ...]:
    array = _json_array(node.args, node.location, node.keyword)
    if array is not None:
        return array
    return tuple(w for w in _WS.split(node.args) if w)


def _quoted_words(text: str, escape: str) -> list[str]:
    """Words split on unquoted whitespace, quotes and escapes kept (for ENV/LABEL/ARG, whose
    values are unquoted when expanded)."""
    words: list[str] = []
    buf: list[str] = []
    quote = ""
    blank_ok = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'" and i + 1 < len(text):
                buf.append(ch)
                i += 1
                ch = text[i]
            buf.append(ch)
        elif ch.isspace():
            if buf or blank_ok:
                words.append("".join(buf))
            buf, blank_ok = [], False
        else:
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == len(text):
                    i += 1
                    continue
                buf.append(ch)
                i += 1
                ch = text[i]
            buf.append(ch)
        i += 1
    if buf or blank_ok:
        words.append("".join(buf))
    return words


def _name_values(node: Node, escape: str) -> tuple[tuple[str, str], ...]:
    words = _quoted_words(node.args, escape)
    if not words:
        raise DockerfileError(f"{node.keyword} requires at least one argument", node.location)
    if "=" not in words[0]:
        parts = _WS.split(node.args, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{node.keyword} must have two arguments", node.location)
        return ((parts[0], parts[1]),)
    pairs = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"{node.keyword}: syntax error - can't find = in {word!r}. "
                                  "Must be of the form: name=value", node.location)
        key, _, value = word.partition("=")
        if not key:
            raise DockerfileError(f"{node.keyword} names cannot be blank", node.location)
        pairs.append((key, value))
    return tuple(pairs)


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``, ``0``) in nanoseconds.

    Raises:
        ValueError: not a duration.
    """
    if text == "0":
        return 0
    pos, total = 0, 0.0
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return int(total)


# -- RUN --mount ----------------------------------------------------------------------------

_MOUNT_KEYS = {
    "bind": {"target", "source", "from", "readonly", "readwrite"},
    "cache": {"target", "id", "sharing", "mode", "uid", "gid", "readonly", "from", "source"},
    "tmpfs": {"target", "size"},
    "secret": {"target", "id", "source", "required", "mode", "uid", "gid", "env"},
}
_MOUNT_ALIASES = {"dst": "target", "destination": "target", "src": "source", "ro": "readonly",
                  "rw": "readwrite"}


def _parse_mount(spec: str, location: SourceLocation) -> RunMount:
    fields = [f.strip() for f in _csv_fields(spec)]
    options: list[tuple[str, str]] = []
    kind = "bind"
    for field in fields:
        if not field:
            continue
        key, eq, value = field.partition("=")
        key = _MOUNT_ALIASES.get(key.lower(), key.lower())
        if not eq:
            if key in ("readonly", "readwrite", "required"):
                value = "true"
            else:
                raise DockerfileError(f"RUN --mount: invalid field {field!r} must be a "
                                      "key=value pair", location)
        if key == "type":
            kind = value.lower()
            if kind not in _MOUNT_KEYS:
                if kind == "ssh":
                    raise DockerfileError("RUN --mount=type=ssh is not supported by isolate",
                                          location)
                raise DockerfileError(f"RUN --mount: unsupported mount type {value!r} (one "
                                      f"of {', '.join(_MOUNT_KEYS)})", location)
            continue
        options.append((key, value))
    allowed = _MOUNT_KEYS[kind]
    for key, value in options:
        if key not in allowed:
            raise DockerfileError(f"RUN --mount: unexpected key {key!r} for mount type "
                                  f"{kind!r}", location)
        if key in ("readonly", "readwrite", "required") and value.lower() not in (
                "true", "false", "1", "0"):
            raise DockerfileError(f"RUN --mount: invalid value for {key}: {value}", location)
        if key == "from" and "$" in value:
            raise DockerfileError("RUN --mount: 'from' doesn't support variable expansion, "
                                  "define alias stage instead", location)
    mount = RunMount(kind, tuple(options), spec)
    if kind in ("bind", "cache", "tmpfs") and mount.get("target") is None:
        raise DockerfileError(f"RUN --mount=type={kind}: a target is required", location)
    if kind == "cache" and (mount.get("from") or mount.get("source")):
        raise DockerfileError("RUN --mount=type=cache,from=...: seeding a cache from a stage "
                              "is not supported by isolate", location)
    if kind == "secret":
        if mount.get("id") is None and mount.get("source") is None and (
                mount.get("target") is None and mount.get("env") is None):
            raise DockerfileError("RUN --mount=type=secret: one of id, source, target or env "
                                  "is required", location)
        if mount.get("id") is not None and mount.get("source") is not None:
            raise DockerfileError("RUN --mount=type=secret: both source and id can't be set",
                                  location)
    sharing = mount.get("sharing")
    if sharing is not None and sharing not in ("shared", "private", "locked"):
        raise DockerfileError(f"RUN --mount: unsupported sharing value {sharing!r} (shared, "
                              "private or locked)", location)
    return mount


def _csv_fields(text: str) -> list[str]:
    """Comma-separated fields; a field in double quotes may hold commas."""
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


# -- one instruction ------------------------------------------------------------------------

_KEYWORDS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
             "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
             "WORKDIR")


def _need_args(node: Node, count: int | None = None, *, at_least: int = 1) -> None:
    if count is not None:
        n = len([w for w in _WS.split(node.args) if w]) if node.args else 0
        if n != count:
            raise DockerfileError(f"{node.keyword} requires exactly {count} argument"
                                  f"{'s' if count != 1 else ''}", node.location)
    elif not node.args and not node.heredocs:
        raise DockerfileError(f"{node.keyword} requires at least {at_least} argument"
                              f"{'s' if at_least != 1 else ''}", node.location)


def _sources(node: Node) -> tuple[tuple[str, ...], str, tuple[Heredoc, ...]]:
    words = _json_or_words(node)
    if len(words) < 2:
        raise DockerfileError(f"{node.keyword} requires at least two arguments, but only "
                              f"{len(words)} provided. Destination could not be determined",
                              node.location)
    *srcs, dest = words
    if dest.lstrip().startswith("<<"):
        raise DockerfileError(f"{node.keyword}: a heredoc cannot be the destination",
                              node.location)
    by_name = {h.name: h for h in node.heredocs}
    paths: list[str] = []
    inline: list[Heredoc] = []
    for src in srcs:
        m = re.match(r"(\d*)<<(-?)\s*(.+)\Z", src)
        if m is not None and node.heredocs:
            name = m.group(3).strip("'\"")
            doc = by_name.get(name)
            if doc is not None:
                inline.append(doc)
                continue
        paths.append(src)
    return tuple(paths), dest, tuple(inline)


def parse_instruction(node: Node, escape: str = "\\") -> Instruction:
    """Turn one parser node into its instruction record.

    Raises:
        DockerfileError: an unknown instruction, a bad flag or a malformed argument, naming
            ``file:line:column``.
    """
    kw = node.keyword
    loc = node.location
    if kw == "FROM":
        flags = _flags(node, kw, platform="str")
        words = [w for w in _WS.split(node.args) if w]
        name = None
        if len(words) == 3 and words[1].lower() == "as":
            name = words[2].lower()
            if not _STAGE_NAME.match(name):
                raise DockerfileError(f"invalid name for build stage: {words[2]!r}, name can't "
                                      "start with a number or contain symbols", loc)
        elif len(words) != 1:
            raise DockerfileError("FROM requires either one or three arguments", loc)
        return From(loc, node.original, image=words[0], name=name, platform=flags.text("platform"))
    if kw == "RUN":
        flags = _flags(node, kw, mount="list", network="str", security="str")
        _need_args(node)
        command = _maybe_json(node)
        if isinstance(command, tuple) and node.heredocs:
            raise DockerfileError("RUN: heredocs cannot be used with the exec form", loc)
        network = flags.text("network")
        if network is not None and network not in ("default", "none", "host", "bridge"):
            raise DockerfileError(f"RUN: unsupported network mode {network!r} (default, none, "
                                  "host or bridge)", loc)
        security = flags.text("security")
        if security is not None and security not in ("sandbox", "insecure"):
            raise DockerfileError(f"RUN: unsupported security mode {security!r}", loc)
        if security == "insecure":
            raise DockerfileError("RUN --security=insecure is not allowed: isolate runs build "
                                  "steps with Docker's default capabilities only", loc)
        mounts = tuple(_parse_mount(m, loc) for m in flags.many("mount"))
        return Run(loc, node.original, command=command, heredocs=node.heredocs, mounts=mounts,
                   network=network, security=security)
    if kw in ("CMD", "ENTRYPOINT"):
        _flags(node, kw)
        command = _maybe_json(node)
        if kw == "CMD":
            _need_args(node)
            return Cmd(loc, node.original, command=command)
        return Entrypoint(loc, node.original, command=command)
    if kw == "ENV":
        _flags(node, kw)
        return Env(loc, node.original, pairs=_name_values(node, escape))
    if kw == "LABEL":
        _flags(node, kw)
        return Label(loc, node.original, pairs=_name_values(node, escape))
    if kw == "ARG":
        _flags(node, kw)
        words = _quoted_words(node.args, escape)
        if not words:
            raise DockerfileError("ARG requires at least one argument", loc)
        args: list[tuple[str, str | None]] = []
        for word in words:
            name, eq, value = word.partition("=")
            if not name:
                raise DockerfileError("ARG names can not be blank", loc)
            args.append((name, value if eq else None))
        return Arg(loc, node.original, args=tuple(args))
    if kw == "EXPOSE":
        _flags(node, kw)
        _need_args(node)
        return Expose(loc, node.original, ports=tuple(w for w in _WS.split(node.args) if w))
    if kw == "VOLUME":
        _flags(node, kw)
        _need_args(node)
        paths = _json_or_words(node)
        if any(not p.strip() for p in paths):
            raise DockerfileError("VOLUME specified can not be an empty string", loc)
        return Volume(loc, node.original, paths=paths)
    if kw == "USER":
        _flags(node, kw)
        _need_args(node, 1)
        return User(loc, node.original, user=node.args)
    if kw == "WORKDIR":
        _flags(node, kw)
        _need_args(node, 1)
        return Workdir(loc, node.original, path=node.args)
    if kw == "COPY":
        flags = _flags(node, kw, from_="str", chown="str", chmod="str", link="bool",
                       exclude="list", parents="bool")
        srcs, dest, inline = _sources(node)
        return Copy(loc, node.original, sources=srcs, dest=dest, inline=inline,
                    from_=flags.text("from"), chown=flags.text("chown"), chmod=flags.text("chmod"),
                    link=flags.flag("link"), excludes=flags.many("exclude"),
                    parents=flags.flag("parents"))
    if kw == "ADD":
        flags = _flags(node, kw, chown="str", chmod="str", checksum="str", link="bool",
                       keep_git_dir="bool", unpack="bool", exclude="list")
        srcs, dest, inline = _sources(node)
        return Add(loc, node.original, sources=srcs, dest=dest, inline=inline,
                   chown=flags.text("chown"), chmod=flags.text("chmod"),
                   checksum=flags.text("checksum"),
                   link=flags.flag("link"), keep_git_dir=flags.flag("keep-git-dir"),
                   unpack=flags.flag("unpack") if "unpack" in flags.values else None,
                   excludes=flags.many("exclude"))
    if kw == "STOPSIGNAL":
        _flags(node, kw)
        _need_args(node, 1)
        return StopSignal(loc, node.original, signal=node.args)
    if kw == "MAINTAINER":
        _flags(node, kw)
        _need_args(node)
        return Maintainer(loc, node.original, name=node.args)
    if kw == "SHELL":
        _flags(node, kw)
        array = _json_array(node.args, loc, kw)
        if array is None:
            raise DockerfileError("SHELL requires the arguments to be in JSON form", loc)
        if not array:
            raise DockerfileError("SHELL requires at least one argument", loc)
        return Shell(loc, node.original, shell=array)
    if kw == "HEALTHCHECK":
        return _healthcheck(node)
    if kw == "ONBUILD":
        return _onbuild(node, escape)
    hint = difflib.get_close_matches(kw, _KEYWORDS, n=1)
    more = f" (did you mean {hint[0]}?)" if hint else ""
    raise DockerfileError(f"unknown instruction: {kw}{more}", loc)


def _healthcheck(node: Node) -> Healthcheck:
    loc = node.location
    flags = _flags(node, "HEALTHCHECK", interval="str", timeout="str", start_period="str",
                   start_interval="str", retries="str")
    words = node.args.split(None, 1)
    if not words:
        raise DockerfileError("HEALTHCHECK requires an argument", loc)
    kind = words[0].upper()
    if kind == "NONE":
        if len(words) > 1 or flags.values:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments or flags", loc)
        return Healthcheck(loc, node.original, test=("NONE",))
    if kind != "CMD":
        raise DockerfileError(f"HEALTHCHECK: unknown type {words[0]!r} (CMD or NONE)", loc)
    rest = words[1] if len(words) > 1 else ""
    if not rest.strip():
        raise DockerfileError("HEALTHCHECK CMD requires a command", loc)
    array = _json_array(rest, loc, "HEALTHCHECK")
    test = ("CMD", *array) if array is not None else ("CMD-SHELL", rest)
    durations: dict[str, int] = {}
    for name in ("interval", "timeout", "start-period", "start-interval"):
        raw = flags.text(name)
        if raw is None:
            continue
        try:
            value = parse_duration(raw)
        except ValueError:
            raise flags.error(f"--{name}: {raw!r} is not a duration (like 30s or 1m)",
                              name) from None
        if value != 0 and value < 1_000_000:
            raise flags.error(f"--{name} cannot be less than 1ms", name)
        durations[name.replace("-", "_")] = value
    retries = 0
    if flags.text("retries") is not None:
        try:
            retries = int(flags.text("retries") or "")
        except ValueError:
            raise flags.error(f"--retries: {flags.text('retries')!r} is not a number",
                              "retries") from None
        if retries < 0:
            raise flags.error("--retries cannot be negative", "retries")
    return Healthcheck(loc, node.original, test=test, retries=retries, **durations)


def _onbuild(node: Node, escape: str) -> Onbuild:
    loc = node.location
    _flags(node, "ONBUILD")
    if not node.args:
        raise DockerfileError("ONBUILD requires at least one argument", loc)
    keyword, flags, args = split_instruction(node.args, escape, loc)
    kw = keyword.upper()
    if kw == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed", loc)
    if kw in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{kw} isn't allowed as an ONBUILD trigger", loc)
    inner = Node(kw, flags, args, node.args, loc, node.heredocs)
    trigger = parse_instruction(inner, escape)
    expression = node.args
    for doc in node.heredocs:
        expression += "\n" + doc.content + doc.name
    return Onbuild(loc, node.original, expression=expression, trigger=trigger)


def parse_stages(dockerfile: Dockerfile) -> ParsedFile:
    """Group a parsed Dockerfile's instructions into stages.

    Raises:
        DockerfileError: a bad instruction, an instruction before the first FROM other than
            ARG, no FROM at all, or two stages with the same name.
    """
    meta: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for node in dockerfile.nodes:
        ins = parse_instruction(node, dockerfile.escape)
        if isinstance(ins, From):
            stages.append((ins, []))
        elif not stages:
            if not isinstance(ins, Arg):
                raise DockerfileError(f"{ins.keyword} before the first FROM: only ARG may "
                                      "come first", ins.location)
            meta.append(ins)
        else:
            stages[-1][1].append(ins)
    if not stages:
        where = dockerfile.nodes[-1].location if dockerfile.nodes else None
        raise DockerfileError("the Dockerfile has no FROM instruction", where)
    names: dict[str, SourceLocation] = {}
    for frm, _ in stages:
        if frm.name is not None:
            if frm.name in names:
                raise DockerfileError(f"duplicate stage name {frm.name!r} (first at "
                                      f"{names[frm.name]})", frm.location)
            names[frm.name] = frm.location
    return ParsedFile(tuple(meta), tuple(Stage(i, frm, tuple(body))
                                         for i, (frm, body) in enumerate(stages)), dockerfile)
