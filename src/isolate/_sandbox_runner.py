"""Build steps in a sandbox: the :class:`~isolate.image.build.StepRunner` of today.

Owns running one ``RUN`` of a build in :class:`isolate.Sandbox` of the image so far: a
writable overlay root (its upper dir is the step's change set), root by default with
Docker's default capabilities (so ``chown`` and package installs work), ``none`` or ``host``
networking, the step's binds and tmpfs mounts, output streamed. The container layer will
replace this one class; nothing else in the build depends on it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from isolate.errors import IsolateOSError
from isolate.image import Store
from isolate.image.build import (
    Builder,
    BuildOptions,
    BuildRequest,
    BuildResult,
    RunOutcome,
    RunRequest,
)

__all__ = ["SandboxStepRunner", "build"]


class SandboxStepRunner:
    """Runs each RUN step in a fresh :class:`isolate.Sandbox` of the step's image.

    Differences from Docker that the container runner will remove: ``/tmp`` is a private
    tmpfs during the step (what a step writes there is not kept), no_new_privs is set
    (setuid programs do not gain privileges), the user has no supplementary groups.
    ``overlay`` is passed to the sandbox (``"auto"``, ``"kernel"`` or ``"fuse"``).
    """

    def __init__(self, *, overlay: str = "auto") -> None:
        self.overlay = overlay

    @contextlib.contextmanager
    def run(self, request: RunRequest, output: Callable[[bytes], None]
            ) -> Iterator[RunOutcome]:
        """Run ``request`` to its end, streaming its output; yield the outcome while the
        sandbox (and so the upper dir) still exists.

        Raises:
            IsolateError: the sandbox could not be made (not: the command failed -- that is
                the outcome's exit code; a command that cannot be executed is 126/127).
        """
        # Imported here: a build the cache answers whole never starts a sandbox.
        from isolate.fs.mounts import Bind, Tmpfs
        from isolate.sandbox import Sandbox
        from isolate.security import CapabilitySet

        binds = [Bind(m.source or "", m.target, readonly=m.readonly)
                 for m in request.mounts if m.kind == "bind"]
        tmpfs = [Tmpfs(m.target, size=m.size) for m in request.mounts if m.kind == "tmpfs"]
        with Sandbox(image=request.image, store=request.store, readonly=False,
                     capabilities=CapabilitySet.docker_default(),
                     network=request.network == "host", uid=request.uid, gid=request.gid,
                     env=dict(request.env), cwd=request.workdir, hostname=request.hostname,
                     binds=binds, tmpfs=tmpfs, overlay=self.overlay) as sb:
            try:
                proc = sb.popen(list(request.argv), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            except IsolateOSError as exc:
                if exc.step != "exec":
                    raise
                output(f"{request.argv[0]}: {exc}\n".encode())
                yield RunOutcome(127 if exc.errno in (2, 20) else 126, "")
                return
            try:
                assert proc.stdout is not None
                fd = proc.stdout.fileno()
                while chunk := os.read(fd, 1 << 16):
                    output(chunk)
                status = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()
            upper = getattr(proc, "upper_dir", None) or ""
            yield RunOutcome(128 - status if status < 0 else status, upper)


def build(context: str | os.PathLike[str] | None = ".", *, tags: Sequence[str] = (),
          dockerfile: str | os.PathLike[str] | None = None,
          dockerfile_text: str | bytes | None = None, store: Store | None = None,
          progress: Callable[[Any], None] | None = None,
          build_args: Mapping[str, str] | None = None, **options: Any) -> BuildResult:
    """Build a Dockerfile like ``docker build``: ``isolate.build(".", tags=["app:1"])``.

    ``options`` are :class:`isolate.image.build.BuildOptions` fields (``target``,
    ``labels``, ``no_cache``, ``pull``, ``network``, ``platform``, ``secrets``). RUN steps
    run in sandboxes (:class:`SandboxStepRunner`).

    Raises:
        DockerfileError, BuildError, StepFailed, ImageError: as
            :meth:`isolate.image.build.Builder.build`.
    """
    builder = Builder(store if store is not None else Store(), SandboxStepRunner(),
                      progress=progress)
    opts = BuildOptions(build_args=dict(build_args or {}), **options)
    request = BuildRequest(context=os.fspath(context) if context is not None else None,
                           dockerfile=os.fspath(dockerfile) if dockerfile is not None else None,
                           dockerfile_text=dockerfile_text, tags=tuple(tags), options=opts)
    return builder.build(request)
