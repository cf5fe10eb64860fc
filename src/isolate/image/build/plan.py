"""Stages and instructions -> a plan of steps with cache keys, computed before anything runs.

Owns the stage graph (``FROM`` an earlier stage, ``COPY --from``, ``RUN --mount=from``),
``--target`` and the stages it does not need (never planned, their base images never
pulled), cycles as errors, the build-argument scopes (``ARG`` before ``FROM``, the predefined
proxy and platform arguments), variable substitution in exactly the instructions where
Docker does it, the image config each step leaves, and each step's cache key: the parent
key, the instruction after substitution, the build arguments a ``RUN`` sees and, for
``COPY``/``ADD``, the content and modes of what it copies. Running the steps is
:mod:`isolate.image.build.executor`'s.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from isolate import _json as json
from isolate import _record

if TYPE_CHECKING:
    import attrs

from isolate.image.build import instructions as ins
from isolate.image.build.context import BuildContext, has_glob
from isolate.image.build.errors import BuildError, DockerfileError, SourceLocation
from isolate.image.build.parser import parse
from isolate.image.build.shell import ShellError, ShellLexer
from isolate.image.config import Image
from isolate.image.reference import Platform

__all__ = [
    "DEFAULT_PATH",
    "DEFAULT_SHELL",
    "PROXY_ARGS",
    "BuildOptions",
    "BuildPlan",
    "CopyPlan",
    "CopySource",
    "MountPlan",
    "RunPlan",
    "Secret",
    "StagePlan",
    "Step",
    "host_platform",
    "make_plan",
]

_KEY_VERSION = "isolate-build-1"
DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
_HEREDOC_ONLY = re.compile(r"(\d*)<<(-?)\s*([^<]*)\Z")
_ARCH = {"x86_64": ("amd64", None), "aarch64": ("arm64", None), "armv7l": ("arm", "v7"),
         "armv6l": ("arm", "v6"), "i686": ("386", None), "i386": ("386", None)}


def host_platform() -> Platform:
    """The platform this machine runs natively (``linux/amd64`` on x86-64)."""
    arch, variant = _ARCH.get(os.uname().machine, (os.uname().machine, None))
    return Platform("linux", arch, variant)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps([_KEY_VERSION, *parts], sort_keys=True,
                                     separators=(",", ":"), default=str).encode()).hexdigest()


@_record.record
class Secret:
    """A build secret (``--secret id=ID,src=FILE`` or ``id=ID,env=VAR``): given to the
    ``RUN`` steps that mount it, never written into a layer, the history or a cache key."""

    id: str
    source: str | None = None
    env: str | None = None

    @classmethod
    def parse(cls, spec: str) -> Secret:
        """Parse Docker's ``--secret`` value (``id=``, ``src=``/``source=``, ``env=``,
        ``type=file|env``). With ``id`` alone, the environment variable of that name is used
        if set, else a file of that name.

        Raises:
            DockerfileError: malformed or without an id.
        """
        fields: dict[str, str] = {}
        for part in spec.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise DockerfileError(f"--secret {spec!r}: {part!r} is not key=value")
            key = key.strip().lower()
            if key not in ("id", "src", "source", "env", "type", "required"):
                raise DockerfileError(f"--secret {spec!r}: unexpected key {key!r}")
            fields[{"source": "src"}.get(key, key)] = value
        sid = fields.get("id") or (os.path.basename(fields["src"]) if "src" in fields else "")
        if not sid:
            raise DockerfileError(f"--secret {spec!r}: an id is required")
        kind = fields.get("type")
        if kind not in (None, "file", "env"):
            raise DockerfileError(f"--secret {spec!r}: type must be file or env")
        src, env = fields.get("src"), fields.get("env")
        if kind == "env" and env is None:
            env, src = src or sid, None
        if src is None and env is None:
            if sid in os.environ:
                env = sid
            else:
                src = sid
        return cls(sid, os.path.abspath(src) if src is not None else None, env)

    def read(self) -> bytes:
        """The secret's value.

        Raises:
            BuildError: the file cannot be read or the variable is not set.
        """
        if self.env is not None:
            if self.env not in os.environ:
                raise BuildError(f"secret {self.id!r}: environment variable {self.env} is not "
                                 "set")
            return os.environ[self.env].encode()
        assert self.source is not None
        try:
            with open(self.source, "rb") as f:
                return f.read()
        except OSError as exc:
            raise BuildError(f"secret {self.id!r}: cannot read {self.source}: "
                             f"{exc.strerror}") from exc


_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _network_mode(value: str) -> str:
    """``default`` is the build's default, ``host``."""
    return "host" if value == "default" else value


