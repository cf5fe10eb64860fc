"""The errors of a Dockerfile build, each naming where in which file it went wrong.

Owns :class:`SourceLocation` and the exception types of :mod:`isolate.image.build`; every
other module of the package raises these (never a bare ``ValueError``), so the CLI can print
one line that starts with ``file:line:column``.
"""

from __future__ import annotations

from isolate import _record
from isolate.errors import ConfigError, ImageError

__all__ = ["BuildCancelled", "BuildError", "DockerfileError", "SourceLocation", "StepFailed"]


@_record.record
class SourceLocation:
    """Where an instruction (or a part of it) is: ``file:line:column``, 1-based.

    ``end_line`` is the last line of an instruction continued over several lines (or with
    heredocs); it is the same as ``line`` for a one-line instruction.
    """

    file: str
    line: int
    column: int = 1
    end_line: int = 0  # 0: the same as line

    def __attrs_post_init__(self) -> None:
        if self.end_line == 0:
            object.__setattr__(self, "end_line", self.line)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def at_column(self, column: int) -> SourceLocation:
        """The same place, pointing at ``column`` of its first line."""
        return _record.evolve(self, column=max(1, column))


class DockerfileError(ConfigError):
    """A Dockerfile (or ``.dockerignore``, or a build option) is malformed; nothing was run.

    ``location`` is where (``None`` for an error about the whole file or an option), and the
    message starts with it: ``Dockerfile:3:1: unknown instruction: RUNN``.
    """

    def __init__(self, message: str, location: SourceLocation | None = None) -> None:
        super().__init__(f"{location}: {message}" if location is not None else message)
        self.location = location
        self.reason = message


class BuildError(ImageError):
    """A build could not be carried out: a base image or stage is missing, a source is outside
    the context, a step could not be committed. ``location`` names the instruction."""

    def __init__(self, message: str, location: SourceLocation | None = None) -> None:
        super().__init__(f"{location}: {message}" if location is not None else message)
        self.location = location
        self.reason = message


class StepFailed(BuildError):
    """A ``RUN`` step exited non-zero (or was killed): ``command`` is what it ran and
    ``exit_code`` its status (``128 + N`` for signal N). Steps before it stay cached."""

    def __init__(self, command: str, exit_code: int, location: SourceLocation | None = None,
                 output_tail: str = "") -> None:
        super().__init__(f"process {command!r} did not complete successfully: exit code "
                         f"{exit_code}", location)
        self.command = command
        self.exit_code = exit_code
        self.output_tail = output_tail


class BuildCancelled(BuildError):
    """The build was stopped while this stage or step ran: another stage failed, or the
    build was interrupted. A step runner raises it when the build's cancel fd turns readable
    (after killing the step); the build then raises the error that stopped it, not this."""
