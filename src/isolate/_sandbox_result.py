""":class:`SandboxResult`, what :meth:`isolate.Sandbox.run` returns. A module of its own, loaded
on first use: it is a :mod:`subprocess` class, and subprocess costs ~10 ms of a start that
``Sandbox.spawn`` does not need (``isolate.sandbox`` gives it under its public name)."""

from __future__ import annotations

import subprocess

__all__ = ["SandboxResult"]


class SandboxResult(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """A :class:`subprocess.CompletedProcess` that also says whether the OOM killer ended the
    process (``oom_killed``): a memory limit shows up as that, not as a bare SIGKILL."""

    oom_killed: bool = False
    #: With a writable image root: the process's overlay upper dir (its changes, in the
    #: layout :func:`isolate.fs.layers.diff` commits); removed when the sandbox closes.
    upper_dir: str | None = None

    def __repr__(self) -> str:
        base = super().__repr__()
        return base[:-1] + ", oom_killed=True)" if self.oom_killed else base


SandboxResult.__module__ = "isolate.sandbox"  # its public home (pickles name it there)