def _network(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value in ("none", "host", "bridge"):
        return
    if value in ("pasta", "slirp4netns") or not _NETWORK_NAME.fullmatch(value):
        raise DockerfileError(f"--network {value!r}: RUN steps run on 'host' (the default), "
                              "'none', 'bridge' or a user-defined network's name")


def _str_map(value: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, str]:
    return dict(value.items() if isinstance(value, Mapping) else value)


def _secrets(value: Iterable[Secret | str]) -> tuple[Secret, ...]:
    return tuple(v if isinstance(v, Secret) else Secret.parse(v) for v in value)


@_record.record
class BuildOptions:
    """What a build is asked to do besides the Dockerfile: ``build_args``, ``target``
    stage, extra ``labels`` for the image, ``no_cache``, ``pull`` (always pull base images),
    the ``network`` of RUN steps (``host``, the default -- ``default`` means it too --,
    ``none``, ``bridge`` or a user-defined network's name, as the classic ``docker build``
    takes them), ``platform`` (only this machine's) and ``secrets``."""

    build_args: Mapping[str, str] = _record.field(factory=dict, converter=_str_map, hash=False)
    target: str | None = None
    labels: Mapping[str, str] = _record.field(factory=dict, converter=_str_map, hash=False)
    no_cache: bool = False
    pull: bool = False
    network: str = _record.field(default="host", converter=_network_mode, validator=_network)
    platform: str | None = None
    secrets: tuple[Secret, ...] = _record.field(default=(), converter=_secrets)


@_record.record(eq=False)
class MountPlan:
    """A ``RUN --mount`` after substitution. ``kind``: ``bind`` (``source`` from the context,
    or from ``from_stage``/``from_image``), ``cache`` (``cache_id``, ``sharing``), ``tmpfs``
    (``size``) or ``secret`` (``secret_id``, at ``target`` and/or in env var ``env``)."""

    kind: str
    target: str
    readonly: bool = True
    source: str = "."
    from_stage: int | None = None
    from_image: Image | None = None
    cache_id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    size: int | None = None
    secret_id: str = ""
    required: bool = False
    env: str | None = None


@_record.record
class RunPlan:
    """A ``RUN`` after substitution: the argv (shell prepended for shell form), the
    environment it gets (image env, build args in scope, proxy args), user, workdir,
    network, mounts, and a heredoc ``script`` ((name, text) with a ``#!``) run from
    ``/dev/pipes/<name>``."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    user: str
    workdir: str
    network: str
    mounts: tuple[MountPlan, ...] = ()
    script: tuple[str, str] | None = None


@_record.record
class CopySource:
    """One thing ``COPY``/``ADD`` copies: from the ``context`` (``path`` relative to it),
    a ``stage`` or ``image`` (``path`` inside it, resolved when the step runs), a ``url``,
    or ``inline`` heredoc ``data``. ``name`` is what it is called under a directory
    destination."""

    kind: str
    name: str
    path: str = ""
    data: str | None = None


@_record.record(eq=False)
class CopyPlan:
    """A ``COPY`` or ``ADD`` after substitution."""

    keyword: str
    sources: tuple[CopySource, ...]
    dest: str
    dest_is_dir: bool
    chown: str | None = None
    chmod: int | None = None
    from_stage: int | None = None
    from_image: Image | None = None
    checksum: str | None = None
    wildcard: bool = False
    unpack: bool | None = None


@_record.record(eq=False)
class Step:
    """One step of a stage. ``kind`` is ``from``, ``config`` (changes only the image
    config), ``run``, ``copy`` or ``workdir`` (may make the directory). ``config`` and
    ``author`` are the image's after the step; ``created_by`` its history entry (None: no
    entry); ``key`` its cache key."""

    stage: int
    number: int
    total: int
    kind: str
    text: str
    location: SourceLocation | None
    key: str
    config: Mapping[str, Any]
    author: str | None = None
    created_by: str | None = None
    run: RunPlan | None = None
    copy: CopyPlan | None = None
    workdir: str | None = None
    user: str = ""


@_record.record(eq=False)
class StagePlan:
    """The steps of one needed stage and what it starts from: an ``image``, an earlier
    ``stage``, or ``scratch``."""

    index: int
    name: str | None
    label: str
    platform: Platform
    base_kind: str
    steps: tuple[Step, ...]
    base_image: Image | None = None
    base_stage: int | None = None

    @property
    def key(self) -> str:
        """The cache key of the stage's last step."""
        return self.steps[-1].key

    @property
    def needs(self) -> frozenset[int]:
        """The stages that must be built before this one: its base stage and the stages its
        ``COPY --from`` and ``RUN --mount=from=`` read. Stages that need nothing of each
        other may be built at the same time."""
        out = {self.base_stage} if self.base_stage is not None else set()
        for step in self.steps:
            if step.copy is not None and step.copy.from_stage is not None:
                out.add(step.copy.from_stage)
            for m in step.run.mounts if step.run is not None else ():
                if m.from_stage is not None:
                    out.add(m.from_stage)
        return frozenset(out)


@_record.record(eq=False)
class BuildPlan:
    """Every step of a build, in the order they run: the stages the target needs (each
    after the stages it depends on) and the target last. ``skipped`` names the stages left
    out; ``warnings`` are non-fatal findings (unused build args)."""

    stages: tuple[StagePlan, ...]
    target: int
    skipped: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def steps(self) -> list[Step]:
        """Every step, in order."""
        return [s for st in self.stages for s in st.steps]

    def stage(self, index: int) -> StagePlan:
        """The plan of stage ``index``.

        Raises:
            KeyError: that stage is not part of the plan.
        """
        for st in self.stages:
            if st.index == index:
                return st
        raise KeyError(index)


