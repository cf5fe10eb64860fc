"""Dockerfile builds: parse -> typed instructions -> a plan of steps with cache keys -> run.

Four parts, each usable alone: :mod:`~isolate.image.build.parser` (lines, continuations,
directives, heredocs), :mod:`~isolate.image.build.instructions` (typed records),
:mod:`~isolate.image.build.shell` (variable substitution) and
:mod:`~isolate.image.build.dockerignore`; then :mod:`~isolate.image.build.plan` (stages,
cache keys) and :mod:`~isolate.image.build.executor` (:class:`Builder`, which runs RUN steps
through a :class:`StepRunner`). ``isolate.build`` is the one-call form (RUN steps in containers).
"""

from __future__ import annotations

from isolate.image.build.cache import BuildCache, PruneReport
from isolate.image.build.context import BuildContext
from isolate.image.build.dockerignore import Ignores, read_patterns
from isolate.image.build.errors import (
    BuildCancelled,
    BuildError,
    DockerfileError,
    SourceLocation,
    StepFailed,
)
from isolate.image.build.executor import (
    Builder,
    BuildFinished,
    BuildRequest,
    BuildResult,
    RunMount,
    RunOutcome,
    RunRequest,
    StepFinished,
    StepOutput,
    StepRunner,
    StepStarted,
)
from isolate.image.build.instructions import parse_stages
from isolate.image.build.parser import parse
from isolate.image.build.plan import BuildOptions, BuildPlan, Secret, host_platform
from isolate.image.build.shell import ShellLexer
from isolate.image.build.state import ImageState

__all__ = [
    "BuildCache",
    "BuildCancelled",
    "BuildContext",
    "BuildError",
    "BuildFinished",
    "BuildOptions",
    "BuildPlan",
    "BuildRequest",
    "BuildResult",
    "Builder",
    "DockerfileError",
    "Ignores",
    "ImageState",
    "PruneReport",
    "RunMount",
    "RunOutcome",
    "RunRequest",
    "Secret",
    "ShellLexer",
    "SourceLocation",
    "StepFailed",
    "StepFinished",
    "StepOutput",
    "StepRunner",
    "StepStarted",
    "host_platform",
    "parse",
    "parse_stages",
    "read_patterns",
]