# -- planning --------------------------------------------------------------------------------

ImageResolver = Callable[[str, SourceLocation | None], Image]
ConfigReader = Callable[[Image], Mapping[str, Any]]


class _Planner:
    def __init__(self, parsed: ins.ParsedFile, context: BuildContext | None,
                 options: BuildOptions, resolve_image: ImageResolver,
                 read_config: ConfigReader) -> None:
        self.parsed = parsed
        self.context = context
        self.options = options
        self.resolve_image = resolve_image
        self.read_config = read_config
        self.lexer = ShellLexer(parsed.dockerfile.escape)
        self.raw_lexer = ShellLexer("\\", skip_quotes=True)
        self.platform = host_platform()
        self.used_args: set[str] = set()
        self.warnings: list[str] = []
        self.stages = parsed.stages
        self.by_name = {s.name: s.index for s in self.stages if s.name}
        self.images: dict[str, Image] = {}
        self.meta = self._meta_args()
        self.plans: dict[int, StagePlan] = {}

    # -- build args ---------------------------------------------------------------------

    def _platform_args(self, prefix: str) -> dict[str, str]:
        p = self.platform
        return {f"{prefix}PLATFORM": str(p), f"{prefix}OS": p.os,
                f"{prefix}ARCH": p.architecture, f"{prefix}VARIANT": p.variant or ""}

    def _meta_args(self) -> dict[str, str]:
        values = {**self._platform_args("TARGET"), **self._platform_args("BUILD")}
        for arg in self.parsed.meta_args:
            for name, default in arg.args:
                value = self._arg_value(name, default, values.get, arg.location)
                if value is not None:
                    values[name] = value
                else:
                    values.pop(name, None)
        return values

    def _arg_value(self, name: str, default: str | None,
                   lookup: Callable[[str], str | None], location: SourceLocation,
                   inherited: Mapping[str, str] | None = None) -> str | None:
        if name in self.options.build_args:
            self.used_args.add(name)
            return self.options.build_args[name]
        if default is not None:
            return self._word(default, lookup, location)
        if inherited is not None:
            return inherited.get(name)
        return None

    def _word(self, text: str, lookup: Callable[[str], str | None],
              location: SourceLocation | None, lexer: ShellLexer | None = None) -> str:
        try:
            return (lexer or self.lexer).word(text, lookup)
        except ShellError as exc:
            raise DockerfileError(f"{exc} in {text!r}", location) from None

    def _words(self, text: str, lookup: Callable[[str], str | None],
               location: SourceLocation | None) -> list[str]:
        try:
            return self.lexer.words(text, lookup)
        except ShellError as exc:
            raise DockerfileError(f"{exc} in {text!r}", location) from None

    # -- the stage graph ----------------------------------------------------------------

    def _stage_ref(self, name: str, current: int, location: SourceLocation | None,
                   what: str) -> int | None:
        """The index of the stage ``name`` refers to, or None when it names an image."""
        key = name.lower()
        if key in self.by_name:
            return self.by_name[key]
        if name.isdigit():
            index = int(name)
            if index >= current:
                raise BuildError(f"{what}={name}: refers to the current or a later build stage",
                                 location)
            return index
        return None

    def _base_name(self, stage: ins.Stage) -> str:
        image = self._word(stage.from_.image, self.meta.get, stage.from_.location)
        if not image:
            raise DockerfileError(f"base name ({stage.from_.image}) should not be blank",
                                  stage.from_.location)
        return image

    def _base_stage(self, stage: ins.Stage) -> int | None:
        name = self._base_name(stage).lower()
        index = self.by_name.get(name)
        return index if index is not None and index < stage.index else None

    def _deps(self, stage: ins.Stage) -> list[int]:
        deps = []
        base = self._base_stage(stage)
        if base is not None:
            deps.append(base)
        for item in stage.instructions:
            refs: list[tuple[str, str]] = []
            if isinstance(item, ins.Copy) and item.from_:
                refs.append((item.from_, "COPY --from"))
            if isinstance(item, ins.Run):
                refs += [(m.get("from") or "", "RUN --mount from")
                         for m in item.mounts if m.get("from")]
            for ref, what in refs:
                name = self._word(ref, self.meta.get, item.location)
                index = self._stage_ref(name, stage.index, item.location, what)
                if index is not None:
                    if index == stage.index:
                        raise BuildError(f"{what}={name}: a stage cannot copy from itself",
                                         item.location)
                    deps.append(index)
        return deps

    def order(self, target: int) -> list[int]:
        """The stages ``target`` needs, dependencies first.

        Raises:
            BuildError: a cycle of stages.
        """
        state: dict[int, str] = {}
        out: list[int] = []

        def visit(index: int, path: list[int]) -> None:
            mark = state.get(index)
            if mark == "done":
                return
            stage = self.stages[index]
            if mark == "active":
                cycle = " -> ".join(self.stages[i].label for i in [*path, index])
                raise BuildError(f"circular dependency detected on stage {stage.label}: "
                                 f"{cycle}", stage.from_.location)
            state[index] = "active"
            for dep in self._deps(stage):
                visit(dep, [*path, index])
            state[index] = "done"
            out.append(index)

        visit(target, [])
        return out

    def target(self) -> int:
        name = self.options.target
        if name is None:
            return len(self.stages) - 1
        index = self.by_name.get(name.lower())
        if index is None:
            raise BuildError(f"target stage {name!r} could not be found (stages: "
                             f"{', '.join(s.label for s in self.stages)})")
        return index

    # -- images -------------------------------------------------------------------------

    def image(self, name: str, location: SourceLocation | None) -> Image:
        known = self.images.get(name)
        if known is None:
            known = self.resolve_image(name, location)
            self.images[name] = known
        return known

    def _check_platform(self, text: str | None, location: SourceLocation | None) -> None:
        if not text:
            return
        try:
            wanted = Platform.parse(text)
        except Exception:
            raise DockerfileError(f"--platform {text!r} is not os/arch[/variant]",
                                  location) from None
        if (wanted.os, wanted.architecture) != (self.platform.os, self.platform.architecture):
            raise BuildError(f"platform {text} is not this machine's ({self.platform}): "
                             "isolate builds only for the host platform", location)

    # -- one stage ----------------------------------------------------------------------

    def plan_stage(self, stage: ins.Stage) -> StagePlan:
        frm = stage.from_
        if frm.platform:
            self._check_platform(self._word(frm.platform, self.meta.get, frm.location),
                                 frm.location)
        base_name = self._base_name(stage)
        base_stage = self._base_stage(stage)
        base_image: Image | None = None
        if base_stage is not None:
            parent = self.plans[base_stage]
            config: dict[str, Any] = json.loads(json.dumps(parent.steps[-1].config))
            author = parent.steps[-1].author
            base_kind, base_key = "stage", parent.key
        elif base_name.lower() == "scratch":
            config, author, base_kind, base_key = {}, None, "scratch", "scratch"
        else:
            base_image = self.image(base_name, frm.location)
            if base_image.platform.architecture != self.platform.architecture:
                raise BuildError(f"base image {base_name} is for {base_image.platform}, not "
                                 f"this machine's {self.platform}", frm.location)
            config = json.loads(json.dumps(self.read_config(base_image)))
            author = None
            base_kind, base_key = "image", base_image.id
        env = list(config.get("Env") or [])
        if not any(e.split("=", 1)[0] == "PATH" for e in env):
            # As Docker and podman do: an image without PATH gets the default one.
            config["Env"] = [f"PATH={DEFAULT_PATH}", *env]
        triggers = self._triggers(config, base_name, frm.location)
        body = [*triggers, *stage.instructions]
        total = len(body) + 1
        key = _key("from", base_key, str(self.platform))
        steps = [Step(stage.index, 1, total, "from", f"FROM {base_name}", frm.location, key,
                      config, author)]
        sp = _StagePlanner(self, stage, config, author, key)
        for number, item in enumerate(body, start=2):
            steps.append(sp.step(item, number, total))
        return StagePlan(stage.index, stage.name, stage.label, self.platform, base_kind,
                         tuple(steps), base_image, base_stage)

    def _triggers(self, config: dict[str, Any], base: str, location: SourceLocation | None
                  ) -> list[ins.Instruction]:
        """The base's ONBUILD triggers, parsed; the child's OnBuild starts empty."""
        exprs = config.pop("OnBuild", None) or []
        out: list[ins.Instruction] = []
        for n, expr in enumerate(exprs, start=1):
            if not isinstance(expr, str):
                continue
            try:
                parsed = parse(expr, filename=f"{base} ONBUILD[{n}]")
                for node in parsed.nodes:
                    trigger = ins.parse_instruction(node, parsed.escape)
                    if isinstance(trigger, (ins.From, ins.Onbuild, ins.Maintainer)):
                        raise DockerfileError(f"{trigger.keyword} isn't allowed as an ONBUILD "
                                              "trigger", trigger.location)
                    out.append(trigger)
            except DockerfileError as exc:
                raise BuildError(f"ONBUILD trigger {expr!r} of {base}: {exc}",
                                 location) from None
        return out


def _set_env(env: list[str], key: str, value: str) -> list[str]:
    """``env`` with ``key`` set to ``value``: in place of its first entry, else appended."""
    out: list[str] = []
    done = False
    for item in env:
        if item.split("=", 1)[0] != key:
            out.append(item)
        elif not done:
            out.append(f"{key}={value}")
            done = True
    if not done:
        out.append(f"{key}={value}")
    return out


_SIGNALS = {s.name for s in signal.Signals}


def _check_signal(text: str, location: SourceLocation) -> None:
    name = text.upper()
    if name.isdigit() and 0 < int(name) < 65:
        return
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in _SIGNALS or re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return
    raise DockerfileError(f"STOPSIGNAL: invalid signal {text!r}", location)


def _ports(words: Sequence[str], location: SourceLocation) -> list[str]:
    out: list[str] = []
    for word in words:
        spec, _, proto = word.partition("/")
        proto = proto.lower() or "tcp"
        if proto not in ("tcp", "udp", "sctp"):
            raise DockerfileError(f"EXPOSE: invalid protocol in {word!r}", location)
        first, dash, last = spec.partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise DockerfileError(f"EXPOSE: invalid port {word!r}", location) from None
        if not 0 < lo <= hi < 65536:
            raise DockerfileError(f"EXPOSE: invalid port range {word!r}", location)
        out.extend(f"{p}/{proto}" for p in range(lo, hi + 1))
    return out


class _StagePlanner:
    """Walks one stage's instructions, keeping the config, build args and key chain."""

    def __init__(self, planner: _Planner, stage: ins.Stage, config: dict[str, Any],
                 author: str | None, key: str) -> None:
        self.p = planner
        self.stage = stage
        self.config = config
        self.author = author
        self.key = key
        self.args: dict[str, str | None] = {}
        self.cmd_set = False

    # -- lookups ------------------------------------------------------------------------

    def env_map(self) -> dict[str, str]:
        return dict(e.split("=", 1) if "=" in e else (e, "")
                    for e in self.config.get("Env") or [])

    def lookup(self) -> Callable[[str], str | None]:
        env = self.env_map()
        args = self.args

        def get(name: str) -> str | None:
            if name in env:
                return env[name]
            return args.get(name)

        return get

    def word(self, text: str, location: SourceLocation) -> str:
        return self.p._word(text, self.lookup(), location)

    def shell(self) -> tuple[str, ...]:
        return tuple(self.config.get("Shell") or DEFAULT_SHELL)

    def workdir(self) -> str:
        return self.config.get("WorkingDir") or "/"

    # -- steps --------------------------------------------------------------------------

    def step(self, item: ins.Instruction, number: int, total: int) -> Step:
        kind = "config"
        created_by: str | None = None
        run: RunPlan | None = None
        copy: CopyPlan | None = None
        workdir: str | None = None
        payload: Any = None
        loc = item.location
        cfg = self.config
        if isinstance(item, ins.Env):
            look = self.lookup()
            pairs = [(self.p._word(k, look, loc), self.p._word(v, look, loc))
                     for k, v in item.pairs]
            env = list(cfg.get("Env") or [])
            for k, v in pairs:
                env = _set_env(env, k, v)
            cfg["Env"] = env
            created_by = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        elif isinstance(item, ins.Arg):
            parts = []
            for raw_name, default in item.args:
                name = self.word(raw_name, loc)
                value = self.p._arg_value(name, default, self.lookup(), loc, self.p.meta)
                self.args[name] = value
                parts.append(name if default is None else f"{name}={default}")
            # As written, not the value: a changed build arg misses the cache where it is
            # used (a RUN sees it in its environment), not where it is declared.
            created_by = "ARG " + " ".join(parts)
        elif isinstance(item, ins.Label):
            look = self.lookup()
            labels = dict(cfg.get("Labels") or {})
            shown = []
            for k, v in item.pairs:
                key, value = self.p._word(k, look, loc), self.p._word(v, look, loc)
                labels[key] = value
                shown.append(f"{key}={value}")
            cfg["Labels"] = labels
            created_by = "LABEL " + " ".join(shown)
        elif isinstance(item, ins.Expose):
            look = self.lookup()
            words = [w for text in item.ports for w in self.p._words(text, look, loc)]
            ports = dict(cfg.get("ExposedPorts") or {})
            for port in _ports(words, loc):
                ports[port] = {}
            cfg["ExposedPorts"] = ports
            created_by = "EXPOSE " + " ".join(_ports(words, loc))
        elif isinstance(item, ins.Volume):
            vols = dict(cfg.get("Volumes") or {})
            paths = [self.word(p, loc) for p in item.paths]
            for path in paths:
                if not path:
                    raise DockerfileError("VOLUME specified can not be an empty string", loc)
                vols[path] = {}
            cfg["Volumes"] = vols
            created_by = f"VOLUME {json.dumps(paths)}"
        elif isinstance(item, ins.User):
            user = self.word(item.user, loc)
            if not user:
                raise DockerfileError("USER cannot be empty", loc)
            cfg["User"] = user
            created_by = f"USER {user}"
        elif isinstance(item, ins.Workdir):
            path = self.word(item.path, loc)
            if not path:
                raise DockerfileError("WORKDIR cannot be empty", loc)
            wd = posixpath.normpath(posixpath.join(self.workdir(), path))
            wd = "/" + wd.lstrip("/")
            cfg["WorkingDir"] = wd
            created_by = f"WORKDIR {wd}"
            if wd != "/":
                kind, workdir = "workdir", wd
                payload = [wd, cfg.get("User") or ""]
        elif isinstance(item, ins.StopSignal):
            sig = self.word(item.signal, loc)
            _check_signal(sig, loc)
            cfg["StopSignal"] = sig
            created_by = f"STOPSIGNAL {sig}"
        elif isinstance(item, (ins.Cmd, ins.Entrypoint)):
            argv = (list(item.command) if isinstance(item.command, tuple)
                    else [*self.shell(), item.command])
            if isinstance(item, ins.Cmd):
                cfg["Cmd"] = argv
                self.cmd_set = True
                created_by = f"CMD {json.dumps(argv)}"
            else:
                cfg["Entrypoint"] = argv
                if not self.cmd_set:
                    cfg.pop("Cmd", None)
                created_by = f"ENTRYPOINT {json.dumps(argv)}"
        elif isinstance(item, ins.Healthcheck):
            check: dict[str, Any] = {"Test": list(item.test)}
            for field, amount in (("Interval", item.interval), ("Timeout", item.timeout),
                                  ("StartPeriod", item.start_period),
                                  ("StartInterval", item.start_interval),
                                  ("Retries", item.retries)):
                if amount:
                    check[field] = amount
            cfg["Healthcheck"] = check
            created_by = f"HEALTHCHECK {json.dumps(check, sort_keys=True)}"
        elif isinstance(item, ins.Shell):
            cfg["Shell"] = list(item.shell)
            created_by = f"SHELL {json.dumps(list(item.shell))}"
        elif isinstance(item, ins.Onbuild):
            cfg["OnBuild"] = [*(cfg.get("OnBuild") or []), item.expression]
            created_by = f"ONBUILD {item.expression}"
        elif isinstance(item, ins.Maintainer):
            self.author = item.name
            created_by = f"MAINTAINER {item.name}"
        elif isinstance(item, ins.Run):
            kind = "run"
            run, created_by, payload = self.run(item)
        elif isinstance(item, (ins.Copy, ins.Add)):
            kind = "copy"
            copy, created_by, payload = self.copy(item)
        elif isinstance(item, ins.From):  # pragma: no cover - stages split on FROM
            raise DockerfileError("FROM inside a stage", loc)
        else:  # pragma: no cover - every instruction type is handled above
            raise DockerfileError(f"{item.keyword} is not supported", loc)
        self.key = _key(self.key, kind, created_by, payload)
        return Step(self.stage.index, number, total, kind, item.original, loc, self.key,
                    json.loads(json.dumps(cfg)), self.author, created_by, run, copy, workdir,
                    cfg.get("User") or "")

    # -- RUN ----------------------------------------------------------------------------

    def run(self, item: ins.Run) -> tuple[RunPlan, str, Any]:
        loc = item.location
        shell = self.shell()
        script: tuple[str, str] | None = None
        if isinstance(item.command, tuple):
            argv: tuple[str, ...] = item.command
            shown = json.dumps(list(argv))
        elif item.heredocs:
            single = _HEREDOC_ONLY.match(item.command.strip())
            if single is not None and len(item.heredocs) == 1:
                data = item.heredocs[0].text
                if data.startswith("#!"):
                    script = (item.heredocs[0].name, data)
                    argv = (f"/dev/pipes/{item.heredocs[0].name}",)
                else:
                    argv = (*shell, data)
            else:
                text = item.command + "".join(f"\n{h.content}{h.name}" for h in item.heredocs)
                argv = (*shell, text)
            shown = " ".join(argv)
        else:
            argv = (*shell, item.command)
            shown = " ".join(argv)
        env = list(self.config.get("Env") or [])
        names = {e.split("=", 1)[0] for e in env}
        arg_env = [(k, v) for k, v in self.args.items() if v is not None and k not in names]
        full_env = [tuple(e.split("=", 1)) if "=" in e else (e, "") for e in env]
        full_env += arg_env
        proxies = [(k, v) for k, v in self.p.options.build_args.items()
                   if k in PROXY_ARGS and k not in names and k not in self.args]
        network = item.network if item.network not in (None, "default") else \
            self.p.options.network
        mounts = tuple(self.mount(m, loc) for m in item.mounts)
        plan = RunPlan(argv, tuple((str(k), str(v)) for k, v in [*full_env, *proxies]),
                       self.config.get("User") or "", self.workdir(), network or "host",
                       mounts, script)
        prefix = ""
        if arg_env:
            prefix = f"|{len(arg_env)} " + " ".join(f"{k}={v}" for k, v in arg_env) + " "
        flags = [f"--mount={m.spec}" for m in item.mounts]
        if item.network:
            flags.append(f"--network={item.network}")
        created_by = "RUN " + " ".join([*flags, prefix + shown]).strip() + " # buildkit"
        payload = {"argv": list(argv), "env": [list(e) for e in full_env],
                   "user": plan.user, "workdir": plan.workdir, "network": plan.network,
                   "mounts": [self._mount_key(m) for m in mounts], "script": script}
        return plan, created_by, payload

    def mount(self, m: ins.RunMount, location: SourceLocation) -> MountPlan:
        look = self.lookup()

        def get(*keys: str) -> str | None:
            value = m.get(*keys)
            if value is None or keys[0] == "from":
                return value
            return self.p._word(value, look, location)

        def flag(key: str, default: bool) -> bool:
            value = get(key)
            return default if value is None else value.lower() in ("true", "1")

        def number(key: str, default: int | None, base: int = 10) -> int | None:
            value = get(key)
            if value is None:
                return default
            try:
                return int(value, base)
            except ValueError:
                raise DockerfileError(f"RUN --mount: invalid value {value!r} for {key}",
                                      location) from None

        def target(default: str | None = None) -> str:
            value = get("target") or default
            if not value:
                raise DockerfileError(f"RUN --mount=type={m.kind}: a target is required",
                                      location)
            return posixpath.normpath(posixpath.join(self.workdir(), value))

        if m.kind == "secret":
            sid = get("id") or get("source")
            if not sid:
                t = get("target") or ""
                sid = posixpath.basename(t)
            tgt = get("target")
            env = get("env")
            return MountPlan("secret", target(f"/run/secrets/{sid}") if tgt or not env
                             else "", secret_id=sid, required=flag("required", False),
                             mode=number("mode", 0o400, 8), uid=number("uid", 0) or 0,
                             gid=number("gid", 0) or 0, env=env)
        if m.kind == "tmpfs":
            size = get("size")
            parsed = None
            if size is not None:
                from isolate.fs.mounts import parse_size

                try:
                    parsed = parse_size(size, name="tmpfs size")
                except Exception:
                    raise DockerfileError(f"RUN --mount: invalid size {size!r}",
                                          location) from None
            return MountPlan("tmpfs", target(), readonly=False, size=parsed)
        if m.kind == "cache":
            tgt = target()
            return MountPlan("cache", tgt, readonly=flag("readonly", False),
                             cache_id=get("id") or tgt, sharing=get("sharing") or "shared",
                             mode=number("mode", 0o755, 8), uid=number("uid", 0) or 0,
                             gid=number("gid", 0) or 0)
        # bind
        readonly = not flag("readwrite", False) and flag("readonly", True)
        source = get("source") or "."
        frm = m.get("from")
        plan = MountPlan("bind", target(), readonly=readonly, source=source)
        if frm:
            name = self.p._word(frm, self.p.meta.get, location)
            index = self.p._stage_ref(name, self.stage.index, location, "RUN --mount from")
            if index is not None:
                return _record.evolve(plan, from_stage=index)
            return _record.evolve(plan, from_image=self.p.image(name, location))
        if self.p.context is None:
            raise BuildError("RUN --mount=type=bind needs a build context", location)
        entry = self.p.context.follow(source, what="RUN --mount", location=location)
        if entry is None:
            raise BuildError(f"RUN --mount: {source!r} is not in the build context (or "
                             "excluded by .dockerignore)", location)
        return _record.evolve(plan, source=entry.path)

    def _mount_key(self, m: MountPlan) -> list[Any]:
        out: list[Any] = [m.kind, m.target, m.readonly]
        if m.kind == "bind":
            if m.from_stage is not None:
                out += ["stage", self.p.plans[m.from_stage].key, m.source]
            elif m.from_image is not None:
                out += ["image", m.from_image.id, m.source]
            else:
                assert self.p.context is not None
                out += ["context", m.source, self.p.context.digest(m.source)]
        elif m.kind == "cache":
            out += [m.cache_id, m.sharing, m.mode, m.uid, m.gid]
        elif m.kind == "tmpfs":
            out += [m.size]
        else:  # secrets: their names and where they go, never their content
            out += [m.secret_id, m.env, m.mode, m.uid, m.gid, m.required]
        return out

    # -- COPY / ADD ---------------------------------------------------------------------

    def copy(self, item: ins.Copy | ins.Add) -> tuple[CopyPlan, str, Any]:
        loc = item.location
        look = self.lookup()
        kw = item.keyword
        if item.excludes or (isinstance(item, ins.Copy) and item.parents):
            raise DockerfileError(f"{kw} --exclude and --parents are not supported by isolate",
                                  loc)
        chown = self.p._word(item.chown, look, loc) if item.chown else None
        chmod = None
        if item.chmod:
            text = self.p._word(item.chmod, look, loc)
            try:
                chmod = int(text, 8)
            except ValueError:
                chmod = -1
            if not 0 <= chmod <= 0o7777:
                raise DockerfileError(f"{kw} --chmod={text}: expected an octal mode", loc)
        srcs = [self.p._word(s, look, loc) for s in item.sources]
        dest = self.p._word(item.dest, look, loc)
        if not dest:
            raise DockerfileError(f"{kw}: the destination cannot be empty", loc)
        dest_is_dir = dest.endswith("/") or posixpath.basename(dest) in (".", "..")
        dest = posixpath.normpath(posixpath.join(self.workdir(), dest))
        dest = "/" + dest.lstrip("/")
        wildcard = any(has_glob(s) for s in srcs)
        count = len(srcs) + len(item.inline)
        if (count > 1 or wildcard) and not dest_is_dir:
            raise DockerfileError(f"When using {kw} with more than one source file, the "
                                  "destination must be a directory and end with a /", loc)
        from_stage: int | None = None
        from_image: Image | None = None
        if isinstance(item, ins.Copy) and item.from_:
            name = self.p._word(item.from_, self.p.meta.get, loc)
            from_stage = self.p._stage_ref(name, self.stage.index, loc, "COPY --from")
            if from_stage is None:
                try:
                    from_image = self.p.image(name, loc)
                except BuildError as exc:
                    raise BuildError(f"COPY --from={name}: no build stage has that name, and "
                                     f"it is no image either ({exc.reason})", loc) from None
        checksum = None
        if isinstance(item, ins.Add) and item.checksum:
            checksum = self.p._word(item.checksum, look, loc)
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", checksum):
                raise DockerfileError(f"ADD --checksum={checksum}: expected sha256:<64 hex "
                                      "digits>", loc)
        sources: list[CopySource] = []
        keys: list[Any] = []
        for src in srcs:
            if isinstance(item, ins.Add) and re.match(r"(?i)https?://", src):
                if from_stage is not None or from_image is not None:
                    raise DockerfileError("ADD of a URL cannot use --from", loc)
                name = posixpath.basename(src.split("?", 1)[0].rstrip("/")) or "index.html"
                sources.append(CopySource("url", name, src))
                keys.append(["url", src, checksum])
                continue
            if isinstance(item, ins.Add) and (src.startswith("git@") or re.match(
                    r"(?i)(git|ssh)://", src) or src.endswith(".git")):
                raise DockerfileError(f"ADD {src}: git sources are not supported by isolate",
                                      loc)
            if checksum is not None:
                raise DockerfileError("ADD --checksum is only supported for HTTP(S) sources",
                                      loc)
            if from_stage is not None:
                sources.append(CopySource("stage", posixpath.basename(src.rstrip("/")) or "/",
                                          src))
                keys.append(["stage", self.p.plans[from_stage].key, src])
            elif from_image is not None:
                sources.append(CopySource("image", posixpath.basename(src.rstrip("/")) or "/",
                                          src))
                keys.append(["image", from_image.id, src])
            else:
                ctx = self.p.context
                if ctx is None:
                    raise BuildError(f"{kw} {src}: the build has no context", loc)
                matches = ctx.resolve(src, what=kw, location=loc)
                if not matches:
                    raise BuildError(f"{kw} failed: no source files were specified (no match "
                                     f"for {src!r})", loc)
                for name, entry in matches:
                    sources.append(CopySource("context", name, entry.path))
                    keys.append(["context", name, entry.path, ctx.digest(entry.path)])
        for doc in item.inline:
            data = doc.text
            if doc.expand:
                data = self.p._word(data, look, loc, self.p.raw_lexer)
            sources.append(CopySource("inline", doc.name, doc.name, data))
            keys.append(["inline", doc.name, data])
        unpack = item.unpack if isinstance(item, ins.Add) else None
        plan = CopyPlan(kw, tuple(sources), dest, dest_is_dir, chown, chmod, from_stage,
                        from_image, checksum, wildcard, unpack)
        shown_dest = dest + ("/" if dest_is_dir and dest != "/" else "")
        flags = []
        if isinstance(item, ins.Copy) and item.from_:
            flags.append(f"--from={item.from_}")
        if chown:
            flags.append(f"--chown={chown}")
        if item.chmod:
            flags.append(f"--chmod={item.chmod}")
        if item.link:
            flags.append("--link")
        shown = [*flags, *srcs, *(f"<<{d.name}" for d in item.inline), shown_dest]
        created_by = f"{kw} " + " ".join(shown) + " # buildkit"
        payload = {"sources": keys, "dest": dest, "dir": dest_is_dir, "chown": chown,
                   "chmod": chmod, "unpack": unpack}
        return plan, created_by, payload


def make_plan(parsed: ins.ParsedFile, context: BuildContext | None, options: BuildOptions,
              resolve_image: ImageResolver, read_config: ConfigReader) -> BuildPlan:
    """Plan a build: pick the target and the stages it needs, resolve their base images
    (``resolve_image(name, location)``, which may pull; ``read_config(image)`` gives an
    image's raw ``config`` object) and compute every step's config and cache key. Nothing
    runs and nothing is written.

    Raises:
        DockerfileError: a malformed value (a bad substitution, port, signal, mode...).
        BuildError: an unknown target, a cycle of stages, a missing source, a platform
            other than this machine's.
        ImageError: a base image cannot be found or pulled.
    """
    planner = _Planner(parsed, context, options, resolve_image, read_config)
    if options.platform:
        planner._check_platform(options.platform, None)
    target = planner.target()
    order = planner.order(target)
    for index in order:
        planner.plans[index] = planner.plan_stage(parsed.stages[index])
    stages = [planner.plans[i] for i in order]
    last = stages[-1]
    if options.labels:
        cfg = json.loads(json.dumps(last.steps[-1].config))
        cfg["Labels"] = {**(cfg.get("Labels") or {}), **options.labels}
        key = _key(last.key, "labels", sorted(options.labels.items()))
        extra = Step(last.index, last.steps[-1].number, last.steps[-1].total, "config",
                     "LABEL (--label)", None, key, cfg, last.steps[-1].author)
        stages[-1] = _record.evolve(last, steps=(*last.steps, extra))
    unused = sorted(set(options.build_args) - planner.used_args - set(PROXY_ARGS))
    warnings = list(planner.warnings)
    if unused:
        warnings.append(f"one or more build-args {unused} were not consumed")
    skipped = tuple(s.label for s in parsed.stages if s.index not in planner.plans)
    return BuildPlan(tuple(stages), target, skipped, tuple(warnings))
